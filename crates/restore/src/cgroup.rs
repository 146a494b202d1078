//! `cgroup.img`: the process goes back into its cgroups, as CRIU 4.2's
//! default `--manage-cgroups` mode ("soft") does it.
//!
//! - Before the process exists ([`plan`]): every cgroup directory of the
//!   image that does not exist is made (mode 0755, then the dumped owner
//!   and mode), and the properties that must be set before a task enters
//!   it (`cpuset.cpus`, `cpuset.mems`, `devices.list`, some `memory.*`)
//!   are written. Directories that exist keep their properties (only
//!   their owner and mode are set to the dumped ones, as CRIU does).
//! - Right after the clone, before the process runs ([`Cgroups::enter`]):
//!   its pid goes into `cgroup.procs` of each member of its set, unless
//!   its set is rcriu's own (inventory's `root_cg_set`): then it stays
//!   where rcriu is. The other properties of the directories made are
//!   written then.
//! - Once it runs ([`Cgroups::done`]): `freezer.state`, as CRIU restores
//!   it last.
//!
//! Hierarchies are reached where they are mounted here (at their root);
//! a restore that fails removes the directories it made.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcriu_images::{ImageFile, pb};
use rcriu_proc::{MountInfo, Pid};

use crate::load::Images;
use crate::{Error, Result};

/// Properties written as soon as a directory is made: some cannot be set
/// once the cgroup has tasks or children.
const SPECIAL: &[&str] = &[
    "cpuset.cpus",
    "cpuset.mems",
    "devices.list",
    "memory.kmem.limit_in_bytes",
    "memory.swappiness",
    "memory.oom_control",
    "memory.use_hierarchy",
    "cgroup.type",
];

fn img() -> String {
    ImageFile::Cgroup.name()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// criu's `--manage-cgroups` modes, as the restore reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The cgroups must exist; owners, modes and properties are left.
    None,
    /// The cgroups must exist; their owners, modes and properties are set.
    Props,
    /// Missing cgroups are made with their properties; existing ones get
    /// their owners and modes only (criu's default).
    #[default]
    Soft,
    /// Missing cgroups are made, and every cgroup gets its properties.
    Full,
    /// Every cgroup is made anew: one that exists is refused.
    Strict,
    /// Cgroups are left alone: the processes stay in rcriu's.
    Ignore,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Props => "props",
            Mode::Soft => "soft",
            Mode::Full => "full",
            Mode::Strict => "strict",
            Mode::Ignore => "ignore",
        }
    }
}

/// What the restore does with the process's cgroups.
#[derive(Debug, Default)]
pub struct Cgroups {
    /// `cgroup.procs` of each member of the process's set (empty when the
    /// process stays in rcriu's).
    procs: Vec<PathBuf>,
    /// Properties of the directories made, written once the process is in.
    props: Vec<(PathBuf, pb::CgroupPropEntry)>,
    /// `freezer.state` of a directory made, written last.
    freezer: Option<(PathBuf, pb::CgroupPropEntry)>,
    /// The directories made, removed again if the restore fails.
    made: Vec<PathBuf>,
    kept: bool,
    mode: Mode,
    /// `(tid, dirs)`: a thread in other cgroups than its leader's, and
    /// the cgroups it is moved into.
    threads: Vec<(u32, Vec<PathBuf>)>,
}

/// A controller of the image and where its hierarchy is mounted here.
struct Hierarchy<'a> {
    entry: &'a pb::CgControllerEntry,
    name: String,
    mount: Option<PathBuf>,
}

/// cgroup2's controller matches `""` only; otherwise each of a
/// controller's names must be one of `name`'s.
fn controller_matches(c: &pb::CgControllerEntry, name: &str) -> bool {
    if c.cnames.len() == 1 && c.cnames[0].is_empty() {
        return name.is_empty();
    }
    !c.cnames.is_empty()
        && c.cnames
            .iter()
            .all(|n| name.split(',').any(|p| p.as_bytes() == n.as_slice()))
}

/// A relative cgroup path of the image that stays inside its hierarchy.
fn check_rel(path: &str, what: &str) -> Result<()> {
    if path.starts_with('/')
        || path
            .split('/')
            .any(|c| c == ".." || c == "." || (c.is_empty() && !path.is_empty()))
        || path.contains('\0')
    {
        return Err(Error::invalid(
            img(),
            format!("{what} {path:?} is not a cgroup path"),
        ));
    }
    Ok(())
}

/// Reads `cgroup.img` and the process's set, makes the missing cgroup
/// directories and writes their early properties.
pub fn plan(images: &Images, mode: Mode, roots: &[(Option<String>, String)]) -> Result<Cgroups> {
    if mode == Mode::Ignore {
        return Ok(Cgroups::default());
    }
    let inventory = images.dir.inventory()?;
    let root_set = inventory.root_cg_set.unwrap_or(0);
    let pid = images.task.pid;
    let set_of = |core: &pb::CoreEntry| {
        core.thread_core
            .as_ref()
            .and_then(|t| t.cg_set)
            .unwrap_or(0)
    };
    let set = images.task.cores.first().map_or(0, |(_, c)| set_of(c));
    // Threads in other sets than their leader's: moved once they exist.
    let thread_sets: Vec<(u32, u32)> = images
        .task
        .cores
        .iter()
        .skip(1)
        .map(|(tid, c)| (*tid, set_of(c)))
        .filter(|&(_, s)| s != set)
        .collect();
    let mut entry: Option<pb::CgroupEntry> = images.dir.read_one_if_exists(ImageFile::Cgroup)?;
    if let Some(e) = &mut entry {
        rewrite_roots(e, roots)?;
    }
    let stays = set == 0 || set == root_set;
    let Some(entry) = entry else {
        if stays {
            return Ok(Cgroups::default());
        }
        return Err(Error::invalid(
            ImageFile::Core(pid.into()).name(),
            format!("cg_set {set} is not rcriu's ({root_set}), and there is no cgroup.img"),
        ));
    };

    let mountinfo = std::fs::read("/proc/self/mountinfo")
        .map_err(Error::file("reading", "/proc/self/mountinfo"))?;
    let mounts: Vec<MountInfo> =
        rcriu_proc::parse_mountinfo(&mountinfo).map_err(|e| Error::Host {
            what: "parsing /proc/self/mountinfo",
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
    let hierarchies: Vec<Hierarchy> = entry
        .controllers
        .iter()
        .map(|c| {
            let name = c
                .cnames
                .iter()
                .map(|n| text(n))
                .collect::<Vec<_>>()
                .join(",");
            let mount = rcriu_proc::hierarchy_mount(&mounts, &name).map(|m| m.mount_point.clone());
            Hierarchy {
                entry: c,
                name,
                mount,
            }
        })
        .collect();

    // Checked whole before anything is made.
    let procs = if stays {
        Vec::new()
    } else {
        members_of(&entry, &hierarchies, set, pid)?
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    };
    let mut threads = Vec::new();
    for &(tid, s) in &thread_sets {
        let files = if s == 0 || s == root_set {
            // Back to rcriu's own cgroups.
            own_dirs(&hierarchies)?
        } else {
            members_of(&entry, &hierarchies, s, pid)?
        };
        threads.push((tid, files));
    }
    for h in &hierarchies {
        if h.entry.dirs.is_empty() {
            continue;
        }
        // A hierarchy nobody mounted here (CRIU records its whole tree):
        // the process stays where rcriu is in it (checked above); the
        // other cgroups are not its own and are left as they are.
        if h.mount.is_none() {
            log::warn!(
                "cg: hierarchy {:?} is not mounted here: its cgroups are left as they are",
                h.name
            );
            continue;
        }
        check_dirs(&h.entry.dirs)?;
    }

    let mut cg = Cgroups::default();
    cg.procs = procs;
    cg.mode = mode;
    cg.threads = threads;
    for h in &hierarchies {
        if let Some(mount) = &h.mount {
            cg.prepare_dirs(mount, &h.entry.dirs, true)?;
        }
    }
    Ok(cg)
}

/// The directories of the members of set `set` of `entry`, each in its
/// hierarchy's mount here (a hierarchy mounted nowhere, whose root the
/// process and rcriu are in, is left out).
fn members_of(
    entry: &pb::CgroupEntry,
    hierarchies: &[Hierarchy],
    set: u32,
    pid: u32,
) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    {
        let members = entry.sets.iter().find(|s| s.id == set).ok_or_else(|| {
            Error::invalid(
                img(),
                format!("has no set {set}, which core-{pid}.img's cg_set names"),
            )
        })?;
        for m in &members.ctls {
            let name = text(&m.name);
            let path = text(&m.path);
            let h = hierarchies
                .iter()
                .find(|h| controller_matches(h.entry, &name))
                .ok_or_else(|| {
                    Error::invalid(
                        img(),
                        format!(
                            "set {set} names hierarchy {name:?}, which has no controller entry"
                        ),
                    )
                })?;
            // A hierarchy nobody has mounted: the process can only stay
            // where rcriu is, which must be where it was (the root).
            if h.mount.is_none() && path == "/" && own_cgroup(&name).as_deref() == Some("/") {
                continue;
            }
            let mount = h.mount.as_ref().ok_or_else(|| {
                Error::invalid(
                    img(),
                    format!("hierarchy {name:?} of set {set} is not mounted here"),
                )
            })?;
            let rel = path.strip_prefix('/').ok_or_else(|| {
                Error::invalid(img(), format!("set {set}: path {path:?} is not absolute"))
            })?;
            check_rel(rel.trim_end_matches('/'), &format!("set {set}: path"))?;
            dirs.push(mount.join(rel));
        }
    }
    Ok(dirs)
}

/// rcriu's own cgroup directories in the hierarchies of the image that
/// are mounted here.
fn own_dirs(hierarchies: &[Hierarchy]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for h in hierarchies {
        let (Some(mount), Some(own)) = (&h.mount, own_cgroup(&h.name)) else {
            continue;
        };
        let rel = own.trim_start_matches('/');
        check_rel(rel.trim_end_matches('/'), "rcriu's own cgroup")?;
        dirs.push(mount.join(rel));
    }
    Ok(dirs)
}

fn check_dirs(dirs: &[pb::CgroupDirEntry]) -> Result<()> {
    for d in dirs {
        check_rel(&text(&d.dir_name), "directory")?;
        check_dirs(&d.children)?;
    }
    Ok(())
}

/// Sets the dumped owner and mode of `path`. CRIU 4.2 writes the
/// `freezer.state` it adds with uninitialised permissions; a mode without
/// a file type is no stat's, and is left alone.
fn set_perms(path: &Path, perms: &pb::CgroupPerms) -> std::io::Result<()> {
    if perms.mode & libc::S_IFMT == 0 {
        log::debug!("{}: ignoring permissions {perms:?}", path.display());
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(perms.uid), Some(perms.gid))?;
    let meta = std::fs::metadata(path)?;
    if meta.permissions().mode() & 0o7777 != perms.mode & 0o7777 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(perms.mode & 0o7777))?;
    }
    Ok(())
}

impl Cgroups {
    /// Makes what is missing of `dirs` below `parent`.
    fn prepare_dirs(
        &mut self,
        parent: &Path,
        dirs: &[pb::CgroupDirEntry],
        head: bool,
    ) -> Result<()> {
        for d in dirs {
            let name = text(&d.dir_name);
            let path = if name.is_empty() {
                parent.to_owned()
            } else {
                parent.join(&name)
            };
            let mode = self.mode;
            let exists = path.exists();
            let refuse = |why: &str| {
                Error::unsupported(format!(
                    "restoring cgroup {}, which {why} (--manage-cgroups={})",
                    path.display(),
                    mode.name()
                ))
            };
            match (exists, mode) {
                (true, Mode::Strict) => return Err(refuse("exists")),
                (false, Mode::None | Mode::Props) => return Err(refuse("does not exist")),
                _ => {}
            }
            if !exists {
                self.make_dir(&path)?;
                log::info!("made cgroup {}", path.display());
            }
            if mode != Mode::None
                && let Some(p) = &d.dir_perms
            {
                set_perms(&path, p).map_err(|e| {
                    Error::invalid(
                        img(),
                        format!("cannot set the owner and mode of {}: {e}", path.display()),
                    )
                })?;
            }
            if exists && matches!(mode, Mode::Soft | Mode::None) {
                log::info!("cgroup {} exists: its properties stay", path.display());
            } else {
                for p in &d.properties {
                    let pname = text(&p.name);
                    if SPECIAL.contains(&pname.as_str()) {
                        // Only where the directory is new (as CRIU): a
                        // cgroup with tasks or children refuses them.
                        if !exists {
                            special_prop(&path, p)?;
                        }
                    } else if pname == "freezer.state" {
                        self.freezer = Some((path.clone(), p.clone()));
                    } else if !(head && name.is_empty()) {
                        self.props.push((path.clone(), p.clone()));
                    }
                }
            }
            self.prepare_dirs(&path, &d.children, false)?;
        }
        Ok(())
    }

    /// Makes `path` and its missing parents, mode 0755.
    fn make_dir(&mut self, path: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut p = path;
        while !p.exists() {
            missing.push(p.to_owned());
            match p.parent() {
                Some(up) => p = up,
                None => break,
            }
        }
        for m in missing.into_iter().rev() {
            std::fs::create_dir(&m).map_err(|e| {
                Error::invalid(
                    img(),
                    format!("cannot make cgroup directory {}: {e}", m.display()),
                )
            })?;
            let _ = std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o755));
            self.made.push(m);
        }
        Ok(())
    }

    /// Puts process `pid` (just cloned, not running yet) into its
    /// cgroups, then writes the properties of the directories made.
    pub fn enter(&self, pid: Pid) -> Result<()> {
        for procs in &self.procs {
            std::fs::write(procs, pid.to_string()).map_err(|e| {
                Error::invalid(
                    img(),
                    format!("cannot put process {pid} into {}: {e}", procs.display()),
                )
            })?;
            log::debug!("process {pid} put into {}", procs.display());
        }
        for (dir, p) in &self.props {
            write_prop(dir, p)?;
        }
        Ok(())
    }

    /// The process runs: `freezer.state` goes back (a failure is only
    /// logged, as CRIU does), and the directories made stay.
    /// Moves the threads that were in other cgroups than their leader's
    /// into theirs, once they exist (before they run).
    pub fn move_threads(&self) -> Result<()> {
        for (tid, dirs) in &self.threads {
            for d in dirs {
                // cgroup v1's `tasks`, cgroup2's `cgroup.threads` (of a
                // threaded cgroup).
                let v1 = d.join("tasks");
                let f = if v1.exists() {
                    v1
                } else {
                    d.join("cgroup.threads")
                };
                std::fs::write(&f, tid.to_string()).map_err(|e| {
                    Error::invalid(
                        img(),
                        format!("cannot move thread {tid} into {}: {e}", f.display()),
                    )
                })?;
            }
        }
        Ok(())
    }

    pub fn done(&mut self) {
        self.kept = true;
        if let Some((dir, p)) = &self.freezer
            && let Err(e) = write_prop(dir, p)
        {
            log::error!("cannot restore the freezer state: {e}");
        }
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for d in self.made.iter().rev() {
            // Fails while a killed process is still in it; nothing more
            // can be done then.
            if let Err(e) = std::fs::remove_dir(d) {
                log::warn!("cannot remove cgroup {}: {e}", d.display());
            }
        }
    }
}

/// Opens property `name` of `dir` with the dumped owner and mode.
fn open_prop(
    dir: &Path,
    name: &str,
    perms: Option<&pb::CgroupPerms>,
    read: bool,
) -> Result<(std::fs::File, PathBuf)> {
    let path = dir.join(name);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(read)
        .open(&path)
        .map_err(|e| Error::invalid(img(), format!("cannot open {}: {e}", path.display())))?;
    if let Some(p) = perms {
        set_perms(&path, p).map_err(|e| {
            Error::invalid(
                img(),
                format!("cannot set the owner and mode of {}: {e}", path.display()),
            )
        })?;
    }
    Ok((f, path))
}

fn write_value(f: &mut std::fs::File, path: &Path, value: &[u8]) -> Result<()> {
    f.write_all(value).map_err(|e| {
        Error::invalid(
            img(),
            format!("cannot write {:?} to {}: {e}", text(value), path.display()),
        )
    })
}

/// Writes one property as CRIU does.
fn write_prop(dir: &Path, p: &pb::CgroupPropEntry) -> Result<()> {
    let name = text(&p.name);
    if name.contains('/') || name.starts_with('.') {
        return Err(Error::invalid(img(), format!("property name {name:?}")));
    }
    let subtree = name == "cgroup.subtree_control";
    let (mut f, path) = open_prop(dir, &name, p.perms.as_ref(), subtree)?;
    match name.as_str() {
        "cgroup.procs" | "tasks" => Ok(()),
        "cgroup.type" if p.value != b"threaded" => Ok(()),
        "cgroup.subtree_control" => {
            // Off what is on, then on what was.
            let mut now = String::new();
            f.read_to_string(&mut now)
                .map_err(|e| Error::invalid(img(), format!("reading {}: {e}", path.display())))?;
            let mut words: Vec<String> = now.split_whitespace().map(|w| format!("-{w}")).collect();
            words.extend(text(&p.value).split_whitespace().map(|w| format!("+{w}")));
            if words.is_empty() {
                return Ok(());
            }
            write_value(&mut f, &path, words.join(" ").as_bytes())
        }
        "net_prio.ifpriomap" => {
            // One interface a write, and only those not at the default 0.
            for line in text(&p.value).lines() {
                let prio = line.split_whitespace().nth(1).unwrap_or("0");
                if prio != "0" {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            Ok(())
        }
        _ => write_value(&mut f, &path, &p.value),
    }
}

/// Writes a property that must be set before the cgroup has tasks.
fn special_prop(dir: &Path, p: &pb::CgroupPropEntry) -> Result<()> {
    let name = text(&p.name);
    match (name.as_str(), p.value.as_slice()) {
        ("memory.swappiness", b"60") | ("memory.oom_control", b"0") => Ok(()),
        ("devices.list", _) => {
            // Deny everything, then allow each line of the list.
            let perms = p.perms.map(|mut q| {
                q.mode = 0o200;
                q
            });
            let (mut f, path) = open_prop(dir, "devices.deny", perms.as_ref(), false)?;
            write_value(&mut f, &path, b"a")?;
            if p.value.is_empty() {
                return Ok(());
            }
            let (mut f, path) = open_prop(dir, "devices.allow", perms.as_ref(), false)?;
            for line in p.value.split(|&b| b == b'\n') {
                write_value(&mut f, &path, line)?;
            }
            Ok(())
        }
        ("memory.kmem.limit_in_bytes", _) => {
            let (mut f, path) = open_prop(dir, &name, p.perms.as_ref(), false)?;
            match f.write_all(&p.value) {
                // Deprecated by the kernel: nothing to restore.
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
                Err(e) => Err(Error::invalid(
                    img(),
                    format!(
                        "cannot write {:?} to {}: {e}",
                        text(&p.value),
                        path.display()
                    ),
                )),
                Ok(()) => Ok(()),
            }
        }
        _ => write_prop(dir, p),
    }
}

/// rcriu's own cgroup in the hierarchy of controllers `name` (comma-
/// separated, as in cgroup.img), if it is in one.
fn own_cgroup(name: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let want: Vec<&str> = name.split(',').collect();
    text.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctls, path) = (it.next()?, it.next()?, it.next()?);
        let mut have: Vec<&str> = ctls.split(',').collect();
        let mut w = want.clone();
        have.sort_unstable();
        w.sort_unstable();
        (have == w).then(|| path.to_owned())
    })
}

/// criu's `--cgroup-root [CONTROLLER:]PATH` at restore, as CRIU 4.2
/// rewrites `cgroup.img`: for each hierarchy the option names (the one
/// for all hierarchies when none names it), each head cgroup is renamed
/// PATH, and every member path of the sets below that head moves with it
/// (`/HEAD/rest` becomes `PATH/rest`). A hierarchy's root is never
/// renamed.
pub fn rewrite_roots(
    entry: &mut pb::CgroupEntry,
    roots: &[(Option<String>, String)],
) -> Result<()> {
    for ci in 0..entry.controllers.len() {
        let c = &entry.controllers[ci];
        let mut newroot: Option<&str> = None;
        for (ctrl, path) in roots {
            if let Some(ctrl) = ctrl
                && controller_matches(c, ctrl)
            {
                if newroot.is_some_and(|n| n != path) {
                    return Err(Error::unsupported(format!(
                        "two --cgroup-root paths for hierarchy {:?}: {} and {path}",
                        c.cnames
                            .iter()
                            .map(|n| text(n))
                            .collect::<Vec<_>>()
                            .join(","),
                        newroot.unwrap_or_default()
                    )));
                }
                newroot = Some(path);
            }
        }
        let newroot = match newroot.or_else(|| {
            roots
                .iter()
                .find(|(c, _)| c.is_none())
                .map(|(_, p)| p.as_str())
        }) {
            Some(r) => r.to_owned(),
            None => continue,
        };
        if !newroot.starts_with('/') {
            return Err(Error::unsupported(format!(
                "--cgroup-root {newroot}: not an absolute cgroup path"
            )));
        }
        check_rel(newroot.trim_matches('/'), "--cgroup-root")?;
        let cnames = entry.controllers[ci].cnames.clone();
        for di in 0..entry.controllers[ci].dirs.len() {
            let head = text(&entry.controllers[ci].dirs[di].dir_name);
            if head.is_empty() {
                continue;
            }
            let probe = pb::CgControllerEntry {
                cnames: cnames.clone(),
                ..Default::default()
            };
            for set in &mut entry.sets {
                for m in &mut set.ctls {
                    let path = text(&m.path);
                    let Some(rest) = path
                        .strip_prefix('/')
                        .and_then(|p| p.strip_prefix(head.as_str()))
                    else {
                        continue;
                    };
                    if !controller_matches(&probe, &text(&m.name))
                        || !(rest.is_empty() || rest.starts_with('/'))
                    {
                        continue;
                    }
                    let moved = format!("{}{rest}", newroot.trim_end_matches('/'));
                    log::info!("cg: {path} moved to {moved} (--cgroup-root)");
                    m.path = moved.into_bytes();
                }
            }
            entry.controllers[ci].dirs[di].dir_name = newroot.trim_matches('/').as_bytes().to_vec();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, path: &str) -> pb::CgMemberEntry {
        pb::CgMemberEntry {
            name: name.as_bytes().to_vec(),
            path: path.as_bytes().to_vec(),
            cgns_prefix: None,
        }
    }

    fn ctl(name: &str, head: &str) -> pb::CgControllerEntry {
        pb::CgControllerEntry {
            cnames: vec![name.as_bytes().to_vec()],
            dirs: vec![pb::CgroupDirEntry {
                dir_name: head.as_bytes().to_vec(),
                ..Default::default()
            }],
            is_threaded: None,
        }
    }

    /// zdtm cgroup02's case, as CRIU 4.2 rewrites it.
    #[test]
    fn roots_rewritten_as_criu() {
        let mut e = pb::CgroupEntry {
            sets: vec![pb::CgSetEntry {
                id: 2,
                ctls: vec![
                    member("name=a", "/prefix/oldroot"),
                    member("name=b", "/prefix/oldroot"),
                    member("cpu", "/"),
                ],
            }],
            controllers: vec![
                ctl("name=a", "prefix"),
                ctl("name=b", "prefix/oldroot"),
                ctl("cpu", ""),
            ],
        };
        let roots = [
            (None, "/newroot".to_owned()),
            (Some("name=a".to_owned()), "/prefix".to_owned()),
        ];
        rewrite_roots(&mut e, &roots).unwrap();
        let paths: Vec<String> = e.sets[0].ctls.iter().map(|m| text(&m.path)).collect();
        assert_eq!(paths, ["/prefix/oldroot", "/newroot", "/"]);
        let heads: Vec<String> = e
            .controllers
            .iter()
            .map(|c| text(&c.dirs[0].dir_name))
            .collect();
        assert_eq!(heads, ["prefix", "newroot", ""]);
        // Two paths for one hierarchy, and a path that leaves it.
        let two = [
            (Some("name=a".to_owned()), "/x".to_owned()),
            (Some("name=a".to_owned()), "/y".to_owned()),
        ];
        assert!(rewrite_roots(&mut e.clone(), &two).is_err());
        assert!(rewrite_roots(&mut e.clone(), &[(None, "/../up".to_owned())]).is_err());
        assert!(rewrite_roots(&mut e, &[(None, "rel".to_owned())]).is_err());
    }

    #[test]
    fn paths_stay_inside() {
        assert!(check_rel("a/b", "x").is_ok());
        assert!(check_rel("", "x").is_ok());
        assert!(check_rel("../etc", "x").is_err());
        assert!(check_rel("a//b", "x").is_err());
        assert!(check_rel("/a", "x").is_err());
        let v2 = pb::CgControllerEntry {
            cnames: vec![Vec::new()],
            dirs: Vec::new(),
            is_threaded: None,
        };
        assert!(controller_matches(&v2, ""));
        assert!(!controller_matches(&v2, "cpu"));
        let cpu = pb::CgControllerEntry {
            cnames: vec![b"cpu".to_vec(), b"cpuacct".to_vec()],
            ..v2
        };
        assert!(controller_matches(&cpu, "cpu,cpuacct"));
        assert!(!controller_matches(&cpu, "cpu"));
    }
}
