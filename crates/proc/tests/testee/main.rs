//! A process with known state for rcriu-proc's live tests and bench.
//!
//! `rcriu-proc-testee DIR` reads commands on stdin, one a line, and answers
//! each with one line on stdout:
//! - `setup`: maps memory, opens fds of many kinds, blocks, ignores and
//!   catches signals, arms POSIX timers, starts a thread and a child, sets
//!   its comm, umask, limits, seccomp... (files go in DIR); answers
//!   `ready key=value ...` saying where everything is.
//! - `vmas N`: maps N separate one-page areas; answers `ok ADDR`.
//! - `exit`: exits.
//!
//! `rcriu-proc-testee idle` waits for the end of its stdin.

mod sys;

use std::fmt::Write as _;
use std::io::{BufRead, Read, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sys::PAGE;

/// What `setup` reports: `key=value` pairs.
#[derive(Default)]
struct Report(String);

impl Report {
    fn put(&mut self, key: &str, value: impl std::fmt::Display) {
        let _ = write!(self.0, " {key}={value}");
    }

    fn addr(&mut self, key: &str, addr: usize) {
        let _ = write!(self.0, " {key}={addr:x}");
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Maps `pages` pages with a free page on each side, so that the area
/// never merges with a neighbour; returns its start.
fn isolated(pages: usize, prot: i32, flags: i32, fd: i32, off: i64) -> Res<usize> {
    if fd >= 0 {
        // A file mapping at `off`: reserve, then map the file over the
        // middle.
        let hole = sys::mmap(
            (pages + 2) * PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )?;
        sys::munmap(hole, (pages + 2) * PAGE)?;
        let a = sys::mmap(pages * PAGE, prot, flags, fd, off)?;
        return Ok(a);
    }
    let a = sys::mmap((pages + 2) * PAGE, prot, flags, -1, 0)?;
    sys::munmap(a, PAGE)?;
    sys::munmap(a + (pages + 1) * PAGE, PAGE)?;
    Ok(a + PAGE)
}

/// The capability dropped from the bounding set (`linux/capability.h`).
pub const CAP_SYS_BOOT: libc::c_ulong = 22;

const PRIV: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

fn file_with(path: &Path, pages: usize) -> Res<std::fs::File> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let data: Vec<u8> = (0..pages * PAGE).map(|i| (i / PAGE) as u8 + 1).collect();
    f.write_all(&data)?;
    Ok(f)
}

fn setup(dir: &Path, keep: &mut Vec<Box<dyn std::any::Any>>) -> Res<Report> {
    let mut r = Report::default();
    r.put("pid", std::process::id());

    // A child first, so that it inherits none of the fds made below.
    let child = std::process::Command::new(std::env::current_exe()?)
        .arg("idle")
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    r.put("child", child.id());
    keep.push(Box::new(child));

    // ---- memory ----
    let plain = isolated(2, RW, PRIV, -1, 0)?;
    sys::write_byte(plain, 1);
    r.addr("m_rw", plain);
    r.addr(
        "m_rx",
        isolated(2, libc::PROT_READ | libc::PROT_EXEC, PRIV, -1, 0)?,
    );
    r.addr("m_none", isolated(2, libc::PROT_NONE, PRIV, -1, 0)?);
    for (key, advice) in [
        ("m_dc", libc::MADV_DONTFORK),
        ("m_dd", libc::MADV_DONTDUMP),
        ("m_rr", libc::MADV_RANDOM),
        ("m_sr", libc::MADV_SEQUENTIAL),
        ("m_hg", libc::MADV_HUGEPAGE),
        ("m_nh", libc::MADV_NOHUGEPAGE),
        ("m_wf", libc::MADV_WIPEONFORK),
        ("m_mg", libc::MADV_MERGEABLE),
    ] {
        let a = isolated(2, RW, PRIV, -1, 0)?;
        sys::madvise(a, 2 * PAGE, advice).map_err(|e| format!("madvise {key}: {e}"))?;
        r.addr(key, a);
    }
    let locked = isolated(2, RW, PRIV, -1, 0)?;
    sys::mlock(locked, 2 * PAGE)?;
    r.addr("m_lo", locked);
    r.addr("m_nr", isolated(2, RW, PRIV | libc::MAP_NORESERVE, -1, 0)?);
    r.addr("m_gd", isolated(2, RW, PRIV | libc::MAP_GROWSDOWN, -1, 0)?);
    r.addr(
        "m_sh",
        isolated(2, RW, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)?,
    );
    let sealed = isolated(2, libc::PROT_READ, PRIV, -1, 0)?;
    sys::mseal(sealed, 2 * PAGE)?;
    r.addr("m_sl", sealed);
    r.addr(
        "m_dp",
        isolated(2, RW, sys::MAP_DROPPABLE | libc::MAP_ANONYMOUS, -1, 0)?,
    );
    let named = isolated(2, RW, PRIV, -1, 0)?;
    // Kernels without CONFIG_ANON_VMA_NAME refuse names with EINVAL.
    match sys::set_anon_name(named, 2 * PAGE, "rcriu test") {
        Ok(()) => r.put("named", "yes"),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => r.put("named", "unsupported"),
        Err(e) => return Err(e.into()),
    }
    r.addr("m_named", named);

    // The page pattern for the pagemap tests: 16 pages, written 0, 2, 5,
    // read 7 (the zero page), written then dropped 8 and 9, a guard at 12.
    let pat = isolated(16, RW, PRIV, -1, 0)?;
    sys::madvise(pat, 16 * PAGE, libc::MADV_NOHUGEPAGE)?;
    for p in [0, 2, 5, 8, 9] {
        sys::write_byte(pat + p * PAGE, p as u8 + 1);
    }
    let _ = sys::read_byte(pat + 7 * PAGE);
    sys::madvise(pat + 8 * PAGE, 2 * PAGE, libc::MADV_DONTNEED)?;
    sys::madvise(pat + 12 * PAGE, PAGE, sys::MADV_GUARD_INSTALL)?;
    r.addr("m_pattern", pat);

    // Files: a private read-only mapping at offset one page (its first page
    // read), a shared writable one, a deleted one, one with an odd name,
    // a memfd.
    let fpath = dir.join("mapped");
    let f = file_with(&fpath, 4)?;
    let ffd = f.into_raw_fd();
    let m_file = isolated(2, libc::PROT_READ, libc::MAP_PRIVATE, ffd, PAGE as i64)?;
    let _ = sys::read_byte(m_file);
    r.addr("m_file", m_file);
    r.put("file_path", fpath.display());
    let shared_path = dir.join("shared");
    let sf = file_with(&shared_path, 2)?.into_raw_fd();
    r.addr("m_file_shared", isolated(2, RW, libc::MAP_SHARED, sf, 0)?);
    let del_path = dir.join("deleted");
    let df = file_with(&del_path, 2)?.into_raw_fd();
    r.addr(
        "m_deleted",
        isolated(2, libc::PROT_READ, libc::MAP_PRIVATE, df, 0)?,
    );
    std::fs::remove_file(&del_path)?;
    let odd_path = dir.join("odd name\nline");
    let of = file_with(&odd_path, 2)?.into_raw_fd();
    r.addr(
        "m_odd",
        isolated(2, libc::PROT_READ, libc::MAP_PRIVATE, of, 0)?,
    );
    let mfd = sys::memfd("rcriu-memfd")?;
    sys::ftruncate(mfd, 2 * PAGE as i64)?;
    r.addr("m_memfd", isolated(2, RW, libc::MAP_SHARED, mfd, 0)?);

    // ---- fds, at fixed numbers ----
    sys::dup2(sys::eventfd(26, libc::EFD_SEMAPHORE)?, 100)?;
    sys::dup2(
        sys::timerfd(libc::CLOCK_MONOTONIC, 0, (1000, 0), (5, 0))?,
        101,
    )?;
    let abs = sys::realtime_now() + 100_000;
    let flags = libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET;
    sys::dup2(
        sys::timerfd(libc::CLOCK_REALTIME, flags, (abs, 0), (0, 0))?,
        102,
    )?;
    sys::dup2(sys::signalfd(&[libc::SIGUSR1, libc::SIGINT])?, 103)?;
    let ep = sys::epoll_with(&[
        (
            100,
            (libc::EPOLLIN | libc::EPOLLET) as u32,
            0x1122_3344_5566_7788,
        ),
        (101, libc::EPOLLOUT as u32, 42),
    ])?;
    sys::dup2(ep, 104)?;
    let (ino, wd) = sys::inotify_watch(dir, libc::IN_CREATE | libc::IN_DELETE)?;
    sys::dup2(ino, 105)?;
    r.put("inotify_wd", wd);
    sys::dup2(
        sys::pidfd_open(std::os::unix::process::parent_id() as i32)?,
        106,
    )?;
    let (pr, pw) = std::io::pipe()?;
    sys::dup2(pr.into_raw_fd(), 107)?;
    sys::dup2(pw.into_raw_fd(), 108)?;
    let regular = dir.join("regular");
    let mut rf = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&regular)?;
    rf.write_all(&[7u8; 200])?;
    std::io::Seek::seek(&mut rf, std::io::SeekFrom::Start(123))?;
    sys::dup2(rf.into_raw_fd(), 109)?;
    sys::dup2(sys::fanotify_watch(dir, libc::FAN_OPEN)?, 110)?;
    sys::dup2(sys::socket_unix()?, 111)?;
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    sys::dup2(null.into_raw_fd(), 112)?;

    // ---- signals ----
    sys::block(&[libc::SIGUSR1, 40])?;
    sys::ignore(libc::SIGUSR2)?;
    sys::ignore(libc::SIGPIPE)?;
    sys::catch(libc::SIGHUP)?;
    sys::catch(libc::SIGTERM)?;

    // ---- a thread, blocking every signal, named ----
    let (tx, rx) = std::sync::mpsc::channel();
    let (hold_r, hold_w) = std::io::pipe()?;
    std::thread::Builder::new()
        .name("worker)(x".into())
        .spawn(move || {
            let ok = sys::block_all()
                .map(|()| sys::gettid())
                .map_err(|e| e.to_string());
            let _ = tx.send(ok);
            let mut hold_r = hold_r;
            let _ = hold_r.read(&mut [0u8]);
        })?;
    keep.push(Box::new(hold_w));
    let worker = rx.recv()??;
    r.put("worker", worker);

    // Pending: SIGUSR1 for the process, 40 for the main thread.
    sys::kill_self(libc::SIGUSR1)?;
    sys::tgkill_self(40)?;

    // ---- POSIX timers ----
    let t = sys::posix_timer(
        libc::CLOCK_MONOTONIC,
        libc::SIGEV_SIGNAL,
        libc::SIGALRM,
        0x1234,
        0,
        100_000,
    )?;
    r.put("timer_sig", t);
    let t = sys::posix_timer(libc::CLOCK_BOOTTIME, libc::SIGEV_NONE, 0, 0, 0, 100_000)?;
    r.put("timer_none", t);
    let t = sys::posix_timer(
        libc::CLOCK_REALTIME,
        libc::SIGEV_THREAD_ID,
        libc::SIGUSR2,
        0,
        worker,
        100_000,
    )?;
    r.put("timer_tid", t);

    // ---- identity and limits ----
    sys::set_comm("a) b (c")?;
    sys::umask(0o027);
    sys::prctl(libc::PR_SET_TIMERSLACK, 123_456)?;
    std::fs::write("/proc/self/oom_score_adj", "123")?;
    sys::setrlimit(libc::RLIMIT_NOFILE, 1000, 2000)?;
    sys::setrlimit(libc::RLIMIT_CORE, 0, 4096)?;
    sys::setrlimit(libc::RLIMIT_MSGQUEUE, 12345, 23456)?;
    std::env::set_current_dir(dir)?;
    sys::personality(libc::ADDR_NO_RANDOMIZE as u64)?;
    sys::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_BOOT)?;
    sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    sys::seccomp_allow_all()?;
    Ok(r)
}

/// `vmas N`: N one-page areas, alternately writable and read-only so that
/// none merges with its neighbours.
fn many_vmas(n: usize) -> Res<usize> {
    let a = sys::mmap(n * PAGE, RW, PRIV, -1, 0)?;
    for i in (1..n).step_by(2) {
        sys::mprotect(a + i * PAGE, PAGE, libc::PROT_READ)?;
    }
    Ok(a)
}

fn main() -> Res<()> {
    let arg = std::env::args_os()
        .nth(1)
        .ok_or("usage: rcriu-proc-testee DIR | idle")?;
    if arg.as_bytes() == b"idle" {
        let mut sink = Vec::new();
        std::io::stdin().read_to_end(&mut sink)?;
        return Ok(());
    }
    let dir = PathBuf::from(arg);
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let reply = match words.next() {
            Some("setup") => match setup(&dir, &mut keep) {
                Ok(r) => format!("ready{}", r.0),
                Err(e) => format!("error {e}"),
            },
            Some("vmas") => {
                let n: usize = words.next().ok_or("vmas N")?.parse()?;
                match many_vmas(n) {
                    Ok(a) => format!("ok {a:x}"),
                    Err(e) => format!("error {e}"),
                }
            }
            Some("exit") | None => break,
            Some(other) => format!("error unknown command {other}"),
        };
        let mut out = stdout.lock();
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}
