//! The parasite: loaded into a seized process, run as a daemon on one of
//! its threads, asked for what only the task can tell, and removed.
//!
//! Infection, step by step (each undone by [`Parasite::cure`] or on drop):
//! 1. save the thread's registers, FPU state and signal mask;
//! 2. map a shared anonymous area in the victim (remote `mmap`), open it
//!    through `/proc/PID/map_files` and map it here too;
//! 3. copy the blob in, relocated for the victim's address, and prepare a
//!    frame of the saved state for the parasite's self-cure;
//! 4. listen on an abstract unix socket in the victim's network namespace;
//! 5. run the parasite's `Init` (it connects and traps), accept the
//!    connection after checking it comes from the victim, and let the
//!    parasite go on as a daemon serving commands.
//!
//! Curing sends `Fini` (the parasite traps), puts the saved state back,
//! and unmaps the area with a remote `munmap`.

use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rcriu_parasite_abi::{
    ARGS_SIZE, Cmd, CredsArgs, CtlMsg, DumpPagesArgs, FdsArgs, InitArgs, IoVec, ItimersArgs,
    KSigaction, MAX_FDS, MAX_IOVS, MAX_MPROTECT, MAX_POSIX_TIMERS, MprotectArgs, MprotectRange,
    PosixTimer, PosixTimersArgs, RseqArgs, SIGFRAME_SIZE, STACK_REDZONE, STACK_SIZE,
    SigactionsArgs, SigaltstackArgs, StackT, ThreadInfoArgs, TlsArgs, WritePagesArgs,
};
use rcriu_proc::Pid;

use crate::fault::{self, FaultPoint};
use crate::remote::{self, Event, Remote, Resume, Stop, ThreadCtx};
use crate::seize::{Seized, Thread};
use crate::sys::Pod;
use crate::sys::{self, LocalMap};
use crate::{Error, Result, blob, sigframe};

const PAGE: usize = 4096;
/// How often a wait on the parasite looks at the victim's state (for a
/// fault in the parasite) and at the abort flag, in milliseconds.
const POLL_MS: i32 = 100;

const NR_MMAP: i64 = libc::SYS_mmap;
const NR_MPROTECT: i64 = libc::SYS_mprotect;
const NR_MUNMAP: i64 = libc::SYS_munmap;

/// Offsets in the shared area.
#[derive(Clone, Copy, Debug)]
struct Layout {
    args: usize,
    sigframe: usize,
    stack_top: usize,
    /// The stack of one-shot commands run on the other threads.
    thread_stack_top: usize,
    len: usize,
}

impl Layout {
    fn new() -> Layout {
        let args = blob::IMAGE.len().next_multiple_of(PAGE);
        let sigframe = args + ARGS_SIZE;
        let stack = sigframe + SIGFRAME_SIZE;
        let thread_stack = stack + STACK_SIZE;
        let len = thread_stack + STACK_SIZE;
        Layout {
            args,
            sigframe,
            stack_top: thread_stack - STACK_REDZONE,
            thread_stack_top: len - STACK_REDZONE,
            len,
        }
    }
}

/// Where the parasite is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing in the victim yet.
    Clean,
    /// The area is mapped; the thread is stopped with our registers or
    /// its own.
    Mapped,
    /// The daemon runs on the thread.
    Daemon,
    /// The daemon has stopped (trap or fault); the thread's own state is
    /// yet to be put back.
    Stopped,
    /// Cured: nothing of ours is left.
    Cured,
}

/// A parasite running in a seized process.
#[derive(Debug)]
pub struct Parasite<'s> {
    seized: &'s Seized,
    thread: &'s Thread,
    ctx: ThreadCtx,
    syscall_ip: u64,
    layout: Layout,
    base: u64,
    map: Option<LocalMap>,
    sock: Option<OwnedFd>,
    phase: Phase,
    /// The pipe pages go through: our read end, and the write end's number
    /// in the victim.
    pipe: Option<(OwnedFd, RawFd)>,
    /// A `DumpPages` command was sent and its answer not read yet.
    dump_in_flight: bool,
    /// The file `WritePages` writes to: its number here and in the victim.
    out_file: Option<(RawFd, RawFd)>,
    /// The thread's rseq registration, read while it was stopped.
    rseq: sys::RseqConfig,
}

impl<'s> Parasite<'s> {
    /// Infects the process's leader thread.
    pub fn infect(seized: &'s Seized) -> Result<Parasite<'s>> {
        Parasite::infect_thread(seized, seized.leader())
    }

    /// Infects `thread` of the seized process.
    pub fn infect_thread(seized: &'s Seized, thread: &'s Thread) -> Result<Parasite<'s>> {
        let pid = seized.pid();
        let ctx = ThreadCtx::capture(thread.tid)?;
        let syscall_ip = Remote::new(pid, thread, &ctx)?.syscall_ip();
        let tid = thread.tid;
        let rseq = sys::get_rseq_config(tid)
            .map_err(Error::ptrace("reading the rseq configuration", tid))?;
        let mut p = Parasite {
            seized,
            thread,
            ctx,
            syscall_ip,
            layout: Layout::new(),
            base: 0,
            map: None,
            sock: None,
            phase: Phase::Clean,
            pipe: None,
            dump_in_flight: false,
            out_file: None,
            rseq,
        };
        p.map_area()?;
        fault::point(FaultPoint::AfterMap)?;
        p.start()?;
        fault::point(FaultPoint::AfterInfect)?;
        Ok(p)
    }

    fn pid(&self) -> Pid {
        self.seized.pid()
    }

    fn remote(&self) -> Remote<'_> {
        Remote::with_ip(self.thread, &self.ctx, self.syscall_ip)
    }

    /// The victim's addresses the parasite occupies (to leave out of a
    /// dump of its memory).
    pub fn area(&self) -> std::ops::Range<u64> {
        self.base..self.base + self.layout.len as u64
    }

    /// The thread the parasite runs on, and its saved state.
    pub fn thread_ctx(&self) -> &ThreadCtx {
        &self.ctx
    }

    fn map_area(&mut self) -> Result<()> {
        let pid = self.pid();
        let len = self.layout.len as u64;
        let r = self.remote();
        let base = r.syscall_ok(
            "mmap",
            NR_MMAP,
            [
                0,
                len,
                (libc::PROT_READ | libc::PROT_EXEC) as u64,
                (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?;
        self.base = base;
        self.phase = Phase::Mapped;
        // Opened while the area is still one mapping (the mprotect below
        // splits it).
        let path = format!("/proc/{pid}/map_files/{base:x}-{:x}", base + len);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(Error::host("opening the shared area", pid))?;
        let map = LocalMap::map(file.as_fd(), 0, self.layout.len)
            .map_err(Error::host("mapping the shared area", pid))?;
        let data = blob::DATA_OFF as u64;
        self.remote().syscall_ok(
            "mprotect",
            NR_MPROTECT,
            [
                base + data,
                len - data,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                0,
                0,
                0,
            ],
        )?;
        map.write(0, &blob::image_at(base));
        self.map = Some(map);
        log::debug!("parasite area of {pid} at {base:#x}+{len:#x}");
        Ok(())
    }

    fn map(&self) -> &LocalMap {
        self.map
            .as_ref()
            .expect("the area is mapped before any command")
    }

    fn start(&mut self) -> Result<()> {
        let pid = self.pid();
        let tid = self.thread.tid;
        let frame_addr = self.base + self.layout.sigframe as u64;
        let frame = sigframe::build(&self.ctx, frame_addr);
        if frame.len() > SIGFRAME_SIZE {
            return Err(Error::Protocol {
                pid,
                what: format!("a signal frame of {} bytes does not fit", frame.len()),
            });
        }
        self.map().write(self.layout.sigframe, &frame);

        let (listener, name) = listen_in_netns(pid)?;
        let mut init = InitArgs {
            sigframe: frame_addr,
            addr_len: (size_of::<libc::sa_family_t>() + 1 + name.len()) as u32,
            status: 1,
            sun_path: [0; 108],
            failed_syscall: 0,
        };
        init.sun_path[1..1 + name.len()].copy_from_slice(&name);
        self.map().put(self.layout.args, &init);

        // One-shot Init: it connects, then traps.
        let mut regs = self.ctx.regs.for_call(
            self.base + blob::HEAD as u64,
            Some(self.base + self.layout.stack_top as u64),
        );
        regs.di = Cmd::Init as u64;
        regs.si = self.base + self.layout.args as u64;
        sys::set_sigmask(tid, remote::BLOCK_ALL_BUT_TRAP)
            .map_err(Error::ptrace("blocking signals", tid))?;
        sys::set_regs(tid, &regs).map_err(Error::ptrace("setting the registers", tid))?;
        let stop = remote::resume_until(self.thread, Resume::Cont)?;
        if stop != Stop::Trap {
            return Err(Error::UnexpectedStop {
                tid,
                what: "a syscall stop instead of the parasite's trap".into(),
            });
        }
        let out = sys::get_regs(tid).map_err(Error::ptrace("reading the registers", tid))?;
        let init: InitArgs = self.map().get(self.layout.args);
        if out.ax != 0 || init.status != 0 {
            return Err(Error::Command {
                pid,
                cmd: "init",
                at: init.failed_syscall,
                source: std::io::Error::from_raw_os_error(-(out.ax as i64) as i32),
            });
        }
        let sock = sys::accept_nonblock(listener.as_fd())
            .map_err(Error::host("accepting the parasite's connection", pid))?;
        let peer = sys::peer_pid(sock.as_fd())
            .map_err(Error::host("checking the parasite's connection", pid))?;
        if peer != pid {
            return Err(Error::Protocol {
                pid,
                what: format!("the control socket was connected by process {peer}"),
            });
        }
        self.sock = Some(sock);
        // Past the trap: the daemon loop.
        sys::cont(tid, 0).map_err(Error::ptrace("resuming", tid))?;
        self.phase = Phase::Daemon;
        log::info!("parasite runs in task {tid} of {pid}");
        Ok(())
    }

    fn sock(&self) -> BorrowedFd<'_> {
        self.sock
            .as_ref()
            .expect("the socket is connected while the daemon runs")
            .as_fd()
    }

    fn put_args<T: Copy>(&self, v: &T) {
        self.map().put(self.layout.args, v);
    }

    fn get_args<T: Pod>(&self) -> T {
        self.map().get(self.layout.args)
    }

    /// Sends `cmd` (with `fds` attached) and waits for its answer.
    fn call(
        &mut self,
        cmd: Cmd,
        name: &'static str,
        fds: &[RawFd],
    ) -> Result<(CtlMsg, Vec<OwnedFd>)> {
        if self.phase != Phase::Daemon {
            return Err(Error::Protocol {
                pid: self.pid(),
                what: format!("command {name} while the parasite is not running"),
            });
        }
        let msg = CtlMsg {
            cmd: cmd as u32,
            ..CtlMsg::default()
        };
        sys::send_with_fds(self.sock(), bytes_of(&msg), fds)
            .map_err(Error::host("sending a command", self.pid()))?;
        self.answer(cmd, name)
    }

    /// Waits for the answer to `cmd`, watching the victim meanwhile.
    fn answer(&mut self, cmd: Cmd, name: &'static str) -> Result<(CtlMsg, Vec<OwnedFd>)> {
        let pid = self.pid();
        loop {
            let ready = sys::poll_in(&[self.sock()], POLL_MS)
                .map_err(Error::host("waiting for the parasite", pid))?;
            if ready[0] {
                return self.read_answer(cmd, name);
            }
            self.watch()?;
            fault::check_abort()?;
        }
    }

    fn read_answer(&mut self, cmd: Cmd, name: &'static str) -> Result<(CtlMsg, Vec<OwnedFd>)> {
        let pid = self.pid();
        let mut buf = [0u8; size_of::<CtlMsg>()];
        let (n, fds) = sys::recv_with_fds(self.sock(), &mut buf, 0)
            .map_err(Error::host("reading the parasite's answer", pid))?;
        if n != buf.len() {
            return Err(Error::Protocol {
                pid,
                what: format!("answer of {n} bytes to {name}"),
            });
        }
        let msg: CtlMsg = from_bytes(&buf);
        if msg.cmd != cmd as u32 {
            return Err(Error::Protocol {
                pid,
                what: format!("answer to command {} for {name}", msg.cmd),
            });
        }
        if msg.err < 0 {
            return Err(Error::Command {
                pid,
                cmd: name,
                at: msg.err_at,
                source: std::io::Error::from_raw_os_error(-msg.err),
            });
        }
        Ok((msg, fds))
    }

    /// Checks, without waiting, that the daemon's thread is still running
    /// our code: a signal meant for it is held back, a fault is an error.
    fn watch(&mut self) -> Result<()> {
        let tid = self.thread.tid;
        loop {
            match remote::next_event(self.thread, true) {
                Ok(Event::Nothing) => return Ok(()),
                Ok(Event::HeldBack) => {
                    sys::cont(tid, 0).map_err(Error::ptrace("resuming", tid))?;
                }
                Ok(Event::Ours(_)) => {
                    self.phase = Phase::Stopped;
                    return Err(Error::UnexpectedStop {
                        tid,
                        what: "the parasite stopped on its own".into(),
                    });
                }
                Err(e) => {
                    self.phase = Phase::Stopped;
                    return Err(e);
                }
            }
        }
    }

    /// Every signal's action (`[n - 1]` for signal n; SIGKILL's and
    /// SIGSTOP's are zero).
    pub fn sigactions(&mut self) -> Result<Vec<KSigaction>> {
        self.call(Cmd::Sigactions, "sigactions", &[])?;
        let a: SigactionsArgs = self.get_args();
        Ok(a.actions.to_vec())
    }

    /// The real, virtual and profiling interval timers.
    pub fn itimers(&mut self) -> Result<ItimersArgs> {
        self.call(Cmd::Itimers, "itimers", &[])?;
        Ok(self.get_args())
    }

    /// The state of the POSIX timers with these ids.
    pub fn posix_timers(&mut self, ids: &[i32]) -> Result<Vec<PosixTimer>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_POSIX_TIMERS) {
            let mut a = PosixTimersArgs {
                nr: chunk.len() as u32,
                _pad: 0,
                timers: [PosixTimer::default(); MAX_POSIX_TIMERS],
            };
            for (t, &id) in a.timers.iter_mut().zip(chunk) {
                t.id = id;
            }
            self.put_args(&a);
            self.call(Cmd::PosixTimers, "posix timers", &[])?;
            let a: PosixTimersArgs = self.get_args();
            out.extend_from_slice(&a.timers[..chunk.len()]);
        }
        Ok(out)
    }

    /// Runs one-shot command `cmd` on another thread of the process (one
    /// stopped by the seize), while the daemon waits: its own registers,
    /// FPU state and signal mask are put back afterwards.
    fn run_in_thread(&mut self, thread: &Thread, cmd: Cmd, name: &'static str) -> Result<()> {
        let pid = self.pid();
        let tid = thread.tid;
        if tid == self.thread.tid {
            return Err(Error::Protocol {
                pid,
                what: format!("{name} on the daemon's own thread as a one-shot command"),
            });
        }
        let ctx = ThreadCtx::capture(tid)?;
        let mut regs = ctx.regs.for_call(
            self.base + blob::HEAD as u64,
            Some(self.base + self.layout.thread_stack_top as u64),
        );
        regs.di = cmd as u64;
        regs.si = self.base + self.layout.args as u64;
        let run = || -> Result<u64> {
            sys::set_sigmask(tid, remote::BLOCK_ALL_BUT_TRAP)
                .map_err(Error::ptrace("blocking signals", tid))?;
            sys::set_regs(tid, &regs).map_err(Error::ptrace("setting the registers", tid))?;
            let stop = remote::resume_until(thread, Resume::Cont)?;
            if stop != Stop::Trap {
                return Err(Error::UnexpectedStop {
                    tid,
                    what: format!("a syscall stop instead of the end of {name}"),
                });
            }
            let out = sys::get_regs(tid).map_err(Error::ptrace("reading the registers", tid))?;
            Ok(out.ax)
        };
        let r = run();
        // Whatever happened, the thread gets its own state back.
        let back = ctx.restore();
        let ax = r?;
        back?;
        if (ax as i64) < 0 {
            return Err(Error::Command {
                pid,
                cmd: name,
                at: 0,
                source: std::io::Error::from_raw_os_error(-(ax as i64) as i32),
            });
        }
        Ok(())
    }

    /// What `thread` holds of its own (tid address, timer slack, alternate
    /// stack, name, credentials), read from inside it: on the parasite's
    /// thread as a daemon command, on any other as a one-shot.
    pub fn thread_info(&mut self, thread: &Thread) -> Result<Box<ThreadInfoArgs>> {
        if thread.tid == self.thread.tid {
            self.call(Cmd::Thread, "thread", &[])?;
        } else {
            self.run_in_thread(thread, Cmd::Thread, "thread")?;
        }
        Ok(Box::new(self.get_args()))
    }

    /// The alternate signal stack of another thread.
    pub fn thread_sigaltstack(&mut self, thread: &Thread) -> Result<StackT> {
        self.run_in_thread(thread, Cmd::Sigaltstack, "sigaltstack")?;
        let a: SigaltstackArgs = self.get_args();
        Ok(a.stack)
    }

    /// The alternate signal stack of the parasite's thread.
    pub fn sigaltstack(&mut self) -> Result<StackT> {
        self.call(Cmd::Sigaltstack, "sigaltstack", &[])?;
        let a: SigaltstackArgs = self.get_args();
        Ok(a.stack)
    }

    /// fs/gs base and the GDT's TLS entries of the parasite's thread.
    pub fn tls(&mut self) -> Result<TlsArgs> {
        self.call(Cmd::Tls, "tls", &[])?;
        Ok(self.get_args())
    }

    /// The registered rseq area (from ptrace, read at infection) and its
    /// contents as the task sees them now; `None` when no area is
    /// registered.
    pub fn rseq(&mut self) -> Result<Option<(sys::RseqConfig, [u8; 32])>> {
        let cfg = self.rseq;
        if cfg.rseq_abi_pointer == 0 {
            return Ok(None);
        }
        self.put_args(&RseqArgs {
            addr: cfg.rseq_abi_pointer,
            len: cfg.rseq_abi_size,
            _pad: 0,
            area: [0; 32],
        });
        self.call(Cmd::Rseq, "rseq", &[])?;
        let a: RseqArgs = self.get_args();
        Ok(Some((cfg, a.area)))
    }

    /// Credentials and process attributes, as the task sees them.
    pub fn creds(&mut self) -> Result<Box<CredsArgs>> {
        self.call(Cmd::Creds, "creds", &[])?;
        Ok(Box::new(self.get_args()))
    }

    /// Copies of the task's fds `fds`, in order.
    pub fn fds(&mut self, fds: &[RawFd]) -> Result<Vec<OwnedFd>> {
        let mut out = Vec::with_capacity(fds.len());
        for chunk in fds.chunks(MAX_FDS) {
            let mut a = FdsArgs {
                nr: chunk.len() as u32,
                _pad: 0,
                fds: [-1; MAX_FDS],
            };
            a.fds[..chunk.len()].copy_from_slice(chunk);
            self.put_args(&a);
            let (_, got) = self.call(Cmd::SendFds, "send fds", &[])?;
            if got.len() != chunk.len() {
                return Err(Error::Protocol {
                    pid: self.pid(),
                    what: format!("{} fds back for {} asked", got.len(), chunk.len()),
                });
            }
            out.extend(got);
        }
        Ok(out)
    }

    /// Changes the protection of ranges of the victim's memory.
    pub fn mprotect(&mut self, ranges: &[MprotectRange]) -> Result<()> {
        for chunk in ranges.chunks(MAX_MPROTECT) {
            let mut a = MprotectArgs {
                nr: chunk.len() as u32,
                _pad: 0,
                ranges: [MprotectRange::default(); MAX_MPROTECT],
            };
            a.ranges[..chunk.len()].copy_from_slice(chunk);
            self.put_args(&a);
            self.call(Cmd::Mprotect, "mprotect", &[])?;
        }
        Ok(())
    }

    /// Gives the victim our pipe's write end; returns its number there.
    fn setup_pipe(&mut self) -> Result<()> {
        if self.pipe.is_some() {
            return Ok(());
        }
        let pid = self.pid();
        let (rd, wr) = sys::pipe().map_err(Error::host("creating the page pipe", pid))?;
        // As large as we may make it: fewer round trips per megabyte.
        let _ = sys::set_pipe_size(wr.as_fd(), pipe_max_size());
        let theirs = self.give_fd(wr.as_fd())?;
        // Our copy of the write end goes: the victim's is the only one.
        drop(wr);
        self.pipe = Some((rd, theirs));
        Ok(())
    }

    /// Gives the victim a copy of `fd` (SCM_RIGHTS); returns its number
    /// there.
    fn give_fd(&mut self, fd: BorrowedFd<'_>) -> Result<RawFd> {
        self.call(Cmd::RecvFd, "receive fd", &[fd.as_raw_fd()])?;
        let a: FdsArgs = self.get_args();
        if a.nr != 1 {
            return Err(Error::Protocol {
                pid: self.pid(),
                what: format!("the parasite received {} fds instead of 1", a.nr),
            });
        }
        Ok(a.fds[0])
    }

    /// Gives the victim `file` (once); returns its number there.
    fn setup_out_file(&mut self, file: BorrowedFd<'_>) -> Result<RawFd> {
        match self.out_file {
            Some((ours, theirs)) if ours == file.as_raw_fd() => return Ok(theirs),
            Some((_, theirs)) => {
                self.out_file = None;
                self.close_remote_fd(theirs);
            }
            None => {}
        }
        let theirs = self.give_fd(file)?;
        self.out_file = Some((file.as_raw_fd(), theirs));
        Ok(theirs)
    }

    /// Writes the victim's memory in `ranges` to `file` from `offset` on,
    /// in order, the parasite writing it itself (`pwritev`): one copy and
    /// no pipe, so about twice as fast as [`dump_pages`](Self::dump_pages).
    /// For room already allocated in the file only: the blocks a victim's
    /// write allocates would be charged to its memory cgroup, and past its
    /// RLIMIT_FSIZE it would get SIGXFSZ. A security module may refuse
    /// the victim's writes into a file rcriu opened: that fails the
    /// command with EACCES or EPERM before any byte is written
    /// ([`Error::denied`]). Returns the bytes written.
    pub fn write_pages(
        &mut self,
        ranges: &[IoVec],
        file: BorrowedFd<'_>,
        offset: u64,
    ) -> Result<u64> {
        if fault::write_pages_denied() {
            return Err(Error::Command {
                pid: self.pid(),
                cmd: "write pages",
                at: 0,
                source: std::io::Error::from_raw_os_error(libc::EACCES),
            });
        }
        let fd = self.setup_out_file(file)?;
        let mut done = 0u64;
        for chunk in ranges.chunks(MAX_IOVS) {
            let mut a = WritePagesArgs {
                fd,
                nr_iovs: chunk.len() as u32,
                offset: offset + done,
                iovs: [IoVec::default(); MAX_IOVS],
            };
            a.iovs[..chunk.len()].copy_from_slice(chunk);
            let want: u64 = chunk.iter().map(|v| v.len).sum();
            self.put_args(&a);
            let (m, _) = self.call(Cmd::WritePages, "write pages", &[])?;
            if m.ret != want {
                return Err(Error::Protocol {
                    pid: self.pid(),
                    what: format!("{} bytes of pages written for {want} asked", m.ret),
                });
            }
            done += want;
            fault::point(FaultPoint::MidPageDump)?;
        }
        Ok(done)
    }

    /// Writes the victim's memory in `ranges` to `out` (at its file
    /// position), in order: the parasite `vmsplice`s the pages into a pipe
    /// and we `splice` them out. Returns the bytes written.
    pub fn dump_pages(&mut self, ranges: &[IoVec], out: BorrowedFd<'_>) -> Result<u64> {
        self.setup_pipe()?;
        let mut total = 0u64;
        for chunk in ranges.chunks(MAX_IOVS) {
            match self.dump_chunk(chunk, out) {
                Ok(n) => total += n,
                Err(e) => {
                    self.unblock_dump();
                    return Err(e);
                }
            }
        }
        Ok(total)
    }

    fn dump_chunk(&mut self, chunk: &[IoVec], out: BorrowedFd<'_>) -> Result<u64> {
        let pid = self.pid();
        let Some((_, remote_fd)) = self.pipe.as_ref().map(|(r, w)| (r.as_raw_fd(), *w)) else {
            return Err(Error::Protocol {
                pid,
                what: "no page pipe".into(),
            });
        };
        let mut a = DumpPagesArgs {
            pipe_fd: remote_fd,
            nr_iovs: chunk.len() as u32,
            iovs: [IoVec::default(); MAX_IOVS],
        };
        a.iovs[..chunk.len()].copy_from_slice(chunk);
        let expected: u64 = chunk.iter().map(|v| v.len).sum();
        self.put_args(&a);
        let msg = CtlMsg {
            cmd: Cmd::DumpPages as u32,
            ..CtlMsg::default()
        };
        sys::send_with_fds(self.sock(), bytes_of(&msg), &[])
            .map_err(Error::host("sending a command", pid))?;
        self.dump_in_flight = true;

        let mut moved = 0u64;
        let mut answer: Option<CtlMsg> = None;
        let mut first = true;
        loop {
            if let Some(a) = answer
                && moved >= a.ret
            {
                break;
            }
            let rd = self
                .pipe
                .as_ref()
                .map(|(r, _)| r.as_fd())
                .ok_or(Error::Protocol {
                    pid,
                    what: "no page pipe".into(),
                })?;
            let ready = sys::poll_in(&[rd, self.sock()], POLL_MS)
                .map_err(Error::host("waiting for pages", pid))?;
            if ready[0] {
                match sys::splice_out(
                    rd,
                    out,
                    1 << 30,
                    libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
                ) {
                    // End of file: nothing writes to the pipe any more (the
                    // process died with the parasite).
                    Ok(0) if sys::is_dead(pid) => return Err(Error::Exited { pid }),
                    Ok(0) => {
                        return Err(Error::Protocol {
                            pid,
                            what: "the page pipe closed mid-dump".into(),
                        });
                    }
                    Ok(n) => moved += n as u64,
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                    Err(e) => return Err(Error::host("writing pages out", pid)(e)),
                }
                if first {
                    first = false;
                    fault::point(FaultPoint::MidPageDump)?;
                }
                continue;
            }
            if ready[1] && answer.is_none() {
                // Read, even as an error: not to be waited for again.
                self.dump_in_flight = false;
                let (m, _) = self.read_answer(Cmd::DumpPages, "dump pages")?;
                answer = Some(m);
                continue;
            }
            if !ready[0] && !ready[1] {
                self.watch()?;
                fault::check_abort()?;
            }
        }
        if moved != expected {
            return Err(Error::Protocol {
                pid,
                what: format!("{moved} bytes of pages came for {expected} asked"),
            });
        }
        Ok(moved)
    }

    /// After a failed page dump: closing our end of the pipe makes the
    /// parasite's vmsplice fail, so it answers and serves again.
    fn unblock_dump(&mut self) {
        let Some((rd, remote_fd)) = self.pipe.take() else {
            return;
        };
        drop(rd);
        if self.phase != Phase::Daemon {
            return;
        }
        // Its answer to the interrupted command (an error, or its count),
        // unless that answer is what ended the dump.
        if std::mem::take(&mut self.dump_in_flight)
            && let Err(e) = self.answer(Cmd::DumpPages, "dump pages")
        {
            log::debug!(
                "parasite of {}: after the failed page dump: {e}",
                self.pid()
            );
        }
        self.close_remote_fd(remote_fd);
    }

    fn close_remote_fd(&mut self, fd: RawFd) {
        let mut a = FdsArgs {
            nr: 1,
            _pad: 0,
            fds: [-1; MAX_FDS],
        };
        a.fds[0] = fd;
        self.put_args(&a);
        if let Err(e) = self.call(Cmd::CloseFds, "close fds", &[]) {
            log::warn!("parasite of {}: closing fd {fd}: {e}", self.pid());
        }
    }

    /// Removes the parasite and puts the thread back exactly as it was.
    pub fn cure(mut self) -> Result<()> {
        self.cure_inner()?;
        fault::point(FaultPoint::AfterCure)
    }

    fn cure_inner(&mut self) -> Result<()> {
        let pid = self.pid();
        let tid = self.thread.tid;
        let mut first_err: Option<Error> = None;
        if self.phase == Phase::Daemon {
            if let Some((rd, remote_fd)) = self.pipe.take() {
                drop(rd);
                self.close_remote_fd(remote_fd);
            }
            if let Some((_, remote_fd)) = self.out_file.take() {
                self.close_remote_fd(remote_fd);
            }
            if let Err(e) = self.stop_daemon() {
                log::warn!("parasite of {pid} did not stop cleanly: {e}");
                first_err.get_or_insert(e);
            }
        }
        if matches!(self.phase, Phase::Mapped | Phase::Stopped) {
            self.sock = None;
            if let Err(e) = self.ctx.restore() {
                first_err.get_or_insert(e);
            }
            if self.base != 0 {
                let len = self.layout.len as u64;
                if let Err(e) =
                    self.remote()
                        .syscall_ok("munmap", NR_MUNMAP, [self.base, len, 0, 0, 0, 0])
                {
                    log::error!("cannot unmap the parasite area of {pid}: {e}");
                    first_err.get_or_insert(e);
                }
            }
            self.map = None;
            self.phase = Phase::Cured;
            log::info!("parasite removed from task {tid} of {pid}");
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Ends the daemon: `Fini` and its trap, or, if that fails, an
    /// interrupt. The thread is stopped afterwards.
    fn stop_daemon(&mut self) -> Result<()> {
        let tid = self.thread.tid;
        let fini = self.call(Cmd::Fini, "fini", &[]).and_then(|_| {
            loop {
                match remote::next_event(self.thread, false)? {
                    Event::Ours(Stop::Trap) => break Ok(()),
                    Event::HeldBack => sys::cont(tid, 0).map_err(Error::ptrace("resuming", tid))?,
                    _ => {}
                }
            }
        });
        if self.phase == Phase::Daemon {
            self.phase = Phase::Stopped;
            if let Err(e) = &fini {
                log::warn!("parasite in {tid}: {e}; interrupting it");
                // Stop it wherever it is; its registers are replaced anyway.
                sys::interrupt(tid).map_err(Error::ptrace("interrupting", tid))?;
                // A process killed meanwhile never stops: a dead leader is
                // not even reported while its other threads wait for us.
                loop {
                    match sys::wait(tid, libc::WNOHANG)
                        .map_err(Error::ptrace("waiting for", tid))?
                    {
                        sys::Wait::Stopped { .. } => break,
                        sys::Wait::Nothing if !sys::is_dead(tid) => {
                            std::thread::sleep(std::time::Duration::from_micros(100));
                        }
                        _ => return Err(Error::Exited { pid: tid }),
                    }
                }
            }
        }
        fini.map(drop)
    }
}

impl Drop for Parasite<'_> {
    fn drop(&mut self) {
        if self.phase != Phase::Cured
            && self.phase != Phase::Clean
            && let Err(e) = self.cure_inner()
        {
            log::error!("curing the parasite of {}: {e}", self.pid());
        }
    }
}

/// The pipe size an unprivileged process may set (`pipe-max-size`).
fn pipe_max_size() -> usize {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// A listening socket in `pid`'s network namespace (abstract unix
/// addresses belong to one), and its name.
fn listen_in_netns(pid: Pid) -> Result<(OwnedFd, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let target = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(Error::host("opening the network namespace", pid))?;
    let ours = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(Error::host("opening our network namespace", pid))?;
    let same = match (target.metadata(), ours.metadata()) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    };
    if !same {
        sys::setns(target.as_fd(), libc::CLONE_NEWNET)
            .map_err(Error::host("entering the network namespace", pid))?;
    }
    let sock = sys::seqpacket_socket();
    if !same && let Err(e) = sys::setns(ours.as_fd(), libc::CLONE_NEWNET) {
        // This thread would stay in the victim's namespace: fatal.
        panic!("cannot return to rcriu's network namespace: {e}");
    }
    let sock = sock.map_err(Error::host("creating the control socket", pid))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("rcriu-parasite-{}-{pid}-{nanos:x}", std::process::id()).into_bytes();
    sys::bind_abstract(sock.as_fd(), &name)
        .map_err(Error::host("binding the control socket", pid))?;
    sys::listen(sock.as_fd(), 1).map_err(Error::host("listening on the control socket", pid))?;
    Ok((sock, name))
}

fn bytes_of<T: Pod>(v: &T) -> &[u8] {
    sys::bytes_of(v)
}

fn from_bytes<T: Pod>(b: &[u8]) -> T {
    sys::read_pod(b)
}
