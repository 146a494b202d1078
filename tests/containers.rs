//! Containers end to end: runc 1.1.5 (`runc --criu PATH`) checkpoints and
//! restores a busybox container with rcriu as its criu, and the
//! container's counter carries on from where it was.
//!
//! Needs `runc` and a static busybox (`apt-get install -y runc
//! busybox-static`); the tests fail, saying so, when they are missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcriu_test_support::TempDir;

const RCRIU: &str = env!("CARGO_BIN_EXE_rcriu");
const BUSYBOX: &str = "/bin/busybox";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn need_tools() {
    let runc = Command::new("runc").arg("--version").output();
    assert!(
        runc.is_ok_and(|o| o.status.success()),
        "this test needs runc: apt-get install -y runc"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "this test needs a static busybox at {BUSYBOX}: apt-get install -y busybox-static"
    );
}

/// A counter that never forks: each turn appends the next number to
/// /tmp/count, then waits 20 ms on a FIFO nobody writes to.
const COUNTER: &str =
    "i=0; while :; do i=$((i+1)); echo $i >> /tmp/count; read -t 0.02 x <> /tmp/tick; done";

/// A runc container with a busybox root file system, deleted on drop.
struct Container {
    dir: TempDir,
    id: String,
}

impl Container {
    /// A bundle running `sh -c script`; not started yet.
    fn new(tag: &str, script: &str) -> Container {
        let dir = TempDir::new(tag);
        let rootfs = dir.0.join("bundle/rootfs");
        for d in ["bin", "tmp", "proc", "sys", "dev"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sleep")).unwrap();
        let fifo = rootfs.join("tmp/tick");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let bundle = dir.0.join("bundle");
        run_ok(Command::new("runc").arg("spec").current_dir(&bundle));
        let cfg = bundle.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
        spec["process"]["terminal"] = false.into();
        spec["root"]["readonly"] = false.into();
        std::fs::write(&cfg, spec.to_string()).unwrap();
        Container {
            dir,
            id: format!("rcriu-ct-{tag}-{}", std::process::id()),
        }
    }

    fn runc(&self) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root").arg(self.dir.0.join("state"));
        c.stdin(Stdio::null());
        c
    }

    fn bundle(&self) -> PathBuf {
        self.dir.0.join("bundle")
    }

    fn count_file(&self) -> PathBuf {
        self.bundle().join("rootfs/tmp/count")
    }

    /// `runc run -d`: detached, with /dev/null as its stdio.
    fn start(&self) {
        let status = self
            .runc()
            .args(["run", "-d", "--bundle"])
            .arg(self.bundle())
            .arg(&self.id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "runc run: {status:?}");
    }

    fn checkpoint(&self, work: &str) -> Output {
        self.checkpoint_with(RCRIU, "images", work)
    }

    /// `runc checkpoint` with `criu` as its criu, into `images`.
    fn checkpoint_with(&self, criu: &str, images: &str, work: &str) -> Output {
        let work = self.dir.0.join(work);
        self.runc()
            .args(["--criu", criu, "checkpoint", "--image-path"])
            .arg(self.dir.0.join(images))
            .arg("--work-path")
            .arg(work)
            .arg(&self.id)
            .output()
            .unwrap()
    }

    fn restore(&self) -> Output {
        self.restore_with(RCRIU, "images", "work-restore")
    }

    /// `runc restore -d` with `criu` as its criu, from `images`.
    fn restore_with(&self, criu: &str, images: &str, work: &str) -> Output {
        self.runc()
            .args(["--criu", criu, "restore", "-d", "--image-path"])
            .arg(self.dir.0.join(images))
            .arg("--work-path")
            .arg(self.dir.0.join(work))
            .arg("--bundle")
            .arg(self.bundle())
            .arg(&self.id)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    /// The container's init, on the host, as runc knows it.
    fn pid(&self) -> i32 {
        let out = run_ok(self.runc().args(["state", &self.id]));
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        state["pid"].as_i64().unwrap() as i32
    }

    /// The counter's numbers so far.
    fn counts(&self) -> Vec<u64> {
        std::fs::read_to_string(self.count_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Waits until the counter wrote more than `n` numbers.
    fn wait_past(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.counts().len() <= n {
            assert!(
                Instant::now() < deadline,
                "the counter stopped at {} numbers",
                self.counts().len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn delete(&self) {
        let _ = self.runc().args(["delete", "-f", &self.id]).output();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.delete();
    }
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

/// Whether the numbers count 1, 2, 3, ... with none missing or repeated:
/// a counter that carried on, not one that started again.
fn carried_on(counts: &[u64]) -> Result<(), String> {
    for (i, &n) in counts.iter().enumerate() {
        if n != i as u64 + 1 {
            return Err(format!("number {} is {n}, not {}", i + 1, i + 1));
        }
    }
    Ok(())
}

#[test]
fn runc_checkpoints_and_restores_a_busybox_counter() {
    need_tools();
    let _g = common::setup();
    let c = Container::new("counter", COUNTER);
    c.start();
    c.wait_past(3);
    let out = c.checkpoint("work-dump");
    assert!(
        out.status.success(),
        "checkpoint: {}\n{}",
        text(&out.stderr),
        std::fs::read_to_string(c.dir.0.join("work-dump/dump.log")).unwrap_or_default()
    );
    // The images are CRIU's: a pid namespace of its own whose init the
    // counter is, its mounts, its UTS and IPC namespaces.
    let images = c.dir.0.join("images");
    let pstree = images.join("pstree.img");
    assert!(pstree.exists());
    for prefix in ["mountpoints-", "utsns-", "ipcns-var-", "tmpfs-dev-"] {
        let found = std::fs::read_dir(&images)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(prefix));
        assert!(found, "no {prefix}* image");
    }
    let at_dump = c.counts();
    carried_on(&at_dump).unwrap();

    let out = c.restore();
    assert!(
        out.status.success(),
        "restore: {}\n{}",
        text(&out.stderr),
        std::fs::read_to_string(c.dir.0.join("work-restore/restore.log")).unwrap_or_default()
    );
    c.wait_past(at_dump.len() + 3);
    // The counter went on from its value: every number once, in order.
    carried_on(&c.counts()).unwrap();
    // It is the init of its own pid namespace again, under runc.
    let pid = c.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.ends_with("\t1"), "{nspid}");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    for mp in [
        " / ",
        " /proc ",
        " /dev ",
        " /dev/pts ",
        " /sys ",
        " /sys/fs/cgroup/cpu ",
    ] {
        assert!(mounts.contains(mp), "no{mp}mount:\n{mounts}");
    }

    // Again, from the restored container: runc now names the pipe it
    // gave the restore as stderr (inherit_fd), which no file of the
    // images is.
    let out = c.checkpoint_with(RCRIU, "images2", "work-dump2");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let n = c.counts().len();
    let out = c.restore_with(RCRIU, "images2", "work-restore2");
    assert!(
        out.status.success(),
        "second restore: {}\n{}",
        text(&out.stderr),
        std::fs::read_to_string(c.dir.0.join("work-restore2/restore.log")).unwrap_or_default()
    );
    c.wait_past(n + 3);
    carried_on(&c.counts()).unwrap();

    // Negative control: the same container started anew counts from 1
    // again, which the check sees.
    c.delete();
    let before = c.counts().len();
    c.start();
    c.wait_past(before + 1);
    assert!(carried_on(&c.counts()).is_err());
}

/// A container running `script` (the counter after some set-up) whose
/// checkpoint rcriu refuses, naming `what`; it counts on untouched.
fn refused(tag: &str, script: &str, what: &str) {
    need_tools();
    let _g = common::setup();
    let c = Container::new(tag, &format!("{script} {COUNTER}"));
    c.start();
    c.wait_past(2);
    let out = c.checkpoint("work-dump");
    assert!(!out.status.success());
    let log = std::fs::read_to_string(c.dir.0.join("work-dump/dump.log")).unwrap();
    assert!(log.contains(what), "{log}");
    let n = c.counts().len();
    c.wait_past(n + 2);
    carried_on(&c.counts()).unwrap();
}

#[test]
fn a_container_of_two_processes_is_refused_by_name_and_left_running() {
    refused("two", "sleep 1000 &", "a pid namespace of 2 processes");
}

#[test]
fn a_container_holding_a_file_of_its_proc_is_refused_by_name() {
    // Its proc is mounted again only once its pid namespace exists,
    // after the restore opened the files.
    refused(
        "procfd",
        "exec 3</proc/self/status;",
        "fd 3: a file of the container's proc",
    );
}

/// The host name in the images becomes another one.
fn rename_host(dir: &rcriu_images::ImageDir, _pid: i32) {
    use rcriu_images::{ImageFile, pb};
    let name = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("utsns-"))
        .expect("a utsns image");
    let file = ImageFile::parse(&name).unwrap();
    let mut e: pb::UtsnsEntry = dir.read_one(file).unwrap();
    e.nodename = b"someone-else".to_vec();
    dir.write_one(file, &e).unwrap();
}

#[test]
fn a_uts_namespace_of_its_own_is_restored_with_its_names() {
    let _g = common::setup();
    // The workload unshares its UTS namespace, names its host, and checks
    // the name once restored.
    common::cycle("dump_scope", &["uts"], None).unwrap();
    // Negative control: another name in the image fails its check.
    let e = common::cycle("dump_scope", &["uts"], Some(rename_host)).unwrap_err();
    assert!(e.contains("FAIL"), "{e}");
}

/// CRIU 4.2's criu, when `RCRIU_TEST_CRIU` names it.
fn criu42() -> Option<String> {
    let c = std::env::var("RCRIU_TEST_CRIU")
        .ok()
        .filter(|c| !c.is_empty());
    if c.is_none() {
        eprintln!("RCRIU_TEST_CRIU is not set: skipping the container test against CRIU 4.2");
    }
    c
}

/// `out` succeeded, or the test fails with runc's words and the log.
fn succeeded(out: &Output, what: &str, log: &Path) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        text(&out.stderr),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn criu_and_rcriu_restore_each_others_container_checkpoints() {
    need_tools();
    let Some(criu) = criu42() else {
        return;
    };
    let _g = common::setup();
    let c = Container::new("cross", COUNTER);
    c.start();
    c.wait_past(3);
    // CRIU dumps, rcriu restores.
    let out = c.checkpoint_with(&criu, "images-criu", "work-criu");
    succeeded(
        &out,
        "CRIU's checkpoint",
        &c.dir.0.join("work-criu/dump.log"),
    );
    let n = c.counts().len();
    let out = c.restore_with(RCRIU, "images-criu", "work-rcriu-restore");
    let log = c.dir.0.join("work-rcriu-restore/restore.log");
    succeeded(&out, "rcriu's restore of CRIU's images", &log);
    c.wait_past(n + 3);
    carried_on(&c.counts()).unwrap();
    // rcriu dumps, CRIU restores.
    let out = c.checkpoint_with(RCRIU, "images-rcriu", "work-rcriu");
    succeeded(
        &out,
        "rcriu's checkpoint",
        &c.dir.0.join("work-rcriu/dump.log"),
    );
    let n = c.counts().len();
    let out = c.restore_with(&criu, "images-rcriu", "work-criu-restore");
    let log = c.dir.0.join("work-criu-restore/restore.log");
    succeeded(&out, "CRIU's restore of rcriu's images", &log);
    c.wait_past(n + 3);
    carried_on(&c.counts()).unwrap();
}
