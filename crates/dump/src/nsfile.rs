//! Namespace files: an fd opened on `/proc/PID/ns/NAME` (its link reads
//! `net:[INODE]`), an `ns_file_entry` in files.img as CRIU 4.2 writes it:
//! the namespace's id (the numbering of `ids-PID.img`), its `CLONE_NEW*`
//! flag and the open flags. As CRIU, only a namespace some process of the
//! dump is in can be opened again by the restore; a file of any other
//! namespace is refused by name.

use rcriu_images::pb;
use rcriu_proc::{Namespaces, NsKind, Pid};

use crate::files::OpenFd;
use crate::{Error, Result};

/// The kind of namespace a link such as `net:[4026531833]` names; `None`
/// for any other link (a path, a pipe, a socket, an anonymous inode).
pub fn kind_of_link(link: &[u8]) -> Option<NsKind> {
    let colon = link.iter().position(|&b| b == b':')?;
    let rest = &link[colon + 1..];
    if !(rest.starts_with(b"[") && rest.ends_with(b"]")) {
        return None;
    }
    kind_of_type(&link[..colon])
}

/// The kind of namespace a link's type word names (`pid` and `time` for
/// both of their links).
pub fn kind_of_type(word: &[u8]) -> Option<NsKind> {
    NsKind::ALL
        .into_iter()
        .filter(|k| !matches!(k, NsKind::PidForChildren | NsKind::TimeForChildren))
        .find(|k| k.link_type().as_bytes() == word)
}

/// The namespaces the processes of the dump are in, with their ids, as
/// each process is numbered.
#[derive(Debug, Default)]
pub struct Held(Vec<(NsKind, u64, u32)>);

impl Held {
    /// Notes the namespaces of a process (`ns`), numbered as `ids`.
    pub fn note(&mut self, ns: &Namespaces, ids: &pb::TaskKobjIdsEntry) {
        let numbered = [
            (NsKind::Pid, ids.pid_ns_id),
            (NsKind::Net, ids.net_ns_id),
            (NsKind::Ipc, ids.ipc_ns_id),
            (NsKind::Uts, ids.uts_ns_id),
            (NsKind::Time, ids.time_ns_id),
            (NsKind::Mnt, ids.mnt_ns_id),
            (NsKind::User, ids.user_ns_id),
            (NsKind::Cgroup, ids.cgroup_ns_id),
        ];
        for (kind, id) in numbered {
            if let (Some(ino), Some(id)) = (ns.get(kind), id)
                && !self.0.contains(&(kind, ino, id))
            {
                self.0.push((kind, ino, id));
            }
        }
    }

    fn id(&self, kind: NsKind, ino: u64) -> Option<u32> {
        self.0
            .iter()
            .find(|&&(k, i, _)| k == kind && i == ino)
            .map(|&(_, _, id)| id)
    }
}

/// The entry of namespace file `f` (of `kind`) of process `pid`.
pub fn entry(pid: Pid, id: u32, kind: NsKind, f: &OpenFd, held: &Held) -> Result<pb::FileEntry> {
    let ino = f.fdinfo.ino.unwrap_or(f.info.ino);
    let ns_id = held.id(kind, ino).ok_or_else(|| {
        Error::unsupported(
            pid,
            format!(
                "fd {}: a file of {} namespace {}:[{ino}], which no process of the dump is in (nothing could open it again)",
                f.fd,
                kind.file_name(),
                kind.link_type()
            ),
        )
    })?;
    Ok(pb::FileEntry {
        r#type: pb::FdTypes::Ns as i32,
        id,
        nsf: Some(Box::new(pb::NsFileEntry {
            id,
            ns_id,
            ns_cflag: kind.clone_flag() as u32,
            flags: f.flags(),
        })),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_of_namespaces() {
        assert_eq!(kind_of_link(b"net:[4026531833]"), Some(NsKind::Net));
        assert_eq!(kind_of_link(b"pid:[4026531836]"), Some(NsKind::Pid));
        assert_eq!(kind_of_link(b"time:[4026531834]"), Some(NsKind::Time));
        assert_eq!(kind_of_link(b"mnt:[1]"), Some(NsKind::Mnt));
        assert_eq!(kind_of_link(b"cgroup:[1]"), Some(NsKind::Cgroup));
        assert_eq!(kind_of_link(b"pipe:[1]"), None);
        assert_eq!(kind_of_link(b"socket:[1]"), None);
        assert_eq!(kind_of_link(b"pid_for_children:[1]"), None);
        assert_eq!(kind_of_link(b"/tmp/net:[1]"), None);
        assert_eq!(kind_of_link(b"net:1"), None);
    }

    #[test]
    fn only_namespaces_of_the_dump() {
        let ns = Namespaces {
            net: Some(10),
            uts: Some(11),
            ..Default::default()
        };
        let ids = pb::TaskKobjIdsEntry {
            net_ns_id: Some(2),
            uts_ns_id: Some(4),
            ..Default::default()
        };
        let mut held = Held::default();
        held.note(&ns, &ids);
        held.note(&ns, &ids);
        assert_eq!(held.0.len(), 2);
        assert_eq!(held.id(NsKind::Net, 10), Some(2));
        assert_eq!(held.id(NsKind::Uts, 11), Some(4));
        assert_eq!(held.id(NsKind::Net, 11), None);
        assert_eq!(held.id(NsKind::Ipc, 10), None);
    }
}
