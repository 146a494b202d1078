//! Reading a dump's images and checking them before anything is started:
//! a corrupt, truncated or unsupported image is an error naming the file.

use std::collections::BTreeMap;
use std::sync::Arc;

use rcriu_images::{ImageDir, ImageFile, pb};

use crate::{Error, Result};

/// The image version CRIU 4.x writes and rcriu restores.
const IMG_VERSION: u32 = 2;

/// One process's images.
#[derive(Debug, Clone)]
pub struct TaskImages {
    pub pid: u32,
    pub pstree: pb::PstreeEntry,
    /// Each thread's core, the leader's first.
    pub cores: Vec<(u32, pb::CoreEntry)>,
    pub ids: pb::TaskKobjIdsEntry,
    pub mm: pb::MmEntry,
    pub fs: pb::FsEntry,
    /// Its fds; none when its fd table is its parent's.
    pub fdinfo: Vec<pb::FdinfoEntry>,
    /// Its fd table is its parent's (the same `files_id`): it is forked
    /// with CLONE_FILES and its fds are its parent's.
    pub fdt_of_parent: bool,
    /// Its cwd, root and umask are its parent's (the same `fs_id`): it is
    /// forked with CLONE_FS.
    pub fs_of_parent: bool,
}

/// Everything a restore reads, checked.
#[derive(Debug)]
pub struct Images {
    pub dir: ImageDir,
    pub inventory: pb::InventoryEntry,
    /// `files.img` by id (boxed: an entry is large, and ten thousand
    /// sockets are ten thousand entries to sort), one map for the tree.
    pub files: Arc<BTreeMap<u32, Box<pb::FileEntry>>>,
    pub task: TaskImages,
    /// The time namespace's clocks, when the dump has them.
    pub timens: Option<pb::TimensEntry>,
    /// `seccomp.img`, when the dump has one.
    pub seccomp: Option<pb::SeccompEntry>,
}

impl Images {
    /// The signal its parent gets when the process ends.
    pub fn exit_signal(&self) -> u32 {
        self.task
            .cores
            .first()
            .and_then(|(_, c)| c.tc.as_ref())
            .map_or(libc::SIGCHLD as u32, exit_signal)
    }

    /// The file entry `id` refers to, from `file`'s point of view.
    pub fn file(&self, id: u32, from: &ImageFile) -> Result<&pb::FileEntry> {
        self.files.get(&id).map(|f| &**f).ok_or_else(|| {
            Error::invalid(
                from.name(),
                format!("refers to file id {id}, which files.img does not have"),
            )
        })
    }
}

/// A zombie of the tree: a process that had exited, not reaped by its
/// parent; made again as one (it exits with its status at once).
#[derive(Debug, Clone)]
pub struct Zombie {
    pub pstree: pb::PstreeEntry,
    /// Its wait status, as waitpid gives it.
    pub exit_code: u32,
    /// Its name.
    pub comm: Vec<u8>,
    /// The signal its parent got when it ended.
    pub exit_signal: u32,
}

/// The images of a tree: every live process's (each an [`Images`] with
/// what the tree shares), parents before children, and the zombies.
#[derive(Debug)]
pub struct TreeImages {
    pub procs: Vec<Images>,
    pub zombies: Vec<Zombie>,
    /// The namespaces the root has of its own (a container's).
    pub container: Option<crate::namespaces::Container>,
}

impl TreeImages {
    /// The pid of each process and each zombie.
    pub fn processes(&self) -> Vec<u32> {
        self.procs
            .iter()
            .map(|p| p.task.pid)
            .chain(self.zombies.iter().map(|z| z.pstree.pid))
            .collect()
    }

    /// Every pid the tree takes: each thread of each process, and each
    /// zombie.
    pub fn pids(&self) -> Vec<u32> {
        self.procs
            .iter()
            .flat_map(|p| p.task.cores.iter().map(|(t, _)| *t))
            .chain(self.zombies.iter().map(|z| z.pstree.pid))
            .collect()
    }
}

/// The signal a process's parent gets when it ends: SIGCHLD unless
/// rcriu's field says otherwise (CRIU has none); a bad one is refused by
/// the kernel's clone3 (EINVAL), named with its process.
pub fn exit_signal(tc: &pb::TaskCoreEntry) -> u32 {
    tc.rcriu_exit_signal.unwrap_or(libc::SIGCHLD as u32)
}

/// CRIU's `TASK_DEAD`: a zombie's task state (core::plan checks the
/// others).
const TASK_DEAD: u32 = 2;

/// Reads and checks every image a restore of the tree in `dir` needs.
pub fn load_tree(dir: ImageDir) -> Result<TreeImages> {
    let inventory = dir.inventory()?;
    let inv = ImageFile::Inventory.name();
    if inventory.img_version != IMG_VERSION {
        return Err(Error::invalid(
            inv,
            format!(
                "image version {} (rcriu restores version {IMG_VERSION})",
                inventory.img_version
            ),
        ));
    }
    if inventory.fdinfo_per_id != Some(true) {
        return Err(Error::invalid(
            inv,
            "fdinfo_per_id is not set: images too old",
        ));
    }
    let root_ids = inventory
        .root_ids
        .ok_or_else(|| Error::invalid(ImageFile::Inventory.name(), "no root_ids"))?;

    let pstree = dir.pstree()?;
    let pst = ImageFile::Pstree.name();
    if pstree.is_empty() {
        return Err(Error::invalid(pst, "no process"));
    }
    // Parents first: every process but the root has its parent before it.
    let mut seen = Vec::with_capacity(pstree.len());
    for (i, e) in pstree.iter().enumerate() {
        if seen.contains(&e.pid) || e.pid == 0 {
            return Err(Error::invalid(
                pst,
                format!("process {} listed twice", e.pid),
            ));
        }
        if i > 0 && !seen.contains(&e.ppid) {
            return Err(Error::invalid(
                pst,
                format!(
                    "process {} comes before its parent {} (or its parent is not in the tree)",
                    e.pid, e.ppid
                ),
            ));
        }
        seen.push(e.pid);
    }
    let files = Arc::new(
        dir.files()?
            .into_iter()
            .map(|f| (f.id, Box::new(f)))
            .collect::<BTreeMap<_, _>>(),
    );
    let seccomp = dir.seccomp()?;
    let mut procs: Vec<TaskImages> = Vec::new();
    let mut zombies = Vec::new();
    let mut tids_seen: Vec<u32> = Vec::new();
    let mut timens_id = None;
    let mut container = None;
    for e in &pstree {
        let pid = e.pid;
        let first = dir.core(pid)?;
        let state = first.tc.as_ref().map(|tc| tc.task_state);
        if state == Some(TASK_DEAD) {
            let tc = first.tc.as_ref().expect("a task state means a task core");
            zombies.push(Zombie {
                pstree: e.clone(),
                exit_code: tc.exit_code,
                comm: tc.comm.clone(),
                exit_signal: exit_signal(tc),
            });
            continue;
        }
        let task = load_task(&dir, e, first, &mut tids_seen)?;
        match procs.first() {
            None => container = crate::namespaces::load(&dir, pid, &task.ids, &root_ids)?,
            Some(root) => crate::namespaces::check_same(
                pid,
                &task.ids,
                &root.ids,
                !task.pstree.ns_pid.is_empty(),
            )?,
        }
        // CRIU restores into the time namespace of the dumped process's
        // id when it had its own, else into a new one built from
        // timens-0; the whole tree shares one.
        let time_ns = task.ids.time_ns_id.unwrap_or(0);
        let own_timens = root_ids.time_ns_id.is_some_and(|r| r != time_ns);
        let id = if own_timens { time_ns } else { 0 };
        match timens_id {
            None => timens_id = Some((id, own_timens)),
            Some((t, _)) if t != id => {
                return Err(Error::unsupported(format!(
                    "restoring process {pid} in a time namespace other than its tree's"
                )));
            }
            Some(_) => {}
        }
        procs.push(task);
    }
    if procs.is_empty() {
        return Err(Error::invalid(pst, "the root is a zombie"));
    }
    if procs[0].pid != pstree[0].pid {
        return Err(Error::invalid(pst, "the root is a zombie"));
    }
    // In a pid namespace of its own, each process, thread and zombie is
    // made with its pid there and one on the host (clone3's set_tid at
    // two levels).
    // What a process shares with its parent (a live one: a zombie has no
    // children) comes with its fork.
    for i in 1..procs.len() {
        let (before, rest) = procs.split_at_mut(i);
        let t = &mut rest[0];
        let Some(parent) = before.iter().find(|p| p.pid == t.pstree.ppid) else {
            continue;
        };
        if t.ids.files_id == parent.ids.files_id {
            t.fdt_of_parent = true;
            t.fdinfo.clear();
        }
        t.fs_of_parent = t.ids.fs_id == parent.ids.fs_id;
    }
    let (timens_id, own_timens) = timens_id.unwrap_or((0, false));
    let timens = dir.timens(timens_id)?;
    if own_timens && timens.is_none() {
        return Err(Error::invalid(
            ImageFile::Timens(timens_id.into()).name(),
            "missing: the process had its own time namespace",
        ));
    }
    Ok(TreeImages {
        procs: procs
            .into_iter()
            .map(|task| Images {
                dir: dir.clone(),
                inventory: inventory.clone(),
                files: Arc::clone(&files),
                task,
                timens,
                seccomp: seccomp.clone(),
            })
            .collect(),
        zombies,
        container,
    })
}

/// One live process's images.
fn load_task(
    dir: &ImageDir,
    e: &pb::PstreeEntry,
    first: pb::CoreEntry,
    tids_seen: &mut Vec<u32>,
) -> Result<TaskImages> {
    let pid = e.pid;
    if !e.threads.contains(&pid) {
        return Err(Error::invalid(
            ImageFile::Pstree.name(),
            format!("process {pid} is not among its threads {:?}", e.threads),
        ));
    }
    let mut tids = vec![pid];
    for &t in e.threads.iter().filter(|&&t| t != pid) {
        if tids.contains(&t) || tids_seen.contains(&t) {
            return Err(Error::invalid(
                ImageFile::Pstree.name(),
                format!("thread {t} listed twice"),
            ));
        }
        tids.push(t);
    }
    tids_seen.extend(&tids);
    let mut cores = Vec::with_capacity(tids.len());
    cores.push((pid, first));
    for &t in &tids[1..] {
        cores.push((t, dir.core(t)?));
    }
    let ids = dir.ids(pid)?;
    let mm = dir.mm(pid)?;
    let fs = dir.fs(pid)?;
    let files_id = ids.files_id;
    let fdinfo = if dir.exists(ImageFile::Fdinfo(files_id.into())) {
        dir.fdinfo(files_id)?
    } else {
        Vec::new()
    };
    Ok(TaskImages {
        pid,
        pstree: e.clone(),
        cores,
        ids,
        mm,
        fs,
        fdinfo,
        fdt_of_parent: false,
        fs_of_parent: false,
    })
}
