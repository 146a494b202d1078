//! Containers end to end: runc 1.1.5 (`runc --criu PATH`) checkpoints and
//! restores a busybox container with rcriu as its criu, and the
//! container's counter carries on from where it was; servers in the
//! container's network namespace answer after the restore (runc's and
//! podman's), its unix sockets check out, and a client's TCP connection
//! to a podman container carries on through `--tcp-established`. A
//! container's SysV shared memory, semaphores and message queues check
//! out after the restore, and a shell run with a terminal (`runc run -t`)
//! answers on the new pty master runc hands to the console socket.
//!
//! Needs `runc` and a static busybox (`apt-get install -y runc
//! busybox-static`), `gcc` with a static C library (libc6-dev), `ip`,
//! `nsenter` and `script` (util-linux); the tests fail, saying so, when
//! they are missing.

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

/// A runc container running `script` that has counted, with the tests'
/// lock.
fn counting(tag: &str, script: &str) -> (Container, std::sync::MutexGuard<'static, ()>) {
    need_tools();
    let g = common::setup();
    let c = Container::new(tag, script);
    c.start();
    c.wait_past(3);
    (c, g)
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
    /// The dump log rcriu (or CRIU) wrote in work directory `work`.
    fn log(&self, work: &str) -> String {
        std::fs::read_to_string(self.dir.0.join(work).join("dump.log")).unwrap()
    }

    /// rcriu's checkpoint (with runc's options `extra`) fails, its log
    /// saying `what`, and the container counts on, untouched.
    fn checkpoint_refused(&self, extra: &[&str], what: &str) {
        let out = self.checkpoint_args(RCRIU, extra, "images", "work-dump");
        assert!(!out.status.success(), "checkpointed: {what}");
        let log = self.log("work-dump");
        assert!(log.contains(what), "{log}");
        self.counts_on();
    }

    /// The container counts on, untouched (after a refused checkpoint).
    fn counts_on(&self) {
        let n = self.counts().len();
        self.wait_past(n + 2);
        carried_on(&self.counts()).unwrap();
    }

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

    /// Gives the container's process capabilities `caps` too.
    fn add_caps(&self, caps: &[&str]) {
        let cfg = self.bundle().join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        for set in ["bounding", "effective", "permitted"] {
            let list = spec["process"]["capabilities"][set].as_array_mut().unwrap();
            list.extend(caps.iter().map(|c| serde_json::Value::from(*c)));
        }
        std::fs::write(&cfg, spec.to_string()).unwrap();
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
        self.checkpoint_args(criu, &[], images, work)
    }

    /// [`Container::checkpoint_with`], with runc's options `extra` too.
    fn checkpoint_args(&self, criu: &str, extra: &[&str], images: &str, work: &str) -> Output {
        let work = self.dir.0.join(work);
        self.runc()
            .args(["--criu", criu, "checkpoint"])
            .args(extra)
            .arg("--image-path")
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
        parse_counts(&std::fs::read_to_string(self.count_file()).unwrap_or_default())
    }

    /// Waits until the counter wrote more than `n` numbers.
    fn wait_past(&self, n: usize) {
        wait_counts(|| self.counts(), n);
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

/// Waits until `counts` holds more than `n` numbers.
fn wait_counts(counts: impl Fn() -> Vec<u64>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while counts().len() <= n {
        assert!(
            Instant::now() < deadline,
            "the counter stopped at {} numbers",
            counts().len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The numbers of a counter file.
fn parse_counts(text: &str) -> Vec<u64> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
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

/// Whether the numbers count on one by one from the first, with none
/// missing or repeated: a counter that carried on, not one that started
/// again.
fn carried_on(counts: &[u64]) -> Result<(), String> {
    let first = counts.first().copied().unwrap_or(0);
    for (i, &n) in counts.iter().enumerate() {
        if n != first + i as u64 {
            return Err(format!("number {} is {n}, not {}", i + 1, first + i as u64));
        }
    }
    Ok(())
}

/// Whether `after` goes on from `before`: the same numbers first, then
/// more, one by one.
fn continued(before: &[u64], after: &[u64]) -> Result<(), String> {
    if after.len() <= before.len() || after[..before.len()] != *before {
        return Err(format!(
            "{} numbers from {:?} do not go on from {} numbers from {:?}",
            after.len(),
            after.first(),
            before.len(),
            before.first()
        ));
    }
    carried_on(after)
}

#[test]
fn runc_checkpoints_and_restores_a_busybox_counter() {
    let (c, _g) = counting("counter", COUNTER);
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

/// Pages of the pagemaps in `images` kept in the parent images
/// (`PE_PARENT` runs), over every process.
fn pages_in_parent(images: &Path) -> u64 {
    let dir = rcriu_images::ImageDir::open(images).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(images).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("pagemap-")
            .and_then(|s| s.strip_suffix(".img"))
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let mut pm = dir.pagemap(pid).unwrap();
        while let Some(r) = pm.next_run().unwrap() {
            if r.flags & rcriu_images::pages::PE_PARENT != 0 {
                n += r.nr_pages;
            }
        }
    }
    n
}

/// `runc checkpoint --pre-dump` into `pre` (the container counts on),
/// then the checkpoint into `images` on top of it, by rcriu: what did
/// not change since is kept in the pre-dump's images. The counts at the
/// checkpoint.
fn pre_dumped_then_checkpointed(c: &Container, pre: &str, images: &str) -> Vec<u64> {
    let work = |w: &str| c.dir.0.join(format!("work-{w}"));
    let out = c.checkpoint_args(RCRIU, &["--pre-dump"], pre, &format!("work-{pre}"));
    succeeded(&out, "runc's pre-dump", &work(pre).join("dump.log"));
    let n = c.counts().len();
    c.wait_past(n + 2);
    carried_on(&c.counts()).unwrap();
    let parent = format!("../{pre}");
    let out = c.checkpoint_args(
        RCRIU,
        &["--parent-path", &parent],
        images,
        &format!("work-{images}"),
    );
    succeeded(&out, "the checkpoint", &work(images).join("dump.log"));
    assert!(
        pages_in_parent(&c.dir.0.join(images)) > 0,
        "no page kept in the pre-dump's images"
    );
    let at_dump = c.counts();
    carried_on(&at_dump).unwrap();
    at_dump
}

/// `runc restore` of `images` by `criu`; the container counts on from
/// `at_dump`.
fn restored_from(c: &Container, criu: &str, images: &str, at_dump: &[u64]) {
    let work = format!("work-restore-{images}-{}", criu.len());
    let out = c.restore_with(criu, images, &work);
    succeeded(
        &out,
        &format!("{criu}'s restore"),
        &c.dir.0.join(work).join("restore.log"),
    );
    c.wait_past(at_dump.len() + 3);
    continued(at_dump, &c.counts()).unwrap();
}

#[test]
fn runc_pre_dumps_then_checkpoints_and_restores_from_the_chain() {
    let (c, _g) = counting("predump", COUNTER);
    let at_dump = pre_dumped_then_checkpointed(&c, "pre", "images");

    // Negative control: without the pre-dump's images the restore is
    // refused, naming what is missing, and nothing runs.
    let away = c.dir.0.join("pre-away");
    std::fs::rename(c.dir.0.join("pre"), &away).unwrap();
    let out = c.restore_with(RCRIU, "images", "work-restore-nopre");
    assert!(!out.status.success(), "restored without its parent images");
    let log =
        std::fs::read_to_string(c.dir.0.join("work-restore-nopre/restore.log")).unwrap_or_default();
    assert!(
        log.contains("parent") || text(&out.stderr).contains("parent"),
        "{}\n{log}",
        text(&out.stderr)
    );
    assert_eq!(c.counts(), at_dump, "something ran after a refused restore");
    c.delete();
    std::fs::rename(&away, c.dir.0.join("pre")).unwrap();
    restored_from(&c, RCRIU, "images", &at_dump);

    // The same with CRIU 4.2 restoring rcriu's chain, when it is here.
    if let Some(criu) = criu42() {
        let at_dump = pre_dumped_then_checkpointed(&c, "pre2", "images2");
        restored_from(&c, &criu, "images2", &at_dump);
    }
}

/// A container running `script` (the counter after some set-up) whose
/// checkpoint rcriu refuses, naming `what`; it counts on untouched.
fn refused(tag: &str, script: &str, what: &str) {
    refused_with(tag, script, &[], what);
}

/// [`refused`], the container's process given capabilities `caps` too.
fn refused_with(tag: &str, script: &str, caps: &[&str], what: &str) {
    need_tools();
    let _g = common::setup();
    let c = Container::new(tag, &format!("{script} {COUNTER}"));
    if !caps.is_empty() {
        c.add_caps(caps);
    }
    c.start();
    c.wait_past(2);
    let out = c.checkpoint("work-dump");
    assert!(!out.status.success());
    let log = c.log("work-dump");
    assert!(log.contains(what), "{log}");
    c.counts_on();
}

/// A child counting into /tmp/kid, and the init counting only while
/// `kill -0` (a builtin: nothing is forked) still finds the child by the
/// pid it was forked with: a child restored under another pid makes
/// the init write `gone N` in place of N, a gap in its numbers.
const TWO: &str = "sh -c 'j=0; while :; do j=$((j+1)); echo $j >> /tmp/kid; \
     read -t 0.02 x <> /tmp/tick; done' & kid=$!; \
     i=0; while :; do i=$((i+1)); if kill -0 $kid; then echo $i >> /tmp/count; \
     else echo gone $i >> /tmp/count; fi; read -t 0.02 x <> /tmp/tick; done";

/// The host pid and the namespace pid of each child of `pid`.
fn children_ns_pids(pid: i32) -> Vec<(i32, i32)> {
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    kids.split_whitespace()
        .map(|k| {
            let k: i32 = k.parse().unwrap();
            let status = std::fs::read_to_string(format!("/proc/{k}/status")).unwrap();
            let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
            let v = nspid.split_whitespace().last().unwrap().parse().unwrap();
            (k, v)
        })
        .collect()
}

/// The child's process renumbered from `from` to `to` in the images
/// (its pstree entry and the images named by its pid).
fn renumber_child(images: &Path, from: u32, to: u32) {
    use rcriu_images::{ImageFile, pb};
    let dir = rcriu_images::ImageDir::open(images).unwrap();
    let mut tree: Vec<pb::PstreeEntry> = dir.read_all(ImageFile::Pstree).unwrap();
    for e in &mut tree {
        if e.pid == from {
            e.pid = to;
            e.threads = vec![to];
        }
    }
    dir.write_all(ImageFile::Pstree, &tree).unwrap();
    for kind in ["core", "mm", "pagemap", "fs", "ids"] {
        let old = images.join(format!("{kind}-{from}.img"));
        std::fs::rename(&old, images.join(format!("{kind}-{to}.img"))).unwrap();
    }
    std::fs::remove_file(images.join(rcriu_images::manifest::MANIFEST)).unwrap();
}

#[test]
fn runc_restores_every_process_of_the_containers_pid_namespace() {
    need_tools();
    let _g = common::setup();
    let c = Container::new("two", TWO);
    let kid_counts = || {
        parse_counts(
            &std::fs::read_to_string(c.bundle().join("rootfs/tmp/kid")).unwrap_or_default(),
        )
    };
    c.start();
    c.wait_past(3);
    wait_counts(kid_counts, 3);
    let before = children_ns_pids(c.pid());
    assert_eq!(before.len(), 1, "{before:?}");
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    let (at_dump, kid_at_dump) = (c.counts(), kid_counts());
    carried_on(&at_dump).unwrap();
    carried_on(&kid_at_dump).unwrap();

    let out = c.restore();
    succeeded(&out, "restore", &c.dir.0.join("work-restore/restore.log"));
    c.wait_past(at_dump.len() + 3);
    wait_counts(kid_counts, kid_at_dump.len() + 3);
    // Both went on; the init still finds its child by its pid (checked
    // from inside), which the host sees too.
    continued(&at_dump, &c.counts()).unwrap();
    continued(&kid_at_dump, &kid_counts()).unwrap();
    assert!(!lost_child(&c));
    let after = children_ns_pids(c.pid());
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].1, before[0].1, "the child's pid in the namespace");
    assert_ne!(after[0].0, before[0].0, "a host pid of its own");

    // Negative control: restored under another pid in the namespace, the
    // child is lost to the init, whose numbers show it.
    let out = c.checkpoint_with(RCRIU, "images2", "work-dump2");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let n = c.counts().len();
    let vpid = before[0].1 as u32;
    renumber_child(&c.dir.0.join("images2"), vpid, vpid + 5);
    let out = c.restore_with(RCRIU, "images2", "work-restore2");
    succeeded(
        &out,
        "restore of the renumbered images",
        &c.dir.0.join("work-restore2/restore.log"),
    );
    assert_eq!(children_ns_pids(c.pid())[0].1, before[0].1 + 5);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lost_child(&c) {
        assert!(Instant::now() < deadline, "the init never missed its child");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(c.counts().len(), n, "the init counted on without its child");
}

/// A container whose init has three threads (tests/workloads/ct_threads.c),
/// ready: its facts line.
fn threads_container(tag: &str) -> (Container, String) {
    threads_container_with(tag, "")
}

/// As [`threads_container`], the workload given `mode` ("zombie": a
/// child that ended, not reaped).
fn threads_container_with(tag: &str, mode: &str) -> (Container, String) {
    let c = Container::new(
        tag,
        &format!("cd /tmp && exec /bin/ct_threads /tmp/verdict {mode} > /tmp/stdout"),
    );
    static_workload_with(&c, "ct_threads", &["-pthread"]);
    c.start();
    let facts = wait_file(&c, "tmp/stdout", "ready");
    (c, facts)
}

/// The ct_threads container (in `mode`) checkpointed by CRIU 4.2 and
/// restored by rcriu, and the other way round: each passes its check.
fn threads_across_criu(mode: &str) {
    let Some(criu) = criu42() else { return };
    for (dumper, restorer) in [(criu.as_str(), RCRIU), (RCRIU, criu.as_str())] {
        let (c, facts) = threads_container_with("threads-x", mode);
        let out = c.checkpoint_with(dumper, "images-x", "work-dump-x");
        succeeded(&out, "checkpoint", &c.dir.0.join("work-dump-x/dump.log"));
        let out = c.restore_with(restorer, "images-x", "work-restore-x");
        succeeded(&out, "restore", &c.dir.0.join("work-restore-x/restore.log"));
        run_ok(c.runc().args(["kill", &c.id, "USR1"]));
        let v = wait_file(&c, "tmp/verdict", "\n");
        assert_eq!(
            v, "PASS\n",
            "{mode}: dumped by {dumper}, restored by {restorer}: {facts}"
        );
        c.delete();
    }
}

/// The threads of the container's init, by host tid, with their tids in
/// the namespace.
fn threads_ns_tids(pid: i32) -> Vec<(i32, i32)> {
    let mut out: Vec<(i32, i32)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .filter(|&t: &i32| t != pid)
        .map(|t| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/task/{t}/status")).unwrap();
            let ns = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last())
                .and_then(|v| v.parse().ok())
                .unwrap();
            (t, ns)
        })
        .collect();
    out.sort_by_key(|&(_, ns)| ns);
    out
}

/// The threads of a container's init come back with their tids in its
/// pid namespace (and tids of their own on the host), each counting on
/// and finding its tid (checked from inside). Control: a thread's tid
/// changed in the images (its core image and the pstree entry) is seen
/// by the workload.
#[test]
fn runc_restores_the_threads_of_a_containers_init() {
    need_tools();
    let _g = common::setup();
    let (c, facts) = threads_container("threads");
    let before = threads_ns_tids(c.pid());
    assert_eq!(before.len(), 3, "{before:?}");
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    let changed = copy_images(&c, "images", "images-renumbered");
    let out = c.restore();
    succeeded(&out, "restore", &c.dir.0.join("work-restore/restore.log"));
    let after = threads_ns_tids(c.pid());
    let ns = |v: &[(i32, i32)]| v.iter().map(|&(_, n)| n).collect::<Vec<_>>();
    assert_eq!(ns(&after), ns(&before), "{facts}");
    run_ok(c.runc().args(["kill", &c.id, "USR1"]));
    assert_eq!(wait_file(&c, "tmp/verdict", "\n"), "PASS\n", "{facts}");
    c.delete();

    // Negative control: the last thread renumbered in the images.
    use rcriu_images::{ImageFile, pb};
    let last = before[2].1 as u32;
    let dir = rcriu_images::ImageDir::open(&changed).unwrap();
    let mut tree: Vec<pb::PstreeEntry> = dir.read_all(ImageFile::Pstree).unwrap();
    for t in tree.iter_mut().flat_map(|e| e.threads.iter_mut()) {
        if *t == last {
            *t = last + 7;
        }
    }
    dir.write_all(ImageFile::Pstree, &tree).unwrap();
    std::fs::rename(
        changed.join(format!("core-{last}.img")),
        changed.join(format!("core-{}.img", last + 7)),
    )
    .unwrap();
    let _ = std::fs::remove_file(c.bundle().join("rootfs/tmp/verdict"));
    let out = c.restore_with(RCRIU, "images-renumbered", "work-restore2");
    succeeded(&out, "restore", &c.dir.0.join("work-restore2/restore.log"));
    run_ok(c.runc().args(["kill", &c.id, "USR1"]));
    let v = wait_file(&c, "tmp/verdict", "\n");
    assert!(v.starts_with("FAIL: "), "control: {v}");
    c.delete();

    // Across CRIU 4.2, both ways.
    threads_across_criu("");
}

/// `runc restore -d --file-locks` of the container `c` from `images`.
fn restore_locks(c: &Container, images: &str, work: &str) -> Output {
    c.runc()
        .args([
            "--criu",
            RCRIU,
            "restore",
            "-d",
            "--file-locks",
            "--image-path",
        ])
        .arg(c.dir.0.join(images))
        .arg("--work-path")
        .arg(c.dir.0.join(work))
        .arg("--bundle")
        .arg(c.bundle())
        .arg(&c.id)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// A container whose init is the static workload `name`
/// (tests/workloads/NAME.c, built with `flags`), run as `NAME
/// /tmp/verdict`, ready.
fn one_workload(tag: &str, name: &str, flags: &[&str]) -> Container {
    let c = Container::new(
        tag,
        &format!("cd /tmp && exec /bin/{name} /tmp/verdict > /tmp/stdout"),
    );
    static_workload_with(&c, name, flags);
    c.start();
    wait_file(&c, "tmp/stdout", "ready");
    c
}

/// The one-workload container `c` checkpointed and restored by rcriu,
/// passing its check; a copy of its images in `copy` is returned, for a
/// control.
fn restored_passing(c: &Container, copy: &str) -> PathBuf {
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    let changed = copy_images(c, "images", copy);
    let out = c.restore();
    succeeded(&out, "restore", &c.dir.0.join("work-restore/restore.log"));
    assert_eq!(usr1_verdict(c), "PASS\n");
    changed
}

/// The verdict of a restored one-workload container, asked with SIGUSR1;
/// the container is then deleted.
fn usr1_verdict(c: &Container) -> String {
    let _ = std::fs::remove_file(c.bundle().join("rootfs/tmp/verdict"));
    run_ok(c.runc().args(["kill", &c.id, "USR1"]));
    let v = wait_file(c, "tmp/verdict", "\n");
    c.delete();
    v
}

/// A POSIX lock held by a container's init (`runc checkpoint/restore
/// --file-locks`) comes back held by it: a child forked after the restore
/// finds its parent, pid 1 in the container, holding it (checked from
/// inside). The lock's owner is written as the container numbers it, as
/// CRIU 4.2 writes it (it was the host's pid, which no process of the
/// images has: the restore took no lock and said nothing). Controls: the
/// images without the lock restore a container whose child finds the
/// file unlocked; a lock of a process not in the dump is refused by
/// name.
#[test]
fn runc_restores_a_file_lock_of_a_containers_init() {
    need_tools();
    let _g = common::setup();
    let c = one_workload("lock", "ct_lock", &[]);
    let out = c.checkpoint_args(RCRIU, &["--file-locks"], "images", "work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    use rcriu_images::{ImageDir, ImageFile, pb};
    let locks: Vec<pb::FileLockEntry> = ImageDir::open(c.dir.0.join("images"))
        .unwrap()
        .read_all(ImageFile::FileLocks)
        .unwrap();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0].pid, 1, "the owner as the container numbers it");
    let unlocked = copy_images(&c, "images", "images-unlocked");
    let stranger = copy_images(&c, "images", "images-stranger");
    let out = restore_locks(&c, "images", "work-restore");
    succeeded(&out, "restore", &c.dir.0.join("work-restore/restore.log"));
    assert_eq!(usr1_verdict(&c), "PASS\n");

    // Control: the lock gone from the images.
    let dir = ImageDir::open(&unlocked).unwrap();
    dir.write_all::<pb::FileLockEntry>(ImageFile::FileLocks, &[])
        .unwrap();
    let out = restore_locks(&c, "images-unlocked", "work-restore2");
    succeeded(&out, "restore", &c.dir.0.join("work-restore2/restore.log"));
    assert_eq!(usr1_verdict(&c), "FAIL: nobody holds the lock\n");

    // A lock of a process the dump does not have: refused by name.
    let dir = ImageDir::open(&stranger).unwrap();
    let mut l = locks.clone();
    l[0].pid = 4242;
    dir.write_all(ImageFile::FileLocks, &l).unwrap();
    let out = restore_locks(&c, "images-stranger", "work-restore3");
    assert!(!out.status.success(), "restored a lock of no process");
    let log = std::fs::read_to_string(c.dir.0.join("work-restore3/restore.log")).unwrap();
    assert!(
        log.contains("filelocks.img")
            && log.contains("process 4242, which is not one of the dump's"),
        "{log}"
    );
    c.delete();
}

/// The owner of an open file's signals (`F_SETOWN`) of a container's
/// init comes back as the container numbers it: the init finds itself
/// (pid 1) still owning its pipe, with its signal (checked from inside).
/// It was written by host pid, which the restore gave to whatever host
/// process had that pid (the container saw owner 0). Control: an owner
/// the dump has not (pid 2) is refused naming files.img.
#[test]
fn runc_restores_the_owner_of_a_files_signals_in_a_container() {
    need_tools();
    let _g = common::setup();
    let c = one_workload("fown", "ct_fown", &[]);
    let changed = restored_passing(&c, "images-owner");

    // Control: the pipe's owner made pid 2 (a pid the container has not).
    use rcriu_images::{ImageDir, ImageFile, pb};
    let dir = ImageDir::open(&changed).unwrap();
    let mut files: Vec<pb::FileEntry> = dir.read_all(ImageFile::Files).unwrap();
    let owned = files
        .iter_mut()
        .filter_map(|f| f.pipe.as_mut())
        .find(|p| p.fown.pid != 0)
        .expect("the owned pipe");
    assert_eq!(owned.fown.pid, 1, "the owner as the container numbers it");
    owned.fown.pid = 2;
    dir.write_all(ImageFile::Files, &files).unwrap();
    let out = c.restore_with(RCRIU, "images-owner", "work-restore2");
    assert!(!out.status.success(), "restored an owner the dump has not");
    let log = std::fs::read_to_string(c.dir.0.join("work-restore2/restore.log")).unwrap();
    assert!(
        log.contains("files.img") && log.contains("process 2, which is not one of the dump's"),
        "{log}"
    );
    c.delete();
}

/// A POSIX timer of a container's init that signals one of its threads
/// (`SIGEV_THREAD_ID`, as glibc's `SIGEV_THREAD` timers do) comes back
/// signalling that thread, by its tid as the container numbers it
/// (checked from inside, in /proc/self/timers). It was written by host
/// tid, which the dump's own check of its images then refused. Control:
/// the thread named in the images changed is refused naming the core
/// image.
#[test]
fn runc_restores_a_timer_signalling_a_thread_in_a_container() {
    need_tools();
    let _g = common::setup();
    let c = one_workload("timer", "ct_timer", &["-pthread"]);
    let changed = restored_passing(&c, "images-thread");

    // Control: the timer made to signal a thread the process has not.
    use rcriu_images::{ImageDir, ImageFile, pb};
    let dir = ImageDir::open(&changed).unwrap();
    let mut core: pb::CoreEntry = dir.read_one(ImageFile::Core(1)).unwrap();
    let timers = core.tc.as_mut().and_then(|t| t.timers.as_mut()).unwrap();
    let t = timers
        .posix
        .iter_mut()
        .find(|t| t.notify_thread_id.is_some())
        .unwrap();
    t.notify_thread_id = Some(77);
    dir.write_one(ImageFile::Core(1), &core).unwrap();
    let out = c.restore_with(RCRIU, "images-thread", "work-restore2");
    assert!(!out.status.success(), "restored a timer of no thread");
    let log = std::fs::read_to_string(c.dir.0.join("work-restore2/restore.log")).unwrap();
    assert!(log.contains("signals thread 77"), "{log}");
    c.delete();
}

/// A zombie child of a container's init comes back a zombie with its pid
/// in the namespace and its exit status (which the init reaps, checked
/// from inside). Control: the same images with the zombie's status
/// changed are seen by the workload.
#[test]
fn runc_restores_a_zombie_of_a_containers_init() {
    need_tools();
    let _g = common::setup();
    let (c, facts) = threads_container_with("zombie", "zombie");
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    let changed = copy_images(&c, "images", "images-status");
    let out = c.restore();
    succeeded(&out, "restore", &c.dir.0.join("work-restore/restore.log"));
    run_ok(c.runc().args(["kill", &c.id, "USR1"]));
    assert_eq!(wait_file(&c, "tmp/verdict", "\n"), "PASS\n", "{facts}");
    c.delete();

    // Negative control: the zombie's exit code changed in the images.
    use rcriu_images::{ImageFile, pb};
    let zpid: u32 = facts
        .lines()
        .find_map(|l| l.strip_prefix("zombie "))
        .and_then(|p| p.trim().parse().ok())
        .expect("the zombie's pid");
    let dir = rcriu_images::ImageDir::open(&changed).unwrap();
    let mut core: pb::CoreEntry = dir.read_one(ImageFile::Core(zpid.into())).unwrap();
    core.tc.as_mut().unwrap().exit_code = 9;
    dir.write_one(ImageFile::Core(zpid.into()), &core).unwrap();
    let _ = std::fs::remove_file(c.bundle().join("rootfs/tmp/verdict"));
    let out = c.restore_with(RCRIU, "images-status", "work-restore2");
    succeeded(&out, "restore", &c.dir.0.join("work-restore2/restore.log"));
    run_ok(c.runc().args(["kill", &c.id, "USR1"]));
    let v = wait_file(&c, "tmp/verdict", "\n");
    assert!(
        v.starts_with(&format!("FAIL: zombie {zpid} status")),
        "control: {v}"
    );
    c.delete();

    // Across CRIU 4.2, both ways.
    threads_across_criu("zombie");
}

/// Whether the init of [`TWO`] wrote that it lost its child.
fn lost_child(c: &Container) -> bool {
    std::fs::read_to_string(c.count_file()).is_ok_and(|t| t.contains("gone"))
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
    // The workload unshares its UTS namespace, names its host, and checks
    // the name once restored. Negative control: another name in the
    // image fails its check.
    scope_cycle("uts", rename_host, "FAIL");
}

/// `dump_scope MODE` dumped and restored, checking itself; then again
/// with `tweak` applied to its images, where its check fails saying
/// `fails`.
fn scope_cycle(mode: &str, tweak: fn(&rcriu_images::ImageDir, i32), fails: &str) {
    let _g = common::setup();
    common::cycle("dump_scope", &[mode], None).unwrap();
    let e = common::cycle("dump_scope", &[mode], Some(tweak)).unwrap_err();
    assert!(e.contains(fails), "{e}");
}

/// Takes the pid namespace for children out of the images (the process
/// then forks in its own).
fn drop_pidns_for_children(dir: &rcriu_images::ImageDir, pid: i32) {
    use rcriu_images::{ImageFile, pb};
    let file = ImageFile::Ids((pid as u32).into());
    let mut ids: pb::TaskKobjIdsEntry = dir.read_one(file).unwrap();
    assert!(ids.pid_for_children_ns_id.is_some(), "{ids:?}");
    ids.pid_for_children_ns_id = None;
    dir.write_one(file, &ids).unwrap();
}

#[test]
fn a_pid_namespace_unshared_outside_a_container_is_restored() {
    // The workload unshares its pid namespace and forks nothing; once
    // restored, its next child must be pid 1 of a new one. Negative
    // control: without it in the images, the child is not.
    scope_cycle(
        "pidns",
        drop_pidns_for_children,
        "FAIL: its child is not pid 1",
    );
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
    // Two processes in its pid namespace.
    let c = Container::new("cross", TWO);
    c.start();
    c.wait_past(3);
    across(&c, &criu, RCRIU, "criu", |_| {});
    across(&c, RCRIU, &criu, "rcriu", |_| {});
    assert!(!lost_child(&c));
}

/// `dumper` checkpoints the container into `images-TAG`, `between` is
/// done to those images, and `restorer` restores them: the container
/// counts on from where it was.
fn across(c: &Container, dumper: &str, restorer: &str, tag: &str, between: impl Fn(&Path)) {
    let (images, work) = (format!("images-{tag}"), format!("work-{tag}"));
    let out = c.checkpoint_with(dumper, &images, &work);
    succeeded(
        &out,
        &format!("{dumper}'s checkpoint"),
        &c.dir.0.join(&work).join("dump.log"),
    );
    between(&c.dir.0.join(&images));
    let n = c.counts().len();
    let work = format!("{work}-restore");
    let out = c.restore_with(restorer, &images, &work);
    succeeded(
        &out,
        &format!("{restorer}'s restore of {dumper}'s images"),
        &c.dir.0.join(&work).join("restore.log"),
    );
    c.wait_past(n + 3);
    carried_on(&c.counts()).unwrap();
}

// ---- podman ----

/// The image podman runs: the static busybox alone, imported from a tar
/// (no registry).
const PODMAN_IMAGE: &str = "localhost/rcriu-test-busybox:latest";

/// A counter starting from a random number (a container started anew
/// counts from another), printing each number to its standard output
/// (conmon's pipe) and appending it to /tmp/count.
const PODMAN_COUNTER: &str = "mkfifo /tmp/tick; i=$(od -An -N4 -tu4 /dev/urandom); \
     while :; do i=$((i+1)); echo $i >> /tmp/count; echo $i; read -t 0.02 x <> /tmp/tick; done";

/// A podman container (`--runtime runc`) whose criu is rcriu: `criu`
/// first on podman's PATH is a link to rcriu. Removed on drop.
struct Podman {
    dir: TempDir,
    name: String,
}

impl Podman {
    /// `None`, saying so, when podman is not installed.
    fn new(tag: &str) -> Option<Podman> {
        let found = Command::new("podman").arg("--version").output();
        if !found.is_ok_and(|o| o.status.success()) {
            eprintln!("podman is not installed (apt-get install -y podman): skipping");
            return None;
        }
        let dir = TempDir::new(tag);
        std::fs::create_dir(dir.0.join("bin")).unwrap();
        std::os::unix::fs::symlink(RCRIU, dir.0.join("bin/criu")).unwrap();
        let p = Podman {
            dir,
            name: format!("rcriu-pm-{tag}-{}", std::process::id()),
        };
        p.import_image();
        Some(p)
    }

    /// podman, finding rcriu as `criu`.
    fn podman(&self) -> Command {
        let path = std::env::var("PATH").unwrap_or_default();
        let mut c = Command::new("podman");
        c.env(
            "PATH",
            format!("{}:{path}", self.dir.0.join("bin").display()),
        );
        c.stdin(Stdio::null());
        c
    }

    /// Imports [`PODMAN_IMAGE`] unless podman has it.
    fn import_image(&self) {
        let have = self
            .podman()
            .args(["image", "exists", PODMAN_IMAGE])
            .status();
        if have.is_ok_and(|s| s.success()) {
            return;
        }
        let rootfs = self.dir.0.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        for tool in ["sh", "mkfifo", "od"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
        }
        let tar = self.dir.0.join("rootfs.tar");
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        );
        run_ok(self.podman().arg("import").arg(&tar).arg(PODMAN_IMAGE));
    }

    /// `podman run -d` of the counter.
    fn start(&self) {
        run_ok(self.podman().args(rcriu_test_support::PODMAN_RUN).args([
            "--name",
            &self.name,
            PODMAN_IMAGE,
            "/bin/sh",
            "-c",
            PODMAN_COUNTER,
        ]));
    }

    /// `podman run -d` of `sh -c script`.
    fn start_script(&self, script: &str) {
        run_ok(self.podman().args(rcriu_test_support::PODMAN_RUN).args([
            "--name",
            &self.name,
            PODMAN_IMAGE,
            "/bin/sh",
            "-c",
            script,
        ]));
    }

    /// The container's address on podman's network.
    fn ip(&self) -> String {
        self.inspect("{{.NetworkSettings.IPAddress}}")
    }

    /// `podman container ARGS... NAME` with `criu` (a path) as podman's
    /// criu: a link to it first on PATH.
    fn container_with(&self, criu: &str, args: &[&str]) -> Output {
        let bin = self.dir.0.join(format!(
            "bin-{}",
            criu.trim_start_matches('/').replace('/', "-")
        ));
        if !bin.exists() {
            std::fs::create_dir(&bin).unwrap();
            std::os::unix::fs::symlink(criu, bin.join("criu")).unwrap();
        }
        let path = std::env::var("PATH").unwrap_or_default();
        Command::new("podman")
            .env("PATH", format!("{}:{path}", bin.display()))
            .stdin(Stdio::null())
            .arg("container")
            .args(args)
            .arg(&self.name)
            .output()
            .unwrap()
    }

    /// `podman container ARGS... NAME`.
    fn container(&self, args: &[&str]) -> Output {
        self.podman()
            .arg("container")
            .args(args)
            .arg(&self.name)
            .output()
            .unwrap()
    }

    fn inspect(&self, what: &str) -> String {
        let out = run_ok(
            self.podman()
                .args(["inspect", "--format", what, &self.name]),
        );
        text(&out.stdout).trim().to_string()
    }

    /// Where podman keeps the container's checkpoint and criu's logs.
    fn userdata(&self) -> PathBuf {
        PathBuf::from(self.inspect("{{.StaticDir}}"))
    }

    /// The counter's numbers, read from the container's upper layer
    /// (there whether the container runs or not).
    fn counts(&self) -> Vec<u64> {
        Podman::counts_in(&PathBuf::from(
            self.inspect("{{.GraphDriver.Data.UpperDir}}"),
        ))
    }

    fn counts_in(upper: &Path) -> Vec<u64> {
        parse_counts(&std::fs::read_to_string(upper.join("tmp/count")).unwrap_or_default())
    }

    /// Waits until the counter wrote more than `n` numbers; all of them.
    fn wait_past(&self, n: usize) -> Vec<u64> {
        let upper = PathBuf::from(self.inspect("{{.GraphDriver.Data.UpperDir}}"));
        wait_counts(|| Podman::counts_in(&upper), n);
        Podman::counts_in(&upper)
    }

    /// `podman container restore --keep` of the checkpoint just taken
    /// (podman's `userdata`): the counter goes on from where it was.
    /// Its numbers after.
    fn restored_counting_on(&self, userdata: &Path) -> Vec<u64> {
        let at_dump = self.counts();
        carried_on(&at_dump).unwrap();
        let out = self.container(&["restore", "--keep"]);
        succeeded(&out, "podman restore", &userdata.join("restore.log"));
        let after = self.wait_past(at_dump.len() + 3);
        continued(&at_dump, &after).unwrap();
        after
    }

    /// Waits until conmon logged `n` from the counter's standard output.
    fn wait_logged(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = run_ok(self.podman().args(["logs", &self.name]));
            if parse_counts(&text(&out.stdout)).contains(&n) {
                return;
            }
            assert!(Instant::now() < deadline, "podman logs never showed {n}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self
            .podman()
            .args(["rm", "-f", "-t", "0", &self.name])
            .output();
    }
}

/// criu's statistics in podman's `--print-stats` output.
fn criu_statistics(out: &Output) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--print-stats: {e}: {}", text(&out.stdout)));
    v["container_statistics"][0]["criu_statistics"].clone()
}

/// A podman counter (`tag`) that has counted, with the tests' lock;
/// `None` without podman.
fn podman_counting(tag: &str) -> Option<(Podman, std::sync::MutexGuard<'static, ()>)> {
    let p = Podman::new(tag)?;
    let g = common::setup();
    p.start();
    p.wait_past(3);
    Some((p, g))
}

#[test]
fn podman_checkpoints_and_restores_a_counter_with_rcriu_as_its_criu() {
    let Some((p, _g)) = podman_counting("podman") else {
        return;
    };
    let userdata = p.userdata();
    let out = p.container(&["checkpoint", "--keep"]);
    succeeded(&out, "podman checkpoint", &userdata.join("dump.log"));
    // rcriu's images (its manifest beside CRIU's), the network namespace
    // podman made named by podman's key, not dumped.
    let images = userdata.join("checkpoint");
    assert!(images.join("rcriu-manifest").exists(), "not rcriu's images");
    let dir = rcriu_images::ImageDir::open(&images).unwrap();
    let netns = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("netns-"))
        .expect("a netns image");
    let e: rcriu_images::pb::NetnsEntry = dir
        .read_one(rcriu_images::ImageFile::parse(&netns).unwrap())
        .unwrap();
    assert_eq!(e.ext_key.as_deref(), Some(&b"extRootNetNS"[..]));
    let after = p.restored_counting_on(&userdata);
    // From inside: the counter's standard output is conmon's pipe again
    // (what it printed since the restore is logged), and its network
    // namespace is the one podman made for it.
    p.wait_logged(after[after.len() - 1]);
    let pid = p.inspect("{{.State.Pid}}");
    let ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).unwrap();
    let sandbox = std::fs::metadata(p.inspect("{{.NetworkSettings.SandboxKey}}")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(ns.ino(), sandbox.ino(), "not podman's network namespace");

    // Exported, removed, imported ("on another node"), with rcriu's
    // statistics.
    let export = p.dir.0.join("export.tar.zst");
    let export_arg = export.to_string_lossy().into_owned();
    let out = p.container(&["checkpoint", "--print-stats", "--export", &export_arg]);
    succeeded(
        &out,
        "podman checkpoint --export",
        &userdata.join("dump.log"),
    );
    let stats = criu_statistics(&out);
    assert!(stats["frozen_time"].as_u64() > Some(0), "{stats}");
    assert!(stats["pages_written"].as_u64() > Some(0), "{stats}");
    let at_dump = p.counts();
    // `rcriu show` describes the archive as checkpointctl does.
    let shown = run_ok(Command::new(RCRIU).arg("show").arg(&export));
    let shown = text(&shown.stdout);
    for what in [
        p.name.as_str(),
        PODMAN_IMAGE,
        "Podman",
        "runc",
        "process 1 (sh)",
        "/etc/resolv.conf",
    ] {
        assert!(shown.contains(what), "no {what} in:\n{shown}");
    }
    // A cut archive is refused, naming it.
    let cut = p.dir.0.join("cut.tar.zst");
    std::fs::write(&cut, &std::fs::read(&export).unwrap()[..2000]).unwrap();
    let out = Command::new(RCRIU).arg("show").arg(&cut).output().unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cut.tar.zst"),
        "{}",
        text(&out.stderr)
    );
    run_ok(p.podman().args(["rm", &p.name]));
    let out = p
        .podman()
        .args([
            "container",
            "restore",
            "--print-stats",
            "--import",
            &export_arg,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman restore --import: {}",
        text(&out.stderr)
    );
    let stats = criu_statistics(&out);
    assert!(stats["restore_time"].as_u64() > Some(0), "{stats}");
    let after = p.wait_past(at_dump.len() + 3);
    continued(&at_dump, &after).unwrap();

    // Negative control: the same container started anew counts from
    // another number, which the check sees.
    run_ok(p.podman().args(["rm", "-f", "-t", "0", &p.name]));
    p.start();
    let fresh = p.wait_past(3);
    assert!(continued(&at_dump, &fresh).is_err());
}

#[test]
fn podman_pre_checkpoints_then_checkpoints_with_previous_and_restores() {
    let Some((p, _g)) = podman_counting("podman-pre") else {
        return;
    };
    let userdata = p.userdata();
    // `--pre-checkpoint`: the memory written, the container running on.
    let out = p.container(&["checkpoint", "--pre-checkpoint", "--keep"]);
    succeeded(
        &out,
        "podman checkpoint --pre-checkpoint",
        &userdata.join("dump.log"),
    );
    let n = p.counts().len();
    let after_pre = p.wait_past(n + 2);
    carried_on(&after_pre).unwrap();
    assert_eq!(p.inspect("{{.State.Status}}"), "running");
    // `--with-previous`: the final checkpoint keeps in the pre-dump's
    // images what did not change since.
    let out = p.container(&["checkpoint", "--with-previous", "--keep"]);
    succeeded(
        &out,
        "podman checkpoint --with-previous",
        &userdata.join("dump.log"),
    );
    let images = userdata.join("checkpoint");
    assert!(
        pages_in_parent(&images) > 0,
        "no page kept in the pre-checkpoint's images"
    );
    p.restored_counting_on(&userdata);

    // Negative control: a plain checkpoint keeps nothing in a parent.
    let out = p.container(&["checkpoint", "--keep"]);
    succeeded(&out, "podman checkpoint", &userdata.join("dump.log"));
    assert_eq!(pages_in_parent(&images), 0);
}

// ---- sockets in a container's network namespace ----

/// busybox's httpd serving /tmp/www/index.html on port 8080.
const HTTPD: &str = "/bin/busybox mkdir -p /tmp/www; echo served from the container > /tmp/www/index.html; \
     exec /bin/busybox httpd -f -p 8080 -h /tmp/www";

/// What [`HTTPD`] serves.
const SERVED: &str = "served from the container";

/// Runs a host program in process `pid`'s network namespace alone
/// (`nsenter -n`): the host's files, the container's network.
fn in_net_of(pid: i32, args: &[&str]) -> Output {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// What the server at 127.0.0.1:8080 of process `pid`'s network
/// namespace answers to `GET /`, asked by the host's busybox wget.
fn fetch_in(pid: i32) -> Result<String, String> {
    let out = in_net_of(
        pid,
        &[
            "timeout",
            "5",
            BUSYBOX,
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:8080/",
        ],
    );
    if out.status.success() {
        Ok(text(&out.stdout).trim().to_string())
    } else {
        Err(text(&out.stderr))
    }
}

/// [`fetch_in`], retried while the server starts (an outside program:
/// a bounded wait for its port to answer).
fn wait_served(pid: i32) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match fetch_in(pid) {
            Ok(body) => return body,
            Err(e) => assert!(Instant::now() < deadline, "the server never answered: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `lo` of process `pid`'s network namespace is up.
fn lo_up(pid: i32) -> bool {
    let out = in_net_of(pid, &["ip", "-o", "link", "show", "lo"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let flags = text(&out.stdout);
    flags.contains(",UP") || flags.contains("<UP")
}

/// The listening TCP socket on `port` in `images`' files.img, with the id
/// of the network namespace its process lives in (`ids-1.img`, the
/// container's init) and rcriu's or CRIU's own (the inventory's).
fn listener_and_net_ids(images: &Path, port: u32) -> (rcriu_images::pb::InetSkEntry, u32, u32) {
    use rcriu_images::{ImageFile, pb};
    let dir = rcriu_images::ImageDir::open(images).unwrap();
    let files: Vec<pb::FileEntry> = dir.read_all(ImageFile::Files).unwrap();
    let isk = files
        .into_iter()
        .filter_map(|f| f.isk.map(|b| *b))
        .find(|s| s.src_port == port && s.state == 10)
        .unwrap_or_else(|| panic!("no socket listening on {port} in files.img"));
    let ids: pb::TaskKobjIdsEntry = dir.read_one(ImageFile::Ids(1)).unwrap();
    let inv = dir.inventory().unwrap();
    let dumper = inv.root_ids.and_then(|r| r.net_ns_id).unwrap();
    (isk, ids.net_ns_id.unwrap(), dumper)
}

/// Removes the entry of file `id` from `images`' files.img (and rcriu's
/// manifest, so that the restore reads the edit).
fn remove_file_entry(images: &Path, id: u32) {
    use rcriu_images::{ImageFile, pb};
    let dir = rcriu_images::ImageDir::open(images).unwrap();
    let mut files: Vec<pb::FileEntry> = dir.read_all(ImageFile::Files).unwrap();
    files.retain(|f| f.id != id);
    dir.write_all(ImageFile::Files, &files).unwrap();
    let _ = std::fs::remove_file(images.join(rcriu_images::manifest::MANIFEST));
}

#[test]
fn runc_restores_a_listening_server_in_the_containers_network_namespace() {
    need_tools();
    let _g = common::setup();
    let c = Container::new("httpd", HTTPD);
    c.start();
    assert_eq!(wait_served(c.pid()), SERVED);
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    // As CRIU 4.2 writes it: the socket names the container's network
    // namespace by its id, not rcriu's; the namespace itself is not
    // dumped (runc asks for it empty).
    let images = c.dir.0.join("images");
    let (isk, net, dumper) = listener_and_net_ids(&images, 8080);
    assert_eq!(isk.ns_id, Some(net));
    assert_ne!(net, dumper);
    assert!(
        !std::fs::read_dir(&images).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("netns-")),
        "a netns image for an empty network namespace"
    );

    let out = c.restore();
    succeeded(&out, "restore", &c.dir.0.join("work-restore/restore.log"));
    let pid = c.pid();
    // As CRIU 4.2 restores it: a new network namespace with `lo` alone,
    // down (runc does not bring it up again), the server listening in it.
    assert!(!lo_up(pid), "lo is up in the restored network namespace");
    assert!(fetch_in(pid).is_err(), "served with lo down");
    let up = in_net_of(pid, &["ip", "link", "set", "lo", "up"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    // A client connecting after the restore gets the restored server's
    // answer.
    assert_eq!(fetch_in(pid).unwrap(), SERVED);

    // Negative control: the same images without the socket's entry are
    // refused, naming it, and nothing runs.
    let out = c.checkpoint_with(RCRIU, "images2", "work-dump2");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump2/dump.log"));
    let images2 = c.dir.0.join("images2");
    let (isk, _, _) = listener_and_net_ids(&images2, 8080);
    remove_file_entry(&images2, isk.id);
    let out = c.restore_with(RCRIU, "images2", "work-restore2");
    assert!(!out.status.success(), "restored without the socket");
    let log = std::fs::read_to_string(c.dir.0.join("work-restore2/restore.log")).unwrap();
    let why = format!(
        "refers to file id {}, which files.img does not have",
        isk.id
    );
    assert!(log.contains(&why), "{log}");
}

#[test]
fn a_socket_bound_to_an_address_an_empty_network_namespace_lacks_is_refused_by_name() {
    // runc's network namespace comes back empty (lo alone): a socket bound
    // to another of its addresses could not be bound again. The script
    // gives lo a second address, serves there, then counts.
    refused_with(
        "boundaddr",
        "/bin/busybox ip addr add 10.77.0.1/32 dev lo && \
         /bin/busybox httpd -p 10.77.0.1:8080 -h /tmp &&",
        &["CAP_NET_ADMIN"],
        "an AF_INET socket bound to 10.77.0.1, an address the container's network namespace",
    );
}

/// busybox's syslogd on /dev/log (a unix datagram socket bound in the
/// container's /dev, a tmpfs), writing to /tmp/log.
const SYSLOGD: &str = "exec /bin/busybox syslogd -n -O /tmp/log";

/// Logs `msg` from a process run in the container (`runc exec`), through
/// /dev/log; whether it got to /tmp/log.
fn logged_through(c: &Container, msg: &str) -> bool {
    let _ = c
        .runc()
        .args(["exec", &c.id, "/bin/busybox", "logger", "-t", "ct", msg])
        .output()
        .unwrap();
    let log = c.bundle().join("rootfs/tmp/log");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains(msg)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn runc_restores_a_unix_socket_bound_in_the_container() {
    need_tools();
    let _g = common::setup();
    let c = Container::new("syslogd", SYSLOGD);
    c.start();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logged_through(&c, "before the checkpoint") {
        assert!(Instant::now() < deadline, "syslogd never logged");
    }
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    // The socket keeps the name the container gave it, in its namespace.
    let images = c.dir.0.join("images");
    let usk = unix_named(&images, b"/dev/log");
    let net = net_id(&images);
    assert_eq!(usk.ns_id, Some(net));
    let out = c.restore();
    succeeded(&out, "restore", &c.dir.0.join("work-restore/restore.log"));
    // A process of the container logs through the restored syslogd.
    assert!(logged_through(&c, "after the restore"));

    // Negative control: bound under another name, the socket is not
    // the container's /dev/log: nothing gets logged.
    let out = c.checkpoint_with(RCRIU, "images2", "work-dump2");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump2/dump.log"));
    rename_unix(&c.dir.0.join("images2"), b"/dev/log", b"/dev/lgx");
    let out = c.restore_with(RCRIU, "images2", "work-restore2");
    succeeded(
        &out,
        "restore of the renamed socket",
        &c.dir.0.join("work-restore2/restore.log"),
    );
    assert!(!logged_through(&c, "after the renamed restore"));
}

/// The id of the network namespace of the container's init in `images`.
fn net_id(images: &Path) -> u32 {
    use rcriu_images::{ImageFile, pb};
    let dir = rcriu_images::ImageDir::open(images).unwrap();
    let ids: pb::TaskKobjIdsEntry = dir.read_one(ImageFile::Ids(1)).unwrap();
    ids.net_ns_id.unwrap()
}

/// The unix socket bound to `name` in `images`' files.img.
fn unix_named(images: &Path, name: &[u8]) -> rcriu_images::pb::UnixSkEntry {
    use rcriu_images::{ImageFile, pb};
    let dir = rcriu_images::ImageDir::open(images).unwrap();
    let files: Vec<pb::FileEntry> = dir.read_all(ImageFile::Files).unwrap();
    files
        .into_iter()
        .filter_map(|f| f.usk.map(|b| *b))
        .find(|s| s.name.split(|&b| b == 0).next() == Some(name))
        .unwrap_or_else(|| panic!("no unix socket named {}", String::from_utf8_lossy(name)))
}

/// Renames the unix socket bound to `from` in `images` (files.img).
fn rename_unix(images: &Path, from: &[u8], to: &[u8]) {
    use rcriu_images::{ImageFile, pb};
    let dir = rcriu_images::ImageDir::open(images).unwrap();
    let mut files: Vec<pb::FileEntry> = dir.read_all(ImageFile::Files).unwrap();
    for s in files.iter_mut().filter_map(|f| f.usk.as_deref_mut()) {
        if s.name.split(|&b| b == 0).next() == Some(from) {
            let nul = s.name.ends_with(&[0]);
            s.name = to.to_vec();
            if nul {
                s.name.push(0);
            }
        }
    }
    dir.write_all(ImageFile::Files, &files).unwrap();
    let _ = std::fs::remove_file(images.join(rcriu_images::manifest::MANIFEST));
}

#[test]
fn criu_and_rcriu_restore_each_others_container_with_a_listening_server() {
    need_tools();
    let Some(criu) = criu42() else {
        return;
    };
    let _g = common::setup();
    let c = Container::new("crossweb", HTTPD);
    c.start();
    assert_eq!(wait_served(c.pid()), SERVED);
    for (dumper, restorer, tag) in [
        (criu.as_str(), RCRIU, "criu"),
        (RCRIU, criu.as_str(), "rcriu"),
    ] {
        let (images, work) = (format!("images-{tag}"), format!("work-{tag}"));
        let out = c.checkpoint_with(dumper, &images, &work);
        succeeded(&out, "checkpoint", &c.dir.0.join(&work).join("dump.log"));
        let (isk, net, _) = listener_and_net_ids(&c.dir.0.join(&images), 8080);
        assert_eq!(isk.ns_id, Some(net), "{tag}'s images");
        let work = format!("work-restore-of-{tag}");
        let out = c.restore_with(restorer, &images, &work);
        succeeded(&out, "restore", &c.dir.0.join(&work).join("restore.log"));
        let pid = c.pid();
        assert!(!lo_up(pid), "lo is up after the restore of {tag}'s images");
        let up = in_net_of(pid, &["ip", "link", "set", "lo", "up"]);
        assert!(up.status.success(), "{}", text(&up.stderr));
        assert_eq!(fetch_in(pid).unwrap(), SERVED, "{tag}'s images");
    }
}

/// What the server at `ip`:8080 answers to `GET /` (the body).
fn http_get(ip: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("{ip}:8080").parse().map_err(|e| format!("{e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("{e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| format!("{e}"))?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.trim().to_string()),
        _ => Err(format!("answered {answer:?}")),
    }
}

/// [`http_get`], retried while the server starts.
fn wait_http(ip: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match http_get(ip) {
            Ok(body) => return body,
            Err(e) => assert!(Instant::now() < deadline, "{ip}:8080 never answered: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn podman_restores_a_listening_server_reached_from_the_host() {
    let Some(p) = Podman::new("podweb") else {
        return;
    };
    let _g = common::setup();
    p.start_script(HTTPD);
    let ip = p.ip();
    assert_eq!(wait_http(&ip), SERVED);
    let userdata = p.userdata();
    let out = p.container(&["checkpoint", "--keep"]);
    succeeded(&out, "podman checkpoint", &userdata.join("dump.log"));
    let images = userdata.join("checkpoint");
    let (isk, net, dumper) = listener_and_net_ids(&images, 8080);
    assert_eq!(isk.ns_id, Some(net));
    assert_ne!(net, dumper);
    assert!(http_get(&ip).is_err(), "served while checkpointed");

    let out = p.container(&["restore", "--keep"]);
    succeeded(&out, "podman restore", &userdata.join("restore.log"));
    // podman gives the container its address again; a client of the
    // host reaches the restored server there.
    assert_eq!(p.ip(), ip);
    assert_eq!(wait_http(&ip), SERVED);

    // Negative control: the checkpoint without the socket's entry is
    // refused, naming it.
    let out = p.container(&["checkpoint", "--keep"]);
    succeeded(&out, "podman checkpoint", &userdata.join("dump.log"));
    let (isk, _, _) = listener_and_net_ids(&images, 8080);
    remove_file_entry(&images, isk.id);
    let out = p.container(&["restore", "--keep"]);
    assert!(!out.status.success(), "restored without the socket");
    let log = std::fs::read_to_string(userdata.join("restore.log")).unwrap();
    let why = format!(
        "refers to file id {}, which files.img does not have",
        isk.id
    );
    assert!(log.contains(&why), "{log}");
}

/// An echo server: each connection to port 9000 gets a `cat` of its own.
const ECHO: &str = "exec /bin/busybox nc -ll -p 9000 -e /bin/busybox cat";

/// Sends `line` on `s` and reads it back.
fn echoed(s: &mut std::net::TcpStream, line: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    s.write_all(line.as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    let mut got = vec![0u8; line.len()];
    s.read_exact(&mut got)
        .map_err(|e| format!("reading: {e}"))?;
    if got == line.as_bytes() {
        Ok(())
    } else {
        Err(format!("echoed {:?}", text(&got)))
    }
}

/// A connection to the echo server at `ip`:9000, retried while it starts.
fn connect_echo(ip: &str) -> std::net::TcpStream {
    let addr: std::net::SocketAddr = format!("{ip}:9000").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            if echoed(&mut s, "hello\n").is_ok() {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "{addr} never echoed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn podman_keeps_a_clients_tcp_connection_through_checkpoint_and_restore() {
    let Some(p) = Podman::new("podtcp") else {
        return;
    };
    let _g = common::setup();
    p.start_script(ECHO);
    let ip = p.ip();
    let mut conn = connect_echo(&ip);
    let userdata = p.userdata();

    // Negative control: without --tcp-established the connection is
    // refused by name, and the container serves on untouched.
    let out = p.container(&["checkpoint", "--keep"]);
    assert!(!out.status.success(), "checkpointed an open connection");
    let log = std::fs::read_to_string(userdata.join("dump.log")).unwrap();
    assert!(log.contains("--tcp-established"), "{log}");
    echoed(&mut conn, "still there\n").unwrap();

    let out = p.container(&["checkpoint", "--keep", "--tcp-established"]);
    succeeded(&out, "podman checkpoint", &userdata.join("dump.log"));
    let images = userdata.join("checkpoint");
    let streams = std::fs::read_dir(&images)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            n.to_string_lossy().starts_with("tcp-stream-")
        })
        .count();
    assert_eq!(streams, 1, "one connection's tcp-stream image");
    let out = p.container(&["restore", "--keep", "--tcp-established"]);
    succeeded(&out, "podman restore", &userdata.join("restore.log"));
    // The same connection, opened before the checkpoint, carries on.
    echoed(&mut conn, "after the restore\n").unwrap();
    // And the server takes new ones.
    let mut again = connect_echo(&ip);
    echoed(&mut again, "a new one\n").unwrap();
}

#[test]
fn criu_and_rcriu_restore_each_others_podman_checkpoint_of_an_open_connection() {
    let Some(criu) = criu42() else {
        return;
    };
    let Some(p) = Podman::new("podcross") else {
        return;
    };
    let _g = common::setup();
    p.start_script(ECHO);
    let ip = p.ip();
    let mut conn = connect_echo(&ip);
    let userdata = p.userdata();
    for (dumper, restorer, tag) in [
        (criu.as_str(), RCRIU, "criu"),
        (RCRIU, criu.as_str(), "rcriu"),
    ] {
        let out = p.container_with(dumper, &["checkpoint", "--keep", "--tcp-established"]);
        succeeded(&out, "podman checkpoint", &userdata.join("dump.log"));
        let images = userdata.join("checkpoint");
        assert_eq!(
            images.join("rcriu-manifest").exists(),
            dumper == RCRIU,
            "not {tag}'s images"
        );
        let out = p.container_with(restorer, &["restore", "--keep", "--tcp-established"]);
        succeeded(&out, "podman restore", &userdata.join("restore.log"));
        // The connection opened before both checkpoints carries on.
        echoed(&mut conn, &format!("after the restore of {tag}'s images\n")).unwrap();
    }
}

/// Builds workload `name` (tests/workloads) statically into the
/// container's /bin: its root has no C library.
fn static_workload(c: &Container, name: &str) {
    static_workload_with(c, name, &[]);
}

/// As [`static_workload`], with more flags for gcc.
fn static_workload_with(c: &Container, name: &str, flags: &[&str]) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workloads")
        .join(format!("{name}.c"));
    run_ok(
        Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-Werror"])
            .args(flags)
            .arg("-o")
            .arg(c.bundle().join("rootfs/bin").join(name))
            .arg(&src),
    );
}

/// Waits until the container's file `path` holds `what` (the workload's
/// own words: its handshake through the container's files).
fn wait_file(c: &Container, path: &str, what: &str) -> String {
    let file = c.bundle().join("rootfs").join(path);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = std::fs::read_to_string(&file).unwrap_or_default();
        if t.contains(what) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never said {what:?}: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The unix socket workload (tests/workloads/sk_unix.c) in a container:
/// stream, datagram and seqpacket pairs with data and an fd in flight,
/// a listener with connections waiting, abstract and relative names,
/// shut-down and orphaned ends. It says `ready` in /tmp/stdout, checks
/// every socket on SIGUSR1 and writes its verdict to /tmp/verdict.
const SK_UNIX: &str = "cd /tmp && exec /bin/sk_unix /tmp/verdict > /tmp/stdout";

/// Restores the sk_unix container from `images` (with `criu`), tells it
/// to check and returns its verdict.
fn sk_unix_verdict(c: &Container, criu: &str, images: &str, work: &str) -> String {
    let out = c.restore_with(criu, images, work);
    succeeded(&out, "restore", &c.dir.0.join(work).join("restore.log"));
    run_ok(c.runc().args(["kill", &c.id, "USR1"]));
    let verdict = wait_file(c, "tmp/verdict", "\n");
    let _ = std::fs::remove_file(c.bundle().join("rootfs/tmp/verdict"));
    verdict
}

#[test]
fn runc_restores_the_unix_sockets_of_a_container() {
    need_tools();
    let _g = common::setup();
    let c = Container::new("skunix", SK_UNIX);
    static_workload(&c, "sk_unix");
    c.start();
    wait_file(&c, "tmp/stdout", "ready");
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    // Every socket names the container's network namespace.
    let images = c.dir.0.join("images");
    let net = net_id(&images);
    let dir = rcriu_images::ImageDir::open(&images).unwrap();
    let files: Vec<rcriu_images::pb::FileEntry> =
        dir.read_all(rcriu_images::ImageFile::Files).unwrap();
    let socks: Vec<_> = files.iter().filter_map(|f| f.usk.as_deref()).collect();
    assert!(socks.len() > 10, "{} unix sockets", socks.len());
    assert!(socks.iter().all(|s| s.ns_id == Some(net)));
    assert_eq!(
        sk_unix_verdict(&c, RCRIU, "images", "work-restore"),
        "PASS\n"
    );

    // Negative control: the listener restored under another name fails
    // the workload's check.
    let c2 = Container::new("skunix2", SK_UNIX);
    static_workload(&c2, "sk_unix");
    c2.start();
    wait_file(&c2, "tmp/stdout", "ready");
    let out = c2.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c2.dir.0.join("work-dump/dump.log"));
    rename_unix(&c2.dir.0.join("images"), b"listen.sock", b"lisxen.sock");
    let verdict = sk_unix_verdict(&c2, RCRIU, "images", "work-restore");
    assert!(verdict.starts_with("FAIL: fd 16's name"), "{verdict}");
}

#[test]
fn criu_and_rcriu_restore_each_others_container_unix_sockets() {
    need_tools();
    let Some(criu) = criu42() else {
        return;
    };
    let _g = common::setup();
    for (dumper, restorer, tag) in [
        (criu.as_str(), RCRIU, "criu"),
        (RCRIU, criu.as_str(), "rcriu"),
    ] {
        let c = Container::new(&format!("skx{tag}"), SK_UNIX);
        static_workload(&c, "sk_unix");
        c.start();
        wait_file(&c, "tmp/stdout", "ready");
        let out = c.checkpoint_with(dumper, "images", "work-dump");
        succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
        let verdict = sk_unix_verdict(&c, restorer, "images", "work-restore");
        assert_eq!(verdict, "PASS\n", "the restore of {tag}'s images");
    }
}

#[test]
fn a_socket_of_the_hosts_network_namespace_in_a_container_is_refused_by_name() {
    need_tools();
    let _g = common::setup();
    // A connection of the host's namespace handed to the container's
    // process as fd 3 (runc's --preserve-fds): the restore could not make
    // it in the container's namespace.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let c = Container::new("hostsk", COUNTER);
    let state = c.dir.0.join("state");
    let run = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} && exec runc --root {} run -d --preserve-fds 1 \
         --bundle {} {} </dev/null >/dev/null 2>&1",
        state.display(),
        c.bundle().display(),
        c.id
    );
    run_ok(Command::new("bash").arg("-c").arg(&run));
    let (_accepted, _) = host.accept().unwrap();
    c.wait_past(2);
    let out = c.checkpoint("work-dump");
    assert!(!out.status.success(), "checkpointed a socket of the host");
    let log = c.log("work-dump");
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(log.contains("fd 3 (socket:["), "{log}");
    let named = format!(
        "a socket of another network namespace ({})",
        host_ns.display()
    );
    assert!(log.contains(&named), "{log}");
    // The container counts on, untouched.
    c.counts_on();
}

#[test]
fn a_loopback_connection_in_a_network_namespace_made_again_empty_is_refused_by_name() {
    need_tools();
    let _g = common::setup();
    // An echo server and a client of it, both in the container, connected
    // over lo; then the counter. Restored, lo is down (as CRIU 4.2 leaves
    // it), and connecting again fails: CRIU 4.2 fails the restore
    // ("Can't connect inet socket back: Network is unreachable"), after
    // the checkpoint stopped the container; rcriu refuses the dump.
    let script = format!(
        "/bin/busybox nc -ll -p 9000 -e /bin/busybox cat & \
         until /bin/busybox netstat -ltn | /bin/busybox grep -q :9000; do /bin/busybox sleep 0.05; done; \
         (echo hello; /bin/busybox sleep 1000) | /bin/busybox nc 127.0.0.1 9000 > /tmp/got & {COUNTER}"
    );
    let c = Container::new("loconn", &script);
    c.start();
    wait_file(&c, "tmp/got", "hello");
    c.wait_past(2);
    c.checkpoint_refused(
        &["--tcp-established"],
        "which the restore makes again empty with lo down (--empty-ns net)",
    );
}

#[test]
fn runc_restores_a_netlink_socket_listening_to_the_containers_network_namespace() {
    need_tools();
    let _g = common::setup();
    // A socket in rtnetlink's address group (tests/workloads/nl_watch.c,
    // as `ip monitor address`): it hears the addresses of the namespace
    // it was made in, the container's if the restore made it there.
    let c = Container::new("nlwatch", &format!("/bin/nl_watch /tmp/heard & {COUNTER}"));
    static_workload(&c, "nl_watch");
    c.start();
    wait_file(&c, "tmp/heard", "ready");
    c.wait_past(2);
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    let images = c.dir.0.join("images");
    let net = net_id(&images);
    let dir = rcriu_images::ImageDir::open(&images).unwrap();
    let files: Vec<rcriu_images::pb::FileEntry> =
        dir.read_all(rcriu_images::ImageFile::Files).unwrap();
    let nl: Vec<_> = files.iter().filter_map(|f| f.nlsk.as_deref()).collect();
    assert_eq!(nl.len(), 1, "one netlink socket");
    assert_eq!(nl[0].ns_id, Some(net));
    let out = c.restore();
    succeeded(&out, "restore", &c.dir.0.join("work-restore/restore.log"));
    let pid = c.pid();
    // Negative control: an address given in the host's namespace (a /32
    // on its lo, taken off at once) is not heard; one given in the
    // container's is.
    let host = |op: &str| {
        Command::new("ip")
            .args(["addr", op, "10.99.0.1/32", "dev", "lo"])
            .status()
            .unwrap()
    };
    assert!(host("add").success());
    assert!(host("del").success());
    let added = in_net_of(pid, &["ip", "addr", "add", "10.77.0.9/32", "dev", "lo"]);
    assert!(added.status.success(), "{}", text(&added.stderr));
    let heard = wait_file(&c, "tmp/heard", "new 10.77.0.9");
    assert!(!heard.contains("10.99.0.1"), "{heard}");
}

/// The SysV IPC workload (tests/workloads/ipc_sysv.c) in a container:
/// three shm segments (one attached read-write, one read-only, one
/// detached with holes), a semaphore set and a queue of four messages,
/// none with the first id of its kind. It says `ready` in /tmp/stdout,
/// checks every object on SIGUSR1 and writes its verdict to
/// /tmp/verdict.
fn ipc_sysv_script(mode: &str) -> String {
    format!("cd /tmp && exec /bin/ipc_sysv /tmp/verdict {mode} > /tmp/stdout")
}

/// A container running the SysV IPC workload in `mode`, ready.
fn ipc_sysv_container(tag: &str, mode: &str) -> Container {
    let c = Container::new(tag, &ipc_sysv_script(mode));
    static_workload(&c, "ipc_sysv");
    c.start();
    wait_file(&c, "tmp/stdout", "ready");
    c
}

/// Restores the container from `images` (with `criu`), tells it to
/// check and returns its verdict; the container is deleted after.
fn ipc_sysv_verdict(c: &Container, criu: &str, images: &str, work: &str) -> String {
    let _ = std::fs::remove_file(c.bundle().join("rootfs/tmp/verdict"));
    let out = c.restore_with(criu, images, work);
    succeeded(&out, "restore", &c.dir.0.join(work).join("restore.log"));
    run_ok(c.runc().args(["kill", &c.id, "USR1"]));
    let verdict = wait_file(c, "tmp/verdict", "\n");
    c.delete();
    verdict
}

/// Copies the images directory `from` to `to` (for another restore),
/// without the manifest, so that it may be changed.
fn copy_images(c: &Container, from: &str, to: &str) -> PathBuf {
    let (from, to) = (c.dir.0.join(from), c.dir.0.join(to));
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            // The pages a child shares with its parent (`parent/`).
            run_ok(Command::new("cp").arg("-a").arg(e.path()).arg(&to));
        } else if e.file_name() != rcriu_images::manifest::MANIFEST {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    to
}

/// The SysV IPC workload's container `c` checkpointed by rcriu: its
/// facts, its images, their IPC namespace's id and shared memory entries.
fn sysv_checkpointed(
    c: &Container,
) -> (
    String,
    rcriu_images::ImageDir,
    u32,
    Vec<rcriu_images::pb::IpcShmEntry>,
) {
    use rcriu_images::{ImageDir, ImageFile, pb};
    let facts = wait_file(c, "tmp/stdout", "ready");
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    let dir = ImageDir::open(c.dir.0.join("images")).unwrap();
    let ids: pb::TaskKobjIdsEntry = dir.read_one(ImageFile::Ids(1)).unwrap();
    let ns = ids.ipc_ns_id.unwrap();
    let shm = dir.read_all(ImageFile::IpcShm(ns.into())).unwrap();
    (facts, dir, ns, shm)
}

/// Changes the image `name` in `dir`: `f` gets its bytes.
fn edit_image(dir: &Path, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(name);
    let mut b = std::fs::read(&path).unwrap();
    f(&mut b);
    std::fs::write(&path, b).unwrap();
}

/// Replaces the one occurrence of `from` in `b` with `to` (as long).
fn replace_once(b: &mut [u8], from: &[u8], to: &[u8]) {
    let at: Vec<usize> = b
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "{from:?} found {} times", at.len());
    b[at[0]..at[0] + to.len()].copy_from_slice(to);
}

#[test]
fn runc_restores_the_sysv_ipc_objects_of_a_container() {
    need_tools();
    let _g = common::setup();
    let c = ipc_sysv_container("ipc", "");
    // The objects as CRIU 4.2 writes them; both attaches are areas.
    use rcriu_images::{ImageFile, pb};
    let (facts, dir, ns, shm) = sysv_checkpointed(&c);
    let sizes: Vec<u64> = shm.iter().map(|s| s.size).collect();
    assert_eq!(sizes, [3 * 4096 + 100, 8 * 4096, 4096], "{facts}");
    assert!(shm.iter().all(|s| s.in_pagemaps == Some(true)));
    let mm: pb::MmEntry = dir.read_one(ImageFile::Mm(1)).unwrap();
    let attached: Vec<u64> = mm
        .vmas
        .iter()
        .filter(|v| v.status & rcriu_images::vma::VMA_AREA_SYSVIPC != 0)
        .map(|v| v.shmid)
        .collect();
    let (a, cc) = (shm[0].desc.id, shm[2].desc.id);
    assert_eq!(attached, [u64::from(cc), u64::from(a)], "{facts}");
    for copy in ["images-sem", "images-shm", "images-msg"] {
        copy_images(&c, "images", copy);
    }
    assert_eq!(
        ipc_sysv_verdict(&c, RCRIU, "images", "work-restore"),
        "PASS\n"
    );

    // Negative controls, each a restore of the same checkpoint changed
    // in one place: a semaphore's value, a page of the detached
    // segment, a message's text.
    let sem = c.dir.0.join("images-sem");
    edit_image(&sem, &format!("ipcns-sem-{ns}.img"), |b| {
        replace_once(b, &[7, 0, 0, 0, 3, 0], &[8, 0, 0, 0, 3, 0]);
    });
    let v = ipc_sysv_verdict(&c, RCRIU, "images-sem", "work-restore-sem");
    assert!(v.starts_with("FAIL: semaphore 0 is 8, not 7"), "{v}");

    let shm_dir = c.dir.0.join("images-shm");
    let b_id = shm[1].desc.id;
    let b_map = dir.shmem_pagemap(b_id).unwrap();
    let pages = format!("pages-{}.img", b_map.pages_id());
    edit_image(&shm_dir, &pages, |b| b[100] ^= 0xff);
    let v = ipc_sysv_verdict(&c, RCRIU, "images-shm", "work-restore-shm");
    assert!(v.starts_with("FAIL: shm B: page 0 byte 100"), "{v}");

    let msg = c.dir.0.join("images-msg");
    edit_image(&msg, &format!("ipcns-msg-{ns}.img"), |b| {
        replace_once(b, b"first", b"firsT");
    });
    let v = ipc_sysv_verdict(&c, RCRIU, "images-msg", "work-restore-msg");
    assert!(v.starts_with("FAIL: message 1"), "{v}");
}

#[test]
fn criu_and_rcriu_restore_each_others_sysv_ipc_checkpoints() {
    need_tools();
    let Some(criu) = criu42() else {
        return;
    };
    let _g = common::setup();
    // CRIU 4.2 does not restore a queue's own msg_qbytes: the queue keeps
    // its default.
    sysv_ipc_across(
        &criu,
        |tag| ipc_sysv_container(&format!("ipcx{tag}"), "qbytes"),
        false,
    );
}

/// The SysV IPC workload's container made by `make(tag)` checkpointed by
/// each of CRIU 4.2 (`criu`) and rcriu and restored by the other; with
/// `readable`, the images made readable to the container's root first
/// (CRIU restores a user namespace's from inside it).
fn sysv_ipc_across(criu: &str, make: impl Fn(&str) -> Container, readable: bool) {
    for (dumper, restorer, tag) in [(criu, RCRIU, "criu"), (RCRIU, criu, "rcriu")] {
        let c = make(tag);
        let out = c.checkpoint_with(dumper, "images", "work-dump");
        succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
        if readable {
            run_ok(
                Command::new("chmod")
                    .args(["-R", "a+rX"])
                    .arg(c.dir.0.join("images")),
            );
        }
        let v = ipc_sysv_verdict(&c, restorer, "images", "work-restore");
        assert_eq!(v, "PASS\n", "the restore of {tag}'s images");
    }
}

#[test]
fn a_shm_segment_removed_while_attached_is_removed_again() {
    need_tools();
    let _g = common::setup();
    let c = ipc_sysv_container("ipcrmid", "rmid");
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    // As CRIU 4.2 writes it: alive in the images, SHM_DEST in its mode.
    use rcriu_images::{ImageDir, ImageFile, pb};
    let dir = ImageDir::open(c.dir.0.join("images")).unwrap();
    let ids: pb::TaskKobjIdsEntry = dir.read_one(ImageFile::Ids(1)).unwrap();
    let file = ImageFile::IpcShm(ids.ipc_ns_id.unwrap().into());
    let mut shm: Vec<pb::IpcShmEntry> = dir.read_all(file).unwrap();
    assert_eq!((shm[0].desc.mode, shm[0].desc.key), (0o1640, 0));
    // Negative control: the same segment without SHM_DEST is restored
    // alive, which the workload sees.
    let alive = copy_images(&c, "images", "images-alive");
    shm[0].desc.mode = 0o640;
    ImageDir::open(&alive)
        .unwrap()
        .write_all(file, &shm)
        .unwrap();
    let v = ipc_sysv_verdict(&c, RCRIU, "images-alive", "work-restore-alive");
    assert!(v.starts_with("FAIL: shm A is not removed"), "{v}");
    assert_eq!(
        ipc_sysv_verdict(&c, RCRIU, "images", "work-restore"),
        "PASS\n"
    );
}

/// runc's console socket, as its `recvtty` serves it: a unix stream
/// socket runc connects to, sending one message (the terminal's name)
/// with the pty master attached (`SCM_RIGHTS`), at `runc run` and again
/// at `runc restore`. Each master received comes out of `masters`.
struct ConsoleSocket {
    path: PathBuf,
    masters: std::sync::mpsc::Receiver<std::os::fd::OwnedFd>,
}

impl ConsoleSocket {
    fn new(dir: &Path) -> ConsoleSocket {
        let path = dir.join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let Some(fd) = recv_fd(&conn) else { continue };
                if tx.send(fd).is_err() {
                    return;
                }
            }
        });
        ConsoleSocket { path, masters: rx }
    }

    /// The next master runc sends.
    fn master(&self) -> std::os::fd::OwnedFd {
        self.masters
            .recv_timeout(Duration::from_secs(20))
            .expect("runc sent no terminal master to the console socket")
    }
}

/// The one fd a message on `conn` carries.
fn recv_fd(conn: &std::os::unix::net::UnixStream) -> Option<std::os::fd::OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut name = [0u8; 4096];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    rustix::net::recvmsg(
        conn,
        &mut [std::io::IoSliceMut::new(&mut name)],
        &mut anc,
        RecvFlags::CMSG_CLOEXEC,
    )
    .ok()?;
    anc.drain().find_map(|m| match m {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    })
}

/// Types `line` into the terminal whose master is `m` and reads what
/// comes back until it holds `want` (true) or 5 s pass (false, with what
/// came).
fn typed(m: &std::os::fd::OwnedFd, line: &str, want: &str) -> Result<String, String> {
    use rustix::fs::OFlags;
    let flags = rustix::fs::fcntl_getfl(m).map_err(|e| e.to_string())?;
    rustix::fs::fcntl_setfl(m, flags | OFlags::NONBLOCK).map_err(|e| e.to_string())?;
    rustix::io::write(m, line.as_bytes()).map_err(|e| format!("writing to the master: {e}"))?;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match rustix::io::read(m, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if text(&got).contains(want) {
                    return Ok(text(&got));
                }
            }
            Err(rustix::io::Errno::AGAIN) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("reading the master: {e} (after {:?})", text(&got))),
        }
    }
    Err(text(&got))
}

impl Container {
    /// Makes the container's process an interactive shell on a terminal
    /// (`process.terminal`), as `runc run -t` does.
    fn with_terminal(&self) {
        let cfg = self.bundle().join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        spec["process"]["args"] = serde_json::json!(["/bin/sh"]);
        spec["process"]["terminal"] = true.into();
        std::fs::write(&cfg, spec.to_string()).unwrap();
    }

    /// `runc run -d --console-socket`.
    fn start_on(&self, console: &ConsoleSocket) {
        let status = self
            .runc()
            .args(["run", "-d", "--console-socket"])
            .arg(&console.path)
            .arg("--bundle")
            .arg(self.bundle())
            .arg(&self.id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "runc run: {status:?}");
    }

    /// `runc restore -d --console-socket` with `criu` as its criu.
    fn restore_on(&self, criu: &str, console: &ConsoleSocket, images: &str, work: &str) -> Output {
        self.runc()
            .args(["--criu", criu, "restore", "-d", "--console-socket"])
            .arg(&console.path)
            .arg("--image-path")
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
}

/// A container running an interactive shell on a terminal, with a
/// variable set in it; returns the container, its console socket and
/// the first master.
fn shell_on_terminal(tag: &str) -> (Container, ConsoleSocket, std::os::fd::OwnedFd) {
    let c = Container::new(tag, "");
    c.with_terminal();
    let console = ConsoleSocket::new(&c.dir.0);
    c.start_on(&console);
    let m = console.master();
    typed(&m, "X=kept-$((6*7)); echo set-$X\n", "set-kept-42").unwrap();
    (c, console, m)
}

/// After a restore, the shell answers on the new master, with the
/// variable it had, its terminal and /dev/tty open.
fn answers_after_restore(m: &std::os::fd::OwnedFd) {
    let out = typed(
        m,
        "echo after-$X-$((1+2)) $(tty) $(readlink /proc/$$/fd/10)\n",
        "after-kept-42-3 /dev/pts/0 /dev/tty",
    );
    assert!(out.is_ok(), "the restored shell: {out:?}");
}

#[test]
fn runc_restores_a_container_run_with_a_terminal() {
    need_tools();
    let _g = common::setup();
    let (c, console, old) = shell_on_terminal("tty");
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    // As CRIU 4.2 writes them: the pty (index 0, its session the
    // container's init), /dev/tty, and /dev/console binding the pty.
    use rcriu_images::{ImageDir, ImageFile, pb};
    let dir = ImageDir::open(c.dir.0.join("images")).unwrap();
    let infos: Vec<pb::TtyInfoEntry> = dir.read_all(ImageFile::TtyInfo).unwrap();
    let kinds: Vec<(u32, i32, u32)> = infos.iter().map(|i| (i.id, i.r#type, i.sid)).collect();
    assert_eq!(
        kinds,
        [
            (0, pb::TtyType::Pty as i32, 1),
            (2012, pb::TtyType::Ctty as i32, 1)
        ]
    );
    let ids: pb::TaskKobjIdsEntry = dir.read_one(ImageFile::Ids(1)).unwrap();
    let mounts: Vec<pb::MntEntry> = dir
        .read_all(ImageFile::Mountpoints(ids.mnt_ns_id.unwrap().into()))
        .unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m.mountpoint == b"/dev/console" && m.root == b"/0")
    );

    let out = c.restore_on(RCRIU, &console, "images", "work-restore");
    succeeded(&out, "restore", &c.dir.0.join("work-restore/restore.log"));
    let new = console.master();
    answers_after_restore(&new);
    // Negative control: the master of the terminal before the checkpoint
    // is no longer the shell's; it gets no answer.
    let stale = typed(&old, "echo old-$((2+2))\n", "old-4");
    assert!(stale.is_err(), "the old master answered: {stale:?}");
    // And the check sees a shell without the variable.
    let fresh = typed(&new, "unset X; echo after-$X-$((1+2))\n", "after--3");
    assert!(fresh.is_ok(), "{fresh:?}");
}

#[test]
fn criu_and_rcriu_restore_each_others_container_with_a_terminal() {
    need_tools();
    let Some(criu) = criu42() else {
        return;
    };
    let _g = common::setup();
    for (dumper, restorer, tag) in [
        (criu.as_str(), RCRIU, "criu"),
        (RCRIU, criu.as_str(), "rcriu"),
    ] {
        let (c, console, _old) = shell_on_terminal(&format!("ttyx{tag}"));
        let out = c.checkpoint_with(dumper, "images", "work-dump");
        succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
        let out = c.restore_on(restorer, &console, "images", "work-restore");
        succeeded(&out, "restore", &c.dir.0.join("work-restore/restore.log"));
        answers_after_restore(&console.master());
    }
}

#[test]
fn a_terminal_of_the_hosts_devpts_in_a_container_is_refused_by_name() {
    need_tools();
    let _g = common::setup();
    // `runc run -d` from a terminal of the host (`script` makes one)
    // passes it through as the container's standard input and output.
    let c = Container::new("ttyhost", COUNTER);
    let run = format!(
        "runc --root {} run -d --bundle {} {}",
        c.dir.0.join("state").display(),
        c.bundle().display(),
        c.id
    );
    run_ok(Command::new("script").args(["-qec", &run, "/dev/null"]));
    c.wait_past(2);
    let out = c.checkpoint("work-dump");
    assert!(!out.status.success());
    let log = c.log("work-dump");
    assert!(
        log.contains(": a pty of a devpts the container does not mount, /dev/pts/"),
        "{log}"
    );
    // Left running.
    c.counts_on();
}

/// The rule of /dev/tty with `orphan_pts_master`: it is dumped when the
/// process holding it holds its pty's slave too (the shell above). Its
/// negative control: the container's init holding /dev/tty and no fd of
/// the pty (the shell exec'd a program with its standard fds on
/// /dev/null) is refused by name, as CRIU 4.2 refuses it ("ctty
/// inheritance"), and left running as it was.
#[test]
fn dev_tty_without_its_pty_in_a_container_is_refused_by_name() {
    use std::os::unix::fs::MetadataExt;
    need_tools();
    let _g = common::setup();
    let (c, _console, m) = shell_on_terminal("ttynoslave");
    let line = "exec sleep 1000 10<>/dev/tty </dev/null >/dev/null 2>&1\n";
    assert_eq!(
        rustix::io::write(&m, line.as_bytes()).ok(),
        Some(line.len())
    );
    // Handshake: the init is sleep, /dev/tty on fd 10, /dev/null on 0-2.
    let pid = c.pid();
    let rdev = |fd: i32| {
        std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
            .map(|s| s.rdev())
            .ok()
    };
    let settled = || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|s| s.trim() == "sleep")
            && rdev(10) == Some(libc::makedev(5, 0))
            && (0..3).all(|fd| rdev(fd) == Some(libc::makedev(1, 3)))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !settled() {
        assert!(Instant::now() < deadline, "the shell never exec'd sleep");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = c.checkpoint("work-dump");
    assert!(!out.status.success(), "checkpointed");
    let log = c.log("work-dump");
    assert!(
        log.contains("fd 10: /dev/tty (the controlling terminal /dev/pts/0)")
            && log.contains("holds no fd of its slave"),
        "{log}"
    );
    if let Some(criu) = criu42() {
        let out = c.checkpoint_with(&criu, "images-criu", "work-criu");
        assert!(!out.status.success(), "CRIU 4.2 checkpointed");
        let log = c.log("work-criu");
        assert!(log.contains("ctty inheritance detected"), "{log}");
    }
    // Left running as it was.
    assert_eq!(c.pid(), pid);
    assert!(settled(), "the container's init changed");
}

/// A cwd in the /proc directory of an ended process of the container's
/// pid namespace: the restore makes a /proc remap's process in rcriu's
/// own pid namespace only, so the dump refuses it by name and the
/// container counts on.
#[test]
fn a_proc_remap_in_a_containers_pid_namespace_is_refused_by_name() {
    need_tools();
    let _g = common::setup();
    let script = format!("sleep 1000 & k=$!; cd /proc/$k; kill $k; wait $k; {COUNTER}");
    let c = Container::new("procremap", &script);
    c.start();
    c.wait_past(2);
    c.checkpoint_refused(&[], "of a pid namespace other than rcriu's (a /proc remap");
}

/// A container's own tmpfs (runc's `/dev/shm`) holding a directory with
/// its owner and mode, a file with its mtime, a hard link to it, a
/// symlink and a fifo (and, with `sparse`, an 8 MiB file with one byte
/// at its end, which must come back with its hole); its loop writes
/// `/tmp/verdict` ("ok", or what is wrong) before each number.
fn tmpfs_container(tag: &str, sparse: bool) -> Container {
    let s = "/dev/shm";
    let (make_sparse, check_sparse) = if sparse {
        (
            format!("echo -n y | busybox dd of={s}/s bs=1 seek=8388608 2>/dev/null; "),
            format!(
                "[ \"$(busybox stat -c '%s' {s}/s)\" = 8388609 ] && [ \"$(busybox stat -c %b {s}/s)\" -lt 64 ] \
                 && [ \"$(busybox tail -c 1 {s}/s)\" = y ] || {{ echo \"bad sparse $(busybox stat -c '%s %b' {s}/s)\"; return; }}; "
            ),
        )
    } else {
        (String::new(), String::new())
    };
    let script = format!(
        "busybox mkdir -m 751 {s}/d && echo hello > {s}/d/f && busybox chmod 604 {s}/d/f \
         && busybox ln {s}/d/f {s}/d/h && busybox ln -s d/f {s}/l && busybox mkfifo -m 604 {s}/p \
         && busybox touch -d '2001-02-03 04:05:06' {s}/d/f \
         && busybox chown 123:45 {s}/d/f {s}/d; \
         {make_sparse}\
         check() {{ \
         [ \"$(busybox cat {s}/d/h)\" = hello ] || {{ echo 'bad contents'; return; }}; \
         [ \"$(busybox stat -c '%a %u %g' {s}/d)\" = '751 123 45' ] || {{ echo \"bad dir $(busybox stat -c '%a %u %g' {s}/d)\"; return; }}; \
         [ \"$(busybox stat -c '%a %u %g %h %Y' {s}/d/f)\" = '604 123 45 2 981173106' ] || {{ echo \"bad file $(busybox stat -c '%a %u %g %h %Y' {s}/d/f)\"; return; }}; \
         [ \"$(busybox stat -c %i {s}/d/f)\" = \"$(busybox stat -c %i {s}/d/h)\" ] || {{ echo 'bad link'; return; }}; \
         [ \"$(busybox readlink {s}/l)\" = d/f ] || {{ echo 'bad symlink'; return; }}; \
         [ -p {s}/p ] && [ \"$(busybox stat -c %a {s}/p)\" = 604 ] || {{ echo 'bad fifo'; return; }}; \
         {check_sparse}\
         echo ok; }}; \
         i=0; while :; do i=$((i+1)); check > /tmp/verdict.new; busybox mv /tmp/verdict.new /tmp/verdict; \
         echo $i >> /tmp/count; read -t 0.02 x <> /tmp/tick; done"
    );
    let c = Container::new(tag, &script);
    c.add_caps(&["CAP_CHOWN"]);
    c
}

impl Container {
    /// What the tmpfs container's last check said.
    fn verdict(&self) -> String {
        let v = self.bundle().join("rootfs/tmp/verdict");
        std::fs::read_to_string(v)
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Restores `images` with `criu`, waits for three more numbers and
    /// gives the verdict of the check made since.
    fn verdict_after_restore(&self, criu: &str, images: &str, work: &str) -> String {
        let n = self.counts().len();
        let out = self.restore_with(criu, images, work);
        let log = self.dir.0.join(work).join("restore.log");
        succeeded(&out, &format!("the restore with {criu}"), &log);
        self.wait_past(n + 3);
        self.verdict()
    }
}

/// The image of the tmpfs holding `name` in `images`.
fn tmpfs_image_holding(images: &Path, name: &str) -> PathBuf {
    std::fs::read_dir(images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("tmpfs-dev-"))
        })
        .find(|p| {
            let out = run_ok(
                Command::new("tar")
                    .arg("--list")
                    .arg("--gzip")
                    .arg("--file")
                    .arg(p),
            );
            text(&out.stdout)
                .lines()
                .any(|l| l.trim_end_matches('/') == format!("./{name}"))
        })
        .unwrap_or_else(|| panic!("no tmpfs image in {} holds {name}", images.display()))
}

/// [`tmpfs_container`] started, its check passed before any checkpoint;
/// with the tests' lock.
fn tmpfs_counting(tag: &str, sparse: bool) -> (Container, std::sync::MutexGuard<'static, ()>) {
    need_tools();
    let g = common::setup();
    let c = tmpfs_container(tag, sparse);
    c.start();
    c.wait_past(3);
    assert_eq!(c.verdict(), "ok", "before any checkpoint");
    (c, g)
}

/// A tmpfs's files, hard links, symlinks, fifos, owners, modes and times
/// come back, written and read in-process by rcriu, with rcriu and, when
/// `RCRIU_TEST_CRIU` names it, across CRIU 4.2 both ways (GNU tar reads
/// rcriu's archives, rcriu reads GNU tar's).
#[test]
fn a_containers_tmpfs_comes_back_with_its_contents() {
    let (c, _g) = tmpfs_counting("tmpfs", false);
    let out = c.checkpoint_with(RCRIU, "images-1", "work-1");
    succeeded(&out, "rcriu's checkpoint", &c.dir.0.join("work-1/dump.log"));
    // The archive is GNU tar's format: tar lists what rcriu wrote.
    tmpfs_image_holding(&c.dir.0.join("images-1"), "d/h");
    assert_eq!(c.verdict_after_restore(RCRIU, "images-1", "work-1r"), "ok");
    if let Some(criu) = criu42() {
        let out = c.checkpoint_with(RCRIU, "images-2", "work-2");
        succeeded(&out, "rcriu's checkpoint", &c.dir.0.join("work-2/dump.log"));
        assert_eq!(c.verdict_after_restore(&criu, "images-2", "work-2r"), "ok");
        let out = c.checkpoint_with(&criu, "images-3", "work-3");
        succeeded(&out, "CRIU's checkpoint", &c.dir.0.join("work-3/dump.log"));
        assert_eq!(c.verdict_after_restore(RCRIU, "images-3", "work-3r"), "ok");
    }
    carried_on(&c.counts()).unwrap();
}

/// A sparse file in a tmpfs is archived by GNU tar (`--sparse`) and comes
/// back with its hole.
#[test]
fn a_sparse_file_in_a_containers_tmpfs_comes_back_sparse() {
    let (c, _g) = tmpfs_counting("tmpfs-sparse", true);
    let out = c.checkpoint_with(RCRIU, "images", "work");
    succeeded(&out, "rcriu's checkpoint", &c.dir.0.join("work/dump.log"));
    assert_eq!(c.verdict_after_restore(RCRIU, "images", "work-r"), "ok");
}

/// Negative control of the two above: the tmpfs's archive made again
/// (by GNU tar) without the file, the restored container's check says so.
#[test]
fn a_file_left_out_of_a_tmpfs_archive_is_missed_by_the_containers_check() {
    let (c, _g) = tmpfs_counting("tmpfs-neg", false);
    let images = c.dir.0.join("images");
    let out = c.checkpoint_with(RCRIU, "images", "work");
    succeeded(&out, "rcriu's checkpoint", &c.dir.0.join("work/dump.log"));
    let image = tmpfs_image_holding(&images, "d/h");
    let unpacked = c.dir.0.join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&image)
            .arg("-C")
            .arg(&unpacked),
    );
    std::fs::remove_file(unpacked.join("d/f")).unwrap();
    std::fs::remove_file(unpacked.join("d/h")).unwrap();
    run_ok(
        Command::new("tar")
            .args(["--create", "--gzip", "--numeric-owner", "--file"])
            .arg(&image)
            .arg("-C")
            .arg(&unpacked)
            .arg("."),
    );
    std::fs::remove_file(images.join(rcriu_images::manifest::MANIFEST)).unwrap();
    assert_eq!(
        c.verdict_after_restore(RCRIU, "images", "work-r"),
        "bad contents"
    );
}

/// [`nestpid_container`] checkpointed by rcriu into `images` (its facts
/// too), with the tests' lock.
fn nestpid_checkpointed(
    tag: &str,
    mode: &str,
) -> (Container, String, std::sync::MutexGuard<'static, ()>) {
    need_tools();
    let g = common::setup();
    let (c, facts) = nestpid_container(tag, mode);
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    (c, facts, g)
}

/// rcriu's checkpoint of the container is refused, its log saying what
/// `says` expects; the container runs on (its processes pass their
/// checks).
fn nestpid_refused(c: &Container, facts: &str, says: impl Fn(&str) -> bool) {
    let out = c.checkpoint("work-dump");
    assert!(!out.status.success(), "checkpointed");
    let log = c.log("work-dump");
    assert!(says(&log), "{log}");
    assert_eq!(nestpid_verdict(c), "PASS\n", "{facts}");
}

/// rcriu restores the checkpoint in `images`: every process passes its
/// checks; the container is then deleted (for a control to follow).
fn nestpid_restored(c: &Container, facts: &str) {
    let out = c.restore();
    succeeded(&out, "restore", &c.dir.0.join("work-restore/restore.log"));
    assert_eq!(nestpid_verdict(c), "PASS\n", "{facts}");
    c.delete();
}

/// A negative control: the changed images in `images` restored, the
/// container's verdict fails, as `says` expects of its text.
fn nestpid_control_fails(c: &Container, images: &str, says: impl Fn(&str) -> bool) {
    let out = c.restore_with(RCRIU, images, "work-restore2");
    succeeded(&out, "restore", &c.dir.0.join("work-restore2/restore.log"));
    let v = nestpid_verdict(c);
    assert!(v.starts_with("FAIL:") && says(&v), "control: {v}");
}

/// A container whose init's child made a pid namespace nested in the
/// container's (tests/workloads/ct_nestpid.c, in `mode`), ready: its
/// facts ("pids A B", A's and B's pids in the container's namespace).
fn nestpid_container(tag: &str, mode: &str) -> (Container, String) {
    let c = Container::new(
        tag,
        &format!("cd /tmp && exec /bin/ct_nestpid /tmp/verdict {mode} > /tmp/stdout"),
    );
    static_workload_with(&c, "ct_nestpid", &["-pthread"]);
    // unshare(CLONE_NEWPID) in the container.
    c.add_caps(&["CAP_SYS_ADMIN"]);
    c.start();
    let facts = wait_file(&c, "tmp/stdout", "ready");
    (c, facts)
}

/// The pids of "pids A B" in the workload's facts.
fn nestpid_pids(facts: &str) -> (u32, u32) {
    let line = facts
        .lines()
        .find_map(|l| l.strip_prefix("pids "))
        .expect("the workload's pids");
    let mut it = line.split_whitespace().map(|p| p.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Tells the restored (or untouched) workload to check, and its verdict.
fn nestpid_verdict(c: &Container) -> String {
    let _ = std::fs::remove_file(c.bundle().join("rootfs/tmp/verdict"));
    run_ok(c.runc().args(["kill", &c.id, "USR1"]));
    wait_file(c, "tmp/verdict", "\n")
}

/// A pid namespace nested in a container's (its init's child unshared
/// it and forked: B is pid 1 there, B's child C pid 2), which CRIU 4.2
/// refuses: dumped and restored with every process at its pid at every
/// level (C's second thread too), each checking from inside its pid, its
/// parent, its NSpid line, and signalling and waiting for its child; A's
/// children still go into B's namespace. Control: C's pid in the nested namespace changed in
/// the images (2 to 7): B no longer finds its child at 2; C's second
/// thread's (to 9): it sees it.
#[test]
fn runc_restores_a_pid_namespace_nested_in_the_containers() {
    need_tools();
    let _g = common::setup();
    let (c, facts) = nestpid_container("nestpid", "");
    let (a, b) = nestpid_pids(&facts);
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));

    // The images: B and C with their pids at both levels, in a pid
    // namespace of their own, A's children going into it.
    use rcriu_images::{ImageFile, pb};
    let images = c.dir.0.join("images");
    let dir = rcriu_images::ImageDir::open(&images).unwrap();
    let tree: Vec<pb::PstreeEntry> = dir.read_all(ImageFile::Pstree).unwrap();
    let entry = |pid: u32| tree.iter().find(|e| e.pid == pid).unwrap().clone();
    let (eb, ea) = (entry(b), entry(a));
    assert_eq!(eb.ns_pid, vec![b, 1], "{tree:?}");
    assert!(ea.ns_pid.is_empty(), "{tree:?}");
    let ec = tree.iter().find(|e| e.ppid == b).expect("C").clone();
    assert_eq!(ec.ns_pid, vec![ec.pid, 2], "{tree:?}");
    // C's two threads, each at both levels.
    assert_eq!(ec.tids.len(), 2, "{ec:?}");
    assert_eq!(ec.tids[0].tid, vec![ec.pid, 2]);
    assert_eq!(ec.tids[1].tid.len(), 2, "{ec:?}");
    assert_eq!(ec.tids[1].tid[0], ec.threads[1], "{ec:?}");
    let ids =
        |pid: u32| -> pb::TaskKobjIdsEntry { dir.read_one(ImageFile::Ids(pid.into())).unwrap() };
    let (ia, ib, ic) = (ids(a), ids(b), ids(ec.pid));
    assert_ne!(ib.pid_ns_id, ia.pid_ns_id);
    assert_eq!(ib.pid_ns_id, ic.pid_ns_id);
    assert_eq!(ia.pid_for_children_ns_id, ib.pid_ns_id);
    let changed = copy_images(&c, "images", "images-renumbered");
    let thread_changed = copy_images(&c, "images", "images-thread");

    nestpid_restored(&c, &facts);

    // Negative control: C made at pid 7 of the nested namespace (its
    // thread is 3 there).
    let dir = rcriu_images::ImageDir::open(&changed).unwrap();
    let mut tree: Vec<pb::PstreeEntry> = dir.read_all(ImageFile::Pstree).unwrap();
    for e in tree.iter_mut().filter(|e| e.pid == ec.pid) {
        e.ns_pid = vec![ec.pid, 7];
        e.tids[0].tid = vec![ec.pid, 7];
    }
    dir.write_all(ImageFile::Pstree, &tree).unwrap();
    nestpid_control_fails(&c, "images-renumbered", |v| {
        v.contains("B: kill of its child 2: errno 3;")
    });
    c.delete();

    // Negative control: C's second thread made at tid 9 of the nested
    // namespace; it sees it.
    let dir = rcriu_images::ImageDir::open(&thread_changed).unwrap();
    let mut tree: Vec<pb::PstreeEntry> = dir.read_all(ImageFile::Pstree).unwrap();
    let was = ec.tids[1].tid[1];
    for e in tree.iter_mut().filter(|e| e.pid == ec.pid) {
        e.tids[1].tid[1] = 9;
    }
    dir.write_all(ImageFile::Pstree, &tree).unwrap();
    let out = c.restore_with(RCRIU, "images-thread", "work-restore3");
    succeeded(&out, "restore", &c.dir.0.join("work-restore3/restore.log"));
    let v = nestpid_verdict(&c);
    assert!(
        v.starts_with("FAIL:") && v.contains(&format!("C's thread: tid 9, was {was};")),
        "control: {v}"
    );
    c.delete();

    // CRIU 4.2 refuses the nested namespace; the container runs on.
    if let Some(criu) = criu42() {
        let (c, facts) = nestpid_container("nestpid-criu", "");
        let out = c.checkpoint_with(&criu, "images-criu", "work-criu");
        assert!(!out.status.success(), "CRIU 4.2 checkpointed");
        let log = c.log("work-criu");
        assert!(log.contains("Can't dump nested pid namespace"), "{log}");
        assert_eq!(nestpid_verdict(&c), "PASS\n", "{facts}");
    }
}

/// A nested pid namespace whose init stays in the session and group of
/// the container's init (`unshare --pid --fork` without a session of its
/// own: both led from outside its namespace, where it sees them as 0):
/// restored in them, inherited through the forks (checked from the host,
/// as the namespace cannot name them, and by the processes' own checks).
/// Control: a nested init leading a group of its own in a session led
/// from outside is refused by name, and the container runs on untouched
/// (its processes pass their checks).
#[test]
fn a_nested_pid_namespace_in_the_sessions_group_is_restored() {
    need_tools();
    let _g = common::setup();
    let (c, facts) = nestpid_container("nestpid-group", "shared-group");
    let groups = |c: &Container| -> Vec<(i32, i32)> {
        // Each process's group and session on the host, the init's first.
        let mut pids = vec![c.pid()];
        let mut i = 0;
        while i < pids.len() {
            let p = pids[i];
            let kids = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap();
            pids.extend(kids.split_whitespace().map(|k| k.parse::<i32>().unwrap()));
            i += 1;
        }
        pids.iter()
            .map(|p| {
                let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
                let after = &stat[stat.rfind(')').unwrap() + 2..];
                let f: Vec<i32> = after
                    .split_whitespace()
                    .skip(2)
                    .take(2)
                    .map(|v| v.parse().unwrap())
                    .collect();
                // As offsets from the init's pid, the same after the restore.
                (f[0] - pids[0], f[1] - pids[0])
            })
            .collect()
    };
    let before = groups(&c);
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(before.iter().all(|&g| g == (0, 0)), "{before:?}");
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    let out = c.restore();
    succeeded(&out, "restore", &c.dir.0.join("work-restore/restore.log"));
    assert_eq!(groups(&c), before);
    assert_eq!(nestpid_verdict(&c), "PASS\n", "{facts}");
    c.delete();

    // Control: a group of its own in a session led from outside, refused
    // by name.
    let (c, facts) = nestpid_container("nestpid-own-group", "own-group");
    nestpid_refused(&c, &facts, |log| {
        log.contains("a session (") && log.contains("led from outside its nested pid namespace")
    });
}

/// A process that unshared its pid namespace and forked nothing since:
/// restored so that its next child is pid 1 of a new namespace (checked
/// from inside, after the restore). Control: without its
/// `pid_for_children_ns_id` in the images, that child is not.
#[test]
fn a_pid_namespace_unshared_before_a_fork_is_restored() {
    let (c, facts, _g) = nestpid_checkpointed("nestpid-unshared", "unshared");
    let (a, _) = nestpid_pids(&facts);
    let changed = copy_images(&c, "images", "images-plain");
    nestpid_restored(&c, &facts);

    // Negative control: the images without A's namespace for children.
    use rcriu_images::{ImageFile, pb};
    let dir = rcriu_images::ImageDir::open(&changed).unwrap();
    let mut ids: pb::TaskKobjIdsEntry = dir.read_one(ImageFile::Ids(a.into())).unwrap();
    assert!(ids.pid_for_children_ns_id.is_some(), "{ids:?}");
    ids.pid_for_children_ns_id = None;
    dir.write_one(ImageFile::Ids(a.into()), &ids).unwrap();
    nestpid_control_fails(&c, "images-plain", |v| {
        v.contains("its new child was not pid 1")
    });
}

/// A zombie of a nested pid namespace (C's child, ended with status 7,
/// not reaped): restored a zombie at its pid at both levels, which C
/// reaps with its status. Control: its exit code changed in the images.
#[test]
fn a_zombie_of_a_nested_pid_namespace_is_restored() {
    let (c, facts, _g) = nestpid_checkpointed("nestpid-zombie", "zombie");
    let (_, b) = nestpid_pids(&facts);
    use rcriu_images::{ImageFile, pb};
    let dir = rcriu_images::ImageDir::open(c.dir.0.join("images")).unwrap();
    let tree: Vec<pb::PstreeEntry> = dir.read_all(ImageFile::Pstree).unwrap();
    let cpid = tree.iter().find(|e| e.ppid == b).expect("C").pid;
    let z = tree
        .iter()
        .find(|e| e.ppid == cpid)
        .expect("the zombie")
        .clone();
    assert_eq!(z.ns_pid.len(), 2, "{z:?}");
    let changed = copy_images(&c, "images", "images-status");
    nestpid_restored(&c, &facts);

    let dir = rcriu_images::ImageDir::open(&changed).unwrap();
    let mut core: pb::CoreEntry = dir.read_one(ImageFile::Core(z.pid.into())).unwrap();
    core.tc.as_mut().unwrap().exit_code = 9;
    dir.write_one(ImageFile::Core(z.pid.into()), &core).unwrap();
    nestpid_control_fails(&c, "images-status", |v| v.contains("C: its zombie gave"));
}

/// Two pid namespaces nested one in the other (C unshared and forked D,
/// pid 1 of a namespace in B's): D restored at its pid at all three
/// levels under the host's, C's children still going into D's namespace.
/// Control: D's pid in the container's namespace changed in the images
/// is seen by D (its NSpid line).
#[test]
fn a_pid_namespace_nested_two_deep_is_restored() {
    let (c, facts, _g) = nestpid_checkpointed("nestpid-deep", "deep");
    use rcriu_images::{ImageFile, pb};
    let dir = rcriu_images::ImageDir::open(c.dir.0.join("images")).unwrap();
    let tree: Vec<pb::PstreeEntry> = dir.read_all(ImageFile::Pstree).unwrap();
    let d = tree
        .iter()
        .find(|e| e.ns_pid.len() == 3)
        .expect("D, three levels deep")
        .clone();
    assert_eq!(d.ns_pid[2], 1, "{d:?}");
    let changed = copy_images(&c, "images", "images-d");
    nestpid_restored(&c, &facts);

    // Control: D renumbered in the container's namespace (its images
    // named by that pid too).
    let to = d.pid + 50;
    let dir = rcriu_images::ImageDir::open(&changed).unwrap();
    let mut tree: Vec<pb::PstreeEntry> = dir.read_all(ImageFile::Pstree).unwrap();
    for e in tree.iter_mut().filter(|e| e.pid == d.pid) {
        e.pid = to;
        e.threads = vec![to];
        e.ns_pid[0] = to;
        e.tids[0].tid[0] = to;
    }
    dir.write_all(ImageFile::Pstree, &tree).unwrap();
    for kind in ["core", "mm", "pagemap", "fs", "ids", "parent/pagemap"] {
        let from = changed.join(format!("{kind}-{}.img", d.pid));
        if from.exists() {
            std::fs::rename(from, changed.join(format!("{kind}-{to}.img"))).unwrap();
        }
    }
    nestpid_control_fails(&c, "images-d", |v| v.contains(" D: 'NSpid:"));
}

/// A proc mounted by the nested namespace's init for its namespace
/// (/tmp/iproc): mounted again for the restored namespace, where B finds
/// itself at 1 and C at 2. Controls: without `pid_ns_init` in its mount
/// entry, the proc is the container's and B sees it; naming the
/// container's init instead is refused by the restore, by name.
#[test]
fn a_proc_of_a_nested_pid_namespace_is_mounted_again() {
    let (c, facts, _g) = nestpid_checkpointed("nestpid-proc", "inner-proc");
    let (_, b) = nestpid_pids(&facts);
    use rcriu_images::{ImageFile, pb};
    let images = c.dir.0.join("images");
    let name = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("mountpoints-"))
        .expect("a mountpoints image");
    let file = ImageFile::parse(&name).unwrap();
    let dir = rcriu_images::ImageDir::open(&images).unwrap();
    let mounts: Vec<pb::MntEntry> = dir.read_all(file).unwrap();
    let iproc: Vec<_> = mounts.iter().filter(|m| m.pid_ns_init.is_some()).collect();
    assert_eq!(iproc.len(), 1, "{mounts:?}");
    assert_eq!(iproc[0].mountpoint, b"/tmp/iproc");
    assert_eq!(iproc[0].pid_ns_init, Some(b));
    let changed = copy_images(&c, "images", "images-init");
    let plain = copy_images(&c, "images", "images-plain");
    nestpid_restored(&c, &facts);

    // Control: the entry without its namespace (mounted as the
    // container's proc).
    let dir = rcriu_images::ImageDir::open(&plain).unwrap();
    let mut mounts: Vec<pb::MntEntry> = dir.read_all(file).unwrap();
    for m in mounts.iter_mut() {
        m.pid_ns_init = None;
    }
    dir.write_all(file, &mounts).unwrap();
    let out = c.restore_with(RCRIU, "images-plain", "work-restore-plain");
    succeeded(
        &out,
        "restore",
        &c.dir.0.join("work-restore-plain/restore.log"),
    );
    let v = nestpid_verdict(&c);
    assert!(
        v.starts_with("FAIL:") && v.contains("B: its proc at /tmp/iproc is not its namespace's"),
        "control: {v}"
    );
    c.delete();

    // Control: the entry names the container's init.
    let dir = rcriu_images::ImageDir::open(&changed).unwrap();
    let mut mounts: Vec<pb::MntEntry> = dir.read_all(file).unwrap();
    for m in mounts.iter_mut().filter(|m| m.pid_ns_init.is_some()) {
        m.pid_ns_init = Some(1);
    }
    dir.write_all(file, &mounts).unwrap();
    let out = c.restore_with(RCRIU, "images-init", "work-restore2");
    assert!(!out.status.success(), "restored");
    let log = std::fs::read_to_string(c.dir.0.join("work-restore2/restore.log")).unwrap();
    assert!(
        log.contains(
            "the proc at /tmp/iproc names process 1, not the init of a nested pid namespace"
        ),
        "{log}"
    );
}

/// A pidfd held in a nested pid namespace (C's of itself): refused by
/// name at the dump, the container left running (its processes pass
/// their checks).
#[test]
fn a_pidfd_in_a_nested_pid_namespace_is_refused_by_name() {
    need_tools();
    let _g = common::setup();
    let (c, facts) = nestpid_container("nestpid-pidfd", "pidfd");
    nestpid_refused(&c, &facts, |log| {
        log.contains("a pidfd held in or of a process of a nested pid namespace")
    });
}

// ---- user namespaces ----

/// The counter, and, each time the test creates /tmp/goN, a report of
/// what the container's init sees of itself (`/tmp/reportN`): its uid
/// and gid maps, its ids and capabilities, and the owner of a file it
/// creates (`/tmp/madeN`). Only builtins run between reports, so that
/// a checkpoint finds one process of one thread ([`USERNS_TREE`] is a
/// tree).
const USERNS_COUNTER: &str = "i=0; r=0; while :; do i=$((i+1)); echo $i >> /tmp/count; \
     if [ -e /tmp/go$r ]; then { cat /proc/$$/uid_map /proc/$$/gid_map; \
     grep -E '^(Uid|Gid|Groups|Cap)' /proc/$$/status; touch /tmp/made$r; \
     stat -c 'file %u:%g' /tmp/made$r; } > /tmp/report$r.tmp; \
     mv /tmp/report$r.tmp /tmp/report$r; r=$((r+1)); fi; \
     read -t 0.02 x <> /tmp/tick; done";

/// The map `0 100000 65536` of the container's user namespace.
const UNS_HOST: u32 = 100000;

impl Container {
    /// A container in a user namespace of its own mapping its ids 0..65536
    /// to the host's `UNS_HOST`.. (runc's `uidMappings`/`gidMappings`),
    /// its root file system owned by them.
    fn in_userns(tag: &str, script: &str) -> Container {
        let c = Container::new(tag, script);
        let rootfs = c.bundle().join("rootfs");
        for tool in ["cat", "grep", "touch", "stat", "mv", "id", "unshare"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
        }
        let cfg = c.bundle().join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        spec["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        let map = serde_json::json!([{"containerID": 0, "hostID": UNS_HOST, "size": 65536}]);
        spec["linux"]["uidMappings"] = map.clone();
        spec["linux"]["gidMappings"] = map;
        std::fs::write(&cfg, spec.to_string()).unwrap();
        run_ok(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{UNS_HOST}:{UNS_HOST}"))
                .arg(&rootfs),
        );
        // The container's root reaches its root file system.
        use std::os::unix::fs::PermissionsExt;
        for d in [c.dir.0.clone(), c.bundle()] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        c
    }

    /// Asks the init for report `n` and waits for it.
    fn report(&self, n: u32) -> String {
        let tmp = self.bundle().join("rootfs/tmp");
        std::fs::write(tmp.join(format!("go{n}")), b"").unwrap();
        let path = tmp.join(format!("report{n}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(t) = std::fs::read_to_string(&path) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "no report {n} from the container"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The owner (uid, gid) on the host of the file report `n` made.
    fn made_owner(&self, n: u32) -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(self.bundle().join(format!("rootfs/tmp/made{n}"))).unwrap();
        (m.uid(), m.gid())
    }
}

/// What a report must say, as the init saw itself before its checkpoint
/// (`before`): the same maps, ids and capabilities, a file it made owned
/// by its root (0:0 inside, `UNS_HOST` outside).
fn same_self(before: &str, after: &str) -> Result<(), String> {
    let strip = |r: &str| -> Vec<String> {
        r.lines()
            .filter(|l| !l.starts_with("file "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    if strip(before) != strip(after) {
        return Err(format!("before:\n{before}\nafter:\n{after}"));
    }
    if !after.lines().any(|l| l == "file 0:0") {
        return Err(format!("the file it made is not its root's:\n{after}"));
    }
    let want = format!("0 {UNS_HOST} 65536");
    if strip(after).iter().filter(|l| **l == want).count() != 2 {
        return Err(format!("its maps are not {want}:\n{after}"));
    }
    Ok(())
}

/// `runc exec` in the container answers: it joins the user namespace,
/// then the others (which the user namespace must own).
fn exec_id(c: &Container) -> String {
    let out = run_ok(c.runc().args(["exec", &c.id, "/bin/id"]));
    text(&out.stdout)
}

/// Whether every namespace of process `pid` (but time and cgroup,
/// rcriu's) is owned by its user namespace (`lsns`'s ONS column).
fn owned_by_its_userns(pid: u32) -> Result<(), String> {
    let out =
        run_ok(Command::new("lsns").args(["-n", "-o", "TYPE,NS,ONS", "-p", &pid.to_string()]));
    let rows: Vec<Vec<String>> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let user = rows
        .iter()
        .find(|r| r.first().map(String::as_str) == Some("user"))
        .and_then(|r| r.get(1).cloned())
        .ok_or_else(|| format!("no user namespace for {pid}"))?;
    let wrong: Vec<String> = rows
        .iter()
        .filter_map(|r| match r.as_slice() {
            [kind, ns, owner]
                if ["mnt", "net", "pid", "uts", "ipc"].contains(&kind.as_str())
                    && *owner != user =>
            {
                Some(format!("{kind}:[{ns}] is owned by user:[{owner}]"))
            }
            _ => None,
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("of {pid}, in user:[{user}]: {}", wrong.join(", ")))
    }
}

/// The check of [`owned_by_its_userns`] fails for a process whose pid
/// namespace was made before its user namespace (by rcriu's parent user
/// namespace).
#[test]
fn a_pid_namespace_not_owned_by_the_user_namespace_shows() {
    let _g = common::setup();
    let mut child = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "unshare",
            "--user",
            "--map-root-user",
            "sleep",
            "1000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let sleeper = loop {
        let out = run_ok(Command::new("pgrep").args(["-P", &child.id().to_string(), "sleep"]));
        if let Some(p) = text(&out.stdout)
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no sleep under unshare");
        std::thread::sleep(Duration::from_millis(5));
    };
    let r = owned_by_its_userns(sleeper);
    // The init of its pid namespace (the outer unshare ends with it).
    let _ = Command::new("kill")
        .args(["-KILL", &sleeper.to_string()])
        .status();
    let _ = child.wait();
    let e = r.unwrap_err();
    assert!(e.contains(" pid:["), "{e}");
}

/// The maps in a dump's `userns-N.img` become `0 200000 65536`.
fn remap_userns(images: &Path) {
    let file = common::image_named(images, "userns-");
    common::edit_one(images, file, |e: &mut rcriu_images::pb::UsernsEntry| {
        for x in e.uid_map.iter_mut().chain(e.gid_map.iter_mut()) {
            x.lower_first = 200000;
        }
    });
}

/// A runc container in a user namespace of its own (`0 100000 65536`,
/// with its pid, mount, IPC, UTS and network namespaces owned by it) is
/// checkpointed and restored by rcriu: the init sees the same maps, ids
/// and capabilities, a file it makes is owned by 100000 on the host, and
/// `runc exec` joins its namespaces. Negative control: restored from
/// images whose map says 200000, the init reports another map.
#[test]
fn runc_restores_a_container_in_a_user_namespace_of_its_own() {
    need_tools();
    let _g = common::setup();
    let c = Container::in_userns("userns", USERNS_COUNTER);
    // The counter can write to /tmp whatever it is mapped to (the
    // negative control's map).
    use std::os::unix::fs::PermissionsExt;
    let tmp = c.bundle().join("rootfs/tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(tmp.join("tick"), std::fs::Permissions::from_mode(0o666)).unwrap();
    c.start();
    c.wait_past(2);
    let before = c.report(0);
    assert_eq!(c.made_owner(0), (UNS_HOST, UNS_HOST));
    same_self(&before, &before).unwrap();
    let out = c.checkpoint("work-dump");
    succeeded(
        &out,
        "rcriu's checkpoint",
        &c.dir.0.join("work-dump/dump.log"),
    );
    let images = c.dir.0.join("images");
    assert!(
        std::fs::read_dir(&images).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("userns-")),
        "no userns image"
    );
    // A copy for the negative control.
    let copy = c.dir.0.join("images-remapped");
    run_ok(Command::new("cp").arg("-a").arg(&images).arg(&copy));
    let n = c.counts().len();
    let out = c.restore();
    succeeded(
        &out,
        "rcriu's restore",
        &c.dir.0.join("work-restore/restore.log"),
    );
    c.wait_past(n + 3);
    carried_on(&c.counts()).unwrap();
    let after = c.report(1);
    same_self(&before, &after).unwrap();
    assert_eq!(c.made_owner(1), (UNS_HOST, UNS_HOST));
    assert_eq!(exec_id(&c).trim(), "uid=0 gid=0");
    owned_by_its_userns(c.pid() as u32).unwrap();
    // Negative control: the same images with another map.
    c.delete();
    remap_userns(&copy);
    std::fs::remove_file(c.count_file()).unwrap();
    let out = c.restore_with(RCRIU, "images-remapped", "work-remapped");
    succeeded(
        &out,
        "rcriu's restore",
        &c.dir.0.join("work-remapped/restore.log"),
    );
    let bad = c.report(2);
    let e = same_self(&before, &bad).unwrap_err();
    let words: Vec<&str> = bad.split_whitespace().collect();
    assert!(words.starts_with(&["0", "200000", "65536"]), "{e}");
}

/// A process of the container in a user namespace nested in the
/// container's is refused by name, and the container counts on.
#[test]
fn a_user_namespace_nested_in_a_containers_is_refused_by_name() {
    need_tools();
    let _g = common::setup();
    let c = Container::in_userns(
        "userns-nested",
        &format!("unshare -U sleep 1000 & {COUNTER}"),
    );
    c.start();
    c.wait_past(2);
    c.checkpoint_refused(&[], "a user namespace nested in the tree's");
}

/// CRIU 4.2 restores rcriu's checkpoint of a container in a user
/// namespace of its own and the other way round (`RCRIU_TEST_CRIU`).
/// CRIU 4.2 reads the images from inside the user namespace, so they
/// are made readable to the container's root first (it fails with
/// "Permission denied" on its own 0600 images otherwise).
#[test]
fn criu_and_rcriu_restore_each_others_containers_in_a_user_namespace() {
    need_tools();
    let Some(criu) = criu42() else {
        return;
    };
    let _g = common::setup();
    let c = Container::in_userns("userns-cross", USERNS_COUNTER);
    c.start();
    c.wait_past(2);
    let before = c.report(0);
    across(&c, &criu, RCRIU, "criu", |_| {});
    same_self(&before, &c.report(1)).unwrap();
    across(&c, RCRIU, &criu, "rcriu", |images| {
        run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(images));
    });
    same_self(&before, &c.report(2)).unwrap();
    assert_eq!(exec_id(&c).trim(), "uid=0 gid=0");
}

/// A tree in a user namespace of its own: ct_threads (three threads and
/// a zombie child; it checks itself on SIGUSR1), a child run as uid and
/// gid 1000 there (`su kid`) that counts into /tmp/kid and writes the
/// ids it has (`/tmp/kreportN`, as grep, its child, inherits them) each
/// time the test creates /tmp/kgoN,
/// and the init (uid 0 there), which counts while `kill -0` finds that
/// child by the pid it was forked with (`gone N` otherwise, as [`TWO`]).
const USERNS_TREE: &str = "cd /tmp; /bin/ct_threads /tmp/verdict zombie > /tmp/stdout & \
     su -s /bin/sh kid -c 'j=0; r=0; while :; do j=$((j+1)); echo $j >> /tmp/kid; \
     if [ -e /tmp/kgo$r ]; then grep -E \"^(Uid|Gid|Groups)\" /proc/self/status > /tmp/kreport$r.tmp; \
     mv /tmp/kreport$r.tmp /tmp/kreport$r; r=$((r+1)); fi; read -t 0.02 x <> /tmp/tick; done' \
     & kid=$!; i=0; while :; do i=$((i+1)); if kill -0 $kid; then echo $i >> /tmp/count; \
     else echo gone $i >> /tmp/count; fi; read -t 0.02 x <> /tmp/tick; done";

/// The uid and gid of the child of [`USERNS_TREE`] in its namespace.
const KID_ID: u32 = 1000;

/// The [`USERNS_TREE`] container, started, with every process counting
/// and ct_threads ready.
fn userns_tree(tag: &str) -> Container {
    let c = Container::in_userns(tag, USERNS_TREE);
    // su changes its ids.
    c.add_caps(&["CAP_SETUID", "CAP_SETGID"]);
    let rootfs = c.bundle().join("rootfs");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/su")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(
        rootfs.join("etc/passwd"),
        format!("root:x:0:0::/:/bin/sh\nkid:x:{KID_ID}:{KID_ID}::/tmp:/bin/sh\n"),
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/group"),
        format!("root:x:0:\nkid:x:{KID_ID}:\n"),
    )
    .unwrap();
    static_workload_with(&c, "ct_threads", &["-pthread"]);
    use std::os::unix::fs::PermissionsExt;
    let tmp = rootfs.join("tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(tmp.join("tick"), std::fs::Permissions::from_mode(0o666)).unwrap();
    c.start();
    c.wait_past(3);
    wait_counts(|| kid_counts(&c), 3);
    wait_file(&c, "tmp/stdout", "ready");
    c
}

fn kid_counts(c: &Container) -> Vec<u64> {
    parse_counts(&std::fs::read_to_string(c.bundle().join("rootfs/tmp/kid")).unwrap_or_default())
}

/// Asks the child of [`USERNS_TREE`] for its report `n` (its ids as it
/// sees them) and waits for it.
fn kid_report(c: &Container, n: u32) -> String {
    let tmp = c.bundle().join("rootfs/tmp");
    std::fs::write(tmp.join(format!("kgo{n}")), b"").unwrap();
    wait_file(c, &format!("tmp/kreport{n}"), "Groups")
}

/// The init's children (host pid, pid in the namespace), by the latter,
/// each with its command name.
fn named_children(pid: i32) -> Vec<(i32, i32, String)> {
    let mut v: Vec<(i32, i32, String)> = children_ns_pids(pid)
        .into_iter()
        .map(|(h, n)| {
            let comm = std::fs::read_to_string(format!("/proc/{h}/comm")).unwrap();
            (h, n, comm.trim().to_string())
        })
        .collect();
    v.sort_by_key(|&(_, n, _)| n);
    v
}

/// Uid and gid of `pid` as the host sees them.
fn host_ids(pid: i32) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/{pid}")).unwrap();
    (m.uid(), m.gid())
}

/// ct_threads of the tree checks itself (SIGUSR1 to `host_pid`): its verdict.
fn threads_verdict(c: &Container, host_pid: i32) -> String {
    let _ = std::fs::remove_file(c.bundle().join("rootfs/tmp/verdict"));
    run_ok(Command::new("kill").args(["-USR1", &host_pid.to_string()]));
    wait_file(c, "tmp/verdict", "\n")
}

/// The child's uid and gid made `id` in the images (its core's creds).
fn set_kid_ids(images: &Path, kid: u32, id: u32) {
    use rcriu_images::ImageFile;
    common::edit_one(
        images,
        ImageFile::Core(kid.into()),
        |core: &mut rcriu_images::pb::CoreEntry| {
            let creds = core
                .thread_core
                .as_mut()
                .and_then(|t| t.creds.as_mut())
                .expect("the child's creds");
            for v in [
                &mut creds.uid,
                &mut creds.euid,
                &mut creds.suid,
                &mut creds.fsuid,
                &mut creds.gid,
                &mut creds.egid,
                &mut creds.sgid,
                &mut creds.fsgid,
            ] {
                *v = id;
            }
        },
    );
}

/// A runc container in a user namespace of its own running a tree
/// ([`USERNS_TREE`]: the init, a child as uid 1000 there, a process of
/// three threads with a zombie child) is checkpointed and restored by
/// rcriu: every process is forked inside the namespace with its pids at
/// the levels it owns (the host's are the kernel's). Both counters carry
/// on, the init still finds its child by its pid (from inside), the
/// children have the same pids in the namespace, the child reports the
/// same ids from inside (and the host sees 101000 for it, 100000 for the
/// init), ct_threads passes its check (its threads' tids, its zombie's
/// status), and every namespace is the user namespace's. Negative
/// control: the same images with the child's ids made 1001 and its pid
/// moved by 5: the child reports 1001 from inside, and the init loses it.
#[test]
fn runc_restores_a_tree_in_a_user_namespace_of_its_own() {
    need_tools();
    let _g = common::setup();
    let c = userns_tree("userns-tree");
    let before = named_children(c.pid());
    assert_eq!(before.len(), 2, "{before:?}");
    let kid = before
        .iter()
        .find(|k| k.2 == "sh")
        .expect("the child")
        .clone();
    assert!(before.iter().any(|k| k.2 == "ct_threads"), "{before:?}");
    let kid_before = kid_report(&c, 0);
    assert!(
        kid_before.contains(&format!("Uid:\t{KID_ID}\t{KID_ID}\t{KID_ID}\t{KID_ID}")),
        "{kid_before}"
    );
    assert_eq!(host_ids(kid.0), (UNS_HOST + KID_ID, UNS_HOST + KID_ID));
    let out = c.checkpoint("work-dump");
    succeeded(
        &out,
        "rcriu's checkpoint",
        &c.dir.0.join("work-dump/dump.log"),
    );
    let changed = copy_images(&c, "images", "images-edited");
    let (n, kn) = (c.counts().len(), kid_counts(&c).len());
    let out = c.restore();
    succeeded(
        &out,
        "rcriu's restore",
        &c.dir.0.join("work-restore/restore.log"),
    );
    c.wait_past(n + 3);
    wait_counts(|| kid_counts(&c), kn + 3);
    carried_on(&c.counts()).unwrap();
    carried_on(&kid_counts(&c)).unwrap();
    assert!(!lost_child(&c), "the init lost its child");
    let after = named_children(c.pid());
    let ns = |v: &[(i32, i32, String)]| v.iter().map(|k| (k.1, k.2.clone())).collect::<Vec<_>>();
    assert_eq!(
        ns(&after),
        ns(&before),
        "the children's pids in the namespace"
    );
    let kid_after = after.iter().find(|k| k.2 == "sh").unwrap().clone();
    assert_eq!(kid_report(&c, 1), kid_before);
    assert_eq!(
        host_ids(kid_after.0),
        (UNS_HOST + KID_ID, UNS_HOST + KID_ID)
    );
    assert_eq!(host_ids(c.pid()), (UNS_HOST, UNS_HOST));
    owned_by_its_userns(kid_after.0 as u32).unwrap();
    let threads_after = after.iter().find(|k| k.2 == "ct_threads").unwrap();
    assert_eq!(threads_verdict(&c, threads_after.0), "PASS\n");
    c.delete();

    // Negative control: the child's ids and pid changed in the images.
    // (renumber_child drops the manifest, which copy_images left out.)
    std::fs::write(changed.join(rcriu_images::manifest::MANIFEST), b"").unwrap();
    renumber_child(&changed, kid.1 as u32, kid.1 as u32 + 5);
    set_kid_ids(&changed, kid.1 as u32 + 5, KID_ID + 1);
    std::fs::remove_file(c.count_file()).unwrap();
    for f in ["kgo1", "kreport1"] {
        std::fs::remove_file(c.bundle().join("rootfs/tmp").join(f)).unwrap();
    }
    let out = c.restore_with(RCRIU, "images-edited", "work-edited");
    succeeded(
        &out,
        "rcriu's restore of the edited images",
        &c.dir.0.join("work-edited/restore.log"),
    );
    let bad = kid_report(&c, 1);
    assert!(
        bad.contains(&format!("Uid:\t{0}\t{0}\t{0}\t{0}", KID_ID + 1)),
        "{bad}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lost_child(&c) {
        assert!(Instant::now() < deadline, "the init never missed its child");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// CRIU 4.2 restores rcriu's checkpoint of [`USERNS_TREE`] in its user
/// namespace and the other way round (`RCRIU_TEST_CRIU`; the images made
/// readable to the container's root for CRIU, as for one process): the
/// counters carry on, the init keeps its child, the child reports the
/// same ids, and ct_threads passes its check at the end.
#[test]
fn criu_and_rcriu_restore_each_others_trees_in_a_user_namespace() {
    need_tools();
    let Some(criu) = criu42() else {
        return;
    };
    let _g = common::setup();
    let c = userns_tree("userns-tree-x");
    let kid_before = kid_report(&c, 0);
    across(&c, &criu, RCRIU, "criu", |_| {});
    assert_eq!(kid_report(&c, 1), kid_before);
    across(&c, RCRIU, &criu, "rcriu", |images| {
        run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(images));
    });
    assert_eq!(kid_report(&c, 2), kid_before);
    assert!(!lost_child(&c), "the init lost its child");
    let kids = named_children(c.pid());
    let threads = kids
        .iter()
        .find(|k| k.2 == "ct_threads")
        .expect("ct_threads");
    assert_eq!(threads_verdict(&c, threads.0), "PASS\n");
}

/// The processes whose root is `rootfs` (a container's, after its
/// pivot_root: the same directory).
fn rooted_in(rootfs: &Path) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let want = std::fs::metadata(rootfs).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::metadata(format!("/proc/{p}/root"))
                .is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino())
        })
        .collect()
}

/// A restore of a tree in a user namespace that fails in a child (its
/// uid 70000, which the namespace does not map, refused by setresuid in
/// its restorer) fails naming the step and the child by its pid in the
/// images, and leaves no process of the
/// tree: those whose pids rcriu had not learnt yet go with the root.
/// Control: the same check finds the processes of the running tree.
#[test]
fn a_tree_in_a_user_namespace_failing_in_a_child_is_killed_whole() {
    need_tools();
    let _g = common::setup();
    let c = userns_tree("userns-fail");
    let rootfs = c.bundle().join("rootfs");
    let running = rooted_in(&rootfs);
    assert!(running.len() >= 3, "{running:?}");
    let kid = named_children(c.pid())
        .into_iter()
        .find(|k| k.2 == "sh")
        .expect("the child");
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    let changed = copy_images(&c, "images", "images-unmapped");
    set_kid_ids(&changed, kid.1 as u32, 70000);
    let out = c.restore_with(RCRIU, "images-unmapped", "work-unmapped");
    assert!(!out.status.success(), "restored with an unmapped uid");
    let log = std::fs::read_to_string(c.dir.0.join("work-unmapped/restore.log")).unwrap();
    assert!(
        log.contains(&format!("(process {} of the images)", kid.1))
            && log.contains("setting credentials failed (setresuid)"),
        "{log}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = rooted_in(&rootfs);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?}\n{log}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A pid namespace nested in the container's (ct_nestpid: B pid 1 there,
/// its child C pid 2, C with two threads) in a container in a user
/// namespace of its own: every process is forked inside the user
/// namespace with its pids at every level it owns (the container's and
/// the nested one's), and each passes its checks. Control: C made at pid
/// 7 of the nested namespace in the images: B no longer finds its child
/// at 2.
#[test]
fn a_nested_pid_namespace_in_a_user_namespace_is_restored() {
    need_tools();
    let _g = common::setup();
    let c = Container::in_userns(
        "nestpid-userns",
        "cd /tmp && exec /bin/ct_nestpid /tmp/verdict > /tmp/stdout",
    );
    static_workload_with(&c, "ct_nestpid", &["-pthread"]);
    c.add_caps(&["CAP_SYS_ADMIN"]);
    use std::os::unix::fs::PermissionsExt;
    let tmp = c.bundle().join("rootfs/tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    c.start();
    let facts = wait_file(&c, "tmp/stdout", "ready");
    let (_, b) = nestpid_pids(&facts);
    let out = c.checkpoint("work-dump");
    succeeded(&out, "checkpoint", &c.dir.0.join("work-dump/dump.log"));
    use rcriu_images::{ImageFile, pb};
    let changed = copy_images(&c, "images", "images-renumbered");
    nestpid_restored(&c, &facts);

    let dir = rcriu_images::ImageDir::open(&changed).unwrap();
    let mut tree: Vec<pb::PstreeEntry> = dir.read_all(ImageFile::Pstree).unwrap();
    let cpid = tree.iter().find(|e| e.ppid == b).expect("C").pid;
    for e in tree.iter_mut().filter(|e| e.pid == cpid) {
        e.ns_pid = vec![cpid, 7];
        e.tids[0].tid = vec![cpid, 7];
    }
    dir.write_all(ImageFile::Pstree, &tree).unwrap();
    nestpid_control_fails(&c, "images-renumbered", |v| {
        v.contains("B: kill of its child 2: errno 3;")
    });
}

/// The SysV IPC workload ([`ipc_sysv_script`] in `mode`) in a container
/// in a user namespace of its own, ready.
fn ipc_sysv_in_userns(tag: &str, mode: &str) -> Container {
    let c = Container::in_userns(tag, &ipc_sysv_script(mode));
    static_workload(&c, "ipc_sysv");
    c.start();
    wait_file(&c, "tmp/stdout", "ready");
    c
}

/// The SysV IPC objects of a container in a user namespace of its own
/// (its IPC namespace owned by it) are checkpointed with their owners as
/// the container sees them (segment B's 1000:1001, the creators its
/// root, 0), made again from inside (as its root) with those owners and
/// pass the workload's checks (ids, modes, owners, memory, attaches,
/// values, messages). Negative control: segment B's owner made 1002 in
/// the images is seen by the workload.
#[test]
fn runc_restores_sysv_ipc_objects_in_a_user_namespace() {
    need_tools();
    let _g = common::setup();
    let c = ipc_sysv_in_userns("ipc-userns", "");
    use rcriu_images::{ImageDir, ImageFile, pb};
    let (facts, _, ns, shm) = sysv_checkpointed(&c);
    let file = ImageFile::IpcShm(ns.into());
    assert_eq!(shm.len(), 3, "{facts}");
    assert!(shm.iter().all(|s| s.in_pagemaps == Some(true)));
    let owners: Vec<(u32, u32, u32, u32)> = shm
        .iter()
        .map(|s| (s.desc.uid, s.desc.gid, s.desc.cuid, s.desc.cgid))
        .collect();
    assert_eq!(
        owners,
        [(0, 0, 0, 0), (1000, 1001, 0, 0), (0, 0, 0, 0)],
        "{facts}"
    );
    let changed = copy_images(&c, "images", "images-owner");
    assert_eq!(
        ipc_sysv_verdict(&c, RCRIU, "images", "work-restore"),
        "PASS\n",
        "{facts}"
    );

    // Negative control: segment B's owner changed in the images.
    let dir = ImageDir::open(&changed).unwrap();
    let mut shm: Vec<pb::IpcShmEntry> = dir.read_all(file).unwrap();
    shm[1].desc.uid = 1002;
    dir.write_all(file, &shm).unwrap();
    let v = ipc_sysv_verdict(&c, RCRIU, "images-owner", "work-restore-owner");
    assert!(
        v.starts_with("FAIL: shm B:") && v.contains("owner 1002:1001"),
        "{v}"
    );
}

/// CRIU 4.2 restores rcriu's checkpoint of the SysV IPC workload in a
/// user namespace of its own and the other way round
/// (`RCRIU_TEST_CRIU`; the queue keeps its default `msg_qbytes`, which
/// CRIU 4.2 does not restore; the images made readable to the
/// container's root for CRIU).
#[test]
fn criu_and_rcriu_restore_each_others_sysv_ipc_in_a_user_namespace() {
    need_tools();
    let Some(criu) = criu42() else {
        return;
    };
    let _g = common::setup();
    sysv_ipc_across(
        &criu,
        |tag| ipc_sysv_in_userns(&format!("ipcux{tag}"), "qbytes"),
        true,
    );
}

/// podman's counter with a child: the child counts into /tmp/kid, the
/// init counts while `kill -0` finds the child by the pid it was forked
/// with (`gone N` otherwise, as [`TWO`]).
const PODMAN_FORKING: &str = "mkfifo /tmp/tick; sh -c 'j=0; while :; do j=$((j+1)); \
     echo $j >> /tmp/kid; read -t 0.02 x <> /tmp/tick; done' & kid=$!; \
     i=$(od -An -N4 -tu4 /dev/urandom); while :; do i=$((i+1)); \
     if kill -0 $kid; then echo $i >> /tmp/count; else echo gone $i >> /tmp/count; fi; \
     read -t 0.02 x <> /tmp/tick; done";

/// podman (`--runtime runc`, rcriu as its criu) checkpoints and restores
/// a container run with `--uidmap 0:100000:65536 --gidmap 0:100000:65536`
/// whose `sh -c` forks a child: both counters carry on, the init still
/// finds its child by its pid (checked from inside; the host sees the
/// same pid in the namespace), the restored init and child have the same
/// maps (read on the host and inside with `podman exec`, which joins its
/// namespaces), ids and capabilities. The images are rcriu's, with the
/// user namespace's image. (CRIU 4.2 dumps such a container but fails its
/// restore: it reads the images from inside the user namespace, and
/// podman keeps them where the container's root may not read.)
#[test]
fn podman_checkpoints_and_restores_a_container_with_a_uid_map() {
    let Some(p) = Podman::new("podman-uidmap") else {
        return;
    };
    let _g = common::setup();
    run_ok(p.podman().args(rcriu_test_support::PODMAN_RUN).args([
        "--uidmap",
        "0:100000:65536",
        "--gidmap",
        "0:100000:65536",
        "--name",
        &p.name,
        PODMAN_IMAGE,
        "/bin/sh",
        "-c",
        PODMAN_FORKING,
    ]));
    p.wait_past(3);
    let upper = PathBuf::from(p.inspect("{{.GraphDriver.Data.UpperDir}}"));
    let kid_counts =
        || parse_counts(&std::fs::read_to_string(upper.join("tmp/kid")).unwrap_or_default());
    wait_counts(kid_counts, 3);
    let seen = |pid: &str| {
        let map = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let ids: Vec<String> = status
            .lines()
            .filter(|l| l.starts_with("Uid") || l.starts_with("Gid") || l.starts_with("Cap"))
            .map(String::from)
            .collect();
        (map("uid_map"), map("gid_map"), ids)
    };
    let init: i32 = p.inspect("{{.State.Pid}}").parse().unwrap();
    let before = seen(&init.to_string());
    assert_eq!(
        before.0.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    let kids = children_ns_pids(init);
    assert_eq!(kids.len(), 1, "{kids:?}");
    let kid_before = seen(&kids[0].0.to_string());
    let userdata = p.userdata();
    let out = p.container(&["checkpoint", "--keep"]);
    succeeded(&out, "podman checkpoint", &userdata.join("dump.log"));
    let images = userdata.join("checkpoint");
    assert!(images.join("rcriu-manifest").exists(), "not rcriu's images");
    assert!(
        std::fs::read_dir(&images).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("userns-")),
        "no userns image"
    );
    let (at_dump, kid_at_dump) = (p.counts(), kid_counts());
    let out = p.container(&["restore", "--keep"]);
    succeeded(&out, "podman restore", &userdata.join("restore.log"));
    let after = p.wait_past(at_dump.len() + 3);
    continued(&at_dump, &after).unwrap();
    let upper = PathBuf::from(p.inspect("{{.GraphDriver.Data.UpperDir}}"));
    let kid_counts =
        || parse_counts(&std::fs::read_to_string(upper.join("tmp/kid")).unwrap_or_default());
    wait_counts(kid_counts, kid_at_dump.len() + 3);
    continued(&kid_at_dump, &kid_counts()).unwrap();
    let count = std::fs::read_to_string(upper.join("tmp/count")).unwrap();
    assert!(!count.contains("gone"), "the init lost its child");
    let init: i32 = p.inspect("{{.State.Pid}}").parse().unwrap();
    assert_eq!(seen(&init.to_string()), before);
    let kids_after = children_ns_pids(init);
    assert_eq!(kids_after.len(), 1, "{kids_after:?}");
    assert_eq!(
        kids_after[0].1, kids[0].1,
        "the child's pid in the namespace"
    );
    assert_eq!(seen(&kids_after[0].0.to_string()), kid_before);
    owned_by_its_userns(kids_after[0].0 as u32).unwrap();
    let inside =
        run_ok(
            p.podman()
                .args(["exec", &p.name, "/bin/busybox", "cat", "/proc/1/uid_map"]),
        );
    assert_eq!(text(&inside.stdout), before.0);
}

/// A process in a user namespace of its own but in rcriu's pid namespace
/// (`unshare --user --map-root-user`) is refused by name (the restore
/// gives the root its pid from inside the user namespace, which only a
/// pid namespace of its own allows), and left running.
#[test]
fn a_user_namespace_without_a_pid_namespace_is_refused_by_name() {
    let _g = common::setup();
    let mut child = Command::new("unshare")
        .args(["--user", "--map-root-user", "sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Until unshare became sleep in its namespace.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap()
        == std::fs::read_link("/proc/self/ns/user").unwrap()
        || std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim()
            != "sleep"
    {
        assert!(Instant::now() < deadline, "unshare made no user namespace");
        std::thread::sleep(Duration::from_millis(5));
    }
    let dir = TempDir::new("userns-nopid");
    let out = Command::new(RCRIU)
        .args(["dump", "--shell-job", "-t", &pid.to_string(), "-D"])
        .arg(&dir.0)
        .output()
        .unwrap();
    // Left as it was: sleeping, traced by no one.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(status.contains("State:\tS (sleeping)"), "{status}");
    assert!(status.contains("TracerPid:\t0\n"), "{status}");
    assert!(!out.status.success(), "dumped");
    let err = text(&out.stderr);
    assert!(
        err.contains("a user namespace of its own without a pid namespace of its own"),
        "{err}"
    );
}
