//! `rcriu dump` as a user runs it: criu's options, exit status and
//! messages; a failure at any fault point, after writing any image kind,
//! on a full disk, or a dumper killed mid-dump, leaves the target running
//! and intact; a target that dies mid-dump is a clear error.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rcriu_test_support::{
    HANG_GUARD, ProcSnapshot, TempDir, Workload, no_inherited_fds, require_root, trace_lock,
};

fn rcriu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rcriu"))
}

/// The process's fds, as (number, link).
fn fds(pid: i32) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let l = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                l.to_string_lossy().into_owned(),
            ))
        })
        .collect();
    v.sort();
    v
}

/// Starts a workload and waits until it has let go of the readiness pipe.
fn start(name: &str, args: &[&str]) -> Workload {
    no_inherited_fds();
    let w = Workload::start(name, args);
    let start = Instant::now();
    // Right after "ready" it opens /dev/null, dup2s it over its stdout
    // and closes it.
    while fds(w.pid)
        .iter()
        .any(|(n, l)| l.starts_with("pipe:") || (l == "/dev/null" && n.parse::<i32>().unwrap() > 2))
    {
        assert!(start.elapsed() < HANG_GUARD, "{name} keeps its stdout pipe");
        std::thread::sleep(Duration::from_millis(1));
    }
    w
}

/// Waits until the workload sleeps in its wait again (pause or
/// sigsuspend): a task let go after being seized re-enters an interrupted
/// sigsuspend a moment later, and shows its own signal mask meanwhile.
fn back_in_wait(pid: i32) {
    let start = Instant::now();
    loop {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if state(pid) == 'S' && (wchan.contains("pause") || wchan.contains("sigsuspend")) {
            return;
        }
        assert!(
            start.elapsed() < HANG_GUARD,
            "process {pid} does not wait again"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn state(pid: i32) -> char {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s.rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().chars().next())
        .unwrap_or('?')
}

/// The image files in `dir` (logs aside).
fn images(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running rcriu")
}

#[test]
fn dump_with_criu_options() {
    require_root();
    let _g = trace_lock();
    let w = start("compute", &["sleep"]);
    let t = TempDir::new("cli-dump");
    let dir = t.path().join("images");
    // -R: left running; -v4 -o: a log in the images directory.
    let out = run(rcriu()
        .args(["dump", "-t", &w.pid.to_string(), "-D"])
        .arg(&dir)
        .args(["-R", "-v4", "-o", "dump.log"]));
    assert!(out.status.success(), "{out:?}");
    let log = std::fs::read_to_string(dir.join("dump.log")).unwrap();
    assert!(log.contains("parasite runs"), "a debug log: {log}");
    let names = images(&dir);
    for f in ["inventory.img", "pages-1.img", "stats-dump", "timens-0.img"] {
        assert!(names.contains(&f.to_string()), "{f} in {names:?}");
    }
    assert!(names.contains(&format!("core-{}.img", w.pid)));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(matches!(state(w.pid), 'R' | 'S'));

    // Without -R, the process is killed once the images are written;
    // options may come before the command, as criu takes them.
    let dir2 = t.path().join("images2");
    let out = run(rcriu()
        .args(["-t", &w.pid.to_string(), "-D"])
        .arg(&dir2)
        .arg("dump"));
    assert!(out.status.success(), "{out:?}");
    assert!(images(&dir2).contains(&"inventory.img".to_string()));
    let e = w.verdict().expect_err("the process was killed");
    assert!(e.contains("0x9"), "killed by SIGKILL: {e}");
}

#[test]
fn a_refusal_names_what_and_fails() {
    require_root();
    let _g = trace_lock();
    let w = start("dump_scope", &["vsock"]);
    let t = TempDir::new("cli-refused");
    let dir = t.path().join("images");
    let out = run(rcriu()
        .args(["dump", "-t", &w.pid.to_string(), "-D"])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a socket of family AF_VSOCK"), "{err}");
    assert!(err.contains(&format!("process {}", w.pid)), "{err}");
    assert!(images(&dir).is_empty(), "{:?}", images(&dir));
    w.verdict().expect("the process is intact");

    let out = run(rcriu().args(["dump", "-D"]).arg(&dir));
    assert_eq!(out.status.code(), Some(1));
    // criu's message.
    assert!(String::from_utf8_lossy(&out.stderr).contains("pid not specified"));
}

/// Memory under a NUMA policy of its own, or a thread's policy, is
/// refused by name (the restore sets no policy back), the process left
/// as it was; the same process without a policy dumps (the control).
#[test]
fn a_numa_policy_is_refused_by_name() {
    require_root();
    let _g = trace_lock();
    let t = TempDir::new("cli-numa");
    for (mode, refused) in [("numa", true), ("numa-thread", true), ("none", false)] {
        let w = start("dump_scope", &[mode]);
        let dir = t.path().join(mode);
        let out = run(rcriu()
            .args(["dump", "-R", "-t", &w.pid.to_string(), "-D"])
            .arg(&dir));
        let err = String::from_utf8_lossy(&out.stderr);
        if refused {
            assert_eq!(out.status.code(), Some(1), "{mode}: {out:?}");
            assert!(err.contains("under the NUMA policy"), "{mode}: {err}");
            assert!(images(&dir).is_empty(), "{mode}: {:?}", images(&dir));
        } else {
            assert_eq!(out.status.code(), Some(0), "{mode}: {err}");
        }
        w.verdict()
            .unwrap_or_else(|e| panic!("{mode}: the process is not intact: {e}"));
    }
}

/// What must be the same after a failed dump: /proc's view and the fds.
struct Seen {
    proc: ProcSnapshot,
    fds: Vec<(String, String)>,
}

fn seen(pid: i32) -> Seen {
    back_in_wait(pid);
    let mut proc = ProcSnapshot::take(pid);
    // A parasite that cured itself cannot unmap its own area: it stays,
    // as shared anonymous memory.
    let leftovers: Vec<String> = proc
        .maps
        .iter()
        .filter(|l| l.ends_with("/dev/zero (deleted)"))
        .filter_map(|l| l.split(' ').next().map(String::from))
        .collect();
    proc.maps.retain(|l| !l.ends_with("/dev/zero (deleted)"));
    proc.vmflags
        .retain(|l| !leftovers.iter().any(|r| l.starts_with(&format!("{r} "))));
    Seen {
        proc,
        fds: fds(pid),
    }
}

/// Fails with what differs between `a` and `b`.
fn same(a: &Seen, b: &Seen, what: &str) {
    let d = a.proc.diff(&b.proc);
    assert!(d.is_empty(), "{what}: {}", d.join("\n"));
    assert_eq!(a.fds, b.fds, "{what}");
}

#[test]
fn every_fault_point_leaves_the_target_intact() {
    require_root();
    let _g = trace_lock();
    let w = start("dump_state", &[]);
    let before = seen(w.pid);
    let t = TempDir::new("cli-faults");
    for leave_running in [true, false] {
        for point in 1..=6 {
            let what = format!("fault point {point}, -R {leave_running}");
            let dir = t.path().join(format!("images-{point}-{leave_running}"));
            let mut cmd = rcriu();
            cmd.args(["dump", "-t", &w.pid.to_string(), "-D"])
                .arg(&dir)
                .env("RCRIU_FAULT", point.to_string());
            if leave_running {
                cmd.arg("-R");
            }
            let out = run(&mut cmd);
            assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(&format!("fault injected at point {point}")),
                "{what}: {err}"
            );
            assert!(images(&dir).is_empty(), "{what}: {:?}", images(&dir));
            assert!(matches!(state(w.pid), 'R' | 'S'), "{what}");
            same(&before, &seen(w.pid), &what);
        }
    }
    w.verdict()
        .expect("the process is intact after every failure");
}

/// Waits until the parasite in `pid`, seeing rcriu gone, cured itself
/// (its control socket closed).
fn wait_self_cure(pid: i32, what: &str) {
    let start = Instant::now();
    while fds(pid).iter().any(|(_, l)| l.starts_with("socket:")) {
        assert!(start.elapsed() < HANG_GUARD, "{what}: no self-cure");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_dumper_killed_mid_dump_leaves_the_target_intact() {
    require_root();
    let _g = trace_lock();
    let t = TempDir::new("cli-killed");
    // In the parasite, in the page dump, and while writing the images
    // (the process still seized, about to be killed). A fresh process
    // each time: a parasite that cured itself leaves its area mapped,
    // which a later dump would refuse as shared memory.
    for point in [2, 3, 5] {
        let w = start("dump_state", &[]);
        let before = seen(w.pid);
        let what = format!("rcriu killed at fault point {point}");
        let dir = t.path().join(format!("images-{point}"));
        let out = run(rcriu()
            .args(["dump", "-t", &w.pid.to_string(), "-D"])
            .arg(&dir)
            .env("RCRIU_FAULT", format!("{point}:kill")));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{what}: {out:?}");
        wait_self_cure(w.pid, &what);
        assert!(matches!(state(w.pid), 'R' | 'S'), "{what}");
        same(&before, &seen(w.pid), &what);
        w.verdict()
            .unwrap_or_else(|e| panic!("{what}: the process is not intact: {e}"));
    }
}

/// The same in a dump whose pages the parasite writes itself, into room
/// reserved on tmpfs before the freeze: the image's descriptor it was
/// given goes with it, whether rcriu fails mid-dump, after the cure, or
/// is killed.
#[test]
fn a_fault_in_a_dump_into_reserved_room_leaves_the_target_intact() {
    require_root();
    let _g = trace_lock();
    let shm = TempDir::in_shm("room");
    for fault in ["3", "4", "3:kill"] {
        let what = format!("RCRIU_FAULT={fault} with 96 MiB on tmpfs");
        let w = start("bigmem", &["96"]);
        let before = seen(w.pid);
        let dir = shm.path().join(fault.replace(':', "-"));
        let out = run(rcriu()
            .args(["dump", "-v4", "-t", &w.pid.to_string(), "-D"])
            .arg(&dir)
            .env("RCRIU_FAULT", fault));
        if fault.ends_with(":kill") {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{what}: {out:?}");
            wait_self_cure(w.pid, &what);
        } else {
            assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("reserved for its pages"),
                "{what}: no room: {err}"
            );
            assert!(images(&dir).is_empty(), "{what}: {:?}", images(&dir));
        }
        assert!(matches!(state(w.pid), 'R' | 'S'), "{what}");
        same(&before, &seen(w.pid), &what);
        w.verdict()
            .unwrap_or_else(|e| panic!("{what}: the process is not intact: {e}"));
    }
}

/// A security module may refuse the process's own writes into the image
/// rcriu opened (simulated: `RCRIU_FAULT=write-pages-denied` makes them
/// fail with EACCES): the pages then go through the page pipe, and the
/// dump is whole.
#[test]
fn a_process_refused_its_own_page_writes_is_dumped_through_the_pipe() {
    require_root();
    let _g = trace_lock();
    rcriu_test_support::become_subreaper();
    let mut w = start("bigmem", &["96"]);
    let shm = TempDir::in_shm("denied");
    let dir = shm.path().join("images");
    let out = run(rcriu()
        .args(["dump", "-v4", "-t", &w.pid.to_string(), "-D"])
        .arg(&dir)
        .env("RCRIU_FAULT", "write-pages-denied"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        err.contains("reserved for its pages") && err.contains("may not write its pages itself"),
        "{err}"
    );
    w.reap();
    let out = run(rcriu().args(["restore", "-d", "-D"]).arg(&dir));
    assert!(out.status.success(), "{out:?}");
    w.verdict().expect("restored whole");
}

#[test]
fn a_signal_to_the_dumper_aborts_cleanly() {
    require_root();
    let _g = trace_lock();
    let w = start("dump_state", &[]);
    // Nothing may be left: the abort cures the parasite as a failure does.
    back_in_wait(w.pid);
    let before = ProcSnapshot::take(w.pid);
    let before_fds = fds(w.pid);
    let t = TempDir::new("cli-signals");
    for (point, sig) in [(1, "int"), (2, "term"), (3, "hup"), (5, "int"), (6, "term")] {
        let what = format!("SIG{} at fault point {point}", sig.to_uppercase());
        let dir = t.path().join(format!("images-{point}"));
        let out = run(rcriu()
            .args(["dump", "-t", &w.pid.to_string(), "-D"])
            .arg(&dir)
            .env("RCRIU_FAULT", format!("{point}:{sig}")));
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("interrupted by a signal"), "{what}: {err}");
        assert!(images(&dir).is_empty(), "{what}: {:?}", images(&dir));
        assert!(matches!(state(w.pid), 'R' | 'S'), "{what}");
        back_in_wait(w.pid);
        let d = before.diff(&ProcSnapshot::take(w.pid));
        assert!(d.is_empty(), "{what}: {}", d.join("\n"));
        assert_eq!(fds(w.pid), before_fds, "{what}");
    }
    w.verdict().expect("the process is intact");
}

#[test]
fn a_failure_after_writing_any_image_kind_leaves_the_target_intact() {
    require_root();
    let _g = trace_lock();
    let w = start("threads", &["3", "calm"]);
    let before = seen(w.pid);
    let t = TempDir::new("cli-image-faults");
    for (i, kind) in [
        "inventory",
        "pstree",
        "core-",
        "ids-",
        "mm-",
        "pagemap-",
        "pages-",
        "fs-",
        "files",
        "fdinfo-",
        "seccomp",
        "timens-",
    ]
    .into_iter()
    .enumerate()
    {
        let leave_running = i % 2 == 0;
        let what = format!("a failure after writing {kind}*, -R {leave_running}");
        let dir = t.path().join(format!("images-{i}"));
        let mut cmd = rcriu();
        cmd.args(["dump", "-t", &w.pid.to_string(), "-D"])
            .arg(&dir)
            .env("RCRIU_FAULT", format!("image:{kind}"));
        if leave_running {
            cmd.arg("-R");
        }
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("fault injected"), "{what}: {err}");
        assert!(images(&dir).is_empty(), "{what}: {:?}", images(&dir));
        assert!(matches!(state(w.pid), 'R' | 'S'), "{what}");
        same(&before, &seen(w.pid), &what);
    }
    w.verdict()
        .expect("the process is intact after every failure");
}

/// A tmpfs of `kib` KiB mounted on a new directory, unmounted on drop.
struct TinyFs(TempDir);

impl TinyFs {
    fn mount(kib: u64) -> TinyFs {
        let t = TempDir::new("cli-tinyfs");
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0700"),
                "tiny",
            ])
            .arg(t.path())
            .status()
            .expect("running mount");
        assert!(st.success(), "mounting a tmpfs");
        TinyFs(t)
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Dumps workload `name args` into a tmpfs of `kib` KiB, with and
/// without -R: each dump fails naming the cause and pages-1.img, leaves
/// no image, and the process runs on intact.
fn full_disk(name: &str, args: &[&str], kib: u64) {
    let w = start(name, args);
    let before = seen(w.pid);
    let fs = TinyFs::mount(kib);
    for leave_running in [true, false] {
        let what = format!("ENOSPC, {name}, -R {leave_running}");
        let dir = fs.0.path().join("images");
        let mut cmd = rcriu();
        cmd.args(["dump", "-t", &w.pid.to_string(), "-D"]).arg(&dir);
        if leave_running {
            cmd.arg("-R");
        }
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("No space left on device") && err.contains("pages-1.img"),
            "{what}: the error names the cause and the image: {err}"
        );
        assert!(images(&dir).is_empty(), "{what}: {:?}", images(&dir));
        let st = state(w.pid);
        assert!(matches!(st, 'R' | 'S'), "{what}: state {st}");
        same(&before, &seen(w.pid), &what);
    }
    drop(fs);
    w.verdict()
        .expect("the process is intact after a full disk");
}

#[test]
fn a_full_disk_fails_the_dump_and_leaves_the_target_intact() {
    require_root();
    let _g = trace_lock();
    // 4 MiB of memory into 256 KiB.
    full_disk("dump_state", &[], 256);
}

/// The same with a stretch of pages long enough for two writers (the
/// parasite's splices and the helper's copies into a mapping of the
/// image): whichever meets the full disk first, the dump fails the same.
#[test]
fn a_full_disk_fails_a_two_writer_page_dump_and_leaves_the_target_intact() {
    require_root();
    let _g = trace_lock();
    // 96 MiB of memory into 48 MiB.
    full_disk("bigmem", &["96"], 48 << 10);
}

#[test]
fn a_target_that_exits_mid_dump_is_a_clear_error() {
    require_root();
    let _g = trace_lock();
    let t = TempDir::new("cli-target-exits");
    // Seized, infected, in the page dump. (Killed while the images are
    // written, it was captured whole already: that dump succeeds.)
    for point in [1, 2, 3] {
        let mut w = start("threads", &["3", "calm"]);
        let what = format!("the target killed at fault point {point}");
        let dir = t.path().join(format!("images-{point}"));
        let out = run(rcriu()
            .args(["dump", "-R", "-t", &w.pid.to_string(), "-D"])
            .arg(&dir)
            .env("RCRIU_FAULT", format!("{point}:target")));
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&w.pid.to_string()),
            "{what}: names the process: {err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(images(&dir).is_empty(), "{what}: {:?}", images(&dir));
        let status = w.reap();
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "{what}: {status:#x}"
        );
    }
}

#[test]
fn a_restorer_failing_at_any_step_leaves_no_process() {
    require_root();
    let _g = trace_lock();
    rcriu_test_support::become_subreaper();
    let mut w = start("threads", &["3", "calm"]);
    let pid = w.pid;
    let t = TempDir::new("cli-restorer-faults");
    let dir = t.path().join("images");
    let out = run(rcriu()
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&dir));
    assert!(out.status.success(), "{out:?}");
    w.reap();
    // Every step the restore of this process goes through, in order (the
    // numbers of rcriu_compel::abi::restorer::Step).
    for step in [
        21, 1, 3, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 24, 18, 28, 29, 30, 31, 17, 32, 33,
        34, 35,
    ] {
        let what = format!("the restorer failing at step {step}");
        let out = run(rcriu()
            .args(["restore", "-d", "-D"])
            .arg(&dir)
            .env("RCRIU_FAULT", format!("restorer:{step}")));
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&pid.to_string()),
            "{what}: names the process: {err}"
        );
        // rcriu killed and reaped what it made before it returned.
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{what}: a process is left: {err}"
        );
    }
    let out = run(rcriu().args(["restore", "-d", "-D"]).arg(&dir));
    assert!(out.status.success(), "{out:?}");
    w.verdict().expect("restored at last, it is intact");
}

/// The restore of a process large enough for the page helper (rcriu's
/// thread filling the back half of its memory while the restorer reads
/// the front), failing before the areas are mapped, as the reads begin,
/// after them, in the helper, or with rcriu killed in the helper: never
/// a process left, never a hang.
#[test]
fn a_failed_restore_with_the_page_helper_leaves_no_process() {
    require_root();
    let _g = trace_lock();
    rcriu_test_support::become_subreaper();
    let mut w = start("bigmem", &["96"]);
    let pid = w.pid;
    let shm = TempDir::in_shm("helper");
    let dir = shm.path().join("images");
    let out = run(rcriu()
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&dir));
    assert!(out.status.success(), "{out:?}");
    w.reap();
    // Map, Read and Madvise (rcriu_compel::abi::restorer::Step).
    for fault in [
        "restorer:8",
        "restorer:9",
        "restorer:10",
        "page-helper",
        "page-helper:kill",
    ] {
        let what = format!("RCRIU_FAULT={fault}");
        let out = run(rcriu()
            .args(["restore", "-v4", "-d", "-D"])
            .arg(&dir)
            .env("RCRIU_FAULT", fault));
        let err = String::from_utf8_lossy(&out.stderr);
        if fault.ends_with(":kill") {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{what}: {out:?}");
            // Killed with rcriu (PTRACE_O_EXITKILL); ours to reap now.
            rcriu_test_support::wait_exit(pid).expect("the half-restored process ends");
        } else {
            assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
            assert!(
                err.contains(&pid.to_string()),
                "{what}: names the process: {err}"
            );
        }
        if fault == "page-helper" {
            assert!(err.contains("read batch"), "{what}: names the batch: {err}");
        } else if fault == "restorer:8" || fault == "restorer:9" {
            assert!(err.contains("page helper: called off"), "{what}: {err}");
        }
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{what}: a process is left: {err}"
        );
    }
    let out = run(rcriu().args(["restore", "-v4", "-d", "-D"]).arg(&dir));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !err.contains("page helper: 0 of"),
        "the helper took a share: {err}"
    );
    w.verdict().expect("restored at last, it is intact");
}

#[test]
fn a_failed_dump_leaves_an_rseq_critical_section_working() {
    require_root();
    let _g = trace_lock();
    let w = start("rseq_cs", &[]);
    let t = TempDir::new("cli-rseq-faults");
    // After the parasite ran in the thread found inside its critical
    // section (which made the kernel drop the section): it must resume at
    // its abort handler, which sets the section again.
    for point in [2, 3, 4] {
        let what = format!("fault point {point}");
        let dir = t.path().join(format!("images-{point}"));
        let out = run(rcriu()
            .args(["dump", "-t", &w.pid.to_string(), "-D"])
            .arg(&dir)
            .env("RCRIU_FAULT", point.to_string()));
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        assert!(images(&dir).is_empty(), "{what}: {:?}", images(&dir));
    }
    w.verdict()
        .expect("every signal still aborts the critical section");
}
