//! Seizing real processes in the states the issue lists: stopped, traced
//! by someone else, a zombie, a dead leader, threads coming and going,
//! under a seccomp filter.

use std::os::fd::AsFd;

use rcriu_compel::abi::IoVec;
use rcriu_compel::{Error, Parasite, Seized};
use rcriu_test_support::{Workload, require_root, signal, status_lines, trace_lock};

fn state(pid: i32) -> String {
    status_lines(pid, &["State"])
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Waits (bounded by the hang guard) until `pid`'s state line contains
/// `want`: a group stop settles asynchronously after a release.
fn wait_state(pid: i32, want: &str) {
    let start = std::time::Instant::now();
    while !state(pid).contains(want) {
        assert!(
            start.elapsed() < rcriu_test_support::HANG_GUARD,
            "process {pid} never reached state {want}: {}",
            state(pid)
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn a_stopped_process_stays_stopped() {
    require_root();
    let _g = trace_lock();
    let w = Workload::start("compute", &["spin"]);
    signal(w.pid, libc::SIGSTOP);
    wait_state(w.pid, "T (stopped)");
    let seized = Seized::seize(w.pid).expect("seizing a stopped process");
    assert!(seized.was_stopped());
    let mut p = Parasite::infect(&seized).expect("infecting");
    p.sigactions().expect("sigactions");
    p.cure().expect("curing");
    seized.release().expect("releasing");
    wait_state(w.pid, "T (stopped)");
    assert!(status_lines(w.pid, &["TracerPid"])[0].ends_with("\t0"));
    signal(w.pid, libc::SIGCONT);
    w.verdict().expect("the computation is right");
}

#[test]
fn a_process_traced_by_another_is_refused() {
    require_root();
    let _g = trace_lock();
    let w = Workload::start("compute", &["spin"]);
    let tracer = Workload::start("tracer", &[&w.pid.to_string()]);
    match Seized::seize(w.pid) {
        Err(Error::Traced { pid, tracer: t }) => {
            assert_eq!((pid, t), (w.pid, tracer.pid));
            let msg = Error::Traced { pid, tracer: t }.to_string();
            assert!(msg.contains(&w.pid.to_string()) && msg.contains(&tracer.pid.to_string()));
        }
        other => panic!("expected a traced error, got {other:?}"),
    }
    tracer.verdict().expect("the tracer lets go");
    w.verdict().expect("the computation is right");
}

#[test]
fn a_zombie_is_refused() {
    require_root();
    let _g = trace_lock();
    let child = std::process::Command::new("true")
        .spawn()
        .expect("spawning");
    let pid = child.id() as i32;
    // Wait for the exit without reaping: the child stays a zombie.
    // SAFETY: waitid fills a siginfo we own.
    let r = unsafe {
        let mut si: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            pid as u32,
            &mut si,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(r, 0);
    match Seized::seize(pid) {
        Err(Error::Zombie { pid: p }) => assert_eq!(p, pid),
        other => panic!("expected a zombie error, got {other:?}"),
    }
    let mut child = child;
    child.wait().expect("reaping");
}

#[test]
fn a_dead_leader_with_live_threads_is_refused() {
    require_root();
    let _g = trace_lock();
    let w = Workload::start("dead_leader", &[]);
    match Seized::seize(w.pid) {
        Err(Error::DeadLeader { pid, .. }) => assert_eq!(pid, w.pid),
        other => panic!("expected a dead-leader error, got {other:?}"),
    }
    w.verdict().expect("the survivor is fine");
}

#[test]
fn threads_appearing_and_exiting_while_seizing() {
    require_root();
    let _g = trace_lock();
    let w = Workload::start("threads", &["4"]);
    for i in 0..100 {
        let seized = Seized::seize(w.pid).unwrap_or_else(|e| panic!("pass {i}: seizing: {e}"));
        // Four counters, the churner and the leader, maybe a brief one.
        assert!(
            seized.threads().len() >= 6,
            "pass {i}: {} threads",
            seized.threads().len()
        );
        let listed = std::fs::read_dir(format!("/proc/{}/task", w.pid))
            .expect("listing tasks")
            .count();
        assert_eq!(
            listed,
            seized.threads().len(),
            "every live thread is seized"
        );
        if i % 10 == 0 {
            let mut p = Parasite::infect(&seized).expect("infecting");
            p.sigactions().expect("sigactions");
            p.cure().expect("curing");
        }
        seized.release().expect("releasing");
    }
    w.verdict().expect("every thread counted right");
}

#[test]
fn a_seccomp_filter_that_kills_on_mmap_and_socket_is_survived() {
    require_root();
    let _g = trace_lock();
    let w = Workload::start("compute", &["spin", "seccomp"]);
    assert!(status_lines(w.pid, &["Seccomp:"])[0].ends_with("\t2"));
    let heap = std::fs::read_to_string(format!("/proc/{}/maps", w.pid))
        .unwrap()
        .lines()
        .find(|l| l.ends_with("[heap]"))
        .map(|l| {
            let (a, b) = l.split(' ').next().unwrap().split_once('-').unwrap();
            (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            )
        })
        .expect("a heap");
    for _ in 0..50 {
        let seized = Seized::seize(w.pid).expect("seizing");
        let mut p = Parasite::infect(&seized).expect("infecting under seccomp");
        let out = tempfile::tempfile().unwrap();
        p.dump_pages(
            &[IoVec {
                base: heap.0,
                len: heap.1 - heap.0,
            }],
            out.as_fd(),
        )
        .expect("dumping pages");
        p.cure().expect("curing");
        seized.release().expect("releasing");
    }
    w.verdict().expect("alive and computing right");
}
