//! Unix sockets: a `unix_sk_entry` in files.img per socket (stream,
//! datagram, seqpacket), as CRIU 4.2 writes it.
//!
//! - `peer` is the inode of the socket it is connected to. A connection
//!   queued on a listening socket and not accepted yet shows no peer (the
//!   kernel's half of it has no file): its peer becomes the listening
//!   socket, which the restore connects it to again. Its write queue must
//!   be empty (what it sent waits in the kernel's half, out of reach).
//! - A bound socket keeps its name; a path is resolved through the
//!   socket's own file (`SIOCUNIXFILE`): its mode and owner
//!   (`file_perms`), whether the path was removed or replaced since
//!   (`deleted`), and for a relative name the directory it was bound in
//!   (`name_dir`).
//! - What is queued to be read goes to `sk-queues.img`
//!   ([`sk_queue`](crate::sk_queue)).
//! - An entry whose peer is not dumped yet waits for it (CRIU writes it
//!   right after its peer's); a peer never dumped is outside the dump: a
//!   named datagram socket is then written as an external entry
//!   (`USK_EXTERN`) with `--ext-unix-sk`, anything else is refused.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use rcriu_images::pb;
use rcriu_proc::sock_diag::UnixSock;

use crate::files::{Files, OpenFd};
use crate::sockets::{self, what};
use crate::{Error, Result, sk_queue, sk_sys};

/// `unix_sk_entry.uflags`: a peer outside the dump.
pub const USK_EXTERN: u32 = 1;

const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE: u8 = 7;
const TCP_LISTEN: u8 = 10;

/// The unix sockets seen so far.
#[derive(Debug, Default)]
pub struct State {
    /// A connecting socket queued on a listening one → the listening
    /// socket's inode.
    icons: HashMap<u32, u32>,
    dumped: HashSet<u32>,
    /// Entries waiting for their peer to be dumped, by the peer's inode,
    /// in the order they came.
    waiting: HashMap<u32, Vec<pb::UnixSkEntry>>,
    waiting_order: Vec<u32>,
    /// Listening sockets dumped, with the connections queued on them.
    listeners: Vec<(u32, Vec<u32>, String)>,
}

impl State {
    /// Notes, from the table of every unix socket, which listening socket
    /// each queued connection waits on.
    pub fn index_icons(&mut self, all: &HashMap<u32, UnixSock>) {
        for s in all.values() {
            for &c in &s.icons {
                if c != 0 {
                    self.icons.insert(c, s.ino);
                }
            }
        }
    }
}

fn unix_entry(e: pb::UnixSkEntry) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Unixsk as i32,
        id: e.id,
        usk: Some(Box::new(e)),
        ..Default::default()
    }
}

/// Dumps the unix socket open as `f`, as file `id`.
pub fn dump(files: &mut Files, f: &OpenFd, id: u32, fown: pb::FownEntry) -> Result<()> {
    let pid = files.pid();
    let ino = f.info.ino as u32;
    let table = files.sockets.unix(pid)?;
    let sk = table
        .get(&ino)
        .cloned()
        .ok_or_else(|| Error::Inconsistent {
            pid,
            what: format!("{}: a unix socket sock_diag does not know", what(f)),
        })?;
    let peer = (sk.peer != 0).then(|| table.get(&sk.peer).cloned());
    let kind = i32::from(sk.kind);
    if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(&kind) {
        return Err(Error::unsupported(
            pid,
            format!(
                "{}: a unix socket of type {}",
                what(f),
                sockets::type_name(kind as u32)
            ),
        ));
    }
    if ![TCP_LISTEN, TCP_ESTABLISHED, TCP_CLOSE].contains(&sk.state) {
        return Err(Error::unsupported(
            pid,
            format!(
                "{}: a unix socket in state {} (a connect in progress)",
                what(f),
                sockets::state_name(u32::from(sk.state))
            ),
        ));
    }
    let mut e = pb::UnixSkEntry {
        id,
        ino,
        r#type: u32::from(sk.kind),
        state: u32::from(sk.state),
        flags: f.flags(),
        uflags: 0,
        backlog: sk.wqueue,
        peer: sk.peer,
        fown,
        opts: pb::SkOptsEntry::default(),
        name: sk.name.clone().unwrap_or_default(),
        shutdown: sockets::shutdown(sk.shutdown),
        file_perms: None,
        name_dir: None,
        deleted: None,
        ns_id: Some(files.sockets.ns_id()),
        mnt_id: None,
    };
    resolve_name(files, f, &mut e)?;

    // What waits to be read (a listening socket's queue holds
    // connections, dealt with below).
    if sk.rqueue != 0 && sk.state != TCP_LISTEN {
        sk_queue::dump(files, f, id, u64::from(sk.rqueue), kind)?;
    }

    let st = &mut files.sockets.unix_state;
    match peer {
        Some(None) => {
            return Err(Error::unsupported(
                pid,
                format!(
                    "{}: a unix socket whose peer socket:[{}] is not in rcriu's network namespace",
                    what(f),
                    sk.peer
                ),
            ));
        }
        Some(Some(p)) => {
            if p.peer != ino && p.name.is_none() {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "{}: a unix socket connected to socket:[{}], which has no name to reach it by",
                        what(f),
                        sk.peer
                    ),
                ));
            }
            if kind != libc::SOCK_DGRAM && mismatched(sk.shutdown, p.shutdown) {
                // Shut down before connecting (CRIU's sockets03): the
                // restore shuts both ends, which reads and writes the same.
                log::warn!(
                    "process {pid}: {}: shut down {} where its peer is {}",
                    what(f),
                    sk.shutdown,
                    p.shutdown
                );
            }
        }
        None if sk.state == TCP_ESTABLISHED && kind != libc::SOCK_DGRAM => {
            match st.icons.get(&ino).copied() {
                None if sk.shutdown & 3 == 3 => {
                    // Its peer is gone: what it holds is read, then the end.
                }
                None => {
                    return Err(Error::Inconsistent {
                        pid,
                        what: format!("{}: a connected unix socket with no peer", what(f)),
                    });
                }
                Some(listener) => {
                    if sk.wqueue != 0 {
                        return Err(Error::unsupported(
                            pid,
                            format!(
                                "{}: a connection not accepted yet with {} bytes sent to it, out of reach",
                                what(f),
                                sk.wqueue
                            ),
                        ));
                    }
                    e.peer = listener;
                }
            }
        }
        None if sk.state == TCP_LISTEN => {
            if sk.icons.contains(&0) {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "{}: a listening socket with a connection waiting whose other end is closed",
                        what(f)
                    ),
                ));
            }
            st.listeners.push((ino, sk.icons.clone(), what(f)));
        }
        None => {}
    }
    e.opts = sockets::opts(pid, f, libc::AF_UNIX)?;

    let st = &mut files.sockets.unix_state;
    st.dumped.insert(ino);
    let mut out = Vec::new();
    if e.peer != 0 && !st.dumped.contains(&e.peer) {
        if !st.waiting.contains_key(&e.peer) {
            st.waiting_order.push(e.peer);
        }
        st.waiting.entry(e.peer).or_default().push(e);
    } else {
        out.push(e);
    }
    if let Some(w) = st.waiting.remove(&ino) {
        st.waiting_order.retain(|&p| p != ino);
        out.extend(w);
    }
    files.entries.extend(out.into_iter().map(unix_entry));
    Ok(())
}

/// Ends shut down in ways that do not pair up (CRIU warns of them).
fn mismatched(own: u8, peer: u8) -> bool {
    match own & 3 {
        1 => peer & 3 != 2,
        2 => peer & 3 != 1,
        3 => peer & 3 != 3,
        _ => false,
    }
}

/// The file of a socket bound to a path: its mode and owner, whether it
/// was removed or replaced since, and for a relative name the directory
/// it was bound in.
fn resolve_name(files: &Files, f: &OpenFd, e: &mut pb::UnixSkEntry) -> Result<()> {
    let pid = files.pid();
    if e.name.first().is_none_or(|&b| b == 0) {
        return Ok(());
    }
    let file = sk_sys::unix_file(f.file.as_fd()).map_err(Error::sys(
        "opening a unix socket's file (SIOCUNIXFILE)",
        pid,
    ))?;
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    let meta = std::fs::metadata(&link).map_err(Error::file(pid, &link))?;
    let path = std::fs::read_link(&link).map_err(Error::file(pid, &link))?;
    let mut path = path.as_os_str().as_bytes().to_vec();
    let deleted = strip_deleted(&mut path);
    // The kernel keeps a path's terminating NUL in the name.
    let name = e
        .name
        .split(|&b| b == 0)
        .next()
        .unwrap_or_default()
        .to_vec();
    e.file_perms = Some(pb::FilePermsEntry {
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
    });
    if deleted {
        e.deleted = Some(true);
    }
    if name[0] != b'/' {
        let dir = cut_ending(&path, &name).ok_or_else(|| {
            Error::unsupported(
                pid,
                format!(
                    "{}: a unix socket bound to {:?}, whose file is now {:?}",
                    what(f),
                    String::from_utf8_lossy(&name),
                    String::from_utf8_lossy(&path)
                ),
            )
        })?;
        e.name_dir = Some(dir);
    } else if !deleted && path != name {
        return Err(Error::unsupported(
            pid,
            format!(
                "{}: a unix socket bound to {}, whose file was moved to {}",
                what(f),
                String::from_utf8_lossy(&name),
                String::from_utf8_lossy(&path)
            ),
        ));
    }
    Ok(())
}

/// Takes the kernel's ` (deleted)` off a path; whether it was there.
fn strip_deleted(path: &mut Vec<u8>) -> bool {
    for tag in [&b" (deleted)"[..], b"//deleted"] {
        if path.len() > tag.len() && path.ends_with(tag) {
            path.truncate(path.len() - tag.len());
            return true;
        }
    }
    false
}

/// The directory a relative name was bound in: `path` without `/name`
/// at its end (CRIU's `cut_path_ending`).
fn cut_ending(path: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let name = name.strip_prefix(b"./").unwrap_or(name);
    let at = path.len().checked_sub(name.len())?;
    if at < 1 || &path[at..] != name || path[at - 1] != b'/' {
        return None;
    }
    Some(if at == 1 {
        b"/".to_vec()
    } else {
        path[..at - 1].to_vec()
    })
}

/// Once every fd of the dump is seen: peers never dumped are outside it
/// (allowed for a named datagram peer with `--ext-unix-sk`, written as
/// an external entry), and every connection queued on a listening socket
/// must have its connecting end in the dump.
pub fn finish(files: &mut Files) -> Result<()> {
    let pid = files.pid();
    let st = &mut files.sockets.unix_state;
    let listeners = std::mem::take(&mut st.listeners);
    let skip_in_flight = files.sockets.opts.skip_in_flight;
    for (_, icons, name) in &listeners {
        let outside = icons
            .iter()
            .filter(|c| !files.sockets.unix_state.dumped.contains(c))
            .count();
        if outside > 0 && !skip_in_flight {
            return Err(Error::unsupported(
                pid,
                format!(
                    "{name}: a listening unix socket with {outside} connection(s) from outside the dump waiting to be accepted (--skip-in-flight leaves them out)"
                ),
            ));
        }
    }
    let order = std::mem::take(&mut files.sockets.unix_state.waiting_order);
    for peer_ino in order {
        let Some(waiting) = files.sockets.unix_state.waiting.remove(&peer_ino) else {
            continue;
        };
        let table = files.sockets.unix(pid)?;
        let peer = table.get(&peer_ino).cloned().unwrap_or_default();
        let opts = &files.sockets.opts;
        let excepted = waiting
            .iter()
            .all(|w| opts.ext_unix_inodes.contains(&w.ino));
        let name = String::from_utf8_lossy(peer.name.as_deref().unwrap_or_default()).into_owned();
        if !opts.ext_unix_sk && !excepted {
            return Err(Error::unsupported(
                pid,
                format!(
                    "a unix socket (socket:[{}]) connected to socket:[{peer_ino}] {name:?} outside the dump (--ext-unix-sk allows a named datagram peer)",
                    waiting[0].ino
                ),
            ));
        }
        if !excepted {
            if i32::from(peer.kind) != libc::SOCK_DGRAM {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "a unix {} socket (socket:[{}]) connected to socket:[{peer_ino}] {name:?} outside the dump: half a connection",
                        sockets::type_name(u32::from(peer.kind)),
                        waiting[0].ino
                    ),
                ));
            }
            if peer.name.as_ref().is_none_or(|n| n.is_empty()) {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "a unix socket (socket:[{}]) connected to socket:[{peer_ino}] outside the dump, which has no name to reach it by",
                        waiting[0].ino
                    ),
                ));
            }
        }
        let id = files.next_id();
        let ext = pb::UnixSkEntry {
            id,
            ino: peer_ino,
            r#type: libc::SOCK_DGRAM as u32,
            state: u32::from(TCP_LISTEN),
            flags: 0,
            uflags: USK_EXTERN,
            backlog: 0,
            peer: 0,
            fown: pb::FownEntry::default(),
            opts: pb::SkOptsEntry::default(),
            name: peer.name.unwrap_or_default(),
            ..Default::default()
        };
        files.entries.push(unix_entry(ext));
        files.entries.extend(waiting.into_iter().map(unix_entry));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names_find_their_directory() {
        assert_eq!(
            cut_ending(b"/tmp/d/sock", b"sock"),
            Some(b"/tmp/d".to_vec())
        );
        assert_eq!(cut_ending(b"/sock", b"sock"), Some(b"/".to_vec()));
        assert_eq!(
            cut_ending(b"/tmp/d/sock", b"./sock"),
            Some(b"/tmp/d".to_vec())
        );
        assert_eq!(cut_ending(b"/tmp/dsock", b"sock"), None);
        assert_eq!(cut_ending(b"sock", b"sock"), None);
        let mut p = b"/x/y (deleted)".to_vec();
        assert!(strip_deleted(&mut p));
        assert_eq!(p, b"/x/y");
    }
}
