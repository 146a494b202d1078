//! What rcriu's end-to-end tests share.
//!
//! Workloads are small C programs in `tests/workloads/` (as CRIU's zdtm
//! tests are), built on first use with `gcc`, each told apart by a first
//! line `// build: FLAGS` when it needs flags. A workload sets up its state,
//! prints `ready` on stdout (then points stdout at /dev/null, so that the
//! dump sees no pipe), waits for SIGUSR1, checks every piece of its state,
//! writes `PASS` or `FAIL: why` to the file named by its first argument and
//! exits 0 or 1.
//!
//! # Safety
//! `unsafe` here only wraps plain libc calls (setsid in the child before
//! exec, prctl, kill, waitpid), each with a `// SAFETY:` comment.

mod inside;
pub mod pki;
pub mod tmpfs_tree;

pub use inside::Inside;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// `podman run -d` as this machine needs it: with runc, and the limits
/// podman's defaults exceed here.
pub const PODMAN_RUN: &[&str] = &[
    "run",
    "-d",
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=4096:4096",
];

/// Fails the test unless it runs as root: the suite needs ptrace, clone3
/// with set_tid, namespaces. It fails rather than skips: a skipped test
/// proves nothing.
pub fn require_root() {
    // SAFETY: geteuid has no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test must run as root (it traces and restores real processes)"
    );
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Serialises the tests of one binary that trace or restore processes.
pub fn trace_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds `tests/workloads/<name>.c` (once per run) and returns the
/// binary's path.
pub fn workload(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let root = workspace_root();
    let src = root.join("tests/workloads").join(format!("{name}.c"));
    let text = std::fs::read_to_string(&src)
        .unwrap_or_else(|e| panic!("reading workload {}: {e}", src.display()));
    let flags: Vec<String> = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("// build:"))
        .map(|f| f.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let out_dir = Path::new(env!("RCRIU_WORKLOADS_DIR"));
    std::fs::create_dir_all(out_dir).expect("creating the workloads directory");
    let out = out_dir.join(name);
    let status = Command::new("gcc")
        .args(["-O2", "-g", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .args(&flags)
        .status()
        .unwrap_or_else(|e| panic!("running gcc for workload {name} (is gcc installed?): {e}"));
    assert!(status.success(), "gcc failed to build workload {name}");
    built.push((name.to_string(), out.clone()));
    out
}

/// A running workload, killed and reaped on drop.
#[derive(Debug)]
pub struct Workload {
    pub pid: i32,
    pub outfile: PathBuf,
    /// `key value` lines the workload printed before `ready`: what it set
    /// up, for the test to compare with what rcriu reads.
    pub facts: Vec<(String, String)>,
    child: Option<std::process::Child>,
    _dir: TempDir,
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        Self::new_in(&std::env::temp_dir(), tag)
    }

    /// One in /dev/shm: on tmpfs, where the dump and the restore give
    /// large page images two workers.
    pub fn in_shm(tag: &str) -> TempDir {
        Self::new_in(Path::new("/dev/shm"), tag)
    }

    fn new_in(parent: &Path, tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = parent.join(format!("rcriu-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("creating a temporary directory");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Workload {
    /// Starts workload `name` with `args` in a new session and waits until
    /// it says `ready`.
    pub fn start(name: &str, args: &[&str]) -> Workload {
        Workload::start_binary(&workload(name), name, args)
    }

    /// As [`Workload::start`], from the binary at `bin` (a copy of
    /// workload `name`'s).
    pub fn start_binary(bin: &Path, name: &str, args: &[&str]) -> Workload {
        Workload::start_with(bin, name, args, None)
    }

    /// As [`Workload::start`], run as user `uid` (and group `uid`, no
    /// supplementary groups), in a directory of that user's.
    pub fn start_as(name: &str, args: &[&str], uid: u32) -> Workload {
        Workload::start_with(&workload(name), name, args, Some(uid))
    }

    fn start_with(bin: &Path, name: &str, args: &[&str], uid: Option<u32>) -> Workload {
        let dir = TempDir::new(name);
        let outfile = dir.path().join("verdict");
        let mut cmd = Command::new(bin);
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid))
                .expect("giving the workload its directory");
            // Without supplementary groups: std drops them as it sets the ids.
            cmd.uid(uid).gid(uid);
        }
        cmd.arg(&outfile)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        in_new_session(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting workload {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut reader = BufReader::new(stdout);
        let mut facts = Vec::new();
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("reading workload {name}'s readiness: {e}"));
            assert!(n > 0, "workload {name} exited before getting ready");
            let line = line.trim();
            if line == "ready" {
                break;
            }
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            facts.push((k.to_string(), v.to_string()));
        }
        // The workload points its stdout elsewhere right after "ready":
        // wait until it holds no pipe (a dump would find one).
        let fd1 = format!("/proc/{}/fd/1", child.id());
        let start = std::time::Instant::now();
        while std::fs::read_link(&fd1).is_ok_and(|t| t.to_string_lossy().starts_with("pipe:")) {
            assert!(
                start.elapsed() < HANG_GUARD,
                "workload {name} keeps its stdout pipe"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Workload {
            pid: child.id() as i32,
            outfile,
            facts,
            child: Some(child),
            _dir: dir,
        }
    }

    /// Waits for the workload to end after something killed it (a dump
    /// without --leave-running) and reaps it, so that its pid is free
    /// again; returns the raw wait status.
    pub fn reap(&mut self) -> i32 {
        let status = wait_exit(self.pid).expect("the dumped process ends");
        if let Some(c) = self.child.take() {
            // Reaped already: nothing left to wait for.
            std::mem::forget(c);
        }
        status
    }

    /// Waits until the workload sleeps in a kernel function whose name
    /// contains `wchan` (say "sigsuspend"): where it waits for the test.
    pub fn wait_in(&self, wchan: &str) {
        let path = format!("/proc/{}/wchan", self.pid);
        let start = std::time::Instant::now();
        while !std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains(wchan)
        {
            assert!(
                start.elapsed() < HANG_GUARD,
                "process {} never waited in {wchan}",
                self.pid
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The value of fact `key` (see [`Workload::facts`]).
    pub fn fact(&self, key: &str) -> &str {
        self.facts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("the workload printed no fact {key:?}"))
    }

    /// Fact `key` as a number (decimal, or hex with 0x).
    pub fn fact_u64(&self, key: &str) -> u64 {
        parse_num(self.fact(key)).unwrap_or_else(|| panic!("fact {key} is not a number"))
    }

    /// Tells the workload to check itself, waits for it to exit and
    /// returns its verdict (`Ok` for PASS, `Err(text)` otherwise).
    pub fn verdict(mut self) -> Result<(), String> {
        signal(self.pid, libc::SIGUSR1);
        // Our child either way: the original, or the restored process
        // (created by this process with the same pid).
        let status = match self.child.take() {
            Some(child) => wait_child(child)?,
            None => wait_exit(self.pid)?,
        };
        let text = std::fs::read_to_string(&self.outfile).unwrap_or_default();
        if status == 0 && text.trim() == "PASS" {
            Ok(())
        } else {
            Err(format!("exit status {status:#x}: {}", text.trim()))
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        match self.child.take() {
            Some(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            None => {
                // A restored process with the workload's pid, if any.
                // SAFETY: plain kill(2) and waitpid(2) on our own child.
                unsafe {
                    if libc::kill(self.pid, libc::SIGKILL) == 0 {
                        libc::waitpid(self.pid, std::ptr::null_mut(), 0);
                    }
                }
            }
        }
    }
}

/// Sends `sig` to `pid`.
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: a plain kill(2).
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}) failed: {}",
        std::io::Error::last_os_error()
    );
}

/// Lines of `/proc/PID/status` that start with any of `prefixes`.
pub fn status_lines(pid: i32, prefixes: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading status");
    text.lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .map(String::from)
        .collect()
}

/// Makes the test process a child subreaper, so that it can wait for
/// processes a restore detached.
pub fn become_subreaper() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: a plain prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER failed");
    });
}

/// Kills every process of the tree under `root`, the root first (a parent
/// outliving its children would make new ones: nginx's master does), and
/// reaps them (this process is their parent or subreaper): a restored
/// tree left running would outlive the test.
pub fn kill_tree(root: i32) {
    let pids = tree_pids(root);
    for &p in &pids {
        // Ours until reaped (a zombie at worst): still there to signal.
        if Path::new(&format!("/proc/{p}")).exists() {
            signal(p, libc::SIGKILL);
        }
    }
    for &p in &pids {
        let _ = wait_exit(p);
    }
}

/// The processes of the tree under `root` (itself first, each parent
/// before its children), from each thread's `children`.
pub fn tree_pids(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        i += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let path = t.path().join("children");
            let text = std::fs::read_to_string(path).unwrap_or_default();
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// Whether `pid` is a zombie.
pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The proportional set size of `pid` (`Pss` of smaps_rollup), in KiB.
pub fn pss_kib(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_else(|e| panic!("reading the smaps_rollup of {pid}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Pss in the smaps_rollup of {pid}"))
}

/// Parses a decimal or 0x-prefixed hex number.
pub fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// How long a test waits for a process to exit before calling it hung: a
/// guard against a hang, not a timing the test depends on.
pub const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(120);

/// How long [`ProcSnapshot::settled`] lets passing differences settle.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for `pid` (a child, or a process we are subreaper of) to exit;
/// returns its raw wait status. Kills it and fails after [`HANG_GUARD`].
pub fn wait_exit(pid: i32) -> Result<i32, String> {
    let start = std::time::Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int to `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
        if r == pid {
            return Ok(status);
        }
        if r < 0 {
            return Err(format!(
                "waitpid({pid}): {}",
                std::io::Error::last_os_error()
            ));
        }
        if start.elapsed() > HANG_GUARD {
            // SAFETY: a plain kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(format!("process {pid} did not exit within {HANG_GUARD:?}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// [`wait_exit`] for a child we spawned.
pub fn wait_child(child: std::process::Child) -> Result<i32, String> {
    let status = wait_exit(child.id() as i32);
    // Reaped already (or killed by the hang guard): nothing left to wait.
    std::mem::forget(child);
    status
}

/// What must be the same before a dump and after a restore, as /proc
/// shows it: maps (addresses, permissions, offsets, devices, inodes,
/// paths), each area's VmFlags, exe, cmdline, environ, auxv, comm, the
/// signal, capability, id, no_new_privs and seccomp lines of status,
/// limits, the memory-layout fields of stat, and every fd with its
/// position and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSnapshot {
    pub maps: Vec<String>,
    pub vmflags: Vec<String>,
    pub exe: PathBuf,
    pub cmdline: Vec<u8>,
    pub environ: Vec<u8>,
    pub auxv: Vec<u8>,
    pub comm: String,
    pub status: Vec<String>,
    pub limits: String,
    pub stat: Vec<String>,
    /// Its parent, process group, session and exit signal (a shell job
    /// restored with --shell-job has rcriu's: see
    /// [`ProcSnapshot::apart_from_tree`]).
    pub tree: Vec<String>,
    /// Each fd: its number, what it is (a pipe's inode left out: a
    /// restore makes new pipes; a socket as /proc/net describes it, and
    /// which earlier fd holds the same socket), its position and flags
    /// from fdinfo.
    pub fds: Vec<String>,
    /// The process's attributes /proc shows beyond status: personality,
    /// oom_score_adj, coredump filter, autogroup nice, KSM, login uid,
    /// cgroups. (Not the time namespace's offsets: a restore makes new
    /// ones, for the clocks to carry on.)
    pub attrs: Vec<String>,
    /// Each thread (by tid): its status lines, name, and scheduling
    /// fields of stat.
    pub threads: Vec<String>,
    /// Where the process sleeps (not compared: it only tells when a
    /// restored process is back where it was).
    pub wchan: String,
}

/// The status lines a snapshot keeps (SigQ counts the whole user's
/// signals, so it is left out).
const STATUS_KEYS: &[&str] = &[
    "Uid:",
    "Gid:",
    "Groups:",
    "SigPnd:",
    "ShdPnd:",
    "SigBlk:",
    "SigIgn:",
    "SigCgt:",
    "CapInh:",
    "CapPrm:",
    "CapEff:",
    "CapBnd:",
    "CapAmb:",
    "NoNewPrivs:",
    "Seccomp:",
    "Seccomp_filters:",
    "Umask:",
];

/// stat's fields (1-based, as proc(5) numbers them) about the memory
/// layout: startcode, endcode, startstack, start_data, end_data,
/// start_brk, arg_start, arg_end, env_start, env_end.
const STAT_FIELDS: &[usize] = &[26, 27, 28, 45, 46, 47, 48, 49, 50, 51];

/// stat's fields about where the process stands in its tree.
const TREE_FIELDS: &[(usize, &str)] = &[
    (4, "ppid"),
    (5, "pgrp"),
    (6, "session"),
    (38, "exit_signal"),
];

impl ProcSnapshot {
    /// Reads `pid`'s /proc once it holds still: three readings alike in
    /// a row (a thread of it may be between two syscalls, a signal of a
    /// timer pending for an instant), for at most a quarter of a second;
    /// else the last reading.
    pub fn take(pid: i32) -> ProcSnapshot {
        let start = std::time::Instant::now();
        let mut last = ProcSnapshot::read(pid);
        let mut alike = 1;
        while alike < 3 && start.elapsed() < std::time::Duration::from_millis(250) {
            std::thread::sleep(std::time::Duration::from_millis(1));
            let s = ProcSnapshot::read(pid);
            if s.diff(&last).is_empty() && s.wchan == last.wchan {
                alike += 1;
            } else {
                alike = 1;
            }
            last = s;
        }
        last
    }

    /// Reads `pid`'s /proc, once.
    pub fn read(pid: i32) -> ProcSnapshot {
        let p = |f: &str| format!("/proc/{pid}/{f}");
        let read =
            |f: &str| std::fs::read(p(f)).unwrap_or_else(|e| panic!("reading {}: {e}", p(f)));
        let text = |f: &str| String::from_utf8_lossy(&read(f)).into_owned();
        let smaps = text("smaps");
        let mut vmflags = Vec::new();
        let mut range = String::new();
        for l in smaps.lines() {
            if let Some(flags) = l.strip_prefix("VmFlags:") {
                vmflags.push(format!("{range} {}", flags.trim()));
            } else if l
                .split(' ')
                .next()
                .is_some_and(|w| w.contains('-') && !w.ends_with(':'))
            {
                range = l.split(' ').next().unwrap_or_default().to_owned();
            }
        }
        let stat = text("stat");
        // Fields after the comm's closing parenthesis start at field 3.
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = after.split_whitespace().collect();
        ProcSnapshot {
            maps: text("maps").lines().map(map_line).collect(),
            vmflags,
            exe: std::fs::read_link(p("exe")).unwrap_or_default(),
            cmdline: read("cmdline"),
            environ: read("environ"),
            auxv: read("auxv"),
            comm: text("comm"),
            status: text("status")
                .lines()
                .filter(|l| STATUS_KEYS.iter().any(|k| l.starts_with(k)))
                .map(String::from)
                .collect(),
            limits: text("limits"),
            stat: STAT_FIELDS
                .iter()
                .map(|&n| fields.get(n - 3).copied().unwrap_or("?").to_owned())
                .collect(),
            tree: TREE_FIELDS
                .iter()
                .map(|&(n, name)| format!("{name} {}", fields.get(n - 3).copied().unwrap_or("?")))
                .collect(),
            fds: fd_lines(pid),
            attrs: attr_lines(pid),
            threads: thread_lines(pid),
            wchan: text("wchan"),
        }
    }

    /// The snapshot without where the process stands in its tree (for a
    /// shell job, which a restore puts under rcriu, in rcriu's group).
    pub fn apart_from_tree(mut self) -> ProcSnapshot {
        self.tree.clear();
        self
    }

    /// A snapshot of `pid` once it sleeps where `like` did: a restored
    /// process resumes just before the syscall it was in, and /proc shows
    /// some things (the signal mask inside sigsuspend) only from inside it.
    ///
    /// What passes settles too: a snapshot read while the process was
    /// between two syscalls (status read just before it re-entered
    /// sigsuspend, a timer's signal pending for the instant before a
    /// thread takes it) is taken again, for up to [`SETTLE`]; after that
    /// the last one sleeping where `like` did is returned, whatever it
    /// shows, so that a lasting difference is still seen.
    pub fn settled(pid: i32, like: &ProcSnapshot) -> ProcSnapshot {
        let start = std::time::Instant::now();
        loop {
            let s = ProcSnapshot::read(pid);
            let sleeping = s.wchan == like.wchan;
            if (sleeping && (s.diff(like).is_empty() || start.elapsed() > SETTLE))
                || start.elapsed() > HANG_GUARD
            {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// What differs from `other`, one line per difference (empty when
    /// the same).
    pub fn diff(&self, other: &ProcSnapshot) -> Vec<String> {
        let mut d = Vec::new();
        let lines = |name: &str, a: &[String], b: &[String], d: &mut Vec<String>| {
            if a != b {
                let only_a: Vec<&String> = a.iter().filter(|x| !b.contains(x)).collect();
                let only_b: Vec<&String> = b.iter().filter(|x| !a.contains(x)).collect();
                d.push(format!(
                    "{name}: before only {only_a:?}; after only {only_b:?}"
                ));
            }
        };
        lines("maps", &self.maps, &other.maps, &mut d);
        lines("VmFlags", &self.vmflags, &other.vmflags, &mut d);
        lines("status", &self.status, &other.status, &mut d);
        lines("stat", &self.stat, &other.stat, &mut d);
        // Left out of either (apart_from_tree): not compared.
        if !self.tree.is_empty() && !other.tree.is_empty() {
            lines("tree", &self.tree, &other.tree, &mut d);
        }
        lines("fds", &self.fds, &other.fds, &mut d);
        lines("attributes", &self.attrs, &other.attrs, &mut d);
        lines("threads", &self.threads, &other.threads, &mut d);
        if self.exe != other.exe {
            d.push(format!("exe: {:?} / {:?}", self.exe, other.exe));
        }
        for (name, a, b) in [
            ("cmdline", &self.cmdline, &other.cmdline),
            ("environ", &self.environ, &other.environ),
            ("auxv", &self.auxv, &other.auxv),
        ] {
            if a != b {
                d.push(format!("{name} differs"));
            }
        }
        if self.comm != other.comm {
            d.push(format!("comm: {:?} / {:?}", self.comm, other.comm));
        }
        if self.limits != other.limits {
            d.push(format!("limits:\n{}\n/\n{}", self.limits, other.limits));
        }
        d
    }
}

/// The status lines kept of every thread.
const THREAD_STATUS_KEYS: &[&str] = &[
    "Uid:",
    "Gid:",
    "Groups:",
    "SigPnd:",
    "SigBlk:",
    "CapInh:",
    "CapPrm:",
    "CapEff:",
    "CapBnd:",
    "CapAmb:",
    "NoNewPrivs:",
    "Seccomp:",
    "Seccomp_filters:",
    "Speculation_Store_Bypass:",
    "SpeculationIndirectBranch:",
    "Cpus_allowed_list:",
    "Mems_allowed_list:",
    "THP_enabled:",
    "untag_mask:",
    "x86_Thread_features:",
];

/// stat's scheduling fields (1-based): nice, rt_priority, policy.
const THREAD_STAT_FIELDS: &[usize] = &[19, 40, 41];

/// `TID KEY VALUE` lines for every thread of `pid`.
fn thread_lines(pid: i32) -> Vec<String> {
    let dir = format!("/proc/{pid}/task");
    let mut tids: Vec<i32> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    let mut out = Vec::new();
    for tid in tids {
        let read =
            |f: &str| std::fs::read_to_string(format!("{dir}/{tid}/{f}")).unwrap_or_default();
        for l in read("status").lines() {
            if THREAD_STATUS_KEYS.iter().any(|k| l.starts_with(k)) {
                out.push(format!("{tid} {l}"));
            }
        }
        out.push(format!("{tid} comm {}", read("comm").trim_end()));
        let stat = read("stat");
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = after.split_whitespace().collect();
        for &n in THREAD_STAT_FIELDS {
            out.push(format!(
                "{tid} stat[{n}] {}",
                fields.get(n - 3).copied().unwrap_or("?")
            ));
        }
    }
    out
}

/// `KEY VALUE` lines of the process's attributes.
fn attr_lines(pid: i32) -> Vec<String> {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{f}"))
            .map(|t| t.trim_end().replace('\n', " | "))
            .unwrap_or_else(|e| format!("unreadable ({e})"))
    };
    // The autogroup's id is the kernel's; its nice is the process's.
    let autogroup = read("autogroup");
    let autogroup_nice = autogroup.rsplit_once(" nice ").map_or("?", |(_, n)| n);
    let ksm = read("ksm_stat");
    let merge_any = ksm
        .split(" | ")
        .find(|l| l.starts_with("ksm_merge_any"))
        .unwrap_or("ksm_merge_any: ?");
    vec![
        format!("personality {}", read("personality")),
        format!("oom_score_adj {}", read("oom_score_adj")),
        format!("coredump_filter {}", read("coredump_filter")),
        format!("autogroup nice {autogroup_nice}"),
        merge_any.to_string(),
        format!("loginuid {}", read("loginuid")),
        format!("cgroup {}", read("cgroup")),
    ]
}

/// A line of maps, but for the inode of a file with no name left (a
/// deleted file, a memfd, shared anonymous memory: `/dev/zero
/// (deleted)`), which a restore makes anew, as CRIU does; that it is
/// still shared is the workloads' to check.
fn map_line(l: &str) -> String {
    if !l.ends_with(" (deleted)") {
        return l.to_owned();
    }
    let f: Vec<&str> = l.splitn(6, char::is_whitespace).collect();
    match f.as_slice() {
        [range, perms, off, dev, _inode, path] => {
            format!("{range} {perms} {off} {dev} #INODE {}", path.trim_start())
        }
        _ => l.to_owned(),
    }
}

/// The directory of an O_TMPFILE file's link (`DIR/#INODE (deleted)`).
fn tmpfile_dir(target: &str) -> Option<&str> {
    let (dir, name) = target.strip_suffix(" (deleted)")?.rsplit_once('/')?;
    let ino = name.strip_prefix('#')?;
    (!ino.is_empty() && ino.bytes().all(|b| b.is_ascii_digit())).then_some(dir)
}

/// `N -> TARGET pos P flags F` for each fd of `pid`, by number; a pipe's
/// inode, and an unnamed temporary file's, are left out of its target; a
/// socket is `socket #K` (K its order among the sockets, so that fds of
/// one socket show it) and what /proc/net says of it.
fn fd_lines(pid: i32) -> Vec<String> {
    let mut sockets: Vec<u64> = Vec::new();
    let mut facts: Option<std::collections::HashMap<u64, String>> = None;
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<i32> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds.into_iter()
        .filter_map(|fd| {
            let target = std::fs::read_link(format!("{dir}/{fd}")).ok()?;
            let mut target = target.to_string_lossy().into_owned();
            if target.starts_with("pipe:[") {
                target = "pipe".into();
            }
            if let Some(ino) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            {
                let k = sockets.iter().position(|&i| i == ino).unwrap_or_else(|| {
                    sockets.push(ino);
                    sockets.len() - 1
                });
                let facts = facts.get_or_insert_with(|| socket_facts(pid));
                let what = facts.get(&ino).map_or("?", String::as_str);
                target = format!("socket #{k} {what}");
            }
            // A file of the time namespace: the restore makes the
            // process one of its own (ns_files checks that it is its).
            if target.starts_with("time:[") {
                target = "time:[#INODE]".into();
            }
            // An unnamed temporary file (O_TMPFILE) is named after its
            // inode, which a restore makes anew.
            if let Some(dir) = tmpfile_dir(&target) {
                target = format!("{dir}/#INODE (deleted)");
            }
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
            let field = |k: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map_or("?", str::trim)
                    .to_owned()
            };
            Some(format!(
                "{fd} -> {target} pos {} flags {}",
                field("pos:"),
                field("flags:")
            ))
        })
        .collect()
}

/// What /proc/PID/net says of each socket of the process's network
/// namespace, by inode: for unix sockets their type, state, flags and
/// name; for TCP and UDP their addresses, state and queues (not a TCP
/// connection's, which move by themselves); for netlink
/// sockets their protocol, port and groups; for packet sockets their
/// type, protocol and interface. (Not what changes by itself: reference
/// counts, timers, drops.)
fn socket_facts(pid: i32) -> std::collections::HashMap<u64, String> {
    let mut out = std::collections::HashMap::new();
    let read =
        |f: &str| std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap_or_default();
    // Num RefCount Protocol Flags Type St Inode Path
    for l in read("unix").lines().skip(1) {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 7 {
            continue;
        }
        if let Ok(ino) = w[6].parse() {
            let path = w.get(7).copied().unwrap_or("");
            out.insert(
                ino,
                format!("unix type {} st {} flags {} {path}", w[4], w[5], w[3]),
            );
        }
    }
    // sl local rem st tx:rx tr:when retr uid timeout inode ...
    for (f, kind) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp6"),
        ("udp", "udp"),
        ("udp6", "udp6"),
    ] {
        for l in read(f).lines().skip(1) {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() < 10 {
                continue;
            }
            if let Ok(ino) = w[9].parse() {
                // A connection's queues move by themselves (what was sent
                // and not acknowledged is sent again after a restore).
                let queues = if kind.starts_with("tcp") && w[3] != "0A" {
                    "?"
                } else {
                    w[4]
                };
                out.insert(
                    ino,
                    format!("{kind} {} -> {} st {} queues {queues}", w[1], w[2], w[3]),
                );
            }
        }
    }
    // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
    for l in read("netlink").lines().skip(1) {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 10 {
            continue;
        }
        if let Ok(ino) = w[9].parse() {
            out.insert(
                ino,
                format!("netlink proto {} port {} groups {}", w[1], w[2], w[3]),
            );
        }
    }
    // sk RefCnt Type Proto Iface R Rmem User Inode
    for l in read("packet").lines().skip(1) {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 9 {
            continue;
        }
        if let Ok(ino) = w[8].parse() {
            out.insert(
                ino,
                format!("packet type {} proto {} iface {}", w[2], w[3], w[4]),
            );
        }
    }
    out
}

/// The fixture's `counter` (tests/fixtures/bin/counter): appends the next
/// number to `counter.out` every 50 ms, after checking a 4 MiB buffer (a
/// `CORRUPT` line when it changed). Started in a new session in `dir`, with
/// nothing but /dev/null on its standard fds.
#[derive(Debug)]
pub struct Counter {
    pub pid: i32,
    pub out: PathBuf,
    child: Option<std::process::Child>,
}

impl Counter {
    pub fn start(dir: &Path) -> Counter {
        let bin = workspace_root().join("tests/fixtures/bin/counter");
        let out = dir.join("counter.out");
        let mut cmd = Command::new(bin);
        cmd.arg(&out)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        in_new_session(&mut cmd);
        let child = cmd.spawn().expect("starting the counter");
        Counter {
            pid: child.id() as i32,
            out,
            child: Some(child),
        }
    }

    /// Its lines, once there are more than `n`.
    pub fn lines_past(&self, n: usize) -> Vec<String> {
        let start = std::time::Instant::now();
        loop {
            let l: Vec<String> = std::fs::read_to_string(&self.out)
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect();
            if l.len() > n {
                return l;
            }
            assert!(start.elapsed() < HANG_GUARD, "the counter stopped at {l:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Waits for it to end after something killed it (a dump), freeing its
    /// pid; returns the raw wait status.
    pub fn reap(&mut self) -> i32 {
        let status = wait_exit(self.pid).expect("the counter ends");
        if let Some(c) = self.child.take() {
            std::mem::forget(c);
        }
        status
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) and waitpid(2) on our own child (the
        // original, or the restored process, created by this process).
        unsafe {
            if libc::kill(self.pid, libc::SIGKILL) == 0 {
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// A real program (not one of our workloads) started in a new session
/// in `dir`, with /dev/null for its standard input and `dir/out` and
/// `dir/err` for its standard output and error.
#[derive(Debug)]
pub struct Program {
    pub pid: i32,
    pub dir: PathBuf,
    child: Option<std::process::Child>,
}

impl Program {
    pub fn start(dir: &Path, argv: &[&str]) -> Program {
        Self::start_with_stdin(dir, argv, Stdio::null())
    }

    /// As [`start`](Self::start), reading `stdin`.
    pub fn start_with_stdin(dir: &Path, argv: &[&str], stdin: impl Into<Stdio>) -> Program {
        let file = |name: &str| {
            std::fs::File::create(dir.join(name))
                .unwrap_or_else(|e| panic!("creating {name} for {argv:?}: {e}"))
        };
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .current_dir(dir)
            .stdin(stdin)
            .stdout(file("out"))
            .stderr(file("err"));
        in_new_session(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {argv:?}: {e}"));
        Program {
            pid: child.id() as i32,
            dir: dir.to_owned(),
            child: Some(child),
        }
    }

    /// Waits until the text of `file` (in its directory) satisfies
    /// `ready` (the program's own progress: a handshake), and returns
    /// it; fails, saying `what` was awaited, after [`HANG_GUARD`].
    pub fn wait_for(&self, file: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let path = self.dir.join(file);
        let start = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if ready(&text) {
                return text;
            }
            let err = std::fs::read_to_string(self.dir.join("err")).unwrap_or_default();
            assert!(
                start.elapsed() < HANG_GUARD,
                "process {}: never {what} ({file}: {text:?}, err: {err:?})",
                self.pid
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Waits for it to end after something killed it (a dump), freeing
    /// its pid; returns the raw wait status.
    pub fn reap(&mut self) -> i32 {
        let status = wait_exit(self.pid).expect("the dumped program ends");
        if let Some(c) = self.child.take() {
            std::mem::forget(c);
        }
        status
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) and waitpid(2) on our own child (the
        // original, or the restored process, created by this process).
        unsafe {
            if libc::kill(self.pid, libc::SIGKILL) == 0 {
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Marks the fds this process inherited (a test harness's pipes, say)
/// close-on-exec, so that the processes it starts hold none of them: a
/// dump would see them.
pub fn no_inherited_fds() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        for fd in dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            if fd > 2 {
                // SAFETY: F_GETFD/F_SETFD only change the fd's close-on-exec
                // flag (an fd closed meanwhile just fails).
                unsafe {
                    let f = libc::fcntl(fd, libc::F_GETFD);
                    if f >= 0 {
                        libc::fcntl(fd, libc::F_SETFD, f | libc::FD_CLOEXEC);
                    }
                }
            }
        }
    });
}

/// Makes `cmd`'s process the leader of a new session, holding no fd but
/// its standard ones.
pub fn in_new_session(cmd: &mut Command) {
    // SAFETY: setsid and close_range are async-signal-safe, as pre_exec
    // requires.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
}

/// Whether this kernel names anonymous areas (`PR_SET_VMA_ANON_NAME`,
/// CONFIG_ANON_VMA_NAME): asked of a fresh mapping of this process.
pub fn kernel_names_anon_areas() -> bool {
    const PR_SET_VMA: libc::c_int = 0x5356_4d41;
    const PR_SET_VMA_ANON_NAME: libc::c_ulong = 0;
    // SAFETY: a fresh private anonymous page, named, then unmapped; no
    // memory of the process is touched.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return false;
        }
        let r = libc::prctl(
            PR_SET_VMA,
            PR_SET_VMA_ANON_NAME,
            p as libc::c_ulong,
            4096 as libc::c_ulong,
            c"rcriu-probe".as_ptr(),
        );
        libc::munmap(p, 4096);
        r == 0
    }
}

/// What the end-to-end benches share.
pub mod bench {
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// The wall time of `cmd` (stdin and stdout null), which must succeed.
    pub fn run(cmd: &mut Command) -> Duration {
        let t = Instant::now();
        let st = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("running a command");
        let d = t.elapsed();
        assert!(st.success(), "{cmd:?} failed");
        d
    }

    /// A bench's start: root required, no fds inherited, this process a
    /// subreaper (restored processes are its children); the number of
    /// rounds its command line asks for, `default` without one.
    pub fn start(default: usize) -> usize {
        super::require_root();
        super::no_inherited_fds();
        super::become_subreaper();
        std::env::args()
            .skip(1)
            .find_map(|a| a.parse().ok())
            .unwrap_or(default)
    }

    /// The median of `v` (not empty).
    pub fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }

    /// Waits until `/proc/PID` is gone (an orphan reaped).
    pub fn wait_gone(pid: i32) {
        while Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
