//! rcriu restores what upstream CRIU 4.2 dumped: the `counter` fixture
//! (tests/fixtures/README.md says what a restore must show).

use std::path::Path;
use std::time::{Duration, Instant};

use rcriu_restore::Restore;
use rcriu_test_support::{
    HANG_GUARD, TempDir, become_subreaper, require_root, trace_lock, workspace_root,
};

const PID: i32 = 30000;
const HOME: &str = "/tmp/rcriu-fixtures";

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

fn prepare() -> TempDir {
    let root = workspace_root();
    std::fs::create_dir_all(HOME).unwrap();
    let bin = Path::new(HOME).join("counter");
    std::fs::copy(root.join("tests/fixtures/bin/counter"), &bin).unwrap();
    let _ = std::fs::remove_file(Path::new(HOME).join("counter.out"));
    if Path::new(&format!("/proc/{PID}")).exists() {
        panic!(
            "pid {PID} is taken (by {}): the fixture must get it back",
            std::fs::read_to_string(format!("/proc/{PID}/comm"))
                .unwrap_or_default()
                .trim()
        );
    }
    let images = TempDir::new("fixture-counter");
    for e in std::fs::read_dir(root.join("tests/fixtures/criu-4.2/counter")).unwrap() {
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
    assert_eq!(nums[0], 32, "the counter carries on from 32: {l:?}");
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{l:?}");
}
