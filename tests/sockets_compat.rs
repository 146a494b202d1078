//! Socket images between rcriu and CRIU. Debian's crit (CRIU 3.17, what
//! CI installs) decodes what rcriu writes for every kind of socket; and
//! with CRIU 4.2 at hand (`RCRIU_TEST_CRIU` names its criu binary), each
//! tool restores the other's dumps of the unix, TCP and netlink workloads,
//! which then check themselves.

mod common;

use std::path::Path;
use std::process::Command;

use common::{setup, start};
use rcriu::Dump;
use rcriu_test_support::TempDir;

/// `crit decode -i FILE`: its JSON, or what crit said.
fn crit(file: &Path) -> Result<serde_json::Value, String> {
    let out = Command::new("crit")
        .args(["decode", "-i"])
        .arg(file)
        .output()
        .expect("running crit (Debian's criu package)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("crit's output: {e}"))
}

/// The `type` of every entry of a decoded files.img.
fn file_types(files: &serde_json::Value) -> Vec<String> {
    files["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn crit_decodes_every_socket_image() {
    let _g = setup();
    for (name, args, kind, tcp) in [
        ("sk_unix", &[][..], "UNIXSK", false),
        ("sk_unix", &["ghost"][..], "UNIXSK", false),
        ("sk_inet", &[][..], "INETSK", false),
        ("sk_tcp", &["pair"][..], "INETSK", true),
        ("sk_netlink", &[][..], "NETLINKSK", false),
    ] {
        let w = start(name, args);
        let images = TempDir::new(&format!("compat-crit-{name}"));
        Dump::new(w.pid)
            .images_dir(images.path())
            .leave_running(true)
            .tcp_established(tcp)
            .run()
            .unwrap_or_else(|e| panic!("dumping {name}: {e}"));
        w.verdict().unwrap();
        let files = crit(&images.path().join("files.img"))
            .unwrap_or_else(|e| panic!("{name}: crit decode files.img: {e}"));
        let n = file_types(&files).iter().filter(|t| *t == kind).count();
        assert!(n >= 2, "{name}: {n} {kind} entries in files.img");
        let mut decoded = 0;
        for e in std::fs::read_dir(images.path()).unwrap() {
            let p = e.unwrap().path();
            let f = p.file_name().unwrap().to_string_lossy().into_owned();
            if f == "sk-queues.img" || f.starts_with("tcp-stream-") {
                let v = crit(&p).unwrap_or_else(|e| panic!("{name}: crit decode {f}: {e}"));
                assert!(
                    !v["entries"].as_array().expect("entries").is_empty(),
                    "{name}: {f} has entries"
                );
                decoded += 1;
            }
        }
        if tcp {
            assert!(decoded >= 2, "{name}: {decoded} stream and queue images");
        }
        // Negative control: crit refuses the same files.img cut short.
        let bytes = std::fs::read(images.path().join("files.img")).unwrap();
        let cut = images.path().join("cut.img");
        std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
        assert!(crit(&cut).is_err(), "{name}: crit took a cut files.img");
    }
}

/// CRIU 4.2's criu binary, when the machine has one.
fn criu() -> Option<String> {
    let c = std::env::var("RCRIU_TEST_CRIU")
        .ok()
        .filter(|c| !c.is_empty());
    if c.is_none() {
        eprintln!("RCRIU_TEST_CRIU is not set: skipping the tests against CRIU 4.2");
    }
    c
}

/// `tool dump` or `tool restore -d` of the images in `dir`, with `extra`.
fn run(tool: &str, cmd: &str, pid: Option<i32>, dir: &Path, extra: &[&str]) -> Result<(), String> {
    let log = format!("{cmd}.log");
    let mut c = Command::new(tool);
    c.arg(cmd);
    if let Some(p) = pid {
        c.args(["-t", &p.to_string()]);
    } else {
        c.arg("-d");
    }
    c.arg("-D").arg(dir).args(["-v4", "-o", &log]).args(extra);
    let out = c.output().map_err(|e| format!("running {tool}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} {cmd}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join(&log)).unwrap_or_default()
        ))
    }
}

#[test]
fn criu_4_2_and_rcriu_restore_each_other_s_sockets() {
    let _g = setup();
    let Some(criu) = criu() else { return };
    let rcriu = env!("CARGO_BIN_EXE_rcriu");
    for (name, args, extra) in [
        ("sk_unix", &[][..], &[][..]),
        ("sk_tcp", &["pair"][..], &["--tcp-established"][..]),
        ("sk_netlink", &[][..], &[][..]),
    ] {
        for (dumper, restorer) in [(rcriu, criu.as_str()), (criu.as_str(), rcriu)] {
            let what = format!("{name} {args:?} dumped by {dumper}, restored by {restorer}");
            let mut w = start(name, args);
            let images = TempDir::new(&format!("compat-{name}"));
            run(dumper, "dump", Some(w.pid), images.path(), extra)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            w.reap();
            if name == "sk_tcp" {
                // Negative control: the images hold connections, which a
                // restore without --tcp-established refuses.
                let e = run(rcriu, "restore", None, images.path(), &[])
                    .expect_err("connections restored without --tcp-established");
                assert!(e.contains("--tcp-established"), "{what}: {e}");
            }
            run(restorer, "restore", None, images.path(), extra)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            w.verdict().unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}
