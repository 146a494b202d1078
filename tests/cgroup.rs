//! `--freeze-cgroup` and `cgroup.img`: a process in cgroups of its own
//! (a fresh cgroup v1 freezer cgroup, or a fresh cgroup v2 one) is dumped
//! with its cgroup frozen while it is seized (the tests look at the
//! freezer from a fault-point hook), then restored back into the same
//! cgroups, made anew when they were removed. Negative controls: a core
//! naming a set cgroup.img lacks, a set whose path leaves the hierarchy,
//! a freezer holding another process, a dump failing while frozen.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use rcriu::images::{ImageDir, ImageFile, pb};
use rcriu::{Dump, Restore};
use rcriu_compel::fault::{self, FaultPoint};
use rcriu_test_support::{
    ProcSnapshot, TempDir, Workload, become_subreaper, require_root, signal, trace_lock, wait_exit,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    V1,
    V2,
}

/// A cgroup made for a test: thawed and removed on drop, whatever
/// happened (the processes in it are gone by then: declare it before
/// them).
struct CgDir {
    path: PathBuf,
    kind: Kind,
}

impl CgDir {
    fn new(kind: Kind, tag: &str) -> CgDir {
        let root = match kind {
            Kind::V1 => "/sys/fs/cgroup/freezer",
            Kind::V2 => "/sys/fs/cgroup/unified",
        };
        let path = Path::new(root).join(format!("rcriu-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("making cgroup {}: {e}", path.display()));
        CgDir { path, kind }
    }

    fn add(&self, pid: i32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", self.path.display()));
    }

    /// What the freezer says: "FROZEN"/"THAWED" (v1), "frozen 1"/"frozen
    /// 0" (v2).
    fn state(&self) -> String {
        freezer_state(&self.path)
    }

    fn thawed(&self) -> &'static str {
        match self.kind {
            Kind::V1 => "THAWED",
            Kind::V2 => "frozen 0",
        }
    }

    fn frozen(&self) -> &'static str {
        match self.kind {
            Kind::V1 => "FROZEN",
            Kind::V2 => "frozen 1",
        }
    }

    /// The cgroup path as /proc/PID/cgroup shows it.
    fn rel(&self) -> String {
        format!("/{}", self.path.file_name().unwrap().to_string_lossy())
    }
}

impl Drop for CgDir {
    fn drop(&mut self) {
        let _ = match self.kind {
            Kind::V1 => std::fs::write(self.path.join("freezer.state"), "THAWED"),
            Kind::V2 => std::fs::write(self.path.join("cgroup.freeze"), "0"),
        };
        // A killed process leaves its cgroup a moment later.
        for _ in 0..2000 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        eprintln!("cannot remove cgroup {}", self.path.display());
    }
}

fn freezer_state(path: &Path) -> String {
    if path.join("freezer.state").exists() {
        std::fs::read_to_string(path.join("freezer.state"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    } else {
        std::fs::read_to_string(path.join("cgroup.events"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("frozen "))
            .unwrap_or("")
            .to_owned()
    }
}

/// The freezer the hook looks at, and what it saw at each point.
static WATCH: Mutex<Option<PathBuf>> = Mutex::new(None);
static SEEN: Mutex<Vec<(FaultPoint, String)>> = Mutex::new(Vec::new());
/// The processes whose tracers the hook reads while the cgroup is frozen,
/// and what it read.
static TRACED: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static TRACERS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn hook(p: FaultPoint) {
    if !matches!(p, FaultPoint::Frozen | FaultPoint::AfterSeize) {
        return;
    }
    let watch = WATCH.lock().unwrap().clone();
    if let Some(w) = watch {
        SEEN.lock().unwrap().push((p, freezer_state(&w)));
    }
    if p == FaultPoint::Frozen {
        let pids = TRACED.lock().unwrap().clone();
        *TRACERS.lock().unwrap() = pids.iter().map(|&pid| tracer_of(pid)).collect();
    }
}

/// Dumps with `--freeze-cgroup`, recording the freezer's state while the
/// tasks are seized (cgroup still frozen) and just after (thawed).
fn dump_watched(
    cg: &CgDir,
    pid: i32,
    images: &Path,
    leave_running: bool,
) -> Vec<(FaultPoint, String)> {
    *WATCH.lock().unwrap() = Some(cg.path.clone());
    SEEN.lock().unwrap().clear();
    fault::set_hook(Some(hook));
    let r = Dump::new(pid)
        .images_dir(images)
        .leave_running(leave_running)
        .freeze_cgroup(&cg.path)
        .run();
    fault::set_hook(None);
    *WATCH.lock().unwrap() = None;
    r.unwrap_or_else(|e| panic!("dumping {pid} with --freeze-cgroup: {e:?}"));
    std::mem::take(&mut *SEEN.lock().unwrap())
}

fn check_seen(cg: &CgDir, seen: &[(FaultPoint, String)]) {
    assert_eq!(
        seen,
        [
            (FaultPoint::Frozen, cg.frozen().to_owned()),
            (FaultPoint::AfterSeize, cg.thawed().to_owned()),
        ],
        "the freezer while seizing, then after"
    );
    assert_eq!(cg.state(), cg.thawed(), "thawed after the dump");
}

fn cgroups_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("reading /proc/PID/cgroup")
}

fn tracer_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Debian's crit (CRIU 3.17) decodes cgroup.img.
fn crit_decodes(images: &Path) -> String {
    let out = Command::new("crit")
        .args(["decode", "-i"])
        .arg(images.join("cgroup.img"))
        .output()
        .expect("running crit (Debian package criu)");
    assert!(
        out.status.success(),
        "crit decode cgroup.img: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn setup() -> std::sync::MutexGuard<'static, ()> {
    require_root();
    let g = trace_lock();
    become_subreaper();
    g
}

fn kill_restored(pid: i32) {
    signal(pid, libc::SIGKILL);
    wait_exit(pid).expect("the restored process ends");
}

/// start in a fresh cgroup → dump --freeze-cgroup (frozen while seized,
/// thawed after) → kill → restore: same cgroups, same /proc; kill, remove
/// the cgroup, restore again: made anew → verdict.
fn cycle(kind: Kind) {
    let _g = setup();
    let cg = CgDir::new(kind, &format!("{kind:?}"));
    let mut w = Workload::start("threads", &["3", "calm"]);
    w.wait_in("sigsuspend");
    cg.add(w.pid);
    let cgroups = cgroups_of(w.pid);
    assert!(cgroups.contains(&cg.rel()), "{cgroups}");
    let before = ProcSnapshot::take(w.pid);
    let images = TempDir::new(&format!("cgroup-{kind:?}"));
    let seen = dump_watched(&cg, w.pid, images.path(), false);
    check_seen(&cg, &seen);
    w.reap();
    let json = crit_decodes(images.path());
    assert!(
        json.contains(&cg.rel()),
        "cgroup.img names the cgroup: {json}"
    );

    let r = Restore::new(images.path())
        .detach(true)
        .run()
        .expect("restoring");
    assert_eq!(r.pid, w.pid);
    assert_eq!(cgroups_of(w.pid), cgroups, "back in the same cgroups");
    let diff = before.diff(&ProcSnapshot::settled(w.pid, &before));
    assert!(diff.is_empty(), "/proc differs:\n{}", diff.join("\n"));

    kill_restored(w.pid);
    std::fs::remove_dir(&cg.path).expect("removing the emptied cgroup");
    Restore::new(images.path())
        .detach(true)
        .run()
        .expect("restoring once the cgroup is gone");
    assert!(cg.path.is_dir(), "the cgroup is made anew");
    assert_eq!(cgroups_of(w.pid), cgroups, "back in the same cgroups");
    w.verdict().expect("the restored process passes");
}

#[test]
fn freezer_v1_dump_and_restore() {
    cycle(Kind::V1);
}

#[test]
fn freezer_v2_dump_and_restore() {
    cycle(Kind::V2);
}

#[test]
fn leave_running_stays_in_its_cgroup_thawed() {
    let _g = setup();
    for kind in [Kind::V1, Kind::V2] {
        let cg = CgDir::new(kind, &format!("lr-{kind:?}"));
        let w = Workload::start("threads", &["3", "calm"]);
        w.wait_in("sigsuspend");
        cg.add(w.pid);
        let cgroups = cgroups_of(w.pid);
        let before = ProcSnapshot::take(w.pid);
        let images = TempDir::new("cgroup-lr");
        let seen = dump_watched(&cg, w.pid, images.path(), true);
        check_seen(&cg, &seen);
        assert_eq!(cgroups_of(w.pid), cgroups);
        assert_eq!(tracer_of(w.pid), "0", "untraced");
        let diff = before.diff(&ProcSnapshot::settled(w.pid, &before));
        assert!(diff.is_empty(), "/proc differs:\n{}", diff.join("\n"));
        assert!(images.path().join("cgroup.img").exists());
        w.verdict().expect("running on after the dump");
    }
}

/// A dump failing while the cgroup is frozen (fault point 7) or just
/// after the thaw (1) leaves it thawed, the process untraced and intact,
/// and no image.
#[test]
fn a_failed_dump_leaves_the_cgroup_thawed() {
    let _g = setup();
    for (kind, point) in [(Kind::V1, "7"), (Kind::V1, "1"), (Kind::V2, "7")] {
        let cg = CgDir::new(kind, &format!("fault-{kind:?}-{point}"));
        let w = Workload::start("dump_scope", &["none"]);
        cg.add(w.pid);
        let before = ProcSnapshot::take(w.pid);
        let images = TempDir::new("cgroup-fault");
        let out = Command::new(env!("CARGO_BIN_EXE_rcriu"))
            .args(["dump", "-t", &w.pid.to_string(), "-D"])
            .arg(images.path())
            .arg("--freeze-cgroup")
            .arg(&cg.path)
            .env("RCRIU_FAULT", point)
            .output()
            .expect("running rcriu");
        assert!(!out.status.success(), "fault point {point} fails the dump");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("fault injected"), "{err}");
        assert_eq!(cg.state(), cg.thawed(), "{kind:?} point {point}: thawed");
        assert_eq!(tracer_of(w.pid), "0", "untraced");
        let left: Vec<_> = std::fs::read_dir(images.path()).unwrap().collect();
        assert!(left.is_empty(), "no image left: {left:?}");
        let diff = before.diff(&ProcSnapshot::settled(w.pid, &before));
        assert!(diff.is_empty(), "/proc differs:\n{}", diff.join("\n"));
        w.verdict().expect("intact after the failed dump");
    }
}

/// A tree in a freezer cgroup: every process of it is attached while the
/// cgroup is frozen (the hook reads each one's tracer then), the dump
/// goes through and the tree comes back whole, each process in the
/// cgroup; the cgroup is thawed after.
#[test]
fn a_tree_in_a_freezer_is_seized_frozen() {
    let _g = setup();
    for kind in [Kind::V1, Kind::V2] {
        let cg = CgDir::new(kind, &format!("tree-{kind:?}"));
        let mut w = Workload::start("tree", &["deep"]);
        let pids = rcriu_test_support::tree_pids(w.pid);
        assert!(pids.len() >= 4, "{pids:?}");
        for &p in &pids {
            cg.add(p);
        }
        *TRACED.lock().unwrap() = pids.clone();
        let images = TempDir::new("cgroup-tree");
        let seen = dump_watched(&cg, w.pid, images.path(), false);
        let tracers = std::mem::take(&mut *TRACERS.lock().unwrap());
        TRACED.lock().unwrap().clear();
        assert_eq!(seen[0], (FaultPoint::Frozen, cg.frozen().to_owned()));
        assert!(
            seen[1..]
                .iter()
                .all(|s| *s == (FaultPoint::AfterSeize, cg.thawed().to_owned())),
            "{seen:?}"
        );
        // The tracer is the dumping thread: this one.
        let me = std::fs::read_link("/proc/thread-self").unwrap();
        let me = me.file_name().unwrap().to_string_lossy().into_owned();
        assert!(tracers.iter().all(|t| *t == me), "{pids:?}: {tracers:?}");
        assert_eq!(cg.state(), cg.thawed(), "thawed after the dump");
        w.reap();
        for &p in &pids[1..] {
            wait_exit(p).ok();
        }
        Restore::new(images.path())
            .detach(true)
            .run()
            .expect("restoring the tree");
        for &p in &pids {
            assert!(
                cgroups_of(p).contains(&cg.rel()),
                "process {p} is back in the cgroup"
            );
        }
        w.verdict().expect("the tree passes");
    }
}

/// The cgroups of the threads of `pid` other than the leader, by tid.
fn thread_cgroups(pid: i32) -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .filter(|&t| t != pid)
        .map(|t| {
            let cg = std::fs::read_to_string(format!("/proc/{pid}/task/{t}/cgroup")).unwrap();
            (t, cg)
        })
        .collect();
    out.sort();
    out
}

/// A thread in other cgroups than its leader's (v1 lets a thread move
/// alone) is dumped with its own set (`thread_core.cg_set`, as CRIU) and
/// moved back into its cgroups once it exists. Control: restored with
/// `--manage-cgroups=ignore`, every thread stays in rcriu's cgroups,
/// which the same check sees.
#[test]
fn a_thread_in_another_cgroup_carries_on() {
    let _g = setup();
    let a = CgDir::new(Kind::V1, "thread-a");
    let b = CgDir::new(Kind::V1, "thread-b");
    let mut w = Workload::start("threads", &["3", "calm"]);
    w.wait_in("sigsuspend");
    a.add(w.pid);
    let tids: Vec<i32> = thread_cgroups(w.pid).into_iter().map(|(t, _)| t).collect();
    std::fs::write(b.path.join("tasks"), tids[0].to_string()).unwrap();
    let leader = cgroups_of(w.pid);
    let threads = thread_cgroups(w.pid);
    assert!(threads[0].1.contains(&b.rel()) && threads[1].1.contains(&a.rel()));
    let images = TempDir::new("cgroup-thread");
    Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect("dumping a thread in another cgroup");
    w.reap();
    Restore::new(images.path())
        .detach(true)
        .run()
        .expect("restoring");
    assert_eq!(cgroups_of(w.pid), leader, "the leader in its cgroups");
    assert_eq!(thread_cgroups(w.pid), threads, "each thread in its own");
    kill_restored(w.pid);
    Restore::new(images.path())
        .detach(true)
        .manage_cgroups(rcriu::restore::CgroupMode::Ignore)
        .run()
        .expect("restoring, cgroups ignored");
    assert_ne!(thread_cgroups(w.pid), threads, "control: rcriu's cgroups");
    assert!(
        !cgroups_of(w.pid).contains(&a.rel()),
        "control: rcriu's cgroups"
    );
    w.verdict().expect("the restored process passes");
}

/// criu's `--manage-cgroups` modes at restore, on a v1 cgroup whose
/// `notify_on_release` was 1 at the dump and is 0 since: soft leaves an
/// existing cgroup's properties, full and props set them, strict refuses
/// an existing cgroup, none and props refuse a missing one (made by
/// neither), full makes it with its properties, ignore leaves the
/// process in rcriu's cgroups. Each
/// refusal names the cgroup and leaves nothing running.
#[test]
fn cgroup_modes_as_criu() {
    use rcriu::restore::CgroupMode as M;
    let _g = setup();
    let cg = CgDir::new(Kind::V1, "modes");
    let notify = cg.path.join("notify_on_release");
    std::fs::write(&notify, "1").unwrap();
    let mut w = Workload::start("threads", &["3", "calm"]);
    w.wait_in("sigsuspend");
    cg.add(w.pid);
    let images = TempDir::new("cgroup-modes");
    Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect("dumping");
    w.reap();
    let restore = |mode: M| {
        Restore::new(images.path())
            .detach(true)
            .manage_cgroups(mode)
            .run()
    };
    let notify_now = || std::fs::read_to_string(&notify).unwrap().trim().to_owned();
    for (mode, want) in [(M::Soft, "0"), (M::Full, "1"), (M::Props, "1")] {
        std::fs::write(&notify, "0").unwrap();
        restore(mode).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert!(cgroups_of(w.pid).contains(&cg.rel()), "{mode:?}");
        assert_eq!(notify_now(), want, "{mode:?}: notify_on_release");
        kill_restored(w.pid);
    }
    // Strict: the cgroups of every hierarchy of the process exist here
    // (the test's and the host's, whose roots it is in).
    let e = restore(M::Strict)
        .expect_err("strict, the cgroups exist")
        .to_string();
    assert!(
        e.contains("restoring cgroup /sys/fs/cgroup/")
            && e.contains("which exists (--manage-cgroups=strict)"),
        "{e}"
    );
    assert!(
        !Path::new(&format!("/proc/{}", w.pid)).exists(),
        "nothing left"
    );
    restore(M::Ignore).expect("ignore");
    assert!(
        !cgroups_of(w.pid).contains(&cg.rel()),
        "ignore: rcriu's cgroups"
    );
    kill_restored(w.pid);
    std::fs::remove_dir(&cg.path).expect("removing the emptied cgroup");
    for mode in [M::None, M::Props] {
        let e = restore(mode)
            .expect_err("the cgroup is missing")
            .to_string();
        assert!(
            e.contains("which does not exist (--manage-cgroups="),
            "{mode:?}: {e}"
        );
        assert!(!cg.path.exists(), "{mode:?} makes no cgroup");
    }
    restore(M::Full).expect("full, the cgroup made anew");
    assert!(cgroups_of(w.pid).contains(&cg.rel()));
    assert_eq!(notify_now(), "1", "made with its properties");
    w.verdict().expect("the restored process passes");
}

/// A freezer cgroup holding another process is refused, naming it, and
/// left thawed with both processes untouched.
#[test]
fn a_freezer_with_another_process_is_refused() {
    let _g = setup();
    let cg = CgDir::new(Kind::V1, "others");
    let w = Workload::start("dump_scope", &["none"]);
    let other = Workload::start("dump_scope", &["none"]);
    cg.add(w.pid);
    cg.add(other.pid);
    let images = TempDir::new("cgroup-others");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .freeze_cgroup(&cg.path)
        .run()
        .expect_err("refused");
    let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(msg.contains(&format!("process {}", other.pid)), "{msg}");
    assert_eq!(cg.state(), "THAWED");
    assert_eq!(tracer_of(w.pid), "0");
    assert_eq!(tracer_of(other.pid), "0");
    w.verdict().expect("intact");
    other.verdict().expect("intact");
}

/// Negative controls: a core naming a set cgroup.img does not have, and a
/// set whose path leaves its hierarchy, are refused naming the image, with
/// no process left; the untouched images restore.
#[test]
fn a_corrupted_cgroup_set_is_refused() {
    let _g = setup();
    let cg = CgDir::new(Kind::V1, "corrupt");
    let mut w = Workload::start("dump_state", &[]);
    w.wait_in("sigsuspend");
    cg.add(w.pid);
    let images = TempDir::new("cgroup-corrupt");
    dump_watched(&cg, w.pid, images.path(), false);
    w.reap();
    // Without the manifest, which would refuse any change at once.
    std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST)).unwrap();
    let dir = ImageDir::open(images.path()).unwrap();
    let core0 = dir.core(w.pid as u32).unwrap();
    let cg0: pb::CgroupEntry = dir.read_one(ImageFile::Cgroup).unwrap();

    let mut core = core0.clone();
    core.thread_core.as_mut().unwrap().cg_set = Some(77);
    dir.write_one(ImageFile::Core(w.pid as u64), &core).unwrap();
    let e = Restore::new(images.path())
        .detach(true)
        .run()
        .expect_err("refused");
    assert!(e.to_string().contains("cgroup.img"), "{e}");
    assert!(
        !Path::new(&format!("/proc/{}", w.pid)).exists(),
        "no process left"
    );
    dir.write_one(ImageFile::Core(w.pid as u64), &core0)
        .unwrap();

    let mut bad = cg0.clone();
    for m in &mut bad.sets[0].ctls {
        if m.name == b"freezer" {
            m.path = b"/../../../tmp/rcriu-cgroup-escape".to_vec();
        }
    }
    dir.write_one(ImageFile::Cgroup, &bad).unwrap();
    let e = Restore::new(images.path())
        .detach(true)
        .run()
        .expect_err("refused");
    assert!(e.to_string().contains("cgroup.img"), "{e}");
    assert!(
        !Path::new(&format!("/proc/{}", w.pid)).exists(),
        "no process left"
    );
    assert!(!Path::new("/tmp/rcriu-cgroup-escape").exists());
    dir.write_one(ImageFile::Cgroup, &cg0).unwrap();

    // The control: the same images, untouched, restore.
    Restore::new(images.path())
        .detach(true)
        .run()
        .expect("restoring");
    assert!(cgroups_of(w.pid).contains(&cg.rel()));
    w.verdict().expect("the restored process passes");
}

/// criu's `--cgroup-root CONTROLLER:PATH` at restore: the process's
/// cgroup of that hierarchy is renamed PATH (made there, with what was
/// below it), as CRIU 4.2 rewrites the image. Control: without it the
/// process goes back where it was.
#[test]
fn a_cgroup_root_moves_the_process() {
    let _g = setup();
    let old = CgDir::new(Kind::V1, "root-old");
    let new_rel = format!("/rcriu-test-root-new-{}", std::process::id());
    let new_path = Path::new("/sys/fs/cgroup/freezer").join(new_rel.trim_start_matches('/'));
    let _ = std::fs::remove_dir(&new_path);
    let mut w = Workload::start("threads", &["3", "calm"]);
    w.wait_in("sigsuspend");
    old.add(w.pid);
    let images = TempDir::new("cgroup-root");
    Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect("dumping");
    w.reap();
    Restore::new(images.path())
        .detach(true)
        .run()
        .expect("restoring as it was");
    assert!(
        cgroups_of(w.pid).contains(&old.rel()),
        "control: back in the old cgroup"
    );
    kill_restored(w.pid);
    let r = Restore::new(images.path())
        .detach(true)
        .cgroup_root(Some("freezer".into()), &new_rel)
        .run();
    // Removed whatever happened (the process is gone by then).
    let cleanup = |pid: i32| {
        kill_restored(pid);
        let _ = std::fs::remove_dir(&new_path);
    };
    r.expect("restoring under another root");
    let cg = cgroups_of(w.pid);
    let moved = cg.contains(&format!("freezer:{new_rel}\n"));
    cleanup(w.pid);
    assert!(moved, "{cg}");
    assert!(!new_path.exists(), "the new cgroup removed by the test");
}
