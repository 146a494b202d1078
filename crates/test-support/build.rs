//! Tells the crate where built workloads go: under the target directory.

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    // OUT_DIR is target/<profile>/build/<crate>-<hash>/out: keep workloads
    // beside it, under target/<profile>.
    let dir = std::path::Path::new(&out)
        .ancestors()
        .nth(3)
        .map(|p| p.join("rcriu-workloads"))
        .unwrap_or_else(|| std::path::PathBuf::from(&out));
    println!("cargo:rustc-env=RCRIU_WORKLOADS_DIR={}", dir.display());
}
