//! The sockets issue's speed goal, side by side with CRIU 4.2: the wall
//! time of `dump` and `restore -d` (the command line, exec included) of
//! a process holding 10,000 unix sockets (5,000 socketpairs, 16 bytes
//! queued in each), and of one holding 10,000 TCP connections over
//! loopback, their clients in this process, outside the dump
//! (`--tcp-established`; 16 bytes unread by each client). Needs root.
//!
//! `cargo bench --bench many_sockets` (`-- ROUNDS`, 3 by default): each
//! tool dumps and restores its own workload ROUNDS times (the same
//! process again and again), then the workload checks every socket, and
//! every client gets its echo. The medians are printed. CRIU runs when
//! `RCRIU_BENCH_CRIU` names its binary; `RCRIU_BENCH_SOCKETS` changes the
//! counts (`1000,10000`), `RCRIU_BENCH_LOCK` the `--network-lock` method
//! both tools get (nftables unless told: with iptables, both tools'
//! default, ten thousand connections are twenty thousand rules, which
//! iptables-legacy inserts and deletes one search at a time, for minutes,
//! and every loopback packet meanwhile crosses them all). A tool
//! that fails is reported with its message (and the nftables lock table
//! it left removed), and the next one runs. `TMPDIR=/dev/shm` keeps the
//! images on tmpfs: on ext4, creating thousands of files (a tcp-stream
//! image per connection) right after deleting thousands costs both tools
//! more than the sockets do.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcriu_test_support::{
    TempDir, Workload, become_subreaper, no_inherited_fds, require_root, wait_exit,
};

fn run(cmd: &mut Command) -> Result<Duration, String> {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running {cmd:?}: {e}"))?;
    let d = t.elapsed();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} failed: {}",
            cmd.get_args()
                .next()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default(),
            err.trim()
        ));
    }
    Ok(d)
}

/// The nftables tables named as the network lock's (`CRIU-<run id>`).
fn lock_tables() -> Vec<String> {
    Command::new("nft")
        .args(["list", "tables"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("table inet "))
                .filter(|t| t.starts_with("CRIU-"))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn wait_gone(pid: i32) {
    while Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// This process's soft limit of open files raised to the hard one (the
/// clients of the TCP workload are here).
fn raise_nofile() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write one rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Unix,
    Tcp,
}

/// The manysk workload of `kind` with `n` sockets, and for TCP its
/// clients.
fn start(kind: Kind, n: usize, home: &Path) -> (Workload, Vec<TcpStream>) {
    match kind {
        Kind::Unix => (
            Workload::start("manysk", &["unix", &n.to_string()]),
            Vec::new(),
        ),
        Kind::Tcp => {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let fifo = home.join(format!("go-{port}"));
            let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            // SAFETY: mkfifo reads a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
            // The clients connect once the workload opens the FIFO (it
            // listens then); it says ready once it accepted them all.
            let clients = std::thread::spawn(move || {
                let go = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&fifo)
                    .expect("opening the FIFO");
                let v: Vec<TcpStream> = (0..n)
                    .map(|_| TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connecting"))
                    .collect();
                drop(go);
                v
            });
            let fifo_arg = home.join(format!("go-{port}"));
            let w = Workload::start(
                "manysk",
                &[
                    "tcp",
                    &n.to_string(),
                    &port.to_string(),
                    fifo_arg.to_str().unwrap(),
                ],
            );
            (w, clients.join().expect("the clients"))
        }
    }
}

/// ROUNDS dumps and restores of one workload by `tool`: the median dump
/// and restore times, or why the tool failed.
fn measure(
    tool: &str,
    kind: Kind,
    n: usize,
    rounds: usize,
    lock: Option<&str>,
) -> Result<(Duration, Duration), String> {
    let home = TempDir::new("bench-sk");
    let (mut w, mut clients) = start(kind, n, home.path());
    w.wait_in("sigsuspend");
    let pid = w.pid;
    let mut extra: Vec<&str> = Vec::new();
    if kind == Kind::Tcp {
        extra.push("--tcp-established");
        if let Some(m) = lock {
            extra.extend(["--network-lock", m]);
        }
    }
    let (mut dumps, mut restores) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let images = TempDir::new("bench-sk-img");
        dumps.push(run(Command::new(tool)
            .args(["dump", "-t", &pid.to_string(), "-D"])
            .arg(images.path())
            .args(["-o", "dump.log"])
            .args(&extra))?);
        if round == 0 {
            w.reap();
        } else {
            wait_exit(pid).expect("the dumped workload ends");
        }
        wait_gone(pid);
        let restore_extra: Vec<&str> = extra
            .iter()
            .copied()
            .filter(|a| *a == "--tcp-established")
            .collect();
        restores.push(run(Command::new(tool)
            .args(["restore", "-d", "-D"])
            .arg(images.path())
            .args(["-o", "restore.log"])
            .args(&restore_extra))?);
    }
    // Every socket carried on: the clients send, the workload reads and
    // echoes, and each client reads its echo.
    for c in &mut clients {
        c.write_all(b"0123456789abcdef").expect("a client sends");
    }
    w.verdict()
        .unwrap_or_else(|e| panic!("{tool}'s restored workload: {e}"));
    for c in &mut clients {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut b = [0u8; 32];
        c.read_exact(&mut b)
            .expect("the first 16 bytes and the echo");
        assert_eq!(&b, b"0123456789abcdef0123456789abcdef");
    }
    Ok((median(dumps), median(restores)))
}

fn main() {
    require_root();
    no_inherited_fds();
    become_subreaper();
    raise_nofile();
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3)
        .max(1);
    let counts: Vec<usize> = std::env::var("RCRIU_BENCH_SOCKETS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let lock = Some(std::env::var("RCRIU_BENCH_LOCK").unwrap_or_else(|_| "nftables".into()));
    let criu = std::env::var("RCRIU_BENCH_CRIU").ok();
    let mut tools = vec![("rcriu", env!("CARGO_BIN_EXE_rcriu").to_owned())];
    if let Some(c) = criu {
        tools.push(("criu", c));
    }
    println!(
        "median of {rounds} rounds, wall time of the command (lock: {})",
        lock.as_deref().unwrap_or("default")
    );
    for n in counts {
        for (kind, what) in [(Kind::Unix, "unix sockets"), (Kind::Tcp, "TCP connections")] {
            for (name, tool) in &tools {
                let tables = lock_tables();
                let measured = measure(tool, kind, n, rounds, lock.as_deref());
                if measured.is_err() {
                    // A tool that failed may have left its lock behind.
                    for t in lock_tables().iter().filter(|t| !tables.contains(t)) {
                        let _ = Command::new("nft")
                            .args(["delete", "table", "inet", t])
                            .status();
                        println!("  (removed the lock table {t} the failed run left)");
                    }
                }
                match measured {
                    Ok((d, r)) => println!(
                        "  {n:>6} {what:<16} {name:<6} dump {:>9.1} ms   restore -d {:>9.1} ms",
                        d.as_secs_f64() * 1e3,
                        r.as_secs_f64() * 1e3
                    ),
                    Err(e) => println!("  {n:>6} {what:<16} {name:<6} {e}"),
                }
            }
        }
    }
}
