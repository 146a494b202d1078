//! Real programs that are trees of processes, dumped and restored with
//! the `rcriu` command as a user would: a bash loop that forks `sleep`
//! again and again, nginx's master and two workers, and a Python
//! multiprocessing pool (its workers, the
//! pipes between them and its semaphore, a deleted file on /dev/shm that
//! every process maps) that finishes its work after the restore. Each
//! program is started in a session of its own; readiness and results go
//! through files the programs write.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use rcriu_test_support::{
    HANG_GUARD, TempDir, become_subreaper, kill_tree, require_root, signal, trace_lock, tree_pids,
    wait_exit,
};

fn setup() -> std::sync::MutexGuard<'static, ()> {
    require_root();
    let g = trace_lock();
    become_subreaper();
    g
}

/// Starts `argv` in a session of its own, stdio on /dev/null, in `dir`.
fn start(argv: &[&str], dir: &Path) -> std::process::Child {
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid(2) only, between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.spawn()
        .unwrap_or_else(|e| panic!("starting {argv:?}: {e}"))
}

/// Waits until `f` holds, a guard against a hang (the programs are
/// outside: their files are the handshake).
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < HANG_GUARD, "waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn rcriu(args: &[&str], dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_rcriu"))
        .args(args)
        .arg("-D")
        .arg(dir)
        .output()
        .expect("running rcriu");
    assert!(
        out.status.success(),
        "rcriu {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Dumps the tree of `child` (killed by the dump, then reaped) and
/// restores it detached; the tree's pids before.
fn dump_and_restore(child: &mut std::process::Child, images: &Path) -> Vec<i32> {
    let pid = child.id() as i32;
    let pids = tree_pids(pid);
    rcriu(&["dump", "-t", &pid.to_string()], images);
    let status = child.wait().expect("reaping the dumped program");
    assert!(!status.success(), "the dump kills it: {status:?}");
    // Its children come to this process (a subreaper): reaped.
    for &p in &pids[1..] {
        let _ = wait_exit(p);
    }
    for &p in &pids {
        assert!(!Path::new(&format!("/proc/{p}")).exists(), "{p} is gone");
    }
    rcriu(&["restore", "-d"], images);
    pids
}

fn count(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// bash running `while :; do ...; sleep 0.05; done`: restored, it goes on
/// counting, which it does only by forking and reaping `sleep` again.
#[test]
fn a_bash_loop_forking_sleep_carries_on() {
    let _g = setup();
    let t = TempDir::new("real-bash");
    let counter: PathBuf = t.path().join("count");
    let script = format!(
        "i=0; while :; do i=$((i+1)); echo $i > {}; sleep 0.05; done",
        counter.display()
    );
    let mut bash = start(&["/bin/bash", "-c", &script], t.path());
    until("the loop to count to 3", || count(&counter) >= 3);
    let images = t.path().join("img");
    let pids = dump_and_restore(&mut bash, &images);
    let root = pids[0];
    let at_restore = count(&counter);
    until("the restored loop to count on", || {
        count(&counter) >= at_restore + 5
    });
    kill_tree(root);
}

const POOL: &str = r#"
import multiprocessing as mp, signal, sys, time
def square(x):
    time.sleep(0.01)
    return x * x
if __name__ == "__main__":
    out = sys.argv[1]
    go = []
    signal.signal(signal.SIGUSR1, lambda s, f: go.append(1))
    with mp.Pool(3) as pool:
        pool.map(square, range(6))
        open(out, "w").write("ready\n")
        while not go:
            time.sleep(0.01)
        r = pool.map(square, range(100))
        open(out, "a").write("sum %d\n" % sum(r))
"#;

/// A Python multiprocessing pool of three workers, restored between two
/// of its maps: the second one finishes with the right sum, and the pool
/// ends.
#[test]
fn a_python_multiprocessing_pool_finishes_its_work() {
    let _g = setup();
    let t = TempDir::new("real-pool");
    let script = t.path().join("pool.py");
    std::fs::write(&script, POOL).unwrap();
    let out = t.path().join("out");
    let mut py = start(
        &[
            "/usr/bin/python3",
            script.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
        t.path(),
    );
    until("the pool to be ready", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("ready"))
    });
    let root = py.id() as i32;
    until("the pool's three workers", || tree_pids(root).len() >= 4);
    let images = t.path().join("img");
    let pids = dump_and_restore(&mut py, &images);
    assert_eq!(tree_pids(root), pids, "the pool and its workers are back");
    signal(root, libc::SIGUSR1);
    let status = wait_exit(root).expect("the pool ends");
    assert_eq!(status, 0, "python exits 0");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("sum 328350"), "{text}");
    for &p in &pids[1..] {
        let _ = wait_exit(p);
    }
}

/// Fetches `/` from 127.0.0.1:`port` with curl; `None` when nothing
/// answers.
fn fetch(port: u16) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", &format!("http://127.0.0.1:{port}/")])
        .output()
        .expect("running curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// nginx with a master and two workers (`daemon off; master_process on;
/// worker_processes 2`, as root) serves a page before the dump; after the
/// restore it serves a page written meanwhile, with the same three
/// processes, and nothing once they are killed (the control that the
/// answers came from them).
#[test]
fn nginx_master_and_workers_serve_again() {
    let _g = setup();
    let t = TempDir::new("real-nginx");
    let html = t.path().join("html");
    std::fs::create_dir_all(t.path().join("logs")).unwrap();
    std::fs::create_dir_all(&html).unwrap();
    std::fs::write(html.join("index.html"), "before\n").unwrap();
    let port = 20000 + (std::process::id() % 20000) as u16;
    let conf = t.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process on; worker_processes 2; pid {dir}/nginx.pid;\n\
             error_log {dir}/logs/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; server {{ listen 127.0.0.1:{port}; root {dir}/html; }} }}\n",
            dir = t.path().display()
        ),
    )
    .unwrap();
    let mut nginx = start(
        &[
            "/usr/sbin/nginx",
            "-p",
            t.path().to_str().unwrap(),
            "-c",
            conf.to_str().unwrap(),
        ],
        t.path(),
    );
    let root = nginx.id() as i32;
    until("nginx to serve", || fetch(port).is_some());
    until("nginx's two workers", || tree_pids(root).len() == 3);
    assert_eq!(fetch(port).as_deref(), Some("before\n"));
    let images = t.path().join("img");
    let pids = dump_and_restore(&mut nginx, &images);
    assert_eq!(tree_pids(root), pids, "the master and its workers are back");
    std::fs::write(html.join("index.html"), "after\n").unwrap();
    for _ in 0..4 {
        assert_eq!(fetch(port).as_deref(), Some("after\n"));
    }
    kill_tree(root);
    assert_eq!(fetch(port), None, "nothing serves once it is killed");
}
