//! rcriu-proc against real processes: the testee (tests/testee) sets up
//! known state, says where it put it, and these tests compare what the
//! readers parse with what it set. Needs root (fanotify, map_files,
//! pagemap frame numbers); fails, not skips, without it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use rcriu_proc::*;

const PAGE: u64 = 4096;

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests need root: they read map_files, fanotify fds and pagemap frame numbers"
    );
}

/// A running testee after `setup`, with what it reported.
struct Testee {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    vals: HashMap<String, String>,
    dir: tempfile::TempDir,
    pid: Pid,
}

impl Testee {
    fn start() -> Testee {
        require_root();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut child = Command::new(env!("CARGO_BIN_EXE_rcriu-proc-testee"))
            .arg(dir.path())
            .env("RCRIU_PROC_TESTEE", "hello world")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning the testee");
        let stdin = child.stdin.take().expect("piped stdin");
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let pid = child.id() as Pid;
        let mut t = Testee {
            child,
            stdin,
            out,
            vals: HashMap::new(),
            dir,
            pid,
        };
        let reply = t.cmd("setup");
        let rest = reply
            .strip_prefix("ready")
            .unwrap_or_else(|| panic!("testee setup failed: {reply}"));
        for kv in rest.split(' ').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').expect("key=value");
            t.vals.insert(k.to_string(), v.to_string());
        }
        t.wait_until_blocked();
        t
    }

    /// After its reply the testee goes back to reading stdin: wait until
    /// its main thread is asleep in that read, so that its state is
    /// settled.
    fn wait_until_blocked(&self) {
        let mut task = Task::open(self.pid).expect("opening the testee's /proc");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while task.stat().expect("the testee's stat").state != Some(TaskState::Sleeping) {
            assert!(
                std::time::Instant::now() < deadline,
                "the testee never blocked"
            );
            std::thread::yield_now();
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("writing to the testee");
        self.stdin.flush().expect("flushing to the testee");
        let mut reply = String::new();
        self.out.read_line(&mut reply).expect("reading the testee");
        assert!(!reply.is_empty(), "the testee closed its stdout");
        reply.trim_end().to_string()
    }

    fn addr(&self, key: &str) -> u64 {
        u64::from_str_radix(&self.vals[key], 16).unwrap_or_else(|_| panic!("{key} is not hex"))
    }

    fn num(&self, key: &str) -> i64 {
        self.vals[key]
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number"))
    }

    fn dir(&self) -> PathBuf {
        self.dir.path().canonicalize().expect("canonical temp dir")
    }

    fn task(&self) -> Task {
        Task::open(self.pid).expect("opening the testee's /proc")
    }
}

impl Drop for Testee {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(smaps: &[SmapsVma], start: u64) -> &SmapsVma {
    smaps
        .iter()
        .find(|s| s.vma.start == start)
        .unwrap_or_else(|| panic!("no area at {start:#x}"))
}

fn file(path: impl Into<PathBuf>, deleted: bool) -> VmaPath {
    VmaPath::File {
        path: path.into(),
        deleted,
    }
}

#[test]
fn maps_and_smaps_show_what_the_testee_mapped() {
    let t = Testee::start();
    let mut task = t.task();
    let maps = task.maps().unwrap();
    let smaps = task.smaps().unwrap();
    assert_eq!(maps.len(), smaps.len());
    for (m, s) in maps.iter().zip(&smaps) {
        assert_eq!(m, &s.vma);
        assert_eq!(s.stats.size_kb * 1024, s.vma.len(), "{:?}", s.vma);
        assert!(
            !s.flags.contains(VmFlags::UNKNOWN),
            "unknown VmFlags in {s:?}"
        );
    }

    let rw = find(&smaps, t.addr("m_rw"));
    assert_eq!(rw.vma.len(), 2 * PAGE);
    assert_eq!(rw.vma.prot, Prot::READ | Prot::WRITE);
    assert!(!rw.vma.shared);
    assert_eq!(rw.vma.path, VmaPath::Anonymous);
    assert!(rw.flags.contains(
        VmFlags::READ
            | VmFlags::WRITE
            | VmFlags::MAYREAD
            | VmFlags::MAYWRITE
            | VmFlags::MAYEXEC
            | VmFlags::ACCOUNT
    ));
    assert_eq!((rw.stats.rss_kb, rw.stats.anonymous_kb), (4, 4));
    assert_eq!(
        find(&smaps, t.addr("m_rx")).vma.prot,
        Prot::READ | Prot::EXEC
    );
    assert!(find(&smaps, t.addr("m_rx")).flags.contains(VmFlags::EXEC));
    assert_eq!(find(&smaps, t.addr("m_none")).vma.prot, Prot::empty());

    // Each special area has its flag, and of these flags only its own.
    let special = [
        ("m_dc", VmFlags::DONTCOPY),
        ("m_dd", VmFlags::DONTDUMP),
        ("m_rr", VmFlags::RAND_READ),
        ("m_sr", VmFlags::SEQ_READ),
        ("m_hg", VmFlags::HUGEPAGE),
        ("m_nh", VmFlags::NOHUGEPAGE),
        ("m_wf", VmFlags::WIPEONFORK),
        ("m_mg", VmFlags::MERGEABLE),
        ("m_lo", VmFlags::LOCKED),
        ("m_nr", VmFlags::NORESERVE),
        ("m_gd", VmFlags::GROWSDOWN),
        ("m_sh", VmFlags::SHARED | VmFlags::MAYSHARE),
        ("m_sl", VmFlags::SEALED),
        // The kernel adds nr, wf and dd to droppable memory.
        (
            "m_dp",
            VmFlags::DROPPABLE | VmFlags::NORESERVE | VmFlags::WIPEONFORK | VmFlags::DONTDUMP,
        ),
    ];
    let all = special.iter().fold(VmFlags::empty(), |a, (_, f)| a | *f);
    assert_eq!(
        rw.flags & all,
        VmFlags::empty(),
        "plain area has {:?}",
        rw.flags & all
    );
    for (key, flag) in special {
        let s = find(&smaps, t.addr(key));
        assert_eq!(s.flags & all, flag, "{key}: {}", s.flags.to_mnemonics());
    }
    assert_eq!(find(&smaps, t.addr("m_lo")).stats.locked_kb, 8);
    let sh = find(&smaps, t.addr("m_sh"));
    assert!(sh.vma.shared);
    assert_eq!(sh.vma.path, file("/dev/zero", true));
    // Named anonymous memory needs CONFIG_ANON_VMA_NAME; without it the
    // area stays unnamed (the parser's unit tests cover `[anon:NAME]`).
    let named = &find(&smaps, t.addr("m_named")).vma.path;
    match t.vals["named"].as_str() {
        "yes" => assert_eq!(named, &VmaPath::AnonNamed(b"rcriu test".to_vec())),
        _ => assert_eq!(named, &VmaPath::Anonymous),
    }

    // Files.
    let dir = t.dir();
    let meta = std::fs::metadata(dir.join("mapped")).unwrap();
    let f = find(&smaps, t.addr("m_file"));
    assert_eq!(f.vma.path, file(dir.join("mapped"), false));
    assert_eq!(f.vma.offset, PAGE);
    assert_eq!(f.vma.inode, meta.ino());
    assert_eq!(
        (f.vma.dev_major, f.vma.dev_minor),
        (libc::major(meta.dev()), libc::minor(meta.dev()))
    );
    assert_eq!((f.vma.prot, f.vma.shared), (Prot::READ, false));
    // The read page, and maybe its neighbour by the kernel's fault-around.
    assert!((4..=8).contains(&f.stats.rss_kb), "{:?}", f.stats);
    let fs = find(&smaps, t.addr("m_file_shared"));
    assert!(fs.vma.shared && fs.flags.contains(VmFlags::SHARED));
    assert_eq!(fs.vma.path, file(dir.join("shared"), false));
    assert_eq!(
        find(&smaps, t.addr("m_deleted")).vma.path,
        file(dir.join("deleted"), true)
    );
    assert_eq!(
        find(&smaps, t.addr("m_odd")).vma.path,
        file(dir.join("odd name\\012line"), false)
    );
    let mem = find(&smaps, t.addr("m_memfd"));
    assert_eq!(mem.vma.path, file("/memfd:rcriu-memfd", true));
    assert!(mem.vma.shared);
    let pat = find(&smaps, t.addr("m_pattern")).flags;
    assert!(pat.contains(VmFlags::NOHUGEPAGE));
    // Linux 6.18 prints `gu` for an area that had MADV_GUARD_INSTALL.
    assert!(pat.contains(VmFlags::MAYBE_GUARD), "{}", pat.to_mnemonics());
    assert!(!rw.flags.contains(VmFlags::MAYBE_GUARD));

    // The kernel's own areas and the executable.
    for kind in [
        VmaPath::Stack,
        VmaPath::Vdso,
        VmaPath::Vvar,
        VmaPath::VvarVclock,
    ] {
        assert!(maps.iter().any(|m| m.path == kind), "no {kind:?}");
    }
    let vvar = maps.iter().find(|m| m.path == VmaPath::Vvar).unwrap();
    let vvar_flags = find(&smaps, vvar.start).flags;
    assert!(
        vvar_flags.contains(VmFlags::PFNMAP | VmFlags::IO),
        "{}",
        vvar_flags.to_mnemonics()
    );
    let exe = t.task().exe().unwrap();
    assert!(maps.iter().any(|m| m.path == file(exe.clone(), false)));
    // This test process has none of it.
    let own = Task::open_self().unwrap().maps().unwrap();
    assert!(
        !own.iter()
            .any(|m| m.path == VmaPath::AnonNamed(b"rcriu test".to_vec()))
    );
}

#[test]
fn status_shows_signals_creds_and_seccomp() {
    let t = Testee::start();
    let mut task = t.task();
    let s = task.status().unwrap();
    let me = std::process::id() as Pid;
    assert_eq!(s.name, b"a) b (c");
    assert_eq!(s.state, Some(TaskState::Sleeping));
    assert_eq!((s.tgid, s.pid, s.ppid, s.tracer_pid), (t.pid, t.pid, me, 0));
    assert_eq!(s.uid, Ids::default());
    assert_eq!(s.gid, Ids::default());
    assert_eq!(s.threads, 2);
    assert_eq!(s.umask, Some(0o027));
    assert_eq!(s.ns_tgid.last(), Some(&t.pid));
    assert_eq!(s.ns_pid.last(), Some(&t.pid));
    let sig = |n: i32| 1u64 << (n - 1);
    assert_eq!(s.sig_blk, SigSet(sig(libc::SIGUSR1) | sig(40)));
    assert_eq!(s.shd_pnd, SigSet(sig(libc::SIGUSR1)));
    assert_eq!(s.sig_pnd, SigSet(sig(40)));
    // Ignored signals survive exec: the testee ignores what this process
    // does, and SIGUSR2 and SIGPIPE.
    let own = Task::open_self().unwrap().status().unwrap();
    assert_eq!(
        s.sig_ign,
        SigSet(own.sig_ign.0 | sig(libc::SIGUSR2) | sig(libc::SIGPIPE))
    );
    assert!(!own.sig_ign.has(libc::SIGUSR2));
    assert!(s.sig_cgt.has(libc::SIGHUP) && s.sig_cgt.has(libc::SIGTERM));
    assert!(!s.sig_cgt.has(libc::SIGUSR1) && !s.sig_cgt.has(libc::SIGUSR2));
    assert!(s.sig_q.0 >= 2, "{:?}", s.sig_q);
    assert_eq!(s.no_new_privs, Some(true));
    assert_eq!(s.seccomp, Some(SeccompMode::Filter));
    assert_eq!(
        s.cap_bnd & (1 << 22),
        0,
        "CAP_SYS_BOOT dropped from the bounding set"
    );
    assert_ne!(s.cap_eff, 0);

    // This process did none of it.
    assert_eq!(own.pid, me);
    assert!(!own.sig_blk.has(40));
    assert_ne!(own.cap_bnd & (1 << 22), 0);
    assert_eq!(s.seccomp_filters, own.seccomp_filters.map(|n| n + 1));

    // The thread: its own name and mask, the process's shared pending set.
    let mut th = task.thread(t.num("worker") as Pid).unwrap();
    let ts = th.status().unwrap();
    assert_eq!(ts.name, b"worker)(x");
    assert_eq!((ts.pid, ts.tgid), (t.num("worker") as Pid, t.pid));
    for n in [1, 10, 12, 15, 40, 64] {
        assert!(ts.sig_blk.has(n), "worker blocks {n}");
    }
    assert!(!ts.sig_blk.has(libc::SIGKILL) && !ts.sig_blk.has(libc::SIGSTOP));
    assert_eq!(ts.sig_pnd, SigSet(0));
    assert_eq!(ts.shd_pnd, s.shd_pnd);
}

#[test]
fn stat_reads_odd_comm_and_every_address_field() {
    let t = Testee::start();
    let mut task = t.task();
    let st = task.stat().unwrap();
    assert_eq!(st.comm, b"a) b (c");
    assert_eq!(
        (st.pid, st.ppid, st.num_threads),
        (t.pid, std::process::id() as Pid, 2)
    );
    assert_eq!(st.state, Some(TaskState::Sleeping));
    assert_eq!(st.exit_signal, libc::SIGCHLD);
    let own = Task::open_self().unwrap().stat().unwrap();
    assert_eq!((st.pgrp, st.session), (own.pgrp, own.session));
    assert_ne!(own.comm, st.comm);
    assert!(st.startcode < st.endcode && st.start_data < st.end_data);
    assert!(st.arg_start < st.arg_end && st.env_start < st.env_end);
    // arg and env areas hold exactly cmdline and environ.
    let cmdline = task.read_file_vec("cmdline").unwrap();
    assert_eq!(st.arg_end - st.arg_start, cmdline.len() as u64);
    let environ = task.read_file_vec("environ").unwrap();
    assert_eq!(st.env_end - st.env_start, environ.len() as u64);
    // The code lies in the executable's mapping; brk starts the heap.
    let maps = task.maps().unwrap();
    let exe = task.exe().unwrap();
    assert!(maps.iter().any(|m| m.start <= st.startcode
        && st.startcode < m.end
        && m.path == file(exe.clone(), false)
        && m.prot.contains(Prot::EXEC)));
    if let Some(heap) = maps.iter().find(|m| m.path == VmaPath::Heap) {
        assert_eq!(heap.start, st.start_brk);
    }
    assert!(
        maps.iter()
            .any(|m| m.path == VmaPath::Stack && m.start <= st.startstack && st.startstack < m.end)
    );

    let worker = t.num("worker") as Pid;
    let ts = task.thread(worker).unwrap().stat().unwrap();
    assert_eq!(
        (ts.pid, ts.comm.as_slice(), ts.num_threads),
        (worker, &b"worker)(x"[..], 2)
    );
}

#[test]
fn tasks_and_children() {
    let t = Testee::start();
    let mut task = t.task();
    let worker = t.num("worker") as Pid;
    let child = t.num("child") as Pid;
    let mut want = vec![t.pid, worker];
    want.sort_unstable();
    assert_eq!(task.tasks().unwrap(), want);
    assert_eq!(task.children().unwrap(), vec![child]);
    assert_eq!(task.thread(t.pid).unwrap().children().unwrap(), vec![child]);
    assert_eq!(task.thread(worker).unwrap().children().unwrap(), vec![]);
    assert!(all_pids().unwrap().contains(&t.pid));
}

#[test]
fn limits_match_what_was_set_and_prlimit() {
    let t = Testee::start();
    let l = t.task().limits().unwrap();
    let nofile = l.get(libc::RLIMIT_NOFILE).unwrap();
    assert_eq!((nofile.soft, nofile.hard), (1000, 2000));
    let core = l.get(libc::RLIMIT_CORE).unwrap();
    assert_eq!((core.soft, core.hard), (0, 4096));
    let mq = l.get(libc::RLIMIT_MSGQUEUE).unwrap();
    assert_eq!((mq.soft, mq.hard), (12345, 23456));
    for res in 0..RLIM_NLIMITS as u32 {
        assert_eq!(l.get(res), Some(prlimit_get(t.pid, res)), "resource {res}");
    }
    let own = Task::open_self().unwrap().limits().unwrap();
    assert_ne!(own.get(libc::RLIMIT_MSGQUEUE), l.get(libc::RLIMIT_MSGQUEUE));
}

/// The limits of `pid` by `prlimit64`, which reads them without setting.
fn prlimit_get(pid: Pid, res: u32) -> Rlimit {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a null new limit makes this a pure read into `old`, a valid
    // rlimit64 that outlives the call.
    let rc = unsafe { libc::prlimit64(pid, res as _, std::ptr::null(), &mut old) };
    assert_eq!(
        rc,
        0,
        "prlimit64 {res}: {}",
        std::io::Error::last_os_error()
    );
    Rlimit {
        soft: old.rlim_cur,
        hard: old.rlim_max,
    }
}

#[test]
fn fds_and_fdinfo_of_every_kind() {
    let t = Testee::start();
    let mut task = t.task();
    let dir = t.dir();
    let fds: HashMap<i32, FdTarget> = task
        .fds()
        .unwrap()
        .iter()
        .map(|f| (f.fd, f.target()))
        .collect();
    let anon = |n: &str| FdTarget::AnonInode(n.to_string());
    assert_eq!(fds[&100], anon("eventfd"));
    assert_eq!(fds[&101], anon("timerfd"));
    assert_eq!(fds[&102], anon("timerfd"));
    assert_eq!(fds[&103], anon("signalfd"));
    assert_eq!(fds[&104], anon("eventpoll"));
    assert_eq!(fds[&105], anon("inotify"));
    assert!(
        matches!(&fds[&106], FdTarget::AnonInode(n) if n == "pidfd")
            || matches!(&fds[&106], FdTarget::Inode { kind, .. } if kind == "pidfd")
    );
    let (FdTarget::Pipe(r), FdTarget::Pipe(w)) = (&fds[&107], &fds[&108]) else {
        panic!("107/108 are not pipes: {:?} {:?}", fds[&107], fds[&108]);
    };
    assert_eq!(r, w);
    assert_eq!(
        fds[&109],
        FdTarget::Path {
            path: dir.join("regular"),
            deleted: false
        }
    );
    assert_eq!(fds[&110], anon("fanotify"));
    assert!(matches!(fds[&111], FdTarget::Socket(_)));
    assert_eq!(
        fds[&112],
        FdTarget::Path {
            path: "/dev/null".into(),
            deleted: false
        }
    );

    assert!(matches!(
        task.fdinfo(100).unwrap().kind,
        FdInfoKind::Eventfd {
            count: 26,
            semaphore: Some(true),
            ..
        }
    ));
    let FdInfoKind::Timerfd(m) = task.fdinfo(101).unwrap().kind else {
        panic!("101 not a timerfd")
    };
    assert_eq!(
        (m.clockid, m.settime_flags, m.it_interval, m.ticks),
        (libc::CLOCK_MONOTONIC, 0, (5, 0), 0)
    );
    assert!((990..=1000).contains(&m.it_value.0), "{m:?}");
    let FdInfoKind::Timerfd(rt) = task.fdinfo(102).unwrap().kind else {
        panic!("102 not a timerfd")
    };
    assert_eq!(
        (rt.clockid, rt.settime_flags, rt.it_interval),
        (libc::CLOCK_REALTIME, 3, (0, 0))
    );
    assert!((99_000..=100_000).contains(&rt.it_value.0), "{rt:?}");
    assert_eq!(
        task.fdinfo(103).unwrap().kind,
        FdInfoKind::Signalfd {
            sigmask: (1 << (libc::SIGUSR1 - 1)) | (1 << (libc::SIGINT - 1))
        }
    );
    let FdInfoKind::Epoll(mut targets) = task.fdinfo(104).unwrap().kind else {
        panic!("104 not epoll")
    };
    targets.sort_by_key(|t| t.tfd);
    assert_eq!(targets.len(), 2);
    assert_eq!(
        (targets[0].tfd, targets[0].data),
        (100, 0x1122_3344_5566_7788)
    );
    assert_eq!(
        targets[0].events & (libc::EPOLLIN | libc::EPOLLET) as u32,
        (libc::EPOLLIN | libc::EPOLLET) as u32
    );
    assert_eq!((targets[1].tfd, targets[1].data), (101, 42));
    assert_ne!(targets[1].events & libc::EPOLLOUT as u32, 0);
    assert_eq!(targets[1].events & libc::EPOLLIN as u32, 0);
    let FdInfoKind::Inotify(w) = task.fdinfo(105).unwrap().kind else {
        panic!("105 not inotify")
    };
    let dir_ino = std::fs::metadata(&dir).unwrap().ino();
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].wd as i64, w[0].ino), (t.num("inotify_wd"), dir_ino));
    assert_eq!(
        w[0].mask & (libc::IN_CREATE | libc::IN_DELETE),
        libc::IN_CREATE | libc::IN_DELETE
    );
    assert!(!w[0].handle.handle.is_empty());
    assert!(
        matches!(task.fdinfo(106).unwrap().kind, FdInfoKind::Pidfd { pid, .. } if pid == std::process::id() as Pid)
    );
    let reg = task.fdinfo(109).unwrap();
    assert_eq!(reg.pos, 123);
    assert_eq!(reg.flags & libc::O_ACCMODE as u32, libc::O_RDWR as u32);
    assert_ne!(reg.flags & libc::O_APPEND as u32, 0);
    assert_eq!(
        reg.ino,
        Some(std::fs::metadata(dir.join("regular")).unwrap().ino())
    );
    assert_eq!(reg.kind, FdInfoKind::Plain);
    let FdInfoKind::Fanotify { marks, .. } = task.fdinfo(110).unwrap().kind else {
        panic!("110 not fanotify")
    };
    assert!(
        matches!(&marks[..], [FanotifyMark::Inode { ino, mask, .. }] if *ino == dir_ino && *mask & libc::FAN_OPEN as u32 != 0),
        "{marks:?}"
    );
    assert_eq!(
        task.fdinfo(112).unwrap().flags & libc::O_ACCMODE as u32,
        libc::O_WRONLY as u32
    );

    // A closed fd is missing, the task is not gone.
    let err = task.fdinfo(999).unwrap_err();
    assert!(err.is_not_found() && !err.is_vanished(), "{err}");
    assert!(!fds.contains_key(&999));
}

#[test]
fn posix_timers() {
    let t = Testee::start();
    let timers = t.task().posix_timers().unwrap();
    assert_eq!(timers.len(), 3);
    let by_id = |k: &str| *timers.iter().find(|x| i64::from(x.id) == t.num(k)).unwrap();
    let s = by_id("timer_sig");
    assert_eq!(
        (s.signal, s.sival_ptr, s.notify, s.notify_pid, s.clock_id),
        (
            libc::SIGALRM,
            0x1234,
            TimerNotify::Signal,
            t.pid,
            libc::CLOCK_MONOTONIC
        )
    );
    let n = by_id("timer_none");
    assert_eq!(
        (n.notify, n.clock_id),
        (TimerNotify::None, libc::CLOCK_BOOTTIME)
    );
    let w = by_id("timer_tid");
    assert_eq!(
        (w.notify, w.notify_pid, w.signal, w.clock_id),
        (
            TimerNotify::ThreadId,
            t.num("worker") as Pid,
            libc::SIGUSR2,
            libc::CLOCK_REALTIME
        )
    );
    assert_eq!(w.notify.sigev_notify(), libc::SIGEV_THREAD_ID);
    assert!(
        Task::open_self()
            .unwrap()
            .posix_timers()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn links_and_small_files() {
    let t = Testee::start();
    let mut task = t.task();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_rcriu-proc-testee"))
        .canonicalize()
        .unwrap();
    assert_eq!(task.cwd().unwrap(), t.dir());
    assert_eq!(task.root().unwrap(), Path::new("/"));
    assert_eq!(task.exe().unwrap(), exe);
    let args = task.cmdline().unwrap();
    assert_eq!(args.len(), 2);
    assert_eq!(args[1], t.dir.path().as_os_str().as_encoded_bytes());
    assert!(
        task.environ()
            .unwrap()
            .iter()
            .any(|e| e == b"RCRIU_PROC_TESTEE=hello world")
    );
    assert_eq!(task.comm().unwrap(), b"a) b (c");
    assert_eq!(task.timerslack_ns().unwrap(), 123_456);
    assert_eq!(task.oom_score_adj().unwrap(), 123);
    assert_eq!(task.personality().unwrap(), libc::ADDR_NO_RANDOMIZE as u32);
    let mut own = Task::open_self().unwrap();
    assert_eq!(task.loginuid().unwrap(), own.loginuid().unwrap());
    assert_ne!(own.oom_score_adj().unwrap(), 123);

    let auxv = task.auxv().unwrap();
    let get = |k| auxv.iter().find(|e| e.key == k).map(|e| e.value);
    assert_eq!(get(libc::AT_PAGESZ), Some(PAGE));
    assert_eq!(get(libc::AT_UID), Some(0));
    assert!(get(libc::AT_ENTRY).is_some_and(|e| e != 0));
    assert!(get(libc::AT_RANDOM).is_some());

    let mounts = task.mountinfo().unwrap();
    assert!(mounts.iter().any(|m| m.mount_point == Path::new("/")));
    assert!(
        mounts
            .iter()
            .any(|m| m.mount_point == Path::new("/proc") && m.fs_type == "proc")
    );
    assert_eq!(task.cgroups().unwrap(), own.cgroups().unwrap());
    let ns = task.namespaces().unwrap();
    assert_eq!(ns, own.namespaces().unwrap());
    for kind in [
        NsKind::Net,
        NsKind::Mnt,
        NsKind::Pid,
        NsKind::User,
        NsKind::Ipc,
        NsKind::Uts,
    ] {
        let id = ns
            .get(kind)
            .unwrap_or_else(|| panic!("no {kind:?} namespace"));
        let st = std::fs::metadata(format!("/proc/{}/ns/{}", t.pid, kind.file_name())).unwrap();
        assert_eq!(id, st.ino(), "{kind:?}");
    }
    assert_ne!(ns.net, ns.mnt);
    assert_eq!(
        task.timens_offsets().unwrap(),
        own.timens_offsets().unwrap()
    );
    let uid_map = task.uid_map().unwrap();
    assert_eq!(uid_map, own.uid_map().unwrap());
    assert!(!uid_map.is_empty());
    assert_eq!(task.gid_map().unwrap(), own.gid_map().unwrap());
    assert_eq!(task.lsm_label().unwrap(), own.lsm_label().unwrap());
}

#[test]
fn map_files_name_and_open_mapped_files() {
    let t = Testee::start();
    let task = t.task();
    let dir = t.dir();
    let list = task.map_files().unwrap();
    let (f, d) = (t.addr("m_file"), t.addr("m_deleted"));
    assert!(list.contains(&(f, f + 2 * PAGE)));
    assert!(!list.contains(&(t.addr("m_rw"), t.addr("m_rw") + 2 * PAGE)));
    assert_eq!(
        task.map_file_link(f, f + 2 * PAGE).unwrap(),
        dir.join("mapped")
    );
    let mut deleted = dir.join("deleted").into_os_string();
    deleted.push(" (deleted)");
    assert_eq!(
        task.map_file_link(d, d + 2 * PAGE).unwrap(),
        PathBuf::from(deleted)
    );
    let mut buf = [0u8; 4];
    task.open_map_file(f, f + 2 * PAGE)
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    // The file is mapped from offset 0 of the file, whatever the area's offset.
    assert_eq!(buf, [1; 4]);
    let gone = task.open_map_file(d, d + 2 * PAGE).unwrap();
    assert_eq!(gone.metadata().unwrap().nlink(), 0);
    assert!(task.map_file_link(f, f + PAGE).unwrap_err().is_not_found());
}

/// Ranges with `mask` removed from their categories, merged again.
fn without(ranges: &[PageRange], mask: PageCategories) -> Vec<PageRange> {
    let mut out: Vec<PageRange> = Vec::new();
    for r in ranges {
        let c = r.categories - mask;
        match out.last_mut() {
            Some(l) if l.end == r.start && l.categories == c => l.end = r.end,
            _ => out.push(PageRange {
                categories: c,
                ..*r
            }),
        }
    }
    out
}

#[test]
fn pagemap_and_pagemap_scan_agree_on_a_known_pattern() {
    let t = Testee::start();
    let task = t.task();
    let mut pm = task.pagemap().unwrap();
    let support = pm
        .scan_support()
        .unwrap()
        .expect("PAGEMAP_SCAN on Linux 6.18");
    assert!(support.contains(PageCategories::GUARD), "{support:?}");

    let base = t.addr("m_pattern");
    let mut e = Vec::new();
    pm.read(base, base + 16 * PAGE, &mut e).unwrap();
    assert_eq!(e.len(), 16);
    let present: Vec<usize> = (0..16).filter(|&i| e[i].is_present()).collect();
    assert_eq!(present, vec![0, 2, 5, 7]);
    assert!(e[12].is_guard() && !e[12].is_present());
    assert!(
        (0..16)
            .filter(|&i| i != 12)
            .all(|i| !e[i].is_guard() && !e[i].is_swapped())
    );
    assert!(
        [0, 2, 5]
            .iter()
            .all(|&i| e[i].is_exclusive() && e[i].pfn() != Some(0))
    );
    // Page 7 is the shared zero page: not exclusive.
    assert!(!e[7].is_exclusive());

    let want = PageCategories::PRESENT | PageCategories::SWAPPED | PageCategories::GUARD;
    let mut by_ioctl = Vec::new();
    let mut by_read = Vec::new();
    pm.scan_ioctl(base, base + 16 * PAGE, want, &mut by_ioctl)
        .unwrap();
    pm.scan_pagemap(base, base + 16 * PAGE, want, &mut by_read)
        .unwrap();
    assert_eq!(by_ioctl, by_read);
    let rel: Vec<(u64, u64, PageCategories)> = without(&by_ioctl, PageCategories::SOFT_DIRTY)
        .iter()
        .map(|r| ((r.start - base) / PAGE, (r.end - base) / PAGE, r.categories))
        .collect();
    let pw = PageCategories::PRESENT | PageCategories::WRITTEN;
    assert_eq!(
        rel,
        vec![
            (0, 1, pw),
            (2, 3, pw),
            (5, 6, pw),
            (7, 8, pw | PageCategories::PFNZERO),
            (
                12,
                13,
                PageCategories::GUARD | PageCategories::SWAPPED | PageCategories::WRITTEN
            ),
        ]
    );
    let mut method = Vec::new();
    assert_eq!(
        pm.scan(base, base + 16 * PAGE, want, &mut method).unwrap(),
        ScanMethod::Ioctl
    );
    assert_eq!(method, by_ioctl);

    // A private file mapping: its read page (and any the kernel's
    // fault-around mapped with it) are file pages.
    let f = t.addr("m_file");
    let mut fr = Vec::new();
    pm.scan_ioctl(f, f + 2 * PAGE, want, &mut fr).unwrap();
    assert_eq!(fr.first().map(|r| r.start), Some(f));
    assert!(fr.iter().all(|r| {
        r.end <= f + 2 * PAGE
            && r.categories
                .contains(PageCategories::PRESENT | PageCategories::FILE)
    }));
    let mut anon = Vec::new();
    pm.scan_ioctl(t.addr("m_rw"), t.addr("m_rw") + 2 * PAGE, want, &mut anon)
        .unwrap();
    assert!(anon.len() == 1 && !anon[0].categories.contains(PageCategories::FILE));

    // Over the whole address space, but for PFN-mapped areas the ioctl
    // skips, the two ways agree but for what pagemap cannot show.
    // khugepaged may collapse an area between the two reads: an area that
    // differs is read again once.
    let mut t2 = t.task();
    let hidden = PageCategories::HUGE | PageCategories::WPALLOWED;
    let mut areas = 0;
    for s in t2.smaps().unwrap() {
        if s.flags.intersects(VmFlags::PFNMAP | VmFlags::IO) || s.vma.path == VmaPath::Vsyscall {
            continue;
        }
        let mut agree = false;
        for _ in 0..2 {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            pm.scan_ioctl(s.vma.start, s.vma.end, want, &mut a).unwrap();
            pm.scan_pagemap(s.vma.start, s.vma.end, want, &mut b)
                .unwrap();
            if without(&a, hidden) == without(&b, hidden) {
                agree = true;
                break;
            }
        }
        assert!(agree, "ioctl and pagemap differ on {:?}", s.vma);
        areas += 1;
    }
    assert!(areas > 10);

    // Unaligned ranges are refused.
    assert!(matches!(
        pm.read(base + 1, base + PAGE, &mut e),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        pm.scan_ioctl(base, base + 1, want, &mut by_ioctl),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn a_task_that_exits_is_reported_vanished() {
    require_root();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rcriu-proc-testee"))
        .arg("idle")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as Pid;
    let mut task = Task::open(pid).unwrap();
    assert_eq!(task.status().unwrap().pid, pid);
    let mut pm = task.pagemap().unwrap();
    drop(child.stdin.take());
    child.wait().unwrap();
    for err in [
        task.status().unwrap_err(),
        task.maps().unwrap_err(),
        task.smaps().unwrap_err(),
        task.stat().unwrap_err(),
        task.exe().unwrap_err(),
        task.fds().unwrap_err(),
    ] {
        assert!(err.is_vanished(), "{err:?}");
        assert_eq!(err.pid(), pid);
        assert!(
            err.path().starts_with(format!("/proc/{pid}")),
            "{}",
            err.path().display()
        );
        assert!(err.to_string().contains(&pid.to_string()), "{err}");
    }
    let mut e = Vec::new();
    assert!(
        pm.read(0x400000, 0x401000, &mut e)
            .unwrap_err()
            .is_vanished()
    );
    let mut r = Vec::new();
    let any = PageCategories::PRESENT;
    assert!(
        pm.scan_ioctl(0x400000, 0x401000, any, &mut r)
            .unwrap_err()
            .is_vanished()
    );
    assert!(Task::open(pid).unwrap_err().is_vanished());
    assert!(!task.is_alive());
}

#[test]
fn this_process_reads_itself() {
    let mut me = Task::open_self().unwrap();
    let pid = std::process::id() as Pid;
    assert_eq!(me.pid(), pid);
    assert_eq!(me.status().unwrap().pid, pid);
    assert_eq!(me.stat().unwrap().pid, pid);
    let exe = std::env::current_exe().unwrap();
    assert_eq!(me.exe().unwrap(), exe);
    let maps = me.maps().unwrap();
    let here = this_process_reads_itself as *const () as u64;
    let m = maps
        .iter()
        .find(|m| m.start <= here && here < m.end)
        .expect("the code's area");
    assert!(m.prot.contains(Prot::EXEC));
    assert_eq!(m.path, file(exe, false));
    assert!(me.tasks().unwrap().contains(&pid));
}

/// More regions than one `PAGEMAP_SCAN` call returns (every other page of
/// 64 MiB present): the kernel's `walk_end` may stop short of what it
/// filled in, and no page may be reported twice or missed.
#[test]
fn a_scan_of_many_regions_reports_each_page_once() {
    let n: u64 = 16384;
    let len = (n * PAGE) as usize;
    // SAFETY: a fresh private anonymous mapping, only used by this test
    // and unmapped at its end.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(m, libc::MAP_FAILED);
    let base = m as u64;
    // SAFETY: within the mapping made above.
    unsafe {
        libc::madvise(m, len, libc::MADV_NOHUGEPAGE);
        for i in (0..n).step_by(2) {
            *(m as *mut u8).add((i * PAGE) as usize) = 1;
        }
    }
    let mut pm = Task::open_self().unwrap().pagemap().unwrap();
    let mut by_ioctl = Vec::new();
    pm.scan_ioctl(
        base,
        base + n * PAGE,
        PageCategories::PRESENT,
        &mut by_ioctl,
    )
    .unwrap();
    let mut by_read = Vec::new();
    pm.scan_pagemap(base, base + n * PAGE, PageCategories::PRESENT, &mut by_read)
        .unwrap();
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(m, len) };
    let pages: u64 = by_ioctl.iter().map(|r| (r.end - r.start) / PAGE).sum();
    assert_eq!(pages, n / 2, "each present page once");
    assert!(
        by_ioctl.windows(2).all(|w| w[0].end <= w[1].start),
        "sorted, apart"
    );
    let starts = |v: &[PageRange]| v.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>();
    assert_eq!(starts(&by_ioctl), starts(&by_read));
}
