//! Builds the restorer blob (`parasite/restorer`) and embeds it.

fn main() {
    let manifest = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let blob_dir = manifest.join("../../parasite/restorer");
    let spec = rcriu_blob_build::Spec {
        crate_dir: &blob_dir,
        bin: "rcriu-restorer",
        entry: "rcriu_restorer_head",
        symbols: &["rcriu_restorer_head"],
        name: "restorer",
    };
    if let Err(e) = rcriu_blob_build::build(&spec) {
        panic!("{e}");
    }
}
