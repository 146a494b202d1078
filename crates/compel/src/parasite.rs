//! The parasite: loaded into a seized process, run as a daemon on one of
//! its threads, asked for what only the task can tell, and removed.
//!
//! Infection, step by step:
//! 1. save the thread's registers, FPU state and signal mask, and write
//!    its lifeline on its stack (see [`crate::lifeline`]);
//! 2. map a shared anonymous area in the victim with a remote `mmap` whose
//!    lifeline runs the `munmap` too, open it through
//!    `/proc/PID/map_files` and map it here;
//! 3. copy the blob in, relocated for the victim's address, with the
//!    control block telling it how to leave;
//! 4. listen on an abstract unix socket in the victim's network namespace;
//! 5. start the parasite: it connects (followed syscall by syscall) and
//!    serves commands as a daemon.
//!
//! At any instant rcriu may die: until the daemon runs, the lifeline of
//! the thread's registers undoes the mapping and puts the thread back;
//! once it runs, the control socket breaks and the daemon leaves by
//! itself: it closes what it was given, unmaps its area and lands in the
//! thread's original state. Curing is the same leaving, with rcriu
//! stopping the thread right after the `munmap` to put its state back
//! itself.

use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rcriu_parasite_abi::{
    ARGS_SIZE, CTL_SIZE, Cmd, CredsArgs, Ctl, CtlMsg, DumpPagesArgs, FdsArgs, InitArgs, IoVec,
    ItimersArgs, JUMP_BP, Jump, KSigaction, MAX_FDS, MAX_IOVS, MAX_MEMPOLICIES, MAX_MPROTECT,
    MAX_POSIX_TIMERS, MemPoliciesArgs, MprotectArgs, MprotectRange, ONESHOT_DONE, ONESHOT_FUTEX_OP,
    PosixTimer, PosixTimersArgs, RseqArgs, STACK_REDZONE, STACK_SIZE, SigactionsArgs,
    SigaltstackArgs, StackT, ThreadInfoArgs, TlsArgs, WritePagesArgs,
};
use rcriu_proc::Pid;

use crate::fault::{self, FaultPoint};
use crate::lifeline::{Exit, Gadgets};
use crate::remote::{self, Event, Remote, Resume, ThreadCtx, Way};
use crate::seize::{Seized, Thread};
use crate::sys::Pod;
use crate::sys::{self, LocalMap};
use crate::{Error, Result, blob};

const PAGE: usize = 4096;
/// How often a wait on the parasite looks at the victim's state (for a
/// fault in the parasite) and at the abort flag, in milliseconds.
const POLL_MS: i32 = 100;
/// Most syscall stops of the parasite's start or leaving (it makes a
/// handful): more means it went astray.
/// Room for a thread's lifeline frames in the area (two signal frames with
/// the largest xsave area).
const FRAMES_SIZE: usize = 32 * 1024;

const NR_MMAP: u64 = libc::SYS_mmap as u64;
const NR_MPROTECT: u64 = libc::SYS_mprotect as u64;
const NR_MUNMAP: u64 = libc::SYS_munmap as u64;
const NR_CLOSE: u64 = libc::SYS_close as u64;
const NR_GETPID: u64 = libc::SYS_getpid as u64;
const NR_FUTEX: u64 = libc::SYS_futex as u64;
const FUTEX_WAKE_OP_PRIVATE: u64 = 5 | 128;

/// Offsets in the shared area.
#[derive(Clone, Copy, Debug)]
struct Layout {
    args: usize,
    ctl: usize,
    /// Where the lifeline frames of the daemon's thread and of a one-shot
    /// thread go when their stacks have no room (tops of two regions).
    frames_top: usize,
    oneshot_frames_top: usize,
    stack_top: usize,
    /// The stack of one-shot commands run on the other threads.
    thread_stack_top: usize,
    len: usize,
}

impl Layout {
    fn new() -> Layout {
        let args = blob::IMAGE.len().next_multiple_of(PAGE);
        let ctl = args + ARGS_SIZE;
        let frames = ctl + CTL_SIZE;
        let stack = frames + 2 * FRAMES_SIZE;
        let thread_stack = stack + STACK_SIZE;
        let len = thread_stack + STACK_SIZE;
        Layout {
            args,
            ctl,
            frames_top: frames + FRAMES_SIZE,
            oneshot_frames_top: frames + 2 * FRAMES_SIZE,
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
    /// The area is mapped; the thread is stopped with registers whose
    /// lifeline unmaps it, or with its own.
    Mapped,
    /// The daemon runs on the thread.
    Daemon,
    /// The daemon has stopped (a fault, an error); the thread's own state
    /// is yet to be put back.
    Stopped,
    /// Cured: nothing of ours is left.
    Cured,
}

/// Where a stopped thread of ours is (see [`Parasite::position`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    /// In the area, or about to leave it: rcriu takes it back.
    InArea,
    /// Past the syscall of its way back (the area's `munmap` made).
    Past,
    /// Back in its own code, by itself.
    Gone,
}

/// A parasite running in a seized process.
#[derive(Debug)]
pub struct Parasite<'s> {
    seized: &'s Seized,
    thread: &'s Thread,
    ctx: ThreadCtx,
    /// The victim's code lifelines use (`None`: it has none, the
    /// parasite's own are used once the area is there).
    gadgets: Option<Gadgets>,
    /// How remote syscalls run on the daemon's thread.
    way: Way,
    /// Standing here at the gadget, a syscall lands in the area's
    /// `munmap`, then in the thread's state.
    undo: Option<Exit>,
    /// Some lifeline lands through the area (the victim has no code for
    /// one, or a thread's stack had no room for its frame): the daemon
    /// leaves it mapped, rcriu unmaps it.
    keep_area: bool,
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
    /// The other threads one-shot commands ran on: their state and way.
    others: Vec<(ThreadCtx, Way)>,
    /// Our fds the victim holds (given with `RecvFd`, not closed yet).
    given: Vec<RawFd>,
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
        let tid = thread.tid;
        let rseq = sys::get_rseq_config(tid)
            .map_err(Error::ptrace("reading the rseq configuration", tid))?;
        let gadgets = Gadgets::find(pid)?;
        let way = Way::new(pid, &ctx, gadgets)?;
        let mut p = Parasite {
            seized,
            thread,
            ctx,
            gadgets,
            way,
            undo: None,
            keep_area: false,
            layout: Layout::new(),
            base: 0,
            map: None,
            sock: None,
            phase: Phase::Clean,
            pipe: None,
            dump_in_flight: false,
            out_file: None,
            rseq,
            others: Vec::new(),
            given: Vec::new(),
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

    /// The victim's addresses the parasite occupies (to leave out of a
    /// dump of its memory).
    pub fn area(&self) -> std::ops::Range<u64> {
        self.base..self.base + self.layout.len as u64
    }

    /// The thread the parasite runs on, and its saved state.
    pub fn thread_ctx(&self) -> &ThreadCtx {
        &self.ctx
    }

    /// Whether rcriu dying now leaves the victim exactly as it was (its
    /// area unmapped too).
    pub fn leaves_no_trace(&self) -> bool {
        self.gadgets.is_some() && matches!(self.way, Way::Lifeline(_))
    }

    fn map_area(&mut self) -> Result<()> {
        let pid = self.pid();
        let len = self.layout.len as u64;
        let prot = (libc::PROT_READ | libc::PROT_EXEC) as u64;
        let shared = (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u64;
        let base = match &mut self.way {
            Way::Lifeline(l) if self.gadgets.is_some() => {
                // The address is chosen first, so that the lifeline of the
                // mmap can unmap it.
                let addr = free_range(pid, len)?;
                let undo = l.undo(pid, &self.ctx, NR_MUNMAP, [addr, len, 0, 0, 0, 0])?;
                let flags = shared | libc::MAP_FIXED_NOREPLACE as u64;
                let regs = undo.regs(
                    &l.gadgets.syscall,
                    &self.ctx.regs,
                    NR_MMAP,
                    [addr, len, prot, flags, u64::MAX, 0],
                );
                let r = remote::run_syscall(self.thread.tid, &regs);
                if !matches!(r, Ok(got) if got as u64 == addr) {
                    // Not ours to unmap: the thread goes back at once.
                    self.ctx.restore_regs()?;
                    let got = r?;
                    return Err(Error::RemoteSyscall {
                        name: "mmap",
                        tid: self.thread.tid,
                        source: std::io::Error::from_raw_os_error(if got < 0 {
                            -got as i32
                        } else {
                            libc::EEXIST
                        }),
                    });
                }
                self.undo = Some(undo);
                addr
            }
            _ => Remote::with_way(self.thread, &self.ctx, self.way.clone()).syscall_ok(
                "mmap",
                NR_MMAP as i64,
                [0, len, prot, shared, u64::MAX, 0],
            )?,
        };
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
        let args = [
            base + data,
            len - data,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            0,
            0,
            0,
        ];
        map.write(0, &blob::image_at(base));
        self.map = Some(map);
        match (&self.way, self.undo) {
            (Way::Lifeline(l), Some(undo)) => {
                let regs = undo.regs(&l.gadgets.syscall, &self.ctx.regs, NR_MPROTECT, args);
                let r = remote::run_syscall(self.thread.tid, &regs)?;
                if r < 0 {
                    return Err(Error::RemoteSyscall {
                        name: "mprotect",
                        tid: self.thread.tid,
                        source: std::io::Error::from_raw_os_error(-r as i32),
                    });
                }
            }
            _ => {
                Remote::with_way(self.thread, &self.ctx, self.way.clone()).syscall_ok(
                    "mprotect",
                    NR_MPROTECT as i64,
                    args,
                )?;
            }
        }
        if self.gadgets.is_none() || matches!(self.way, Way::Bare(_)) {
            // Nothing to land through, or no room on the stack: the
            // parasite's own gadgets (and room) from now on; the area
            // then stays if rcriu dies.
            self.keep_area = true;
            self.way = self.in_area_way(&self.ctx.clone(), self.layout.frames_top)?;
        }
        log::debug!("parasite area of {pid} at {base:#x}+{len:#x}");
        Ok(())
    }

    /// Where a stopped thread of ours is: in the area, at the gadget's
    /// syscall of its way back or past it, or back in its own code (it
    /// left by itself: rcriu's hands off).
    fn position(&self, tid: Pid, way: &Way) -> Result<Position> {
        let ip = sys::get_regs(tid)
            .map_err(Error::ptrace("reading the registers", tid))?
            .ip;
        if self.area().contains(&ip) {
            return Ok(Position::InArea);
        }
        let Way::Lifeline(l) = way else {
            return Ok(Position::InArea);
        };
        Ok(match l.gadgets.past_syscall(ip) {
            Some(false) => Position::InArea,
            Some(true) => Position::Past,
            None => Position::Gone,
        })
    }

    /// Makes the daemon leave its area mapped (a lifeline lands through
    /// it): its leave becomes a `getpid` where it was the `munmap`.
    fn keep_area(&mut self) {
        if self.keep_area {
            return;
        }
        self.keep_area = true;
        let at =
            self.layout.ctl + std::mem::offset_of!(Ctl, leave) + std::mem::offset_of!(Jump, ax);
        self.map().put(at, &NR_GETPID);
    }

    /// A way back through the area for the thread of `ctx`: the victim's
    /// gadgets or the parasite's, with the frame on the thread's stack or,
    /// without room there, in the area below `frames_top`.
    fn in_area_way(&self, ctx: &ThreadCtx, frames_top: usize) -> Result<Way> {
        let pid = self.pid();
        let own = Gadgets::in_area(self.base, blob::SYSCALL_RET as u64, blob::SIGRETURN as u64);
        let g = self.gadgets.unwrap_or(own);
        if let Some(l) = crate::lifeline::Lifeline::new(pid, ctx, g)? {
            return Ok(Way::Lifeline(l));
        }
        let top = self.base + frames_top as u64;
        match crate::lifeline::Lifeline::new_at(pid, ctx, g, top)? {
            Some(l) => Ok(Way::Lifeline(l)),
            None => Err(Error::Protocol {
                pid,
                what: format!("no room for the frame of task {} in the area", ctx.tid),
            }),
        }
    }

    fn map(&self) -> &LocalMap {
        self.map
            .as_ref()
            .expect("the area is mapped before any command")
    }

    fn ctl_addr(&self) -> u64 {
        self.base + self.layout.ctl as u64
    }

    fn oneshots_addr(&self) -> u64 {
        self.ctl_addr() + std::mem::offset_of!(Ctl, oneshots) as u64
    }

    /// The counter of one-shot commands in flight, as seen here.
    fn oneshots(&self) -> &std::sync::atomic::AtomicU32 {
        self.map()
            .atomic_u32(self.layout.ctl + std::mem::offset_of!(Ctl, oneshots))
    }

    /// The jump that leaves by way of `way`'s exit with syscall `nr`.
    fn jump(way: &Way, nr: u64, args: [u64; 2]) -> Option<Jump> {
        let Way::Lifeline(l) = way else {
            return None;
        };
        Some(Jump {
            ip: l.gadgets.syscall.addr,
            ax: nr,
            di: args[0],
            si: args[1],
            sp: l.exit.sp,
            bp: l.exit.bp.unwrap_or(0),
            flags: if l.exit.bp.is_some() { JUMP_BP } else { 0 },
        })
    }

    fn start(&mut self) -> Result<()> {
        let pid = self.pid();
        let tid = self.thread.tid;
        let len = self.layout.len as u64;
        // How the daemon leaves: unmapping the area through the victim's
        // code, or landing through the area (which then stays).
        let nr = if self.keep_area { NR_GETPID } else { NR_MUNMAP };
        let leave = Parasite::jump(&self.way, nr, [self.base, len])
            .expect("the daemon's thread has a lifeline once the area is there");
        self.map().put(
            self.layout.ctl,
            &Ctl {
                leave,
                sock: -1,
                ..Ctl::default()
            },
        );

        let (listener, name) = listen_in_netns(pid)?;
        let mut init = InitArgs {
            addr_len: (size_of::<libc::sa_family_t>() + 1 + name.len()) as u32,
            status: 1,
            sun_path: [0; 108],
            failed_syscall: 0,
        };
        init.sun_path[1..1 + name.len()].copy_from_slice(&name);
        self.map().put(self.layout.args, &init);

        let mut regs = self.ctx.regs.for_call(
            self.base + blob::HEAD as u64,
            Some(self.base + self.layout.stack_top as u64),
        );
        regs.di = Cmd::Init as u64;
        regs.si = self.base + self.layout.args as u64;
        regs.dx = self.ctl_addr();
        sys::set_regs(tid, &regs).map_err(Error::ptrace("setting the registers", tid))?;
        sys::set_sigmask(tid, remote::BLOCK_ALL).map_err(Error::ptrace("blocking signals", tid))?;
        remote::resume(tid, Resume::Cont, 0)?;
        self.phase = Phase::Daemon;
        let status_at = self.layout.ctl + std::mem::offset_of!(Ctl, init_status);
        // Until it connects, or says it cannot (then it waits for us).
        loop {
            let ready = sys::poll_in(&[listener.as_fd()], POLL_MS)
                .map_err(Error::host("waiting for the parasite's connection", pid))?;
            if ready[0] {
                break;
            }
            let status: i32 = self.map().get(status_at);
            if status < 0 {
                self.phase = Phase::Stopped;
                sys::interrupt(tid).map_err(Error::ptrace("interrupting", tid))?;
                wait_stopped(tid)?;
                let init: InitArgs = self.map().get(self.layout.args);
                return Err(Error::Command {
                    pid,
                    cmd: "init",
                    at: init.failed_syscall,
                    source: std::io::Error::from_raw_os_error(-status),
                });
            }
            self.watch()?;
            fault::check_abort()?;
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
        log::info!("parasite runs in task {tid} of {pid}");
        Ok(())
    }

    /// Unmaps the area with a remote syscall (when the victim had no code
    /// for the parasite to unmap it itself).
    fn unmap_from_outside(&self) -> Result<()> {
        let len = self.layout.len as u64;
        let bare = Way::Bare(remote::find_syscall_insn(self.pid(), self.thread.tid)?);
        Remote::with_way(self.thread, &self.ctx, bare)
            .syscall_ok("munmap", NR_MUNMAP as i64, [self.base, len, 0, 0, 0, 0])
            .map(drop)
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
    /// our code: a stop signal goes on to the kernel, a group stop is let
    /// go, a fault is an error.
    fn watch(&mut self) -> Result<()> {
        let tid = self.thread.tid;
        loop {
            match remote::next_event(tid, true, Resume::Cont) {
                Ok(Event::Nothing) => return Ok(()),
                Ok(Event::Trap) => remote::resume(tid, Resume::Cont, 0)?,
                Ok(Event::Syscall) => {
                    self.phase = Phase::Stopped;
                    return Err(Error::UnexpectedStop {
                        tid,
                        what: "the parasite stopped in a syscall".into(),
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

    /// The saved state and the way back of another thread (captured and
    /// written once).
    fn other(&mut self, thread: &Thread) -> Result<usize> {
        if let Some(i) = self.others.iter().position(|(c, _)| c.tid == thread.tid) {
            return Ok(i);
        }
        let ctx = ThreadCtx::capture(thread.tid)?;
        let way = match self.gadgets {
            Some(g) => match crate::lifeline::Lifeline::new(self.pid(), &ctx, g)? {
                Some(l) => Way::Lifeline(l),
                None => Way::Bare(0),
            },
            None => Way::Bare(0),
        };
        let way = match way {
            Way::Lifeline(l) => Way::Lifeline(l),
            Way::Bare(_) => {
                // It lands through the area: the daemon must leave it.
                self.keep_area();
                self.in_area_way(&ctx, self.layout.oneshot_frames_top)?
            }
        };
        self.others.push((ctx, way));
        Ok(self.others.len() - 1)
    }

    /// Runs one-shot command `cmd` on another thread of the process (one
    /// stopped by the seize), while the daemon waits: its own registers,
    /// FPU state and signal mask are put back afterwards.
    ///
    /// The thread runs the command, says it is done on the control socket
    /// and waits there; rcriu interrupts it and puts it back. Should rcriu
    /// die, the socket breaks and the thread leaves the area by itself with
    /// a futex operation that takes it off the one-shots in flight (the
    /// daemon, leaving, waits for none to be left before it unmaps the
    /// area). So the thread is first set to make that operation at the
    /// gadget, landing in its own state; then the count goes up; then it
    /// runs the command: whenever rcriu dies, it goes back by itself and
    /// the count comes out right. rcriu takes it back the same way: that
    /// futex operation, made from outside the area, then its state.
    fn run_in_thread(&mut self, thread: &Thread, cmd: Cmd, name: &'static str) -> Result<()> {
        let pid = self.pid();
        let tid = thread.tid;
        if tid == self.thread.tid {
            return Err(Error::Protocol {
                pid,
                what: format!("{name} on the daemon's own thread as a one-shot command"),
            });
        }
        let i = self.other(thread)?;
        let count = self.oneshots_addr();
        let futex = [
            count,
            FUTEX_WAKE_OP_PRIVATE,
            1,
            0,
            count,
            u64::from(ONESHOT_FUTEX_OP),
        ];
        let (ctx, way) = &self.others[i];
        let park = way.regs(&ctx.regs, NR_FUTEX, futex);
        let exit = Parasite::jump(way, NR_FUTEX, [0, 0])
            .expect("a one-shot thread has a lifeline once the area is there");
        let mut regs = ctx.regs.for_call(
            self.base + blob::HEAD as u64,
            Some(self.base + self.layout.thread_stack_top as u64),
        );
        regs.di = cmd as u64;
        regs.si = self.base + self.layout.args as u64;
        regs.dx = self.ctl_addr();
        let ctl_off = self.layout.ctl;
        // Whether the thread runs (its stop not yet seen).
        let mut running = false;
        let r = (|| -> Result<i64> {
            sys::set_regs(tid, &park).map_err(Error::ptrace("setting the registers", tid))?;
            self.oneshots()
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.map()
                .put(ctl_off + std::mem::offset_of!(Ctl, oneshot_leave), &exit);
            self.map()
                .put(ctl_off + std::mem::offset_of!(Ctl, oneshot_ret), &0u64);
            self.map()
                .put(ctl_off + std::mem::offset_of!(Ctl, oneshot_done), &0u32);
            sys::set_regs(tid, &regs).map_err(Error::ptrace("setting the registers", tid))?;
            sys::set_sigmask(tid, remote::BLOCK_ALL)
                .map_err(Error::ptrace("blocking signals", tid))?;
            remote::resume(tid, Resume::Cont, 0)?;
            running = true;
            if let Err((e, stopped)) = self.wait_oneshot(tid, name) {
                running = !stopped;
                return Err(e);
            }
            let ret: u64 = self
                .map()
                .get(ctl_off + std::mem::offset_of!(Ctl, oneshot_ret));
            Ok(ret as i64)
        })();
        // Whatever happened: stopped, the futex operation that ends a
        // one-shot made at the gadget, and its own state back.
        let back = (|| -> Result<()> {
            if running {
                sys::interrupt(tid).map_err(Error::ptrace("interrupting", tid))?;
                wait_stopped(tid)?;
            }
            settle(tid)?;
            match self.position(tid, &self.others[i].1)? {
                Position::InArea => {
                    remote::run_syscall(tid, &park)?;
                }
                // Off the count already.
                Position::Past => {}
                Position::Gone => {
                    log::warn!("task {tid} left {name} by itself");
                    return Ok(());
                }
            }
            self.others[i].0.restore()
        })();
        if r.is_err() || back.is_err() {
            self.oneshots()
                .store(0, std::sync::atomic::Ordering::SeqCst);
        }
        let ret = r?;
        back?;
        if ret < 0 {
            return Err(Error::Command {
                pid,
                cmd: name,
                at: 0,
                source: std::io::Error::from_raw_os_error(-ret as i32),
            });
        }
        Ok(())
    }

    /// Waits until the one-shot command on `tid` says it is done, watching
    /// it (and the daemon) meanwhile. An error says too whether the thread
    /// is stopped (a fault in it).
    fn wait_oneshot(
        &mut self,
        tid: Pid,
        name: &'static str,
    ) -> std::result::Result<(), (Error, bool)> {
        let pid = self.pid();
        let running = |e: Error| (e, false);
        let done_at = self.layout.ctl + std::mem::offset_of!(Ctl, oneshot_done);
        loop {
            let ready = sys::poll_in(&[self.sock()], POLL_MS)
                .map_err(Error::host("waiting for the parasite", pid))
                .map_err(running)?;
            if ready[0] {
                let mut buf = [0u8; size_of::<CtlMsg>()];
                let (n, _) = sys::recv_with_fds(self.sock(), &mut buf, 0)
                    .map_err(Error::host("reading the parasite's message", pid))
                    .map_err(running)?;
                let msg: CtlMsg = from_bytes(&buf);
                if n != buf.len() || msg.cmd != ONESHOT_DONE {
                    return Err(running(Error::Protocol {
                        pid,
                        what: format!(
                            "message {} of {n} bytes instead of the end of {name}",
                            msg.cmd
                        ),
                    }));
                }
                return Ok(());
            }
            if self.map().get::<u32>(done_at) != 0 {
                return Ok(());
            }
            loop {
                match remote::next_event(tid, true, Resume::Cont) {
                    Ok(Event::Nothing) => break,
                    Ok(Event::Trap) => remote::resume(tid, Resume::Cont, 0).map_err(running)?,
                    Ok(Event::Syscall) => {
                        return Err((
                            Error::UnexpectedStop {
                                tid,
                                what: format!("{name} stopped in a syscall"),
                            },
                            true,
                        ));
                    }
                    Err(e) => return Err((e, true)),
                }
            }
            self.watch().map_err(running)?;
            fault::check_abort().map_err(running)?;
        }
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

    /// Copies of the task's fds `fds`, in order, each with whether it is
    /// close-on-exec in the task.
    pub fn fds(&mut self, fds: &[RawFd]) -> Result<Vec<(OwnedFd, bool)>> {
        let mut out = Vec::with_capacity(fds.len());
        for chunk in fds.chunks(MAX_FDS) {
            let (cloexec, got) = self.fds_cmd(Cmd::SendFds, "send fds", chunk)?;
            if got.len() != chunk.len() {
                return Err(Error::Protocol {
                    pid: self.pid(),
                    what: format!("{} fds back for {} asked", got.len(), chunk.len()),
                });
            }
            out.extend(got.into_iter().zip(cloexec));
        }
        Ok(out)
    }

    /// Whether each of the task's fds `fds` is close-on-exec, in order.
    pub fn fd_flags(&mut self, fds: &[RawFd]) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(fds.len());
        for chunk in fds.chunks(MAX_FDS) {
            out.extend(self.fds_cmd(Cmd::FdFlags, "fd flags", chunk)?.0);
        }
        Ok(out)
    }

    /// The NUMA memory policy mode of the area at each of `addrs` (0
    /// for the default, a negative errno when the kernel cannot tell).
    pub fn mem_policies(&mut self, addrs: &[u64]) -> Result<Vec<i32>> {
        let mut out = Vec::with_capacity(addrs.len());
        for chunk in addrs.chunks(MAX_MEMPOLICIES) {
            let mut a = MemPoliciesArgs {
                nr: chunk.len() as u32,
                _pad: 0,
                addrs: [0; MAX_MEMPOLICIES],
                modes: [0; MAX_MEMPOLICIES],
            };
            a.addrs[..chunk.len()].copy_from_slice(chunk);
            self.put_args(&a);
            self.call(Cmd::MemPolicies, "memory policies", &[])?;
            let back: MemPoliciesArgs = self.get_args();
            out.extend_from_slice(&back.modes[..chunk.len()]);
        }
        Ok(out)
    }

    /// `cmd` on the fds of `chunk` (at most [`MAX_FDS`]): their
    /// close-on-exec flags, and the fds sent back.
    fn fds_cmd(
        &mut self,
        cmd: Cmd,
        name: &'static str,
        chunk: &[RawFd],
    ) -> Result<(Vec<bool>, Vec<OwnedFd>)> {
        let mut a = FdsArgs {
            nr: chunk.len() as u32,
            _pad: 0,
            fds: [-1; MAX_FDS],
            cloexec: 0,
        };
        a.fds[..chunk.len()].copy_from_slice(chunk);
        self.put_args(&a);
        let (_, got) = self.call(cmd, name, &[])?;
        let back: FdsArgs = self.get_args();
        let cloexec = (0..chunk.len())
            .map(|i| back.cloexec & (1 << i) != 0)
            .collect();
        Ok((cloexec, got))
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
        self.given.push(a.fds[0]);
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
        self.dump_pages_marked(ranges, out, &[], &mut |_, _| Ok(()))
    }

    /// [`dump_pages`](Self::dump_pages), with `at_mark(k, buf)` called
    /// once the first `marks[k]` bytes (sorted) are out and before any
    /// more go: the caller appends to `buf` what goes between pages (a
    /// page server's header before each run), written to `out` before
    /// the pages that follow. The parasite fills the pipe meanwhile, so a
    /// thousand runs cost a few commands, not a thousand.
    ///
    /// Runs of a few pages each (a final dump's scattered pages) are
    /// copied instead of spliced: read from the pipe and written with
    /// their headers in large writes, not a splice and a write per run.
    pub fn dump_pages_marked(
        &mut self,
        ranges: &[IoVec],
        out: BorrowedFd<'_>,
        marks: &[u64],
        at_mark: &mut dyn FnMut(usize, &mut Vec<u8>) -> std::io::Result<()>,
    ) -> Result<u64> {
        self.setup_pipe()?;
        let bytes: u64 = ranges.iter().map(|v| v.len).sum();
        let copy = !marks.is_empty() && bytes / (marks.len() as u64) < COPY_RUNS_BELOW;
        let mut total = 0u64;
        let mut m = Marks {
            at: marks,
            next: 0,
            f: at_mark,
            buf: Vec::new(),
            scratch: Vec::new(),
        };
        let pid = self.pid();
        m.reach(0)
            .map_err(Error::host("writing between pages", pid))?;
        for chunk in ranges.chunks(MAX_IOVS) {
            match self.dump_chunk(chunk, out, total, &mut m, copy) {
                Ok(n) => total += n,
                Err(e) => {
                    self.unblock_dump();
                    return Err(e);
                }
            }
        }
        m.reach(u64::MAX)
            .and_then(|()| m.flush(out))
            .map_err(Error::host("writing between pages", pid))?;
        Ok(total)
    }

    fn dump_chunk(
        &mut self,
        chunk: &[IoVec],
        out: BorrowedFd<'_>,
        base: u64,
        marks: &mut Marks<'_>,
        copy: bool,
    ) -> Result<u64> {
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
            if ready[0] && copy {
                let n = marks
                    .copy_from(rd, base + moved, out)
                    .map_err(Error::host("copying pages out", pid))?;
                if n == 0 && sys::is_dead(pid) {
                    return Err(Error::Exited { pid });
                }
                moved += n as u64;
                if first {
                    first = false;
                    fault::point(FaultPoint::MidPageDump)?;
                }
                continue;
            }
            if ready[0] {
                marks
                    .flush(out)
                    .map_err(Error::host("writing between pages", pid))?;
                let len = marks.room(base + moved).min(1 << 30);
                match sys::splice_out(
                    rd,
                    out,
                    len as usize,
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
                    Ok(n) => {
                        moved += n as u64;
                        marks
                            .reach(base + moved)
                            .map_err(Error::host("writing between pages", pid))?;
                    }
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
            cloexec: 0,
        };
        a.fds[0] = fd;
        self.put_args(&a);
        match self.call(Cmd::CloseFds, "close fds", &[]) {
            Ok(_) => self.given.retain(|&g| g != fd),
            Err(e) => log::warn!("parasite of {}: closing fd {fd}: {e}", self.pid()),
        }
    }

    /// Removes the parasite and puts the thread back exactly as it was.
    pub fn cure(mut self) -> Result<()> {
        self.cure_inner()?;
        fault::point(FaultPoint::AfterCure)
    }

    fn cure_inner(&mut self) -> Result<()> {
        let pid = self.pid();
        let first_err = match self.phase {
            Phase::Clean | Phase::Cured => return Ok(()),
            Phase::Daemon => match self.stop_daemon() {
                Ok(()) => None,
                Err(e) => {
                    log::warn!("parasite of {pid} did not stop cleanly: {e}");
                    Some(e)
                }
            },
            Phase::Mapped | Phase::Stopped => None,
        };
        let forced = self.force_cure();
        if let Err(e) = &forced {
            log::error!("cannot remove the parasite of {pid}: {e}");
        }
        match first_err {
            Some(e) => Err(e),
            None => forced,
        }
    }

    /// Ends the daemon: `Fini` (it closes the fds it was given and drops a
    /// SIGPIPE it caused, and answers), then it is interrupted where it
    /// waits on the socket; [`force_cure`](Self::force_cure) does the rest.
    fn stop_daemon(&mut self) -> Result<()> {
        let tid = self.thread.tid;
        if let Some((rd, _)) = self.pipe.take() {
            drop(rd);
        }
        let fini = self.call(Cmd::Fini, "fini", &[]);
        if fini.is_ok() {
            self.given.clear();
        }
        self.phase = Phase::Stopped;
        sys::interrupt(tid).map_err(Error::ptrace("interrupting", tid))?;
        wait_stopped(tid)?;
        fini.map(drop)
    }

    /// Removes the parasite with remote syscalls, wherever its thread
    /// stopped: the fds it may hold are closed, the area unmapped, the
    /// thread's state put back.
    fn force_cure(&mut self) -> Result<()> {
        let pid = self.pid();
        let tid = self.thread.tid;
        settle(tid)?;
        // Stopped at one of rcriu's syscalls, or in the parasite's code,
        // or (the daemon ran) on its own way back or past it.
        let pos = if self.phase == Phase::Stopped {
            self.position(tid, &self.way)?
        } else {
            Position::InArea
        };
        match pos {
            Position::InArea => {}
            Position::Past if !self.keep_area => {
                // Its way back made the munmap: only its state is left.
                self.ctx.restore()?;
                self.map = None;
                self.phase = Phase::Cured;
                return Ok(());
            }
            Position::Past => {}
            Position::Gone => {
                log::warn!("the parasite of {pid} left by itself");
                self.map = None;
                self.phase = Phase::Cured;
                return Ok(());
            }
        }
        // The FPU state first: nothing runs that would change it again.
        sys::set_xstate(tid, self.ctx.xstate.as_bytes())
            .map_err(Error::ptrace("restoring the xsave state", tid))?;
        let len = self.layout.len as u64;
        let mut fds = std::mem::take(&mut self.given);
        if let Some(map) = &self.map {
            let ctl: Ctl = map.get(self.layout.ctl);
            if ctl.sock >= 0 && self.phase == Phase::Stopped {
                fds.push(ctl.sock);
            }
        }
        self.sock = None;
        self.pipe = None;
        self.out_file = None;
        // Each syscall lands, should rcriu die, in the area's unmapping
        // (when the victim has the code for it) and the thread's state.
        let way = match (&self.way, self.undo) {
            (Way::Lifeline(l), Some(undo)) => Way::Lifeline(l.with_exit(undo)),
            (w, _) => w.clone(),
        };
        for fd in fds {
            let regs = way.regs(&self.ctx.regs, NR_CLOSE, [fd as u64, 0, 0, 0, 0, 0]);
            if let Err(e) = remote::run_syscall(tid, &regs) {
                log::warn!("parasite of {pid}: closing its fd {fd}: {e}");
            }
        }
        if self.base != 0 {
            match &self.way {
                Way::Lifeline(l) if self.gadgets.is_some() => {
                    let regs = l.exit.regs(
                        &l.gadgets.syscall,
                        &self.ctx.regs,
                        NR_MUNMAP,
                        [self.base, len, 0, 0, 0, 0],
                    );
                    let r = remote::run_syscall(tid, &regs)?;
                    if r != 0 {
                        return Err(Error::RemoteSyscall {
                            name: "munmap",
                            tid,
                            source: std::io::Error::from_raw_os_error(-r as i32),
                        });
                    }
                }
                _ => {
                    self.ctx.restore_regs()?;
                    self.unmap_from_outside()?;
                }
            }
        }
        self.ctx.restore_regs()?;
        self.map = None;
        self.phase = Phase::Cured;
        log::info!("parasite removed from task {tid} of {pid}");
        Ok(())
    }
}

/// Waits until `tid`, interrupted, stops. A process killed meanwhile never
/// stops: a dead leader is not even reported while its other threads wait
/// for us.
fn wait_stopped(tid: Pid) -> Result<()> {
    for i in 0u32.. {
        match remote::next_event(tid, true, Resume::Cont)? {
            Event::Trap | Event::Syscall => return Ok(()),
            // It stops within microseconds: yield to it first.
            Event::Nothing if i < 256 => std::thread::yield_now(),
            Event::Nothing if !sys::is_dead(tid) => {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            Event::Nothing => return Err(Error::Exited { pid: tid }),
        }
    }
    unreachable!("the loop returns")
}

/// Whether `tid` stands at a syscall's entry.
fn entry(tid: Pid) -> Result<bool> {
    let kind =
        sys::syscall_stop_kind(tid).map_err(Error::ptrace("reading the syscall stop", tid))?;
    Ok(kind == sys::SYSCALL_ENTRY)
}

/// Moves `tid`, if it stands at a syscall's entry, past that syscall
/// without running it: new registers set there would make the kernel run
/// the syscall they name.
fn settle(tid: Pid) -> Result<()> {
    if !entry(tid)? {
        return Ok(());
    }
    let mut r = sys::get_regs(tid).map_err(Error::ptrace("reading the registers", tid))?;
    r.orig_ax = u64::MAX;
    sys::set_regs(tid, &r).map_err(Error::ptrace("setting the registers", tid))?;
    remote::to_next_syscall(tid)
}

/// A free stretch of `len` bytes in `pid`'s address space, away from
/// every mapping: the middle of the largest gap.
fn free_range(pid: Pid, len: u64) -> Result<u64> {
    let maps = rcriu_proc::Task::open(pid)
        .and_then(|mut t| t.maps())
        .map_err(Error::proc(pid))?;
    const LOW: u64 = 1 << 32;
    const HIGH: u64 = 0x7ff0_0000_0000;
    let mut best = (0u64, 0u64);
    let mut prev = LOW;
    for v in maps.iter().filter(|v| v.end > LOW && v.start < HIGH) {
        if v.start > prev && v.start - prev > best.1 - best.0 {
            best = (prev, v.start);
        }
        prev = prev.max(v.end);
    }
    if HIGH > prev && HIGH - prev > best.1 - best.0 {
        best = (prev, HIGH);
    }
    if best.1 - best.0 < len + (2 << 20) {
        return Err(Error::Protocol {
            pid,
            what: format!("no room for the parasite's {len} bytes"),
        });
    }
    Ok((best.0 + (best.1 - best.0 - len) / 2) & !(PAGE as u64 - 1))
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

/// Where [`Parasite::dump_pages_marked`] stops to let its caller write
/// between pages.
struct Marks<'a> {
    at: &'a [u64],
    next: usize,
    f: &'a mut dyn FnMut(usize, &mut Vec<u8>) -> std::io::Result<()>,
    /// What is to go out before the next pages: the callbacks' bytes,
    /// and, when copying, pages read from the pipe.
    buf: Vec<u8>,
    /// Where pages are read from the pipe, when copying.
    scratch: Vec<u8>,
}

/// Runs shorter than this on average are copied, not spliced.
const COPY_RUNS_BELOW: u64 = 64 << 10;
/// The most read from the pipe at once, when copying.
const COPY_BATCH: usize = 1 << 20;

impl Marks<'_> {
    /// Calls back for every mark at or before `pos`, bytes out so far.
    fn reach(&mut self, pos: u64) -> std::io::Result<()> {
        while let Some(&m) = self.at.get(self.next)
            && m <= pos
        {
            (self.f)(self.next, &mut self.buf)?;
            self.next += 1;
        }
        Ok(())
    }

    /// Writes out what is gathered.
    fn flush(&mut self, out: BorrowedFd<'_>) -> std::io::Result<()> {
        write_all_vectored(out, &mut [std::io::IoSlice::new(&self.buf)])?;
        self.buf.clear();
        Ok(())
    }

    /// Reads what the pipe `rd` holds (nothing waits), `pos` bytes of
    /// pages out so far, and writes it out at once with what goes before
    /// each piece (one `writev`, the pages not copied again). Returns the
    /// bytes of pages read.
    fn copy_from(
        &mut self,
        rd: BorrowedFd<'_>,
        pos: u64,
        out: BorrowedFd<'_>,
    ) -> std::io::Result<usize> {
        self.scratch.resize(COPY_BATCH, 0);
        // After a poll said the pipe holds pages: what it holds, at once.
        let n = match rustix::io::read(rd, &mut self.scratch[..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => 0,
            Err(e) => return Err(e.into()),
        };
        // Where each piece is: `(in buf, start, end)`, in order.
        let mut pieces: Vec<(bool, usize, usize)> = vec![(true, 0, self.buf.len())];
        let mut done = 0usize;
        while done < n {
            let room = self.room(pos + done as u64).min((n - done) as u64) as usize;
            pieces.push((false, done, done + room));
            done += room;
            let at = self.buf.len();
            self.reach(pos + done as u64)?;
            pieces.push((true, at, self.buf.len()));
        }
        let mut slices: Vec<std::io::IoSlice<'_>> = pieces
            .iter()
            .filter(|&&(_, a, b)| a < b)
            .map(|&(hdr, a, b)| {
                let from = if hdr { &self.buf } else { &self.scratch };
                std::io::IoSlice::new(&from[a..b])
            })
            .collect();
        write_all_vectored(out, &mut slices)?;
        self.buf.clear();
        Ok(n)
    }

    /// The bytes that may go out from `pos` before the next mark.
    fn room(&self, pos: u64) -> u64 {
        self.at.get(self.next).map_or(u64::MAX, |&m| m - pos)
    }
}

/// Writes every byte of `slices` to `out` (`writev`, again after a short
/// write).
fn write_all_vectored(
    out: BorrowedFd<'_>,
    mut slices: &mut [std::io::IoSlice<'_>],
) -> std::io::Result<()> {
    while slices.iter().any(|s| !s.is_empty()) {
        match rustix::io::writev(out, slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut slices, n),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
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
