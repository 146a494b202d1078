//! Failures at every fault point, and signals to the dumper, leave the
//! target running, untraced and intact.
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

/// The maps without the areas a killed dumper's parasite leaves behind
/// (shared anonymous memory shows as /dev/zero).
fn maps_without_leftovers(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("reading maps")
        .lines()
        .filter(|l| !l.contains("/dev/zero (deleted)"))
        .map(String::from)
        .collect()
}

fn run_at(point: u32, action: &str, mode: &str) {
    let w = Workload::start("compute", &[mode]);
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", w.pid)).unwrap();
    let sig_before = status_lines(w.pid, &["SigBlk", "SigIgn", "SigCgt"]);
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
    let st = status_lines(w.pid, &["State", "TracerPid"]);
    assert!(
        st[0].contains("R (running)") || st[0].contains("S (sleeping)"),
        "{what}: {st:?}"
    );
    assert!(st[1].ends_with("\t0"), "{what}: {st:?}");
    if action == "kill" {
        // The parasite cured itself; its area may stay mapped.
        let before: Vec<String> = maps_before.lines().map(String::from).collect();
        assert_eq!(before, maps_without_leftovers(w.pid), "{what}");
    } else {
        let maps_after = std::fs::read_to_string(format!("/proc/{}/maps", w.pid)).unwrap();
        assert_eq!(maps_before, maps_after, "{what}");
        assert_eq!(
            sig_before,
            status_lines(w.pid, &["SigBlk", "SigIgn", "SigCgt"]),
            "{what}"
        );
    }
    // The verdict needs SIGUSR1 to get through: the signal mask is back.
    w.verdict()
        .unwrap_or_else(|e| panic!("{what}: the target is not intact: {e}"));
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
