//! rcriu driven by clients nobody here wrote, as they drive criu: CRIU's
//! own Python client (pycriu, from Debian's `criu` package) dumps and
//! restores through `rcriu swrk`; runc 1.1.5 (`--criu PATH`) and podman
//! 4.3 (with rcriu first on PATH under the name `criu`) get past their
//! version checks to the dump, which rcriu makes for runc
//! (`tests/containers.rs` restores it) and refuses by name for podman
//! (its external network namespace is not supported yet).
//!
//! Needs `/usr/bin/python3` with pycriu, `runc` and `podman` installed
//! (`apt-get install -y criu runc podman`); the tests fail, saying so,
//! without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rcriu_test_support::{TempDir, workload};

const RCRIU: &str = env!("CARGO_BIN_EXE_rcriu");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn need(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "this test needs {tool}: apt-get install -y {package}"
    );
}

/// A client of CRIU's RPC written with pycriu: `dump PID`, `restore` or
/// `version`, through `rcriu swrk`, printing what it got.
const PYCRIU_CLIENT: &str = r#"
import os, sys
import pycriu

mode, binary, images = sys.argv[1], sys.argv[2], sys.argv[3]
c = pycriu.criu()
c.use_binary(binary)
if mode != "service":
    c.opts.images_dir_fd = os.open(images, os.O_DIRECTORY)
c.opts.log_level = 4
c.opts.log_file = mode + ".log"
if mode == "version":
    req = pycriu.rpc.criu_req()
    req.type = pycriu.rpc.VERSION
    r = c._send_req_and_recv_resp(req)
    print(r.version.major_number, r.version.minor_number, r.version.name)
elif mode == "dump":
    c.opts.pid = int(sys.argv[4])
    req = pycriu.rpc.criu_req()
    req.type = pycriu.rpc.DUMP
    req.opts.MergeFrom(c.opts)
    r = c._send_req_and_recv_resp(req)
    print("ok" if r.success else "failed: " + r.cr_errmsg)
elif mode == "restore":
    print(c.restore().pid)
elif mode == "service":
    # A connection to "criu service" on the socket images names.
    c.use_sk(images)
    req = pycriu.rpc.criu_req()
    req.type = pycriu.rpc.VERSION
    print(c._send_req_and_recv_resp(req).version.name)
    c.opts.images_dir_fd = os.open(sys.argv[4], os.O_DIRECTORY)
    c.opts.pid = int(sys.argv[5])
    c.opts.leave_running = True
    if sys.argv[6] == "sibling":
        c.opts.rst_sibling = True
    req = pycriu.rpc.criu_req()
    req.type = pycriu.rpc.DUMP
    req.opts.MergeFrom(c.opts)
    r = c._send_req_and_recv_resp(req)
    print("ok" if r.success else "failed: " + r.cr_errmsg)
"#;

fn pycriu(t: &TempDir, args: &[&str]) -> Output {
    let script = t.path().join("client.py");
    std::fs::write(&script, PYCRIU_CLIENT).unwrap();
    // Debian's pycriu, wherever the test runs from.
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .args(args)
        .current_dir("/")
        .output()
        .expect("running /usr/bin/python3 (apt-get install -y python3 criu)");
    assert!(
        out.status.success(),
        "pycriu client failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

#[test]
fn pycriu_dumps_and_restores_through_rcriu() {
    let _g = common::setup();
    let t = TempDir::new("pycriu");
    let dir = t.path().join("images");
    std::fs::create_dir(&dir).unwrap();
    let dir_s = dir.to_str().unwrap();
    let out = pycriu(&t, &["version", RCRIU, dir_s]);
    assert!(
        text(&out.stdout).starts_with("4 2 rcriu"),
        "{}",
        text(&out.stdout)
    );

    let mut w = common::start("dump_state", &[]);
    let out = pycriu(&t, &["dump", RCRIU, dir_s, &w.pid.to_string()]);
    assert_eq!(text(&out.stdout).trim(), "ok");
    w.reap();
    assert!(dir.join("inventory.img").exists());
    assert!(
        std::fs::read_to_string(dir.join("dump.log"))
            .unwrap()
            .contains("Dumping finished successfully")
    );
    let out = pycriu(&t, &["restore", RCRIU, dir_s]);
    assert_eq!(text(&out.stdout).trim(), w.pid.to_string());
    w.verdict().expect("restored through pycriu, intact");
}

#[test]
fn pycriu_hears_why_a_dump_is_refused() {
    let _g = common::setup();
    let t = TempDir::new("pycriu-refused");
    let dir = t.path().join("images");
    std::fs::create_dir(&dir).unwrap();
    let w = common::start("dump_scope", &["vsock"]);
    let out = pycriu(
        &t,
        &["dump", RCRIU, dir.to_str().unwrap(), &w.pid.to_string()],
    );
    let said = text(&out.stdout);
    assert!(said.starts_with("failed: Error ("), "{said}");
    assert!(said.contains("a socket of family AF_VSOCK"), "{said}");
    assert!(!dir.join("inventory.img").exists());
    w.verdict().expect("untouched");
}

#[test]
fn criu_service_serves_pycriu_on_its_socket() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let _g = common::setup();
    let t = TempDir::new("service");
    let sock = t.path().join("criu.sock");
    let images = t.path().join("images");
    std::fs::create_dir(&images).unwrap();
    // The status fd: a zero byte on it once the service listens.
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    rustix::io::fcntl_setfd(&wr, rustix::io::FdFlags::empty()).unwrap();
    let mut service = Command::new(RCRIU)
        .args(["service", "--address"])
        .arg(&sock)
        .args([
            "--status-fd",
            &wr.as_raw_fd().to_string(),
            "--pidfile",
            "svc.pid",
        ])
        .args(["-v4", "-o", "svc.log", "-W"])
        .arg(t.path())
        .spawn()
        .unwrap();
    drop(wr);
    let mut ready = Vec::new();
    std::fs::File::from(rd).read_to_end(&mut ready).unwrap();
    assert_eq!(ready, [0], "criu's status byte, then the fd closed");
    assert_eq!(
        std::fs::read_to_string(t.path().join("svc.pid")).unwrap(),
        service.id().to_string()
    );
    let w = common::start("dump_state", &[]);
    let pid = w.pid.to_string();
    let sock_s = sock.to_str().unwrap();
    let images_s = images.to_str().unwrap();
    let out = pycriu(&t, &["service", RCRIU, sock_s, images_s, &pid, "child"]);
    assert_eq!(text(&out.stdout), "rcriu 0.1.0\nok\n");
    assert!(images.join("inventory.img").exists());
    // A standalone service refuses what only swrk may do, as criu.
    let out = pycriu(&t, &["service", RCRIU, sock_s, images_s, &pid, "sibling"]);
    assert!(
        text(&out.stdout).contains("rst_sibling is not allowed in standalone service"),
        "{}",
        text(&out.stdout)
    );
    service.kill().unwrap();
    service.wait().unwrap();
    w.verdict().expect("left running by the service's dump");
}

/// A root file system holding one static workload, `/compute`.
fn rootfs(at: &Path) {
    std::fs::create_dir_all(at.join("tmp")).unwrap();
    std::fs::copy(workload("compute"), at.join("compute")).unwrap();
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// A runc container running `/compute`, deleted on drop.
struct RuncContainer {
    root: PathBuf,
    id: String,
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "-f", &self.id])
            .output();
    }
}

#[test]
fn runc_gets_past_its_version_check() {
    need("runc", "runc");
    let _g = common::setup();
    let t = TempDir::new("runc");
    let bundle = t.path().join("bundle");
    rootfs(&bundle.join("rootfs"));
    run_ok(Command::new("runc").arg("spec").current_dir(&bundle));
    let cfg = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    spec["process"]["args"] = serde_json::json!(["/compute", "/tmp/out", "sleep"]);
    spec["process"]["terminal"] = false.into();
    spec["root"]["readonly"] = false.into();
    std::fs::write(&cfg, spec.to_string()).unwrap();
    let c = RuncContainer {
        root: t.path().join("runc-root"),
        id: format!("rcriu-test-{}", std::process::id()),
    };
    // Detached, the container keeps runc's stdio: not pipes of ours.
    let status = Command::new("runc")
        .arg("--root")
        .arg(&c.root)
        .args(["run", "-d", "--bundle"])
        .arg(&bundle)
        .arg(&c.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "runc run: {status:?}");
    let checkpoint = |criu: &str, work: &Path| {
        std::fs::create_dir_all(work).unwrap();
        Command::new("runc")
            .arg("--root")
            .arg(&c.root)
            .args(["--criu", criu, "checkpoint", "--image-path"])
            .arg(t.path().join("images"))
            .arg("--work-path")
            .arg(work)
            .arg(&c.id)
            .output()
            .unwrap()
    };
    // Negative control (first: a checkpoint ends the container): a criu
    // that does not answer fails the check.
    let out = checkpoint("/bin/false", &t.path().join("work2"));
    assert!(
        text(&out.stderr).contains("CRIU version check failed"),
        "{}",
        text(&out.stderr)
    );
    let work = t.path().join("work");
    let out = checkpoint(RCRIU, &work);
    let err = text(&out.stderr);
    assert!(!err.contains("version check failed"), "{err}");
    // runc asked for the dump, which rcriu made (tests/containers.rs
    // restores such containers).
    let log = std::fs::read_to_string(work.join("dump.log")).unwrap();
    assert!(out.status.success(), "{err}\n{log}");
    assert!(t.path().join("images/inventory.img").exists());
}

/// A podman container and its image, removed on drop.
struct PodmanContainer {
    name: String,
    image: String,
}

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", &self.name])
            .output();
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[test]
fn podmans_version_check_passes_with_rcriu_as_criu() {
    need("podman", "podman runc");
    need("runc", "runc");
    let _g = common::setup();
    let t = TempDir::new("podman");
    let fs = t.path().join("rootfs");
    rootfs(&fs);
    let c = PodmanContainer {
        name: format!("rcriu-test-{}", std::process::id()),
        image: format!("localhost/rcriu-test-{}:latest", std::process::id()),
    };
    let tarball = t.path().join("rootfs.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&fs)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
    );
    run_ok(
        Command::new("podman")
            .arg("import")
            .arg(&tarball)
            .arg(&c.image),
    );
    run_ok(
        Command::new("podman")
            .args(rcriu_test_support::PODMAN_RUN)
            .args(["--name", &c.name, &c.image, "/compute", "/tmp/out", "sleep"]),
    );
    // rcriu first on PATH, under the name criu.
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(RCRIU, bin.join("criu")).unwrap();
    let path = |first: &Path| {
        format!(
            "{}:{}",
            first.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    };
    let out = Command::new("podman")
        .env("PATH", path(&bin))
        .args(["container", "checkpoint", &c.name])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("requires at least CRIU"), "{err}");
    // Past the check: podman ran runc's checkpoint, whose criu was rcriu,
    // and restores it (tests/containers.rs checks what comes back).
    assert!(out.status.success(), "{err}");
    let out = Command::new("podman")
        .env("PATH", path(&bin))
        .args(["container", "restore", &c.name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Negative control: a criu that says nothing fails podman's check.
    let fake = t.path().join("fake");
    std::fs::create_dir(&fake).unwrap();
    std::fs::write(fake.join("criu"), "#!/bin/sh\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fake.join("criu"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("podman")
        .env("PATH", path(&fake))
        .args(["container", "checkpoint", &c.name])
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("requires at least CRIU 31100"),
        "{}",
        text(&out.stderr)
    );
}
