//! The restore pipeline: a dump's images to a running process.
//!
//! 1. Read and check every image ([`load`]); plan the address space
//!    ([`mm`]; memfds and shared memory are made again and filled here,
//!    [`memfd`]), the page reads ([`pages`]), the registers and the rest
//!    of the core ([`core`]), the fds, cwd and root ([`files`]), the time
//!    namespace ([`timens`]), the vDSO ([`vdso`]) and the cgroups
//!    ([`cgroup`], whose missing directories are made last, before the
//!    fork; the process enters them before it runs). Files are opened and
//!    validated now: nothing is started while anything may still fail.
//! 2. Map the restorer's region ([`region`]) in a hole of both address
//!    spaces, and fork into it with clone3 and the process's pid.
//! 3. The restorer (a no_std blob) builds the process from its `Args`;
//!    rcriu traces it, then sets its registers and lets it go
//!    ([`finish`]).

#![deny(unsafe_code)]

mod cgroup;
mod check;
mod core;
mod error;
mod files;
#[allow(unsafe_code)]
mod files_sys;
mod finish;
mod ghost;
mod load;
mod memfd;
mod mm;
pub mod net_lock;
mod page_helper;
mod pages;
mod pipes;
mod region;
mod sk_inet;
mod sk_netlink;
mod sk_packet;
mod sk_queue;
#[allow(unsafe_code)]
mod sk_sys;
mod sk_unix;
mod sockets;
#[allow(unsafe_code)]
mod sys;
mod tcp_stream;
mod timens;
mod tty;
mod vdso;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rcriu_compel::Xstate;
use rcriu_compel::abi::restorer::{
    self as abi, Args, FLAG_LOGINUID, FLAG_MM_MAP, FLAG_SETSID, FLAG_TIMENS, FdMove, MAGIC, Range,
    Step,
};
use rcriu_images::{ImageDir, ImageFile};
use rcriu_proc::Pid;

pub use check::check;
pub use error::{Error, Result};
pub use files::FileValidation;

/// The top of the user address space on x86_64 (4-level paging).
const TASK_SIZE: u64 = (1 << 47) - 4096;

/// The points of a restore at which criu runs its action scripts, for
/// [`Restore::hook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before anything is read or made.
    PreRestore,
    /// The process is whole but has not run one instruction of its own.
    PostRestore(Pid),
    /// It is about to be let go.
    PreResume(Pid),
    /// It runs.
    PostResume(Pid),
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::PreRestore => "pre-restore",
            Stage::PostRestore(_) => "post-restore",
            Stage::PreResume(_) => "pre-resume",
            Stage::PostResume(_) => "post-resume",
        })
    }
}

/// What [`Restore::hook`] calls at each [`Stage`]; an `Err` says why it
/// refuses to go on.
pub type Hook = Arc<dyn Fn(Stage) -> std::result::Result<(), String> + Send + Sync>;

/// A hook, shown by name only.
#[derive(Clone)]
struct Hooked(Hook);

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// A restore, configured with the builder methods, started with
/// [`Restore::run`].
#[derive(Debug, Clone)]
pub struct Restore {
    dir: PathBuf,
    detach: bool,
    shell_job: bool,
    leave_stopped: bool,
    validation: FileValidation,
    force_vdso_proxy: bool,
    sockets: sockets::Options,
    stats_dir: Option<PathBuf>,
    hook: Option<Hooked>,
}

/// A restored process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub pid: Pid,
    /// Time until the process ran again, in microseconds.
    pub restore_time_us: u64,
    /// Pages read from the images.
    pub pages_restored: u64,
    /// The raw wait status, when the restore waited for the process to
    /// end (not detached).
    pub wait_status: Option<i32>,
}

impl Restore {
    /// A restore of the images in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Restore {
        Restore {
            dir: dir.into(),
            detach: false,
            shell_job: false,
            leave_stopped: false,
            validation: FileValidation::default(),
            force_vdso_proxy: false,
            sockets: sockets::Options::default(),
            stats_dir: None,
            hook: None,
        }
    }

    /// Leave the restored process stopped (SIGSTOP), as criu's
    /// `--leave-stopped`.
    pub fn leave_stopped(mut self, yes: bool) -> Restore {
        self.leave_stopped = yes;
        self
    }

    /// Where `stats-restore` goes (criu's work directory, `-W`): the
    /// images directory unless told.
    pub fn stats_dir(mut self, dir: impl Into<PathBuf>) -> Restore {
        self.stats_dir = Some(dir.into());
        self
    }

    /// Calls `hook` at each [`Stage`] (criu's action scripts and RPC
    /// notifications). An `Err` at [`Stage::PreRestore`] fails the
    /// restore before anything is made; at [`Stage::PostRestore`] the
    /// process is killed before it runs and the restore fails
    /// ([`Error::Hook`]); at the later stages, as criu, it is logged as an
    /// error and the restore goes on.
    pub fn hook(mut self, hook: Hook) -> Restore {
        self.hook = Some(Hooked(hook));
        self
    }

    /// Calls the hook at `stage`.
    fn call(&self, stage: Stage) -> std::result::Result<(), String> {
        match &self.hook {
            Some(h) => (h.0)(stage),
            None => Ok(()),
        }
    }

    /// Connect unix sockets to their named peers outside the dump
    /// (criu's `--ext-unix-sk`).
    pub fn ext_unix_sk(mut self, yes: bool) -> Restore {
        self.sockets.ext_unix_sk = yes;
        self
    }

    /// Restore connected TCP sockets connected (criu's
    /// `--tcp-established`).
    pub fn tcp_established(mut self, yes: bool) -> Restore {
        self.sockets.tcp_established = yes;
        self
    }

    /// Restore connected TCP sockets closed (criu's `--tcp-close`; needed
    /// for images dumped with it).
    pub fn tcp_close(mut self, yes: bool) -> Restore {
        self.sockets.tcp_close = yes;
        self
    }

    /// Proxies the vDSO even when the running one matches the dumped one
    /// (to test the proxy on a kernel that would not need it).
    pub fn force_vdso_proxy(mut self, yes: bool) -> Restore {
        self.force_vdso_proxy = yes;
        self
    }

    /// Return once the process runs (criu's `-d`), rather than wait for it
    /// to end.
    pub fn detach(mut self, yes: bool) -> Restore {
        self.detach = yes;
        self
    }

    /// The process need not be a session leader (criu's `--shell-job`).
    pub fn shell_job(mut self, yes: bool) -> Restore {
        self.shell_job = yes;
        self
    }

    /// How files are checked against the dump (criu's
    /// `--file-validation`).
    pub fn file_validation(mut self, v: FileValidation) -> Restore {
        self.validation = v;
        self
    }

    /// Restores the process.
    pub fn run(self) -> Result<Restored> {
        self.call(Stage::PreRestore).map_err(|why| Error::Hook {
            stage: Stage::PreRestore,
            why,
        })?;
        let start = Instant::now();
        sockets::raise_nofile();
        // With rcriu's manifest, every file is checked before anything
        // starts.
        let img = load::load(ImageDir::open_checked(&self.dir)?)?;
        let pid = img.task.pid as Pid;
        check_pid_free(pid)?;
        let pst = &img.task.pstree;
        let setsid = pst.sid == pst.pid;
        if !setsid && !self.shell_job {
            return Err(Error::unsupported(format!(
                "restoring process {pid}, which is not a session leader, without --shell-job"
            )));
        }

        let mut mem = mm::plan(&img, self.validation)?;
        let rt = vdso::Runtime::read()?;
        let dumped_vdso = match mem.vdso {
            Some((s, e)) => pages::read_range(&img, s, e - s)?,
            None => None,
        };
        let vdso_mode = vdso::decide(
            &img,
            &mem,
            dumped_vdso.as_deref(),
            &rt,
            self.force_vdso_proxy,
        )?;
        // A proxy is plain memory where the vDSO was.
        let remap_at = (mem.vdso, mem.vvar);
        if let (vdso::Mode::Proxy { .. }, Some((start, end))) = (&vdso_mode, mem.vdso) {
            mem.add_anon(start, end, (libc::PROT_READ | libc::PROT_EXEC) as u32);
            mem.vdso = None;
            mem.vvar = None;
        }
        let pages = pages::plan(&img, &mut mem)?;
        let mut core = core::plan(&img)?;
        let last_cap = read_last_cap()?;
        for t in &mut core.threads {
            t.args.creds.last_cap = last_cap;
        }
        if img.inventory.tcp_close == Some(true) && !self.sockets.tcp_close {
            return Err(Error::unsupported(
                "restoring images dumped with --tcp-close without --tcp-close".to_string(),
            ));
        }
        let mut fds = files::plan(&img, self.validation, self.shell_job, self.sockets)?;
        let mut tcp = std::mem::take(&mut fds.tcp);
        fds.fds.extend(memfd::plan_fds(&img, &mut mem.memfds)?);
        fds.fds.sort_by_key(|(fd, _, _)| *fd);
        let fs = files::plan_fs(&img)?;
        let timens = img.timens.as_ref().map(timens::offsets).transpose()?;
        let exe = open_exe(&img, self.validation)?;
        let pages_file: OwnedFd = img
            .dir
            .open_raw(ImageFile::Pages(pages.pages_id.into()))?
            .into();
        let (go_rd, go_wr) = rcriu_compel::sys::pipe().map_err(Error::host("creating a pipe"))?;

        // Every fd the restorer uses goes above the process's own, so that
        // placing those never closes one still needed.
        let min = fds
            .fds
            .last()
            .map_or(3, |(fd, _, _)| fd + 1)
            .max(fds.late.last().map_or(3, |l| l.to + 1))
            .max(3);
        let up = |fd: OwnedFd| files::renumber(fd, min);
        let map_files = std::mem::take(&mut mem.files)
            .into_iter()
            .map(up)
            .collect::<Result<Vec<_>>>()?;
        let owners = fds.owners;
        // A file whose number is free in rcriu goes there now (the
        // restorer leaves it in place): a process may hold as many files
        // as the limit of open files, without rcriu needing twice as
        // many numbers. The others go above every target.
        let sources = fds
            .fds
            .into_iter()
            .map(|(to, cloexec, f)| {
                if f.as_raw_fd() == to {
                    return Ok((to, cloexec, f));
                }
                match sys::dup_to_free(f.as_fd(), to)
                    .map_err(Error::host("placing an fd at its number"))?
                {
                    Some(at) => Ok((to, cloexec, at)),
                    None => Ok((to, cloexec, up(f)?)),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        // The terminal is made controlling before the fds are placed: as
        // the fd rcriu holds for it.
        let (ctty_fd, ctty_extra) = match fds.ctty {
            Some(files::Ctty::Extra(f)) => {
                let f = up(f)?;
                (f.as_raw_fd(), Some(f))
            }
            Some(files::Ctty::Fd(t)) => (
                sources
                    .iter()
                    .find(|(to, _, _)| *to == t)
                    .map_or(-1, |(_, _, f)| f.as_raw_fd()),
                None,
            ),
            None => (-1, None),
        };
        let cwd = up(fs.cwd)?;
        let root = fs.root.map(up).transpose()?;
        let exe = exe.map(up).transpose()?;
        let pages_file = up(pages_file)?;
        let go_rd = up(go_rd)?;

        let mut vmas = mem.vmas.clone();
        for v in &mut vmas {
            if v.fd >= 0 {
                v.fd = map_files[v.fd as usize].as_raw_fd();
            }
        }
        let fd_moves: Vec<FdMove> = sources
            .iter()
            .map(|(to, cloexec, f)| FdMove {
                from: f.as_raw_fd(),
                to: *to,
                cloexec: u32::from(*cloexec),
                _pad: 0,
            })
            .collect();
        let proxy_len = match (&vdso_mode, remap_at.0) {
            (vdso::Mode::Proxy { .. }, Some((s, e))) => (e - s) as usize,
            _ => 0,
        };
        let mut arrays = region::Arrays {
            vmas: &vmas,
            iovs: &pages.iovs,
            batches: &pages.batches,
            fds: &fd_moves,
            copy: &[],
            signals: &core.signals,
            timers: &core.timers,
            guards: &mem.guards,
            anon_names: &mem.anon_names,
            late: &fds.late,
            threads: &core.threads,
        };
        let mut occupied = mem.occupied();
        // The vsyscall page is the kernel's, above the user space anyway.
        occupied.retain(|&(s, _)| s < TASK_SIZE);
        let region = region::Region::map(
            &occupied,
            arrays.len() + proxy_len as u64,
            vdso::park_size(&rt),
        )?;
        let remap_mem = mm::MemPlan {
            vdso: remap_at.0,
            vvar: remap_at.1,
            ..mm::MemPlan::default()
        };
        let moves = vdso::moves(&vdso_mode, &remap_mem, &rt, region.park)?;
        let copy = match dumped_vdso.as_deref() {
            Some(dumped) if proxy_len > 0 => {
                vdso::proxy_image(&vdso_mode, dumped, &rt, region.park)?
            }
            _ => Vec::new(),
        };
        arrays.copy = &copy;

        let mut args = Box::new(zeroed_args());
        args.magic = MAGIC;
        args.flags = FLAG_MM_MAP
            | if setsid { FLAG_SETSID } else { 0 }
            | if timens.is_some() { FLAG_TIMENS } else { 0 };
        if let Some(uid) = core.loginuid
            && own_loginuid() != Some(uid)
        {
            args.flags |= FLAG_LOGINUID;
            args.loginuid = uid;
        }
        args.parent_pid = std::process::id() as i32;
        args.ctty_fd = ctty_fd;
        args.fault_step = rcriu_compel::fault::restorer_step().unwrap_or(0);
        args.go_fd = go_rd.as_raw_fd();
        args.pages_fd = pages_file.as_raw_fd();
        let pages_file = std::fs::File::from(pages_file);
        let share_pages = page_helper::wanted(&pages, &pages_file);
        if share_pages {
            args.flags |= abi::FLAG_PAGE_HELPER;
            // Every batch, to claim from either end.
            args.page_claims = abi::page_claims(0, pages.batches.len() as u32);
        }
        args.cwd_fd = cwd.as_raw_fd();
        args.root_fd = root.as_ref().map_or(-1, |f| f.as_raw_fd());
        args.umask = fs.umask;
        args.task_size = TASK_SIZE;
        let mut keep = rt.ranges();
        if matches!(vdso_mode, vdso::Mode::None) {
            keep.clear();
        }
        keep.push(Range {
            start: region.start(),
            end: region.end(),
        });
        keep.sort_by_key(|r| r.start);
        if keep.len() > abi::MAX_KEEP || moves.len() > abi::MAX_VDSO_MOVES {
            return Err(Error::unsupported("this many vDSO areas".to_string()));
        }
        args.nr_keep = keep.len() as u32;
        args.keep[..keep.len()].copy_from_slice(&keep);
        if let Some(lines) = &timens {
            for (i, l) in lines.iter().enumerate() {
                let b = l.as_bytes();
                let n = b.len().min(args.timens[i].len());
                args.timens[i][..n].copy_from_slice(&b[..n]);
                args.timens_len[i] = n as u32;
            }
        }
        args.nr_vdso_moves = moves.len() as u32;
        args.vdso_moves[..moves.len()].copy_from_slice(&moves);
        set_mm(&mut args, &img, exe.as_ref())?;
        args.sigactions = core.sigactions;
        args.sigaction_set = core.sigaction_set;
        args.nr_rlimits = core.rlimits.len() as u32;
        args.rlimits[..core.rlimits.len()].copy_from_slice(&core.rlimits);
        args.itimers = core.itimers;
        args.child_subreaper = u32::from(core.child_subreaper);
        args.personality = core.personality;
        let at = core.attrs;
        args.membarrier = at.membarrier;
        args.thp_disable = at.thp_disable;
        args.mdwe = at.mdwe;
        args.ksm_merge_any = u32::from(at.ksm_merge_any);
        args.flags |= abi::FLAG_COREDUMP_FILTER;
        args.coredump_filter = at.coredump_filter;
        // A session leader's restore makes it a new autogroup (nice 0);
        // a shell job's would be rcriu's own, left alone.
        if let (true, Some(nice)) = (setsid, at.autogroup_nice) {
            args.flags |= abi::FLAG_AUTOGROUP;
            args.autogroup_nice = nice;
        }
        // 2 (suid_dumpable) cannot be set back; it stays 1.
        args.dumpable = match img.task.mm.dumpable {
            Some(0) => 0,
            _ => 1,
        };
        if let Some(adj) = core.oom_score_adj {
            let line = format!("{adj}\n");
            args.oom_score_adj[..line.len()].copy_from_slice(line.as_bytes());
            args.oom_score_adj_len = line.len() as u32;
        }
        if let (true, Some((start, _))) = (proxy_len > 0, remap_at.0) {
            args.copy_dst = start;
            args.copy_len = proxy_len as u64;
        }
        region.write(&mut args, &arrays);

        // The cgroups it goes into, made now that nothing else can fail
        // before the fork.
        let cgroups = cgroup::plan(&img)?;
        // Fork into the restorer.
        let child_pid = fork_restorer(&region, pid).map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) => Error::PidTaken {
                pid,
                by: "a process that appeared meanwhile".into(),
            },
            _ => Error::host("creating the process (clone3 with its pid)")(e),
        })?;
        let forking_time_us = start.elapsed().as_micros() as u64;
        let tids: Vec<Pid> = core.threads.iter().map(|t| t.tid as Pid).collect();
        let child = finish::Child::new(child_pid, tids);
        let words = region.page_words();
        let helper_map = if share_pages {
            page_helper::map(&pages_file, words)
        } else {
            None
        };
        cgroups.enter(child_pid)?;
        files::set_owners(&owners, &sources)?;
        // Ours no longer needed: the fork has its copies.
        drop((map_files, sources, cwd, root, exe, pages_file, go_rd));
        drop(ctty_extra);
        log::info!("process {pid} created; restoring it");
        let trace = finish::Trace {
            threads: core.threads.len() > 1,
            seccomp: core.seccomp(),
        };
        let items = Items {
            vmas: &vmas,
            guards: &mem.guards,
            anon_names: &mem.anon_names,
            fds: &fd_moves,
            late: &fds.late,
        };
        let describe = |step: Step, index: u32| describe_item(step, index, &items);
        std::thread::scope(|s| {
            let (iovs, batches) = (&pages.iovs, &pages.batches);
            let helper = helper_map.and_then(|m| {
                std::thread::Builder::new()
                    .name("page helper".into())
                    .spawn_scoped(s, move || {
                        page_helper::run(child_pid, words, &m, iovs, batches)
                    })
                    .inspect_err(|e| {
                        // The restorer reads alone.
                        log::debug!("no page helper: {e}");
                        page_helper::abort(words);
                    })
                    .ok()
            });
            let r = finish::start(&child, &region, std::fs::File::from(go_wr), trace)
                .and_then(|()| finish::wait_restorer(&child, &region, describe));
            // Past the page reads, the helper is done; otherwise the
            // restorer is gone, and so is what the helper would wait for.
            page_helper::abort(words);
            if let Some(h) = helper {
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            }
            r
        })?;
        let report = region.read_args();
        for i in 0..abi::NLIMITS {
            if report.rlimit_failed & (1 << i) != 0 {
                log::warn!(
                    "process {pid}: limit {i} could not be set to {:?} (kept as it was)",
                    core.rlimits[i]
                );
            }
        }
        let xstate = |i: usize, size: usize| {
            let t = &core.threads[i];
            let comps: Vec<(u32, &[u8])> = t
                .cpu
                .components
                .iter()
                .map(|(i, b)| (*i, b.as_slice()))
                .collect();
            Xstate::build(size, &t.cpu.fx, t.cpu.xstate_bv, &comps)
                .map_err(|what| Error::invalid(ImageFile::Core(t.tid.into()).name(), what))
        };
        let finals = core
            .threads
            .iter()
            .map(|t| finish::FinalThread {
                tid: t.tid as Pid,
                regs: t.cpu.regs,
                sigmask: t.sigmask,
            })
            .collect();
        let trap = libc::SIGTRAP as usize - 1;
        let trap_action = (core.sigaction_set & (1 << trap) != 0).then(|| {
            region.args_addr()
                + (std::mem::offset_of!(Args, sigactions)
                    + trap * size_of::<rcriu_compel::abi::KSigaction>()) as u64
        });
        // Still stopped: a refusal kills it (`child` on its drop).
        let hooked = self
            .call(Stage::PostRestore(pid))
            .map_err(|why| Error::Hook {
                stage: Stage::PostRestore(pid),
                why,
            });
        if let Err(e) = hooked {
            drop(child);
            return Err(e);
        }
        if !tcp.is_empty() {
            // The process is built: its connections come out of repair
            // mode, unlocked, right before it runs (criu's network-unlock,
            // between post-restore and pre-resume).
            let method = img
                .inventory
                .network_lock_method
                .and_then(net_lock::Method::from_code)
                .unwrap_or_default();
            let run_id = String::from_utf8_lossy(
                img.inventory
                    .dump_criu_run_id
                    .as_deref()
                    .unwrap_or_default(),
            )
            .into_owned();
            // A failure drops `child`, which kills the process.
            tcp.release(method, &run_id, child_pid)?;
        }
        if let Err(why) = self.call(Stage::PreResume(pid)) {
            log::error!("process {pid}: the pre-resume action failed: {why}");
        }
        let pid = finish::finish(
            child,
            &region,
            finals,
            xstate,
            core.stopped || self.leave_stopped,
            trap_action,
        )?;
        cgroups.done();
        let restore_time_us = start.elapsed().as_micros() as u64;
        log::info!("process {pid} restored in {restore_time_us} us");
        drop(region);
        // CRIU's statistics, for `crit show` and podman's --print-stats; a
        // restored process does not fail for want of them.
        let stats = rcriu_images::pb::StatsEntry {
            dump: None,
            restore: Some(rcriu_images::pb::RestoreStatsEntry {
                pages_compared: 0,
                pages_skipped_cow: 0,
                forking_time: forking_time_us.min(u32::MAX as u64) as u32,
                restore_time: restore_time_us.min(u32::MAX as u64) as u32,
                pages_restored: Some(pages.pages),
            }),
        };
        let stats_dir = match &self.stats_dir {
            Some(d) => ImageDir::create(d),
            None => Ok(img.dir.clone()),
        };
        if let Err(e) = stats_dir.and_then(|d| d.write_one(ImageFile::StatsRestore, &stats)) {
            log::warn!("cannot write stats-restore: {e}");
        }
        if let Err(why) = self.call(Stage::PostResume(pid)) {
            log::error!("process {pid}: the post-resume action failed: {why}");
        }

        let wait_status = if self.detach {
            None
        } else {
            Some(wait_end(pid)?)
        };
        Ok(Restored {
            pid,
            restore_time_us,
            pages_restored: pages.pages,
            wait_status,
        })
    }
}

/// Forks into the restorer loaded in `region`, with pid `pid`.
#[allow(unsafe_code)]
fn fork_restorer(region: &region::Region, pid: Pid) -> std::io::Result<Pid> {
    let (stack, stack_size) = region.stack();
    // SAFETY: the region holds the relocated restorer, its args (all it
    // reads, by absolute addresses that are the same in the fork) and its
    // stack; the restorer never returns into Rust code.
    unsafe {
        sys::clone3_into(
            sys::CLONE_CLEAR_SIGHAND,
            pid,
            stack,
            stack_size,
            region.entry(),
            region.args_addr(),
        )
    }
}

fn zeroed_args() -> Args {
    // An all-zero Args, built field by field through its Default-like
    // parts (it is plain data).
    rcriu_compel::sys::read_pod(&[0u8; std::mem::size_of::<Args>()])
}

/// The highest capability the running kernel knows.
fn read_last_cap() -> Result<u32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .map_err(Error::file("reading", "/proc/sys/kernel/cap_last_cap"))?;
    text.trim().parse().map_err(|_| Error::Host {
        what: "parsing /proc/sys/kernel/cap_last_cap",
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    })
}

/// rcriu's own login uid (what the new process inherits), if readable.
fn own_loginuid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/loginuid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Fails if `pid` is in use.
fn check_pid_free(pid: Pid) -> Result<()> {
    let p = Path::new("/proc").join(pid.to_string());
    if p.exists() {
        let by = std::fs::read_to_string(p.join("comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_else(|_| "?".into());
        return Err(Error::PidTaken { pid, by });
    }
    Ok(())
}

fn open_exe(img: &load::Images, validation: FileValidation) -> Result<Option<OwnedFd>> {
    let id = img.task.mm.exe_file_id;
    let from = ImageFile::Mm(img.task.pid.into());
    let entry = img.file(id, &from)?;
    let Some(reg) = entry.reg.as_ref() else {
        return Err(Error::invalid(
            from.name(),
            format!("exe_file_id {id} is not a regular file"),
        ));
    };
    Ok(Some(
        files::open_reg(reg, libc::O_RDONLY, validation)?.into(),
    ))
}

fn set_mm(args: &mut Args, img: &load::Images, exe: Option<&OwnedFd>) -> Result<()> {
    let mm = &img.task.mm;
    let from = ImageFile::Mm(img.task.pid.into()).name();
    if mm.mm_saved_auxv.len() > args.auxv.len() {
        return Err(Error::invalid(
            from,
            format!("an auxiliary vector of {} words", mm.mm_saved_auxv.len()),
        ));
    }
    args.auxv[..mm.mm_saved_auxv.len()].copy_from_slice(&mm.mm_saved_auxv);
    args.mm = abi::MmMap {
        start_code: mm.mm_start_code,
        end_code: mm.mm_end_code,
        start_data: mm.mm_start_data,
        end_data: mm.mm_end_data,
        start_brk: mm.mm_start_brk,
        brk: mm.mm_brk,
        start_stack: mm.mm_start_stack,
        arg_start: mm.mm_arg_start,
        arg_end: mm.mm_arg_end,
        env_start: mm.mm_env_start,
        env_end: mm.mm_env_end,
        auxv: 0,
        auxv_size: (mm.mm_saved_auxv.len() * 8) as u32,
        exe_fd: exe.map_or(u32::MAX, |f| f.as_raw_fd() as u32),
    };
    Ok(())
}

/// What the restorer was working on, for an error message.
struct Items<'a> {
    vmas: &'a [abi::Vma],
    guards: &'a [Range],
    anon_names: &'a [(u64, u64, Vec<u8>)],
    fds: &'a [FdMove],
    late: &'a [files::Late],
}

/// What item `index` of `step` is, for an error message.
fn describe_item(step: Step, index: u32, it: &Items<'_>) -> String {
    let vma = |i: u32| {
        it.vmas.get(i as usize).map_or_else(
            || format!("item {i}"),
            |v| format!("area {:#x}-{:#x}", v.start, v.end),
        )
    };
    match step {
        Step::Map | Step::Protect => vma(index),
        Step::Madvise => {
            let i = index as usize;
            let (nv, ng) = (it.vmas.len(), it.guards.len());
            if i < nv {
                vma(index)
            } else if let Some(g) = it.guards.get(i - nv) {
                format!("guard region {:#x}-{:#x}", g.start, g.end)
            } else if let Some((s, e, n)) = it.anon_names.get(i - nv - ng) {
                format!(
                    "naming the area {s:#x}-{e:#x} {:?}",
                    String::from_utf8_lossy(n)
                )
            } else {
                format!("item {index}")
            }
        }
        Step::Fds => {
            let i = index as usize;
            if let Some(m) = it.fds.get(i) {
                format!("fd {}", m.to)
            } else if let Some(l) = it.late.get(i - it.fds.len()) {
                format!(
                    "fd {} ({}, opened in the process)",
                    l.to,
                    String::from_utf8_lossy(&l.path)
                )
            } else {
                format!("closing fds from {index}")
            }
        }
        Step::Sigactions => format!("signal {index}"),
        Step::Creds => match abi::creds_item::describe(index) {
            (what, Some(cap)) => format!("{what} {cap}"),
            (what, None) => what.to_owned(),
        },
        Step::Thread => format!("thread #{index}"),
        Step::PosixTimers | Step::ThreadSignals | Step::SharedSignals | Step::Seccomp => {
            format!("item {index}")
        }
        Step::ArmTimers => match index {
            0..3 => format!("interval timer {index}"),
            i => format!("POSIX timer #{}", i - 3),
        },
        Step::Read => format!("read batch {index}"),
        Step::ThreadState => match index {
            0 => "the robust futex list",
            1 => "the scheduling policy",
            2 => "the nice value",
            3 => "the name",
            4 => "the timer slack",
            5 => "the CPU affinity (are its CPUs here?)",
            6 => "the I/O priority",
            7 => "the TSC mode",
            8 => "the machine-check kill policy",
            _ => "an attribute",
        }
        .to_string(),
        Step::ProcessAttrs => match index {
            i if i < 1 << 20 => format!("membarrier command {i:#x}"),
            0x10_0000 => "the core dump filter".into(),
            0x20_0000 => "the autogroup nice".into(),
            0x40_0000 => "KSM on every area".into(),
            0x80_0000 => "memory-deny-write-execute".into(),
            i => format!("item {i}"),
        },
        _ => format!("item {index}"),
    }
}

/// Waits for the restored process to end; returns its wait status.
fn wait_end(pid: Pid) -> Result<i32> {
    loop {
        let mut status = 0;
        match rcriu_compel::sys::waitpid_status(pid, &mut status) {
            Ok(()) => return Ok(status),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(Error::host("waiting for the restored process")(e)),
        }
    }
}
