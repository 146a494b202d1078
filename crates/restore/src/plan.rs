//! One process of the tree, planned: its areas, pages, cores, fds, cwd
//! and root, executable, vDSO and cgroups, all opened and checked before
//! anything is started; then its fds renumbered above every fd of every
//! process of the tree ([`ProcPlan::ready`]) and its restorer's `Args`
//! made ([`Ready::args`]) once the region is mapped.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rcriu_compel::abi::restorer::{
    self as abi, Args, FLAG_CHILD, FLAG_LOGINUID, FLAG_MM_MAP, FLAG_SETSID, FLAG_TIMENS, FdMove,
    MAGIC, Range,
};
use rcriu_images::ImageFile;
use rcriu_proc::Pid;

use crate::load::Images;
use crate::region::{self, Region};
use crate::{Error, Restore, Result, TASK_SIZE, cgroup, core, files, memfd, mm, pages, vdso};

/// What the restore of a tree shares while it plans each process.
pub struct Shared<'a> {
    pub opener: files::Opener<'a>,
    pub inodes: memfd::Inodes,
    pub rt: vdso::Runtime,
    pub last_cap: u32,
    pub force_vdso_proxy: bool,
    /// `--unprivileged`: the images' groups and bounding set are the
    /// caller's (checked), and setting them again would take CAP_SETGID
    /// and CAP_SETPCAP: the restored threads keep the ones they inherit.
    pub unprivileged: bool,
    /// criu's `--manage-cgroups` mode.
    pub cgroup_mode: cgroup::Mode,
    /// criu's `--cgroup-root`s.
    pub cg_roots: Vec<(Option<String>, String)>,
    /// `--lazy-pages`: the lazy pages are left to the daemon.
    pub lazy: bool,
}

impl<'a> Shared<'a> {
    pub fn new(root: &'a Images, tree: &[Images], r: &Restore) -> Result<Shared<'a>> {
        let mut opener = files::Opener::new(
            root,
            tree,
            r.validation,
            r.shell_job,
            r.file_locks,
            r.sockets,
        )?;
        opener.inherit_pipes(&r.namespaces.inherit_fds)?;
        Ok(Shared {
            opener,
            inodes: memfd::Inodes::load(root)?,
            rt: vdso::Runtime::read()?,
            last_cap: crate::read_last_cap()?,
            force_vdso_proxy: r.force_vdso_proxy,
            unprivileged: r.caller.is_some(),
            cgroup_mode: r.cgroup_mode,
            cg_roots: r.cg_roots.clone(),
            lazy: r.lazy_pages.is_some(),
        })
    }
}

/// An address range, `(start, end)`.
pub type Span = (u64, u64);

/// One process, planned.
pub struct ProcPlan<'a> {
    pub img: &'a Images,
    pub pid: Pid,
    pub setsid: bool,
    pub mem: mm::MemPlan,
    pub vdso_mode: vdso::Mode,
    /// Where the dumped vDSO and vvar were.
    pub remap_at: (Option<Span>, Option<Span>),
    pub dumped_vdso: Option<Vec<u8>>,
    pub proxy_len: usize,
    pub pages: pages::PagePlan,
    /// An encrypted dump's large pages image, decrypted as the pages are
    /// written into the process (`pages_file` then holds nothing).
    pub sealed_pages: Option<std::sync::Arc<rcriu_images::crypt::Sealed>>,
    pub core: core::CorePlan,
    pub fds: files::FdPlan,
    pub fs: files::FsPlan,
    pub exe: Option<files::Source>,
    /// Until [`ready`](Self::ready) takes it.
    pub pages_file: Option<OwnedFd>,
    /// The parents' pages images its reads come from too
    /// ([`pages::PagePlan::parents`]), in order.
    pub parent_pages_files: Vec<OwnedFd>,
    pub cgroups: cgroup::Cgroups,
}

impl<'a> ProcPlan<'a> {
    /// Plans the process of `img`.
    pub fn new(img: &'a Images, sh: &mut Shared<'_>) -> Result<ProcPlan<'a>> {
        let pid = img.task.pid as Pid;
        let pst = &img.task.pstree;
        let setsid = pst.sid == pst.pid;
        // First, as CRIU: the process's files may lie in its cgroups.
        let cgroups = cgroup::plan(img, sh.cgroup_mode, &sh.cg_roots)?;
        let mut mem = mm::plan(img, &mut sh.inodes, &mut sh.opener)?;
        let dumped_vdso = match mem.vdso {
            Some((s, e)) => pages::read_range(img, s, e - s)?,
            None => None,
        };
        let vdso_mode = vdso::decide(
            img,
            &mem,
            dumped_vdso.as_deref(),
            &sh.rt,
            sh.force_vdso_proxy,
        )?;
        // A proxy is plain memory where the vDSO was.
        let remap_at = (mem.vdso, mem.vvar);
        if let (vdso::Mode::Proxy { .. }, Some((start, end))) = (&vdso_mode, mem.vdso) {
            mem.add_anon(start, end, (libc::PROT_READ | libc::PROT_EXEC) as u32);
            mem.vdso = None;
            mem.vvar = None;
        }
        let proxy_len = match (&vdso_mode, remap_at.0) {
            (vdso::Mode::Proxy { .. }, Some((s, e))) => (e - s) as usize,
            _ => 0,
        };
        let pages = pages::plan(img, &mut mem, sh.lazy)?;
        let mut core = core::plan(img)?;
        for t in &mut core.threads {
            t.args.creds.last_cap = sh.last_cap;
            if sh.unprivileged {
                t.args.creds.flags &= !rcriu_compel::abi::restorer::CREDS_GROUPS;
                t.args.creds.cap_bnd = [u32::MAX; 2];
            }
        }
        let mut fds = sh.opener.plan(img)?;
        fds.fds.extend(memfd::plan_fds(img, &mut sh.inodes)?);
        fds.fds.sort_by_key(|(fd, _, _)| *fd);
        mem.map_sockets(img, &fds.fds)?;
        let fs = files::plan_fs(img, &mut sh.opener)?;
        let exe = crate::open_exe(img, &mut sh.opener)?;
        let mut pages = pages;
        let name = ImageFile::Pages(pages.pages_id.into()).name();
        if sh.lazy && img.dir.sealed_pages(&name).is_some() {
            return Err(Error::unsupported(format!(
                "lazy pages (--lazy-pages) of encrypted images ({name} of process {pid})"
            )));
        }
        let sealed_pages = match pages.gathered {
            Some(_) => None,
            None => img.dir.sealed_pages(&name),
        };
        let pages_file: OwnedFd = match (pages.gathered.take(), &sealed_pages) {
            (Some(fd), _) => fd,
            // Decrypted into the process by rcriu (or decrypted whole
            // before the restorer runs): nothing for the restorer to read.
            (None, Some(_)) => {
                rustix::fs::memfd_create("rcriu-sealed-pages", rustix::fs::MemfdFlags::CLOEXEC)
                    .map_err(|e| Error::host("creating a placeholder for the pages")(e.into()))?
            }
            (None, None) => img
                .dir
                .open_raw(ImageFile::Pages(pages.pages_id.into()))?
                .into(),
        };
        let pages_file = Some(pages_file);
        let parent_pages_files = pages
            .parents
            .iter()
            .map(|(d, id)| {
                d.open_raw(ImageFile::Pages((*id).into()))
                    .map(OwnedFd::from)
            })
            .collect::<rcriu_images::Result<Vec<_>>>()?;
        Ok(ProcPlan {
            img,
            pid,
            setsid,
            mem,
            vdso_mode,
            remap_at,
            dumped_vdso,
            proxy_len,
            pages,
            sealed_pages,
            core,
            fds,
            fs,
            exe,
            pages_file,
            parent_pages_files,
            cgroups,
        })
    }

    /// The highest fd the process holds (targets, and the files the
    /// restorer opens itself).
    pub fn max_target(&self) -> i32 {
        self.fds
            .fds
            .last()
            .map_or(2, |(fd, _, _)| *fd)
            .max(self.fds.late.last().map_or(2, |l| l.to))
    }

    /// Moves every fd the restorer uses to `min` or above (every process's
    /// own fds lie below, so that placing those never closes one still
    /// needed).
    ///
    /// With `in_place` (a process alone, no other process forked from its
    /// restorer), a file whose number is free in rcriu goes there now and
    /// the restorer leaves it in place: a process may hold as many files
    /// as the limit of open files without rcriu needing numbers up to
    /// twice as many. In a tree every source stays above every target, as
    /// the restorers that fork children after placing their own fds need.
    pub fn ready(mut self, min: i32, in_place: bool) -> Result<Ready<'a>> {
        let up = |fd: OwnedFd| files::renumber(fd, min);
        let lift = |src: files::Source| files::lift(src, min);
        let map_files = std::mem::take(&mut self.mem.files)
            .into_iter()
            .map(lift)
            .collect::<Result<Vec<_>>>()?;
        let owners = std::mem::take(&mut self.fds.owners);
        let sources = std::mem::take(&mut self.fds.fds)
            .into_iter()
            .map(|(to, cloexec, f)| {
                if !in_place || f.as_raw_fd() == to {
                    return Ok((to, cloexec, lift(f)?));
                }
                match crate::sys::dup_to_free(f.as_fd(), to)
                    .map_err(Error::host("placing an fd at its number"))?
                {
                    Some(at) => Ok((to, cloexec, files::Source::new(at))),
                    None => Ok((to, cloexec, lift(f)?)),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        // The terminal is made controlling before the fds are placed: as
        // the fd rcriu holds for it.
        let (ctty_fd, ctty_extra) = match self.fds.ctty.take() {
            Some(files::Ctty::Extra(f)) => {
                let f = files::Source::new(up(f)?);
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
        let cwd = lift(files::Source::clone(&self.fs.cwd))?;
        let root = self.fs.root.clone().map(lift).transpose()?;
        let exe = self.exe.take().map(lift).transpose()?;
        let pages_file = self
            .pages_file
            .take()
            .map(up)
            .transpose()?
            .expect("only ready, which consumes the plan, takes its pages file");
        let parent_pages_files = std::mem::take(&mut self.parent_pages_files)
            .into_iter()
            .map(up)
            .collect::<Result<Vec<_>>>()?;
        let mut vmas = self.mem.vmas.clone();
        for v in &mut vmas {
            // A SysV area's fd is its segment's id.
            if v.fd >= 0 && v.sysv == 0 {
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
        let mut held = map_files;
        held.extend(ctty_extra);
        Ok(Ready {
            plan: self,
            held,
            owners,
            sources,
            ctty_fd,
            cwd,
            root,
            exe,
            pages_file,
            parent_pages_files,
            vmas,
            fd_moves,
            late: None,
        })
    }

    /// The ranges the process occupies (areas, vDSO and vvar), for finding
    /// room for the restorer's region.
    pub fn occupied(&self) -> Vec<(u64, u64)> {
        let mut occupied = self.mem.occupied();
        // The vsyscall page is the kernel's, above the user space anyway.
        occupied.retain(|&(s, _)| s < TASK_SIZE);
        occupied
    }
}

/// A process planned, its fds where the restorer takes them.
pub struct Ready<'a> {
    pub plan: ProcPlan<'a>,
    /// The mapped files and a controlling terminal no fd holds: open in
    /// rcriu until the fork has its copies.
    pub held: Vec<files::Source>,
    pub owners: Vec<(i32, i32, i32)>,
    pub sources: Vec<files::FdSource>,
    pub ctty_fd: i32,
    pub cwd: files::Source,
    pub root: Option<files::Source>,
    pub exe: Option<files::Source>,
    pub pages_file: OwnedFd,
    /// The parents' pages images it reads too, as the restorer holds them.
    pub parent_pages_files: Vec<OwnedFd>,
    /// The areas, their files as the restorer holds them.
    pub vmas: Vec<abi::Vma>,
    pub fd_moves: Vec<FdMove>,
    /// Where its vDSO and vvar are when its restorer starts, when it is
    /// forked once its parent's memory is in place (a late child, which
    /// inherits the areas it shares with its parent).
    pub late: Option<Vec<Range>>,
}

/// Where a process of the tree stands in it, for its `Args`.
pub struct Place {
    /// Its parent's pid (rcriu's for the root).
    pub parent: Pid,
    /// Forked by its parent's restorer (not the root).
    pub child: bool,
    /// The tree's shared words, in the region (0: a single process).
    pub tree: u64,
    /// The time namespace's offsets, for the root.
    pub timens: Option<Vec<String>>,
    /// The process group to join (0: the one it has).
    pub pgid: i32,
}

impl Ready<'_> {
    /// Where the process's vDSO and vvar are once its restorer moved
    /// them; `None` for a proxy.
    fn specials(&self, rt: &vdso::Runtime) -> Result<Option<Vec<Range>>> {
        let p = &self.plan;
        let at = mm::MemPlan {
            vdso: p.remap_at.0,
            vvar: p.remap_at.1,
            ..mm::MemPlan::default()
        };
        vdso::placed(&p.vdso_mode, &at, rt)
    }

    /// Makes the process a late child of `parent` when it shares private
    /// memory with it and its vDSO lies where its parent's does: it is
    /// then forked once its parent's memory is in place, keeps the areas
    /// it inherits (their pages shared with the parent until written) and
    /// writes only the pages that differ, as CRIU's restore does. Returns
    /// whether it is.
    pub fn inherit_from(&mut self, parent: &Ready<'_>, rt: &vdso::Runtime) -> Result<bool> {
        let (Some(mine), Some(theirs)) = (self.specials(rt)?, parent.specials(rt)?) else {
            return Ok(false);
        };
        if mine != theirs {
            return Ok(false);
        }
        let mut vmas = self.vmas.clone();
        let inherited = mm::inherit(&parent.vmas, &mut vmas);
        let worth = vmas.iter().any(|v| v.inherited != 0 && v.fill != 0);
        if !worth {
            return Ok(false);
        }
        self.vmas = vmas;
        self.plan.pages.inherit(&inherited);
        self.late = Some(mine);
        Ok(true)
    }

    /// The process's restorer `Args` (the arrays' addresses are filled
    /// when the region writes them), and the copy of a vDSO proxy.
    pub fn args(
        &self,
        region: &Region,
        rt: &vdso::Runtime,
        place: &Place,
    ) -> Result<(Box<Args>, Vec<u8>)> {
        let p = &self.plan;
        let remap_mem = mm::MemPlan {
            vdso: p.remap_at.0,
            vvar: p.remap_at.1,
            ..mm::MemPlan::default()
        };
        // A late child finds them where they go (its parent put them).
        let moves = match &self.late {
            Some(_) => Vec::new(),
            None => vdso::moves(&p.vdso_mode, &remap_mem, rt, region.park)?,
        };
        let copy = match p.dumped_vdso.as_deref() {
            Some(dumped) if p.proxy_len > 0 => {
                vdso::proxy_image(&p.vdso_mode, dumped, rt, region.park)?
            }
            _ => Vec::new(),
        };
        let core = &p.core;
        let mut args = Box::new(crate::zeroed_args());
        args.magic = MAGIC;
        args.flags = FLAG_MM_MAP
            | if p.setsid { FLAG_SETSID } else { 0 }
            | if place.timens.is_some() {
                FLAG_TIMENS
            } else {
                0
            }
            | if place.child { FLAG_CHILD } else { 0 };
        if let Some(uid) = core.loginuid
            && crate::own_loginuid() != Some(uid)
        {
            args.flags |= FLAG_LOGINUID;
            args.loginuid = uid;
        }
        args.parent_pid = place.parent;
        args.tree = place.tree;
        args.pgid = place.pgid;
        args.ctty_fd = self.ctty_fd;
        args.fault_step = rcriu_compel::fault::restorer_step().unwrap_or(0);
        args.go_fd = -1;
        args.pages_fd = self.pages_file.as_raw_fd();
        args.pages_fds = [-1; abi::MAX_PAGES_FILES];
        args.pages_fds[0] = args.pages_fd;
        for (i, f) in self.parent_pages_files.iter().enumerate() {
            // As many as pages::plan allows.
            args.pages_fds[i + 1] = f.as_raw_fd();
        }
        args.cwd_fd = self.cwd.as_raw_fd();
        args.root_fd = self.root.as_ref().map_or(-1, |f| f.as_raw_fd());
        args.umask = p.fs.umask;
        args.task_size = TASK_SIZE;
        let mut keep = match &self.late {
            Some(at) => at.clone(),
            None => rt.ranges(),
        };
        if matches!(p.vdso_mode, vdso::Mode::None) {
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
        if let Some(lines) = &place.timens {
            for (i, l) in lines.iter().enumerate() {
                let b = l.as_bytes();
                let n = b.len().min(args.timens[i].len());
                args.timens[i][..n].copy_from_slice(&b[..n]);
                args.timens_len[i] = n as u32;
            }
        }
        args.nr_vdso_moves = moves.len() as u32;
        args.vdso_moves[..moves.len()].copy_from_slice(&moves);
        crate::set_mm(&mut args, p.img, self.exe.as_deref())?;
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
        if let (true, Some(nice)) = (p.setsid, at.autogroup_nice) {
            args.flags |= abi::FLAG_AUTOGROUP;
            args.autogroup_nice = nice;
        }
        // 2 (suid_dumpable) is refused by the dump; 0 or 1.
        args.dumpable = match p.img.task.mm.dumpable {
            Some(0) => 0,
            _ => 1,
        };
        if let Some(adj) = core.oom_score_adj {
            let line = format!("{adj}\n");
            args.oom_score_adj[..line.len()].copy_from_slice(line.as_bytes());
            args.oom_score_adj_len = line.len() as u32;
        }
        if let (true, Some((start, _))) = (p.proxy_len > 0, p.remap_at.0) {
            args.copy_dst = start;
            args.copy_len = p.proxy_len as u64;
        }
        Ok((args, copy))
    }

    /// The arrays of its `Args`.
    pub fn arrays<'b>(&'b self, copy: &'b [u8], children: &'b [abi::Child]) -> region::Arrays<'b> {
        let p = &self.plan;
        region::Arrays {
            vmas: &self.vmas,
            iovs: &p.pages.iovs,
            batches: &p.pages.batches,
            cow_batches: &p.pages.cow_batches,
            drops: &p.pages.drops,
            fds: &self.fd_moves,
            copy,
            signals: &p.core.signals,
            timers: &p.core.timers,
            guards: &p.mem.guards,
            anon_names: &p.mem.anon_names,
            late: &p.fds.late,
            locks: &p.fds.locks,
            threads: &p.core.threads,
            children,
        }
    }
}
