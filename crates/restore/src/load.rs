//! Reading a dump's images and checking them before anything is started:
//! a corrupt, truncated or unsupported image is an error naming the file.

use std::collections::BTreeMap;

use rcriu_images::{ImageDir, ImageFile, pb};

use crate::{Error, Result};

/// The image version CRIU 4.x writes and rcriu restores.
const IMG_VERSION: u32 = 2;

/// One process's images.
#[derive(Debug)]
pub struct TaskImages {
    pub pid: u32,
    pub pstree: pb::PstreeEntry,
    /// Each thread's core, the leader's first.
    pub cores: Vec<(u32, pb::CoreEntry)>,
    pub ids: pb::TaskKobjIdsEntry,
    pub mm: pb::MmEntry,
    pub fs: pb::FsEntry,
    pub fdinfo: Vec<pb::FdinfoEntry>,
}

/// Everything a restore reads, checked.
#[derive(Debug)]
pub struct Images {
    pub dir: ImageDir,
    pub inventory: pb::InventoryEntry,
    /// `files.img` by id (boxed: an entry is large, and ten thousand
    /// sockets are ten thousand entries to sort).
    pub files: BTreeMap<u32, Box<pb::FileEntry>>,
    pub task: TaskImages,
    /// The time namespace's clocks, when the dump has them.
    pub timens: Option<pb::TimensEntry>,
    /// `seccomp.img`, when the dump has one.
    pub seccomp: Option<pb::SeccompEntry>,
}

impl Images {
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

/// Reads and checks every image a restore of `dir` needs.
pub fn load(dir: ImageDir) -> Result<Images> {
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
    let root = match pstree.as_slice() {
        [] => return Err(Error::invalid(ImageFile::Pstree.name(), "no process")),
        [one] => one.clone(),
        more => {
            return Err(Error::unsupported(format!(
                "restoring a tree of {} processes",
                more.len()
            )));
        }
    };
    let pid = root.pid;
    if !root.threads.contains(&pid) {
        return Err(Error::invalid(
            ImageFile::Pstree.name(),
            format!("process {pid} is not among its threads {:?}", root.threads),
        ));
    }
    let mut tids = vec![pid];
    for &t in root.threads.iter().filter(|&&t| t != pid) {
        if tids.contains(&t) {
            return Err(Error::invalid(
                ImageFile::Pstree.name(),
                format!("thread {t} listed twice"),
            ));
        }
        tids.push(t);
    }
    let mut cores = Vec::with_capacity(tids.len());
    for &t in &tids {
        cores.push((t, dir.core(t)?));
    }
    let seccomp = dir.seccomp()?;
    let ids = dir.ids(pid)?;
    check_namespaces(&ids, &root_ids, pid)?;
    let mm = dir.mm(pid)?;
    let fs = dir.fs(pid)?;
    let files_id = ids.files_id;
    let fdinfo = if dir.exists(ImageFile::Fdinfo(files_id.into())) {
        dir.fdinfo(files_id)?
    } else {
        Vec::new()
    };
    let files = dir
        .files()?
        .into_iter()
        .map(|f| (f.id, Box::new(f)))
        .collect::<BTreeMap<_, _>>();

    // CRIU restores into the time namespace of the dumped process's id
    // when it had its own, else into a new one built from timens-0.
    let time_ns = ids.time_ns_id.unwrap_or(0);
    let own_timens = root_ids.time_ns_id.is_some_and(|r| r != time_ns);
    let timens_id = if own_timens { time_ns } else { 0 };
    let timens = dir.timens(timens_id)?;
    if own_timens && timens.is_none() {
        return Err(Error::invalid(
            ImageFile::Timens(timens_id.into()).name(),
            "missing: the process had its own time namespace",
        ));
    }

    Ok(Images {
        dir,
        inventory,
        files,
        task: TaskImages {
            pid,
            pstree: root,
            cores,
            ids,
            mm,
            fs,
            fdinfo,
        },
        timens,
        seccomp,
    })
}

/// Namespaces: the process must share every one with the dumper, but its
/// time namespace (restored as CRIU does).
fn check_namespaces(
    ids: &pb::TaskKobjIdsEntry,
    root: &pb::TaskKobjIdsEntry,
    pid: u32,
) -> Result<()> {
    let pairs = [
        ("pid", ids.pid_ns_id, root.pid_ns_id),
        ("network", ids.net_ns_id, root.net_ns_id),
        ("ipc", ids.ipc_ns_id, root.ipc_ns_id),
        ("uts", ids.uts_ns_id, root.uts_ns_id),
        ("mount", ids.mnt_ns_id, root.mnt_ns_id),
        ("user", ids.user_ns_id, root.user_ns_id),
        ("cgroup", ids.cgroup_ns_id, root.cgroup_ns_id),
    ];
    for (name, own, dumper) in pairs {
        if let (Some(a), Some(b)) = (own, dumper)
            && a != b
        {
            return Err(Error::unsupported(format!(
                "restoring process {pid} into its own {name} namespace"
            )));
        }
    }
    Ok(())
}
