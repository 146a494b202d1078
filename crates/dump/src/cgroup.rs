//! `cgroup.img`: the cgroups the process lives in, as CRIU 4.2 writes them
//! (its default `--manage-cgroups` mode, "soft").
//!
//! A **set** is the list of (hierarchy, path) a task is in, as
//! `/proc/PID/task/TID/cgroup` shows it, sorted by hierarchy name (`""`
//! for the cgroup2 one, `cpu,cpuacct`, `name=systemd`...). Sets are
//! numbered from 1 in the order they are met: rcriu's own set comes
//! first (inventory's `root_cg_set`), then each thread's, the leader's
//! first (`thread_core.cg_set`). The image holds every set but rcriu's.
//!
//! A **controller** is a hierarchy of rcriu's `/proc/self/cgroup` (named
//! ones such as `name=systemd` only when a task's set has them, at the
//! end). For every member of a task's set not seen before, the cgroup
//! directory and everything below it is walked (pre-order, directory
//! order) and each directory recorded with its permissions and the
//! properties CRIU saves by default for its controllers, then the global
//! ones. A directory that does not lie below one already recorded
//! becomes a new head (so below a hierarchy's root `/`, every directory
//! is a head of its own, as in CRIU). With `--freeze-cgroup`, the
//! freezer's first head also gets `freezer.state`, the state the freezer
//! was in before the dump.
//!
//! When every task is in rcriu's own set, no image is written.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rcriu_compel::Seized;
use rcriu_compel::freezer::{self, Freezer};
use rcriu_images::pb;
use rcriu_proc::{CgroupEntry, MountInfo, Pid};

use crate::{Error, Result};

/// The properties CRIU saves by default, per controller.
fn controller_props(cname: &str) -> &'static [&'static str] {
    match cname {
        "cpu" => &[
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.rt_period_us",
            "cpu.rt_runtime_us",
        ],
        "memory" => &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.swappiness",
            "memory.soft_limit_in_bytes",
            "memory.move_charge_at_immigrate",
            "memory.oom_control",
            "memory.use_hierarchy",
            "memory.kmem.limit_in_bytes",
            "memory.kmem.tcp.limit_in_bytes",
        ],
        "cpuset" => &[
            "cpuset.cpus",
            "cpuset.mems",
            "cpuset.memory_migrate",
            "cpuset.cpu_exclusive",
            "cpuset.mem_exclusive",
            "cpuset.mem_hardwall",
            "cpuset.memory_spread_page",
            "cpuset.memory_spread_slab",
            "cpuset.sched_load_balance",
            "cpuset.sched_relax_domain_level",
        ],
        "blkio" => &["blkio.weight"],
        "net_cls" => &["net_cls.classid"],
        "net_prio" => &["net_prio.ifpriomap"],
        "pids" => &["pids.max"],
        "devices" => &["devices.list"],
        _ => &[],
    }
}

/// The properties every cgroup v1 directory gets.
const GLOBAL_V1: &[&str] = &[
    "cgroup.clone_children",
    "notify_on_release",
    "cgroup.procs",
    "tasks",
];

/// The properties every cgroup v2 directory gets.
const GLOBAL_V2: &[&str] = &[
    "cgroup.subtree_control",
    "cgroup.max.descendants",
    "cgroup.max.depth",
    "cgroup.freeze",
    "cgroup.type",
];

/// One member of a set: a hierarchy's name and the cgroup's path in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: String,
    path: String,
}

/// The set of `/proc/.../cgroup`'s lines, sorted by name.
fn members(entries: &[CgroupEntry]) -> Vec<Member> {
    let mut m: Vec<Member> = entries
        .iter()
        .map(|e| Member {
            name: e.controllers.join(","),
            path: e.path.clone(),
        })
        .collect();
    m.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    m
}

/// A recorded cgroup directory.
#[derive(Debug)]
struct Dir {
    /// Its path from the hierarchy's root (`/` for the root).
    path: String,
    perms: pb::CgroupPerms,
    props: Vec<pb::CgroupPropEntry>,
    children: Vec<Dir>,
}

#[derive(Debug)]
struct Controller {
    cnames: Vec<String>,
    heads: Vec<Dir>,
    threaded: bool,
}

impl Controller {
    fn is_v2(&self) -> bool {
        self.cnames.len() == 1 && self.cnames[0].is_empty()
    }

    /// Whether this controller is hierarchy `name`'s: cgroup2's matches
    /// `""` only; otherwise each of its names must be one of `name`'s.
    fn matches(&self, name: &str) -> bool {
        if self.is_v2() {
            return name.is_empty();
        }
        !self.cnames.is_empty() && self.cnames.iter().all(|c| name.split(',').any(|n| n == c))
    }
}

/// `path` lies below `dir` (or is it): CRIU's rule, under which nothing
/// lies below `/` but `/` itself.
fn is_subpath(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

enum Place {
    Exact,
    Under(Vec<usize>),
    Head,
}

/// Where `path` goes among `dirs`: the index path of the deepest
/// recorded directory it lies below.
fn find_place(dirs: &[Dir], path: &str) -> Place {
    for (i, d) in dirs.iter().enumerate() {
        if d.path == path {
            return Place::Exact;
        }
        if is_subpath(path, &d.path) {
            return match find_place(&d.children, path) {
                Place::Exact => Place::Exact,
                Place::Under(mut at) => {
                    at.insert(0, i);
                    Place::Under(at)
                }
                Place::Head => Place::Under(vec![i]),
            };
        }
    }
    Place::Head
}

fn dir_at<'a>(dirs: &'a mut [Dir], at: &[usize]) -> &'a mut Dir {
    let (first, rest) = at.split_first().expect("a place has at least one index");
    let d = &mut dirs[*first];
    if rest.is_empty() {
        d
    } else {
        dir_at(&mut d.children, rest)
    }
}

fn perms_of(m: &std::fs::Metadata) -> pb::CgroupPerms {
    pb::CgroupPerms {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
    }
}

/// The leading number of `s` as C's `strtoll` reads it is its largest
/// (an "unlimited" that CRIU writes as -1).
fn saturates(s: &str) -> bool {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let n: String = digits.chars().take_while(char::is_ascii_digit).collect();
    !neg && !n.is_empty() && n.parse::<i64>().map_or(true, |v| v == i64::MAX)
}

/// Reads property `name` of the cgroup directory `dir`, as CRIU does.
fn read_prop(pid: Pid, dir: &Path, name: &str) -> Result<Option<pb::CgroupPropEntry>> {
    let path = dir.join(name);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::file(pid, &path)(e)),
    };
    let meta = f.metadata().map_err(Error::file(pid, &path))?;
    let value = if name == "cgroup.procs" || name == "tasks" {
        String::new()
    } else {
        // One read of at most 1023 bytes, as CRIU's buffer.
        let mut buf = vec![0u8; 1023];
        let n = f.read(&mut buf).map_err(Error::file(pid, &path))?;
        buf.truncate(n);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let mut v = if saturates(&text) {
            "-1".to_owned()
        } else {
            text
        };
        if v.ends_with('\n') {
            v.pop();
        }
        if name == "memory.oom_control" {
            let disable = v
                .strip_prefix("oom_kill_disable ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<i32>().ok())
                .ok_or_else(|| Error::Inconsistent {
                    pid,
                    what: format!("{} reads {v:?}", path.display()),
                })?;
            v = disable.to_string();
        }
        v
    };
    Ok(Some(pb::CgroupPropEntry {
        name: name.as_bytes().to_vec(),
        value: value.into_bytes(),
        perms: Some(perms_of(&meta)),
    }))
}

/// Seizes process `pid`, inside its frozen freezer cgroup when
/// `freeze_cgroup` is given (criu's `--freeze-cgroup`), with the other
/// processes of its tree in that cgroup; returns the freezer's state
/// before the dump then.
pub fn seize(
    pid: Pid,
    freeze_cgroup: Option<&Path>,
) -> Result<(Seized, Vec<Seized>, Option<FreezerOrigin>)> {
    let Some(path) = freeze_cgroup else {
        return Ok((
            Seized::seize(pid).map_err(Error::compel(pid))?,
            Vec::new(),
            None,
        ));
    };
    let f = Freezer::open(path).map_err(Error::compel(pid))?;
    let (seized, others, origin) = Seized::seize_frozen(pid, &f).map_err(Error::compel(pid))?;
    let origin = match origin {
        freezer::State::Thawed => FreezerOrigin::Thawed,
        _ => FreezerOrigin::Frozen,
    };
    Ok((seized, others, Some(origin)))
}

/// The seized threads, the leader first, then by tid (the cores' order).
pub fn tids(seized: &Seized) -> Vec<Pid> {
    let mut t: Vec<Pid> = seized.threads().iter().map(|t| t.tid).collect();
    t.sort_by_key(|&tid| (tid != seized.pid(), tid));
    t
}

/// The state of the freezer cgroup before the dump, for `freezer.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerOrigin {
    Thawed,
    Frozen,
}

/// What the dump records of the cgroups.
#[derive(Debug)]
pub struct Dumped {
    /// rcriu's own set (inventory's `root_cg_set`).
    pub root_set: u32,
    /// Each thread's set, in the order of the tids given.
    pub thread_sets: Vec<u32>,
    /// `cgroup.img`, unless every thread is in rcriu's set.
    pub image: Option<pb::CgroupEntry>,
}

struct Collector {
    pid: Pid,
    mounts: Vec<MountInfo>,
    sets: Vec<(u32, Vec<Member>)>,
    controllers: Vec<Controller>,
    freezer: Option<FreezerOrigin>,
    /// Whether the cgroups under a task's set are walked.
    dirs: bool,
    /// criu's `--cgroup-root [CONTROLLER:]PATH` at dump: where the walk
    /// of a hierarchy starts instead of the task's cgroup.
    roots: Vec<(Option<String>, String)>,
}

/// Reads the cgroups of rcriu (`host`, its own `/proc/self/cgroup`) and
/// of each thread `tids` of process `pid` (the leader first), walking the
/// cgroups of every set that is not rcriu's. `freezer` is given with
/// `--freeze-cgroup`.
pub fn collect(
    pid: Pid,
    tids: &[Pid],
    host: &[CgroupEntry],
    freezer: Option<FreezerOrigin>,
) -> Result<Dumped> {
    let mut c = Sets::new(pid, host, freezer, true)?;
    let thread_sets = c.threads(pid, tids)?;
    let (root_set, image) = c.finish();
    Ok(Dumped {
        root_set,
        thread_sets,
        image,
    })
}

/// The cgroup sets of a tree of processes, numbered as they are met
/// (rcriu's first), with the cgroups under them.
pub struct Sets {
    c: Collector,
    root_set: u32,
}

impl Sets {
    /// rcriu's set (`host`) numbered first; `pid` names the dump.
    /// The cgroups under a task's set are walked when `dirs`.
    pub fn new(
        pid: Pid,
        host: &[CgroupEntry],
        freezer: Option<FreezerOrigin>,
        dirs: bool,
    ) -> Result<Sets> {
        let mut c = Collector {
            pid,
            mounts: Vec::new(),
            sets: Vec::new(),
            controllers: host_controllers(host),
            freezer,
            dirs,
            roots: Vec::new(),
        };
        let root_set = c.set_of(members(host), false)?;
        Ok(Sets { c, root_set })
    }

    /// Walks hierarchies from these roots (criu's `--cgroup-root` at
    /// dump) rather than from the tasks' cgroups.
    pub fn set_roots(&mut self, roots: Vec<(Option<String>, String)>) {
        self.c.roots = roots;
    }

    /// The set of each thread of process `pid`, in the order of `tids`.
    pub fn threads(&mut self, pid: Pid, tids: &[Pid]) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(tids.len());
        for &tid in tids {
            let path = format!("/proc/{pid}/task/{tid}/cgroup");
            let text = std::fs::read(&path).map_err(Error::file(pid, &path))?;
            let entries = rcriu_proc::parse_cgroup(&text).map_err(|e| Error::Inconsistent {
                pid,
                what: format!("parsing {path}: {e}"),
            })?;
            out.push(self.c.set_of(members(&entries), true)?);
        }
        Ok(out)
    }

    /// rcriu's set and `cgroup.img`, unless every thread is in rcriu's
    /// set.
    pub fn finish(&self) -> (u32, Option<pb::CgroupEntry>) {
        let image = (self.c.sets.len() > 1).then(|| self.c.image(self.root_set));
        (self.root_set, image)
    }
}

/// rcriu's hierarchies, named ones left out.
fn host_controllers(host: &[CgroupEntry]) -> Vec<Controller> {
    let mut out = Vec::new();
    for e in host {
        let cnames: Vec<String> = if e.controllers.is_empty() {
            vec![String::new()]
        } else {
            e.controllers
                .iter()
                .filter(|c| !c.starts_with("name="))
                .cloned()
                .collect()
        };
        if !cnames.is_empty() {
            out.push(Controller {
                cnames,
                heads: Vec::new(),
                threaded: false,
            });
        }
    }
    out
}

impl Collector {
    /// The id of the set `m`, numbered anew (and its cgroups walked, for
    /// a task's) when not met before.
    fn set_of(&mut self, m: Vec<Member>, walk: bool) -> Result<u32> {
        if let Some((id, _)) = self.sets.iter().find(|(_, s)| *s == m) {
            return Ok(*id);
        }
        let id = self.sets.len() as u32 + 1;
        if walk && self.dirs {
            for member in &m {
                self.walk_member(member)?;
            }
        }
        self.sets.push((id, m));
        Ok(id)
    }

    fn walk_member(&mut self, m: &Member) -> Result<()> {
        let pid = self.pid;
        let ci = match self.controllers.iter().position(|c| c.matches(&m.name)) {
            Some(i) => i,
            None if m.name.starts_with("name=") => {
                self.controllers.push(Controller {
                    cnames: vec![m.name.clone()],
                    heads: Vec::new(),
                    threaded: false,
                });
                self.controllers.len() - 1
            }
            None => {
                return Err(Error::unsupported(
                    pid,
                    format!("a cgroup of hierarchy {:?}, which rcriu is not in", m.name),
                ));
            }
        };
        if self.mounts.is_empty() {
            let path = "/proc/self/mountinfo";
            let text = std::fs::read(path).map_err(Error::file(pid, path))?;
            self.mounts = rcriu_proc::parse_mountinfo(&text).map_err(|e| Error::Inconsistent {
                pid,
                what: format!("parsing {path}: {e}"),
            })?;
        }
        let mount = rcriu_proc::hierarchy_mount(&self.mounts, &m.name);
        // A hierarchy nobody has mounted, whose root the task is in (as
        // every task is until moved): nothing of it to describe.
        if mount.is_none() && m.path == "/" {
            return Ok(());
        }
        let mount = mount
            .ok_or_else(|| {
                Error::unsupported(
                    pid,
                    format!(
                        "a cgroup of hierarchy {:?}, which is not mounted here at its root",
                        m.name
                    ),
                )
            })?
            .mount_point
            .clone();
        if !m.path.starts_with('/') || m.path.split('/').any(|c| c == "..") {
            return Err(Error::Inconsistent {
                pid,
                what: format!("cgroup path {:?} of hierarchy {:?}", m.path, m.name),
            });
        }
        // As CRIU: the option naming this hierarchy, else the one for
        // all, else the task's own cgroup.
        let start = self
            .roots
            .iter()
            .find(|(c, _)| c.as_deref() == Some(m.name.as_str()))
            .or_else(|| self.roots.iter().find(|(c, _)| c.is_none()))
            .map_or(m.path.clone(), |(_, p)| p.clone());
        if !start.starts_with('/') || start.split('/').any(|c| c == "..") {
            return Err(Error::unsupported(
                pid,
                format!("--cgroup-root {start}: not an absolute cgroup path"),
            ));
        }
        self.walk(ci, &mount, &start)?;
        if self.freezer.is_some() && m.name == "freezer" {
            self.add_freezer_state(ci, &mount)?;
        }
        Ok(())
    }

    /// Records `path` (from the hierarchy's root) and everything below.
    fn walk(&mut self, ci: usize, mount: &Path, path: &str) -> Result<()> {
        let pid = self.pid;
        let full = full_path(mount, path);
        let meta = std::fs::metadata(&full).map_err(Error::file(pid, &full))?;
        if !meta.is_dir() {
            return Ok(());
        }
        let place = find_place(&self.controllers[ci].heads, path);
        if !matches!(place, Place::Exact) {
            let mut props = Vec::new();
            let c = &self.controllers[ci];
            let globals = if c.is_v2() { GLOBAL_V2 } else { GLOBAL_V1 };
            let names: Vec<&str> = c
                .cnames
                .iter()
                .flat_map(|n| controller_props(n).iter().copied())
                .chain(globals.iter().copied())
                .collect();
            let mut threaded = false;
            for name in names {
                if let Some(p) = read_prop(pid, &full, name)? {
                    if (p.name == b"cgroup.type" && p.value == b"threaded") || p.name == b"tasks" {
                        threaded = true;
                    }
                    props.push(p);
                }
            }
            let c = &mut self.controllers[ci];
            c.threaded |= threaded;
            let dir = Dir {
                path: path.to_owned(),
                perms: perms_of(&meta),
                props,
                children: Vec::new(),
            };
            match place {
                Place::Head => c.heads.push(dir),
                Place::Under(at) => dir_at(&mut c.heads, &at).children.push(dir),
                Place::Exact => unreachable!("matched above"),
            }
        }
        let entries = std::fs::read_dir(&full).map_err(Error::file(pid, &full))?;
        for e in entries {
            let e = e.map_err(Error::file(pid, &full))?;
            if !e.file_type().map_err(Error::file(pid, e.path()))?.is_dir() {
                continue;
            }
            let name = e.file_name();
            let name = name.to_string_lossy();
            let child = if path == "/" {
                format!("/{name}")
            } else {
                format!("{path}/{name}")
            };
            self.walk(ci, mount, &child)?;
        }
        Ok(())
    }

    /// `freezer.state` with the state before the dump, on the freezer's
    /// first head: CRIU adds it there once per head.
    fn add_freezer_state(&mut self, ci: usize, mount: &Path) -> Result<()> {
        let Some(origin) = self.freezer else {
            return Ok(());
        };
        let value = match origin {
            FreezerOrigin::Thawed => "THAWED",
            FreezerOrigin::Frozen => "FROZEN",
        };
        let c = &mut self.controllers[ci];
        let n = c.heads.len();
        let Some(first) = c.heads.first_mut() else {
            return Ok(());
        };
        let file = full_path(mount, &first.path).join("freezer.state");
        let perms = std::fs::metadata(&file).ok().map(|m| perms_of(&m));
        for _ in 0..n {
            first.props.push(pb::CgroupPropEntry {
                name: b"freezer.state".to_vec(),
                value: value.as_bytes().to_vec(),
                perms,
            });
        }
        Ok(())
    }

    fn image(&self, root_set: u32) -> pb::CgroupEntry {
        pb::CgroupEntry {
            sets: self
                .sets
                .iter()
                .filter(|(id, _)| *id != root_set)
                .map(|(id, m)| pb::CgSetEntry {
                    id: *id,
                    ctls: m
                        .iter()
                        .map(|m| pb::CgMemberEntry {
                            name: m.name.as_bytes().to_vec(),
                            path: m.path.as_bytes().to_vec(),
                            cgns_prefix: None,
                        })
                        .collect(),
                })
                .collect(),
            controllers: self
                .controllers
                .iter()
                .map(|c| pb::CgControllerEntry {
                    cnames: c.cnames.iter().map(|n| n.as_bytes().to_vec()).collect(),
                    dirs: dir_entries(&c.heads, 0),
                    is_threaded: Some(c.threaded),
                })
                .collect(),
        }
    }
}

fn full_path(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

/// The entries of `dirs`, named relative to their parent's path, which is
/// `parent_len` bytes long (0 for heads).
fn dir_entries(dirs: &[Dir], parent_len: usize) -> Vec<pb::CgroupDirEntry> {
    dirs.iter()
        .map(|d| {
            let skip = if parent_len == 1 { 1 } else { parent_len + 1 };
            pb::CgroupDirEntry {
                dir_name: d.path.get(skip..).unwrap_or("").as_bytes().to_vec(),
                children: dir_entries(&d.children, d.path.len()),
                properties: d.props.clone(),
                dir_perms: Some(d.perms),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_rules() {
        assert!(is_subpath("/a/b", "/a"));
        assert!(is_subpath("/a", "/a"));
        assert!(!is_subpath("/ab", "/a"));
        // Nothing is below the root but the root, as in CRIU.
        assert!(!is_subpath("/a", "/"));
        assert!(saturates("9223372036854775807\n"));
        assert!(saturates("99999999999999999999"));
        assert!(!saturates("9223372036854771712\n"));
        assert!(!saturates("max\n"));
        assert!(!saturates("-5"));
        let m = members(&rcriu_proc::parse_cgroup(b"2:name=systemd:/\n1:cpu:/x\n0::/y\n").unwrap());
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["", "cpu", "name=systemd"]);
    }

    #[test]
    fn dir_names() {
        let d = |path: &str, children| Dir {
            path: path.into(),
            perms: pb::CgroupPerms::default(),
            props: Vec::new(),
            children,
        };
        let heads = vec![d("/", vec![]), d("/a/b", vec![d("/a/b/c", vec![])])];
        let e = dir_entries(&heads, 0);
        assert_eq!(e[0].dir_name, b"");
        assert_eq!(e[1].dir_name, b"a/b");
        assert_eq!(e[1].children[0].dir_name, b"c");
    }
}
