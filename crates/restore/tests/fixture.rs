//! rcriu restores what upstream CRIU 4.2 dumped: the `counter`,
//! `threads`, `files` and `tree` fixtures (tests/fixtures/README.md says
//! what a restore must show).

use std::path::Path;
use std::time::{Duration, Instant};

use rcriu_images::{ImageDir, ImageFile};
use rcriu_restore::{Error, Restore};
use rcriu_test_support::{
    HANG_GUARD, TempDir, become_subreaper, require_root, trace_lock, workspace_root,
};

const PID: i32 = 30000;
const HOME: &str = "/tmp/rcriu-fixtures";
/// The fixtures whose registers hold only SSE state: restorable on any
/// x86_64 CPU with xsave (tests/fixtures/README.md).
const PORTABLE: &str = "tests/fixtures/criu-4.2-portable";
/// The same workloads dumped on a CPU with AVX-512 and PKU.
const AVX512: &str = "tests/fixtures/criu-4.2";
/// The first line the portable counter writes once restored.
const PORTABLE_NEXT: u64 = 33;

/// Waits until `pid` is gone (an orphan is reaped by init only now and
/// then).
fn wait_gone(pid: i32) {
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(start.elapsed() < HANG_GUARD, "pid {pid} stays taken");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lines the counter wrote, once there are at least `n`.
fn lines(path: &Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let l: Vec<String> = text.lines().map(String::from).collect();
        if l.len() >= n {
            return l;
        }
        assert!(start.elapsed() < HANG_GUARD, "the counter wrote only {l:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Puts `bytes` at `path` by renaming a new file over it (a running
/// program there keeps its own copy: no ETXTBSY).
fn install(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn prepare() -> TempDir {
    prepare_fixture("counter", &[PID])
}

/// Installs fixture `name`'s binary and a copy of its images; its `ids`
/// must be free.
fn prepare_fixture(name: &str, ids: &[i32]) -> TempDir {
    prepare_from(PORTABLE, name, ids)
}

/// As [`prepare_fixture`], from the fixture set `set`.
fn prepare_from(set: &str, name: &str, ids: &[i32]) -> TempDir {
    let root = workspace_root();
    std::fs::create_dir_all(HOME).unwrap();
    let bin = Path::new(HOME).join(name);
    install(
        &bin,
        &std::fs::read(root.join("tests/fixtures/bin").join(name)).unwrap(),
    );
    let _ = std::fs::remove_file(Path::new(HOME).join("counter.out"));
    let _ = std::fs::remove_file(Path::new(HOME).join("threads.verdict"));
    let _ = std::fs::remove_file(Path::new(HOME).join("files.verdict"));
    let _ = std::fs::remove_file(Path::new(HOME).join("tree.out"));
    let _ = std::fs::remove_file(Path::new(HOME).join("tree.verdict"));
    for id in ids {
        if Path::new(&format!("/proc/{id}")).exists() {
            panic!(
                "pid {id} is taken (by {}): the fixture must get it back",
                std::fs::read_to_string(format!("/proc/{id}/comm"))
                    .unwrap_or_default()
                    .trim()
            );
        }
    }
    let images = TempDir::new(&format!("fixture-{name}"));
    for e in std::fs::read_dir(root.join(set).join(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), images.path().join(e.file_name())).unwrap();
    }
    images
}

#[test]
fn restores_criu_4_2_counter() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let images = prepare();
    let r = Restore::new(images.path())
        .detach(true)
        .run()
        .unwrap_or_else(|e| panic!("restoring the CRIU 4.2 counter dump: {e}"));
    assert_eq!(r.pid, PID);
    let stats: rcriu_images::pb::StatsEntry = fixture_dir(&images)
        .read_one(ImageFile::StatsRestore)
        .expect("stats-restore is written");
    let rs = stats.restore.expect("restore statistics");
    assert_eq!(rs.pages_restored, Some(r.pages_restored));
    assert!(rs.restore_time > 0 && rs.forking_time <= rs.restore_time);
    let cwd = std::fs::read_link(format!("/proc/{PID}/cwd")).unwrap();
    assert_eq!(cwd, Path::new(HOME));
    let own_timens = std::fs::read_link("/proc/self/ns/time").unwrap();
    let its_timens = std::fs::read_link(format!("/proc/{PID}/ns/time")).unwrap();
    assert_ne!(
        own_timens, its_timens,
        "it runs in a time namespace of its own"
    );
    let out = Path::new(HOME).join("counter.out");
    let l = lines(&out, 4);
    rcriu_test_support::signal(PID, libc::SIGKILL);
    rcriu_test_support::wait_exit(PID).unwrap();
    wait_gone(PID);
    assert!(l.iter().all(|x| !x.starts_with("CORRUPT")), "{l:?}");
    let nums: Vec<u64> = l.iter().map(|x| x.parse().unwrap()).collect();
    assert_eq!(nums[0], PORTABLE_NEXT, "the counter carries on: {l:?}");
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{l:?}");
}

#[test]
fn restores_criu_4_2_threads() {
    const LEADER: i32 = 30100;
    const TIDS: [i32; 5] = [30100, 30102, 30103, 30104, 30105];
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let images = prepare_fixture("threads", &TIDS);
    let r = Restore::new(images.path())
        .detach(true)
        .run()
        .unwrap_or_else(|e| panic!("restoring the CRIU 4.2 threads dump: {e}"));
    assert_eq!(r.pid, LEADER);
    let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{LEADER}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    tids.sort();
    assert_eq!(tids, TIDS, "every thread gets its tid back");
    // Each thread checks its TLS counter and its own pending signal, the
    // main thread the process's one.
    rcriu_test_support::signal(LEADER, libc::SIGUSR1);
    let status = rcriu_test_support::wait_exit(LEADER).unwrap();
    wait_gone(LEADER);
    let verdict = std::fs::read_to_string(Path::new(HOME).join("threads.verdict"));
    assert_eq!(
        (status, verdict.as_deref().unwrap_or("none").trim()),
        (0, "PASS")
    );
}

/// A restore of `images` that must fail: returns the error, after checking
/// that no process is left with the fixture's pid.
fn must_fail(images: &TempDir) -> Error {
    let e = Restore::new(images.path())
        .detach(true)
        .run()
        .expect_err("the restore must fail");
    wait_gone(PID);
    e
}

fn fixture_dir(images: &TempDir) -> ImageDir {
    ImageDir::open(images.path()).unwrap()
}

#[test]
fn bad_images_are_refused_and_leave_nothing() {
    require_root();
    let _g = trace_lock();
    become_subreaper();

    // A truncated pages file: named.
    let images = prepare();
    let pages = images.path().join("pages-1.img");
    let len = std::fs::metadata(&pages).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let e = must_fail(&images).to_string();
    assert!(e.contains("pages-1.img"), "{e}");

    // Garbage in the core image: named.
    let images = prepare();
    let core = images.path().join("core-30000.img");
    let mut bytes = std::fs::read(&core).unwrap();
    for b in &mut bytes[12..40] {
        *b = 0xff;
    }
    std::fs::write(&core, &bytes).unwrap();
    let e = must_fail(&images).to_string();
    assert!(e.contains("core-30000.img"), "{e}");

    // The mapped binary changed (same size, another build-id): named.
    let images = prepare();
    let bin = Path::new(HOME).join("counter");
    let mut elf = std::fs::read(&bin).unwrap();
    // The build-id as the dump recorded it, found in the binary.
    let files = fixture_dir(&images).files().unwrap();
    let want: Vec<u8> = files[0]
        .reg
        .as_ref()
        .unwrap()
        .build_id
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let id = elf
        .windows(want.len())
        .position(|w| w == want.as_slice())
        .expect("the counter holds its build-id");
    elf[id] ^= 0xff;
    install(&bin, &elf);
    let e = must_fail(&images).to_string();
    assert!(
        e.contains("/tmp/rcriu-fixtures/counter") && e.contains("build-id"),
        "{e}"
    );

    // The mapped binary is gone: named.
    let images = prepare();
    std::fs::remove_file(&bin).unwrap();
    let e = must_fail(&images).to_string();
    assert!(e.contains("/tmp/rcriu-fixtures/counter"), "{e}");

    // An area the kernel refuses to map (past the top of user space): the
    // restorer fails once the process exists; it is killed and the error
    // names the step and the area.
    let images = prepare();
    let dir = fixture_dir(&images);
    let mut mm = dir.mm(PID as u32).unwrap();
    let mut v = mm.vmas[5];
    v.start = 0x7fff_ffff_e000;
    v.end = 0x8000_0000_2000;
    let at = mm.vmas.len() - 1; // before [vsyscall]
    mm.vmas.insert(at, v);
    dir.write_one(ImageFile::Mm(PID as u64), &mm).unwrap();
    let e = must_fail(&images).to_string();
    assert!(
        e.contains("mapping a memory area") && e.contains("0x7fffffffe000"),
        "{e}"
    );

    // The pid is taken: named, with who has it.
    let images = prepare();
    let first = Restore::new(images.path())
        .detach(true)
        .run()
        .expect("restoring");
    let again = prepare_images_only();
    let e = Restore::new(again.path())
        .detach(true)
        .run()
        .expect_err("pid taken");
    assert!(matches!(e, Error::PidTaken { pid: PID, .. }), "{e}");
    assert!(e.to_string().contains("counter"), "{e}");
    rcriu_test_support::signal(first.pid, libc::SIGKILL);
    rcriu_test_support::wait_exit(first.pid).unwrap();
    wait_gone(PID);
}

/// A copy of the fixture's images, without touching the binary or the pid.
fn prepare_images_only() -> TempDir {
    let images = TempDir::new("fixture-counter-again");
    for e in std::fs::read_dir(workspace_root().join(PORTABLE).join("counter")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), images.path().join(e.file_name())).unwrap();
    }
    images
}

#[test]
fn restores_criu_4_2_counter_through_a_vdso_proxy() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let images = prepare();
    let r = Restore::new(images.path())
        .detach(true)
        .force_vdso_proxy(true)
        .run()
        .unwrap_or_else(|e| panic!("restoring the CRIU 4.2 counter dump: {e}"));
    let maps = std::fs::read_to_string(format!("/proc/{PID}/maps")).unwrap();
    // The old vDSO's place holds its proxy (plain memory), the running
    // vDSO lives elsewhere.
    let dir = ImageDir::open(images.path()).unwrap();
    let mm = dir.mm(PID as u32).unwrap();
    let old = mm
        .vmas
        .iter()
        .find(|v| v.status & rcriu_images::vma::VMA_AREA_VDSO != 0)
        .unwrap();
    let line = maps
        .lines()
        .find(|l| l.starts_with(&format!("{:x}-", old.start)))
        .unwrap_or_else(|| panic!("nothing at the old vDSO's place: {maps}"));
    assert!(!line.contains("[vdso]") && line.contains("r-xp"), "{line}");
    assert!(maps.contains("[vdso]"), "{maps}");
    let l = lines(&Path::new(HOME).join("counter.out"), 3);
    rcriu_test_support::signal(r.pid, libc::SIGKILL);
    rcriu_test_support::wait_exit(r.pid).unwrap();
    wait_gone(PID);
    assert_eq!(l[0], PORTABLE_NEXT.to_string(), "{l:?}");
}

#[test]
fn restores_criu_4_2_files() {
    const PID: i32 = 30200;
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let images = prepare_fixture("files", &[PID]);
    // The file it held open, as it was (size checked on restore).
    let data: Vec<u8> = (0..4096u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(Path::new(HOME).join("data.txt"), &data).unwrap();
    let r = Restore::new(images.path())
        .detach(true)
        .run()
        .unwrap_or_else(|e| panic!("restoring the CRIU 4.2 files dump: {e}"));
    assert_eq!(r.pid, PID);
    let gone = std::fs::read_link(format!("/proc/{PID}/fd/13")).unwrap();
    assert_eq!(gone, Path::new("/tmp/rcriu-fixtures/gone.txt (deleted)"));
    assert!(!Path::new(HOME).join("gone.txt").exists());
    // It checks the pipe's size and bytes, the file's position and the
    // deleted file's bytes.
    rcriu_test_support::signal(PID, libc::SIGUSR1);
    let status = rcriu_test_support::wait_exit(PID).unwrap();
    wait_gone(PID);
    let verdict = std::fs::read_to_string(Path::new(HOME).join("files.verdict"));
    assert_eq!(
        (status, verdict.as_deref().unwrap_or("none").trim()),
        (0, "PASS")
    );
}

#[test]
fn a_changed_file_of_the_criu_4_2_files_dump_is_refused() {
    require_root();
    let _g = trace_lock();
    let images = prepare_fixture("files", &[30200]);
    std::fs::write(Path::new(HOME).join("data.txt"), b"shorter").unwrap();
    let e = Restore::new(images.path())
        .detach(true)
        .run()
        .expect_err("data.txt changed size");
    assert!(
        matches!(&e, Error::Validation { path, .. } if path.ends_with("data.txt")),
        "{e}"
    );
    assert!(!Path::new("/proc/30200").exists(), "nothing is left behind");
}

/// Whether this CPU has AVX-512 (the foundation, avx512f).
fn cpu_has_avx512() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "avx512f"))
}

/// The counter dumped on an AVX-512 CPU carries opmask and ZMM state: it
/// restores where the CPU has them, and is refused by name, before any
/// process exists, where it does not (its code chose AVX-512 routines).
#[test]
fn the_avx512_counter_restores_only_on_a_cpu_with_avx512() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let images = prepare_from(AVX512, "counter", &[PID]);
    let r = Restore::new(images.path()).detach(true).run();
    if cpu_has_avx512() {
        let r = r.unwrap_or_else(|e| panic!("restoring the AVX-512 counter: {e}"));
        let l = lines(&Path::new(HOME).join("counter.out"), 3);
        rcriu_test_support::signal(r.pid, libc::SIGKILL);
        rcriu_test_support::wait_exit(r.pid).unwrap();
        wait_gone(PID);
        assert_eq!(l[0], "32", "{l:?}");
    } else {
        let e = r.expect_err("no AVX-512 here").to_string();
        assert!(
            e.contains("core-30000.img") && e.contains("xsave component"),
            "{e}"
        );
        assert!(!Path::new("/proc/30000").exists(), "nothing is left behind");
    }
}

/// The tree fixture's parent, its counting child and its zombie.
const TREE: [i32; 3] = [30300, 30301, 30302];
/// The first count the tree fixture's parent writes once restored.
const TREE_NEXT: u64 = 62;

/// Restores the tree fixture (after `tweak` of its images), checks that
/// its three processes are back where they were and the counter carries
/// on, then returns the parent's verdict (`Err` with its text unless
/// PASS).
fn restore_tree(tweak: impl FnOnce(&ImageDir)) -> Result<(), String> {
    let images = prepare_fixture("tree", &TREE);
    tweak(&fixture_dir(&images));
    let r = Restore::new(images.path())
        .detach(true)
        .run()
        .unwrap_or_else(|e| panic!("restoring the CRIU 4.2 tree dump: {e}"));
    assert_eq!(r.pid, TREE[0]);
    let kids =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", TREE[0], TREE[0])).unwrap();
    let mut kids: Vec<i32> = kids
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    kids.sort_unstable();
    assert_eq!(kids, TREE[1..], "the parent has its two children");
    let zombie = std::fs::read_to_string(format!("/proc/{}/stat", TREE[2])).unwrap();
    assert!(zombie.contains(") Z "), "{zombie}");
    // The counter's counts come through the pipe and the parent writes
    // them: the tree runs again.
    let out = Path::new(HOME).join("tree.out");
    let l = lines(&out, 5);
    // The parent checks the stash pipe, its children (the zombie's
    // status, the counter's group and session) and its memory, then ends
    // the counter and reaps both.
    rcriu_test_support::signal(TREE[0], libc::SIGUSR1);
    let status = rcriu_test_support::wait_exit(TREE[0]).unwrap();
    // A parent that failed its check may leave its children to us (the
    // subreaper): reaped here (one it reaped is not ours: ECHILD).
    for p in &TREE[1..] {
        let _ = rcriu_test_support::wait_exit(*p);
    }
    for p in TREE {
        wait_gone(p);
    }
    assert!(l.iter().all(|x| !x.starts_with("CORRUPT")), "{l:?}");
    let nums: Vec<u64> = l.iter().map(|x| x.parse().unwrap()).collect();
    assert_eq!(
        nums,
        (TREE_NEXT..TREE_NEXT + nums.len() as u64).collect::<Vec<_>>(),
        "the counts carry on from {TREE_NEXT}, with no gap nor repeat"
    );
    let verdict = std::fs::read_to_string(Path::new(HOME).join("tree.verdict")).unwrap_or_default();
    match (status, verdict.trim()) {
        (0, "PASS") => Ok(()),
        (s, v) => Err(format!("exit status {s:#x}: {v}")),
    }
}

/// A parent, a child counting into a pipe the parent reads, a pipe with
/// 3000 bytes nobody read, and a zombie, dumped by CRIU 4.2.
#[test]
fn restores_criu_4_2_tree() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    restore_tree(|_| {}).unwrap();
}

/// The negative control: images that put the counting child in its
/// parent's process group restore as they say, and the parent's check
/// sees it.
#[test]
fn a_tree_child_restored_in_another_group_is_seen() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let e = restore_tree(|dir| {
        let mut tree = dir.pstree().unwrap();
        assert_eq!(tree[1].pid, TREE[1] as u32);
        tree[1].pgid = TREE[0] as u32;
        dir.write_all(ImageFile::Pstree, &tree).unwrap();
    })
    .expect_err("the counter is in its parent's group");
    assert!(e.contains("the counter's group"), "{e}");
}
