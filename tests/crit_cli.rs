//! `rcriu decode`, `encode` and `show` on the CRIU 4.2 fixtures, as a
//! user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rcriu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rcriu"))
        .args(args)
        .output()
        .expect("running rcriu")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn decode_prints_crit_values_and_encode_gives_the_bytes_back() {
    let dir = tempfile::tempdir().unwrap();
    let img = fixtures().join("criu-4.2/counter/core-30000.img");
    let text = ok(&rcriu(&["decode", "-i", img.to_str().unwrap()]));
    assert!(
        text.ends_with("}\n") && text.lines().count() == 1,
        "one line, as crit"
    );
    let ours: serde_json::Value = serde_json::from_str(&text).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("crit-4.2-json/counter/core-30000.img.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ours, theirs);

    let json = dir.path().join("core.json");
    ok(&rcriu(&[
        "decode",
        "--pretty",
        "-i",
        img.to_str().unwrap(),
        "-o",
        json.to_str().unwrap(),
    ]));
    let pretty = std::fs::read_to_string(&json).unwrap();
    assert!(pretty.contains("\"clear_tid_addr\": \"0x"), "pretty form");
    let back = dir.path().join("core.img");
    ok(&rcriu(&[
        "encode",
        "-i",
        json.to_str().unwrap(),
        "-o",
        back.to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&img).unwrap());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&back).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn show_file_is_the_pretty_decode() {
    let img = fixtures().join("criu-4.2/counter/mm-30000.img");
    let shown = ok(&rcriu(&["show", img.to_str().unwrap()]));
    let decoded = ok(&rcriu(&["decode", "--pretty", "-i", img.to_str().unwrap()]));
    assert_eq!(shown, decoded);
    assert!(
        shown.contains("\"prot\": \"PROT_READ | PROT_EXEC\""),
        "{shown}"
    );
}

#[test]
fn show_dir_summarises_the_dump() {
    let text = ok(&rcriu(&[
        "show",
        fixtures().join("criu-4.2/counter").to_str().unwrap(),
    ]));
    for want in [
        "process 30000 (counter)",
        "X86_64, alive",
        "12 areas",
        "[heap]",
        "[vdso]",
        "/tmp/rcriu-fixtures/counter",
        "pages: 1039 in pages-1.img",
        "0: REG /dev/null",
        "cwd /tmp/rcriu-fixtures, root /",
        "pages-1.img",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn bad_image_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("core-1.img");
    std::fs::write(&bad, [0x19, 0x43, 0x56, 0x54, 0xff, 0xff, 0xff, 0xff]).unwrap();
    let out = rcriu(&["decode", "-i", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("core-1.img at offset 4: unknown magic 0xffffffff"),
        "{err}"
    );
    let out = rcriu(&[
        "show",
        fixtures()
            .join("criu-4.2/counter/pages-1.img")
            .to_str()
            .unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("raw image"));
}
