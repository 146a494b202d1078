//! Builds the parasite blob (`parasite/blob`) and embeds it.

fn main() {
    let manifest = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let blob_dir = manifest.join("../../parasite/blob");
    let spec = rcriu_blob_build::Spec {
        crate_dir: &blob_dir,
        bin: "rcriu-parasite",
        entry: "rcriu_parasite_head",
        symbols: &[
            "rcriu_parasite_head",
            "rcriu_parasite_syscall_ret",
            "rcriu_parasite_sigreturn",
        ],
        name: "parasite",
    };
    if let Err(e) = rcriu_blob_build::build(&spec) {
        panic!("{e}");
    }
}
