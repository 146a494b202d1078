//! Namespace ids: the inode numbers of the `/proc/PID/ns/*` links.

use crate::text;

/// The namespace links of `/proc/PID/ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NsKind {
    Net,
    Mnt,
    Pid,
    PidForChildren,
    Ipc,
    Uts,
    User,
    Cgroup,
    Time,
    TimeForChildren,
}

impl NsKind {
    pub const ALL: [NsKind; 10] = [
        NsKind::Net,
        NsKind::Mnt,
        NsKind::Pid,
        NsKind::PidForChildren,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::User,
        NsKind::Cgroup,
        NsKind::Time,
        NsKind::TimeForChildren,
    ];

    /// The link's name in `/proc/PID/ns`.
    pub fn file_name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Mnt => "mnt",
            NsKind::Pid => "pid",
            NsKind::PidForChildren => "pid_for_children",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
            NsKind::User => "user",
            NsKind::Cgroup => "cgroup",
            NsKind::Time => "time",
            NsKind::TimeForChildren => "time_for_children",
        }
    }

    /// The type word the link's text starts with (`pid` for both pid
    /// links, `time` for both time links).
    pub fn link_type(self) -> &'static str {
        match self {
            NsKind::PidForChildren => "pid",
            NsKind::TimeForChildren => "time",
            k => k.file_name(),
        }
    }

    /// The `CLONE_NEW*` flag of this kind.
    pub fn clone_flag(self) -> i32 {
        match self {
            NsKind::Net => libc::CLONE_NEWNET,
            NsKind::Mnt => libc::CLONE_NEWNS,
            NsKind::Pid | NsKind::PidForChildren => libc::CLONE_NEWPID,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::Uts => libc::CLONE_NEWUTS,
            NsKind::User => libc::CLONE_NEWUSER,
            NsKind::Cgroup => libc::CLONE_NEWCGROUP,
            NsKind::Time | NsKind::TimeForChildren => libc::CLONE_NEWTIME,
        }
    }
}

/// The inode of a namespace link's text `TYPE:[INODE]`, if its type is
/// `kind`'s.
pub fn parse_ns_link(kind: NsKind, link: &[u8]) -> Option<u64> {
    let rest = link.strip_prefix(kind.link_type().as_bytes())?;
    let inner = rest.strip_prefix(b":[")?.strip_suffix(b"]")?;
    text::dec_u64(inner)
}

/// The namespace ids of a task. `None` where the link does not exist
/// (a kernel without that namespace type); `pid_for_children` can also
/// be `None` after an `unshare(CLONE_NEWPID)` before the first child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Namespaces {
    pub net: Option<u64>,
    pub mnt: Option<u64>,
    pub pid: Option<u64>,
    pub pid_for_children: Option<u64>,
    pub ipc: Option<u64>,
    pub uts: Option<u64>,
    pub user: Option<u64>,
    pub cgroup: Option<u64>,
    pub time: Option<u64>,
    pub time_for_children: Option<u64>,
}

impl Namespaces {
    pub fn get(&self, kind: NsKind) -> Option<u64> {
        let mut copy = *self;
        *copy.slot(kind)
    }

    pub(crate) fn slot(&mut self, kind: NsKind) -> &mut Option<u64> {
        match kind {
            NsKind::Net => &mut self.net,
            NsKind::Mnt => &mut self.mnt,
            NsKind::Pid => &mut self.pid,
            NsKind::PidForChildren => &mut self.pid_for_children,
            NsKind::Ipc => &mut self.ipc,
            NsKind::Uts => &mut self.uts,
            NsKind::User => &mut self.user,
            NsKind::Cgroup => &mut self.cgroup,
            NsKind::Time => &mut self.time,
            NsKind::TimeForChildren => &mut self.time_for_children,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        assert_eq!(
            parse_ns_link(NsKind::Net, b"net:[4026531833]"),
            Some(4026531833)
        );
        assert_eq!(
            parse_ns_link(NsKind::PidForChildren, b"pid:[4026531836]"),
            Some(4026531836)
        );
        assert_eq!(parse_ns_link(NsKind::TimeForChildren, b"time:[1]"), Some(1));
        assert_eq!(parse_ns_link(NsKind::Net, b"mnt:[4026531833]"), None);
        assert_eq!(parse_ns_link(NsKind::Net, b"net:[x]"), None);
        assert_eq!(parse_ns_link(NsKind::Net, b"net:4026531833"), None);
    }
}
