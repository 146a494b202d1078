//! Failures at every fault point, signals to the dumper, and the dumper
//! killed at any of its actions on the target, leave the target running,
//! untraced and intact: the same maps, signal state and fds.
//!
//! The dumper is this test binary run again as a child process (the
//! `dumper` test, which does nothing unless `RCRIU_TEST_DUMPER_PID` is
//! set), so that it can fail, be signalled or die at a fault point while
//! the test watches the target.

use std::os::fd::AsFd;
use std::process::Command;

use rcriu_compel::abi::IoVec;
use rcriu_compel::{Parasite, Seized, fault};
use rcriu_test_support::{
    Workload, no_inherited_fds, require_root, status_lines, trace_lock, wait_child,
};

const DUMPER_ENV: &str = "RCRIU_TEST_DUMPER_PID";

extern "C" fn on_signal(_: libc::c_int) {
    fault::request_abort();
}

/// The dumper's body: seize, infect, read, dump the writable private
/// memory, cure, release.
fn run_dumper(pid: i32) -> rcriu_compel::Result<()> {
    let seized = Seized::seize(pid)?;
    let mut p = Parasite::infect(&seized)?;
    p.sigactions()?;
    p.itimers()?;
    // One-shot commands on the other threads.
    for t in seized.threads().iter().filter(|t| t.tid != pid) {
        p.thread_info(t)?;
    }
    let area = p.area();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut ranges = Vec::new();
    for l in maps.lines() {
        let mut it = l.split_whitespace();
        let (Some(r), Some(perm)) = (it.next(), it.next()) else {
            continue;
        };
        let Some((a, b)) = r.split_once('-') else {
            continue;
        };
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap_or(0),
            u64::from_str_radix(b, 16).unwrap_or(0),
        );
        if perm.starts_with("rw") && perm.ends_with('p') && !area.contains(&a) {
            ranges.push(IoVec {
                base: a,
                len: b - a,
            });
        }
    }
    let out = tempfile::tempfile().map_err(|_| rcriu_compel::Error::Interrupted)?;
    p.dump_pages(&ranges, out.as_fd())?;
    p.cure()?;
    seized.release()
}

#[test]
fn dumper() {
    let Ok(pid) = std::env::var(DUMPER_ENV) else {
        return;
    };
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores an atomic flag.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let code = match run_dumper(pid.parse().expect("a pid")) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dumper: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// What a dump must leave as it found: maps, the signal lines of status,
/// the tracer, and the fds.
fn looks(pid: i32) -> (String, Vec<String>, Vec<(String, String)>) {
    (
        std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("reading maps"),
        status_lines(
            pid,
            &[
                "SigPnd",
                "ShdPnd",
                "SigBlk",
                "SigIgn",
                "SigCgt",
                "TracerPid",
            ],
        ),
        fd_links(pid),
    )
}

/// Waits until the target looks as `before` (a parasite whose rcriu died
/// leaves by itself, a moment later), or fails saying how it differs.
fn settles_as(pid: i32, before: &(String, Vec<String>, Vec<(String, String)>), what: &str) {
    let start = std::time::Instant::now();
    loop {
        let now = looks(pid);
        if &now == before {
            return;
        }
        if start.elapsed() > rcriu_test_support::SETTLE {
            assert_eq!(before.0, now.0, "{what}: maps");
            assert_eq!(before.1, now.1, "{what}: status");
            assert_eq!(before.2, now.2, "{what}: fds");
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn running(pid: i32, what: &str) {
    let st = status_lines(pid, &["State"]);
    assert!(
        st[0].contains("R (running)") || st[0].contains("S (sleeping)"),
        "{what}: {st:?}"
    );
}

fn run_at(point: u32, action: &str, mode: &str) {
    let w = Workload::start("compute", &[mode]);
    let before = looks(w.pid);
    let child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", "dumper", "--nocapture", "--test-threads=1"])
        .env(DUMPER_ENV, w.pid.to_string())
        .env("RCRIU_FAULT", format!("{point}:{action}"))
        .spawn()
        .expect("starting the dumper");
    let status = wait_child(child).expect("the dumper ends");
    let what = format!("fault point {point}, action {action}, mode {mode}");
    match action {
        "kill" => assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "{what}: dumper status {status:#x}"
        ),
        _ => assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1,
            "{what}: the dumper must fail, status {status:#x}"
        ),
    }
    running(w.pid, &what);
    // Killed, the parasite leaves by itself: nothing of it stays.
    settles_as(w.pid, &before, &what);
    // The verdict needs SIGUSR1 to get through: the signal mask is back.
    w.verdict()
        .unwrap_or_else(|e| panic!("{what}: the target is not intact: {e}"));
}

/// Kills the dumper just before its 1st, 2nd, ... action on the target
/// (`RCRIU_FAULT=step:N`) until it gets through: after each kill the
/// target must settle as it was, and in the end compute right. Returns
/// how many instants were tried.
fn kill_at_every_step(w: Workload, tag: &str) -> u64 {
    let before = looks(w.pid);
    let mut n = 1;
    loop {
        let what = format!("{tag}: killed at step {n}");
        let child = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", "dumper", "--nocapture", "--test-threads=1"])
            .env(DUMPER_ENV, w.pid.to_string())
            .env("RCRIU_FAULT", format!("step:{n}:kill"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting the dumper");
        let status = wait_child(child).expect("the dumper ends");
        if libc::WIFEXITED(status) {
            assert_eq!(libc::WEXITSTATUS(status), 0, "{what}: the dumper failed");
            break;
        }
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "{what}: dumper status {status:#x}"
        );
        running(w.pid, &what);
        settles_as(w.pid, &before, &what);
        n += 1;
        assert!(n < 100_000, "{tag}: the dumper never ends");
    }
    w.verdict()
        .unwrap_or_else(|e| panic!("{tag}: the target is not intact: {e}"));
    eprintln!("{tag}: the dumper killed at each of {} steps", n - 1);
    n
}

#[test]
fn a_dumper_killed_at_every_step_leaves_a_computation_intact() {
    require_root();
    let _g = trace_lock();
    for mode in ["spin", "sleep", "read"] {
        let n = kill_at_every_step(Workload::start("compute", &[mode]), mode);
        assert!(n > 20, "{mode}: only {n} steps");
    }
}

#[test]
fn a_dumper_killed_at_every_step_leaves_threads_intact() {
    require_root();
    let _g = trace_lock();
    let w = Workload::start("mt", &["3"]);
    w.wait_in("sigsuspend");
    let n = kill_at_every_step(w, "mt");
    assert!(n > 40, "mt: only {n} steps");
}

#[test]
fn each_fault_point_fails_cleanly() {
    require_root();
    let _g = trace_lock();
    for point in 1..=6 {
        if point == 5 {
            continue; // the dump's own point
        }
        run_at(point, "fail", "spin");
        run_at(point, "fail", "read");
    }
}

#[test]
fn signals_to_the_dumper_abort_cleanly() {
    require_root();
    let _g = trace_lock();
    for action in ["int", "term", "hup"] {
        for point in [1, 2, 3, 6] {
            run_at(point, action, "spin");
        }
    }
}

#[test]
fn a_killed_dumper_leaves_the_target_running() {
    require_root();
    let _g = trace_lock();
    for point in [1, 2, 3, 4, 6] {
        run_at(point, "kill", "spin");
        run_at(point, "kill", "sleep");
    }
}

/// The target's fds, as their links.
fn fd_links(pid: i32) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("listing fds")
        .filter_map(|e| {
            let e = e.ok()?;
            let link = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                link.to_string_lossy().into_owned(),
            ))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_dumper_killed_mid_page_dump_leaves_no_fd_behind() {
    require_root();
    let _g = trace_lock();
    no_inherited_fds();
    let w = Workload::start("compute", &["spin"]);
    // Past the readiness handshake: its stdout on /dev/null, the pipe and
    // the spare /dev/null closed.
    let start = std::time::Instant::now();
    while fd_links(w.pid).iter().any(|(n, l)| {
        l.starts_with("pipe:") || (l == "/dev/null" && n.parse::<i32>().unwrap_or(0) > 2)
    }) {
        assert!(start.elapsed() < rcriu_test_support::HANG_GUARD);
        std::thread::yield_now();
    }
    let before = fd_links(w.pid);
    let child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", "dumper", "--nocapture", "--test-threads=1"])
        .env(DUMPER_ENV, w.pid.to_string())
        .env("RCRIU_FAULT", "3:kill")
        .spawn()
        .expect("starting the dumper");
    let status = wait_child(child).expect("the dumper ends");
    assert!(
        libc::WIFSIGNALED(status),
        "the dumper was killed: {status:#x}"
    );
    // The parasite cures itself once it sees rcriu gone: the control
    // socket and the page pipe it was given go with it.
    let start = std::time::Instant::now();
    while fd_links(w.pid)
        .iter()
        .any(|(_, l)| l.starts_with("socket:"))
    {
        assert!(start.elapsed() < rcriu_test_support::HANG_GUARD);
        std::thread::yield_now();
    }
    assert_eq!(fd_links(w.pid), before);
    w.verdict().expect("the target is intact");
}
