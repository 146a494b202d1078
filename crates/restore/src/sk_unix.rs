//! Unix sockets, made again all at once (the first time a unix socket's
//! fd is opened), as CRIU 4.2's images describe them:
//!
//! 1. each socket is made: two sockets connected to each other as one
//!    `socketpair`; a connected stream whose peer is gone, or a datagram
//!    socket with messages waiting, as one end of a pair whose other end
//!    writes the queue and is then closed (CRIU's fake queuer);
//! 2. named sockets are bound (a connected stream socket shows its
//!    listener's name and is not), a relative name in its directory; a
//!    name removed since the dump is bound, kept open by an `O_PATH` fd
//!    (peers connect through it) and removed again, whatever was at that
//!    path put back; the file gets its mode and owner;
//! 3. listening sockets listen, with their backlog;
//! 4. connections that waited to be accepted connect to their listener
//!    (by its name), so that they wait again.
//!
//! Once every fd is open ([`Made::finish`]): the queued messages are
//! sent again (with their files in flight), datagram sockets connect to
//! their peers (an external one by its name, with `--ext-unix-sk`), then
//! each socket is shut down as it was and gets its options and flags.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcriu_images::pb;

use crate::load::Images;
use crate::sk_queue::Queues;
use crate::sockets::{self, Options};
use crate::{Error, Result, sk_sys};

/// `unix_sk_entry.uflags`: a peer outside the dump.
const USK_EXTERN: u32 = 1;
/// The other flags CRIU sets (service, callback, inherit): refused.
const USK_OTHERS: u32 = !USK_EXTERN;
const TCP_ESTABLISHED: u32 = 1;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;
/// `sizeof(sun_path)`.
const UNIX_PATH_MAX: usize = 108;

/// The unix sockets of a restore.
#[derive(Debug, Default)]
pub struct Made {
    entries: BTreeMap<u32, pb::UnixSkEntry>,
    /// ino → id.
    by_ino: HashMap<u32, u32>,
    /// id → rcriu's socket.
    fds: BTreeMap<u32, OwnedFd>,
    /// id → the other end of its pair, which writes its queue and closes.
    fakes: BTreeMap<u32, OwnedFd>,
    /// ino → an O_PATH fd of a name removed since the dump (peers
    /// connect through `/proc/self/fd/N`).
    ghosts: HashMap<u32, OwnedFd>,
    opts: Options,
}

fn describe(e: &pb::UnixSkEntry) -> String {
    if e.name.is_empty() {
        format!("unix socket socket:[{}]", e.ino)
    } else if e.name[0] == 0 {
        format!(
            "unix socket socket:[{}] @{}",
            e.ino,
            String::from_utf8_lossy(&e.name[1..]).replace('\0', "@")
        )
    } else {
        format!("unix socket socket:[{}] {}", e.ino, path_of(e).display())
    }
}

fn is_path(e: &pb::UnixSkEntry) -> bool {
    e.name.first().is_some_and(|&b| b != 0)
}

/// A path name as a path: the kernel keeps its terminating NUL.
fn path_of(e: &pb::UnixSkEntry) -> PathBuf {
    let name = e.name.split(|&b| b == 0).next().unwrap_or_default();
    PathBuf::from(OsStr::from_bytes(name))
}

/// Whether the socket is bound again: named, and not a connected stream
/// (which shows its listener's name).
fn binds(e: &pb::UnixSkEntry) -> bool {
    let connected_stream = e.r#type != libc::SOCK_DGRAM as u32 && e.state == TCP_ESTABLISHED;
    !e.name.is_empty() && !connected_stream
}

/// A `sockaddr_un` with `name` (a path, or an abstract name from its
/// leading NUL), as many bytes as the name.
fn sockaddr(name: &[u8]) -> Vec<u8> {
    let mut a = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    a.extend_from_slice(name);
    a
}

/// Runs `f` in directory `dir` (a relative name's), then goes back.
fn in_dir<T>(dir: Option<&[u8]>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(dir) = dir.filter(|d| !d.is_empty()) else {
        return f();
    };
    let back = std::fs::File::open(".").map_err(Error::file("opening", "the current directory"))?;
    let path = Path::new(OsStr::from_bytes(dir));
    std::env::set_current_dir(path).map_err(Error::file("entering", path))?;
    let r = f();
    if let Err(e) = rustix::process::fchdir(&back) {
        log::error!("cannot go back to rcriu's directory: {e}");
    }
    r
}

impl Made {
    /// Makes every unix socket of the dump; `queued` are the ids of the
    /// sockets something waits in.
    pub fn make(img: &Images, queued: &BTreeSet<u32>, opts: Options) -> Result<Made> {
        let mut m = Made {
            opts,
            ..Made::default()
        };
        for f in img.files.values() {
            if let Some(u) = &f.usk {
                m.check(u)?;
                m.by_ino.insert(u.ino, u.id);
                m.entries.insert(u.id, (**u).clone());
            }
        }
        // Ours over external ones of the same inode.
        for (id, e) in &m.entries {
            if e.uflags & USK_EXTERN == 0 {
                m.by_ino.insert(e.ino, *id);
            }
        }
        let ids: Vec<u32> = m.entries.keys().copied().collect();
        for &id in &ids {
            m.create(id, queued)?;
        }
        for &id in &ids {
            let e = m.entries[&id].clone();
            if e.uflags & USK_EXTERN == 0 && binds(&e) {
                m.bind(&e)?;
            }
        }
        for &id in &ids {
            let e = &m.entries[&id];
            if e.uflags & USK_EXTERN == 0 && e.state == TCP_LISTEN {
                sk_sys::listen(m.fds[&id].as_fd(), e.backlog as i32).map_err(Error::io(
                    format!("making {} listen (backlog {})", describe(e), e.backlog),
                ))?;
            }
        }
        // Connections waiting to be accepted, in the order of their ids.
        for &id in &ids {
            let e = m.entries[&id].clone();
            if e.uflags & USK_EXTERN != 0
                || e.r#type == libc::SOCK_DGRAM as u32
                || e.state != TCP_ESTABLISHED
                || e.peer == 0
                || m.pair_of(&e).is_some()
            {
                continue;
            }
            let peer = m.peer_entry(&e)?;
            if peer.state != TCP_LISTEN {
                return Err(Error::unsupported(format!(
                    "restoring {}, connected to {}, which neither listens nor is connected to it",
                    describe(&e),
                    describe(&peer)
                )));
            }
            m.connect(m.fds[&id].as_fd(), &e, &peer, opts)?;
        }
        Ok(m)
    }

    fn check(&self, e: &pb::UnixSkEntry) -> Result<()> {
        let t = e.r#type as i32;
        if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(&t) {
            return Err(Error::invalid(
                "files.img",
                format!("{} of type {}", describe(e), e.r#type),
            ));
        }
        if ![TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN].contains(&e.state) {
            return Err(Error::invalid(
                "files.img",
                format!("{} in state {}", describe(e), e.state),
            ));
        }
        if e.name.len() > UNIX_PATH_MAX {
            return Err(Error::invalid(
                "files.img",
                format!("{} with a name of {} bytes", describe(e), e.name.len()),
            ));
        }
        if e.uflags & USK_OTHERS != 0 {
            return Err(Error::unsupported(format!(
                "restoring {} with CRIU's flags {:#x} (service, plugin or inherited sockets)",
                describe(e),
                e.uflags
            )));
        }
        if e.deleted == Some(true) && !is_path(e) {
            return Err(Error::invalid(
                "files.img",
                format!("{} removed, with no path", describe(e)),
            ));
        }
        Ok(())
    }

    /// The entry of `e`'s peer.
    fn peer_entry(&self, e: &pb::UnixSkEntry) -> Result<pb::UnixSkEntry> {
        self.by_ino
            .get(&e.peer)
            .and_then(|id| self.entries.get(id))
            .cloned()
            .ok_or_else(|| {
                Error::invalid(
                    "files.img",
                    format!(
                        "{} is connected to socket:[{}], which the dump does not have",
                        describe(e),
                        e.peer
                    ),
                )
            })
    }

    /// The id of the other end, when `e` and its peer are connected to
    /// each other (a socketpair, or an accepted connection).
    fn pair_of(&self, e: &pb::UnixSkEntry) -> Option<u32> {
        if e.peer == 0 || e.peer == e.ino {
            return None;
        }
        let pid = *self.by_ino.get(&e.peer)?;
        let p = self.entries.get(&pid)?;
        (p.peer == e.ino && p.uflags & USK_EXTERN == 0 && pid != e.id).then_some(pid)
    }

    fn create(&mut self, id: u32, queued: &BTreeSet<u32>) -> Result<()> {
        if self.fds.contains_key(&id) {
            return Ok(());
        }
        let e = self.entries[&id].clone();
        if e.uflags & USK_EXTERN != 0 {
            return Ok(());
        }
        let kind = e.r#type as i32;
        let what = || format!("making {}", describe(&e));
        if let Some(pid) = self.pair_of(&e) {
            let p = &self.entries[&pid];
            if p.r#type != e.r#type {
                return Err(Error::invalid(
                    "files.img",
                    format!(
                        "{} and {} are connected but of other types",
                        describe(&e),
                        describe(p)
                    ),
                ));
            }
            let (a, b) = sk_sys::socketpair(kind).map_err(Error::io(what()))?;
            self.fds.insert(id, a);
            self.fds.insert(pid, b);
            return Ok(());
        }
        if kind != libc::SOCK_DGRAM && e.state == TCP_ESTABLISHED && e.peer == 0 {
            // Its peer is gone: the other end of a pair writes what waited
            // and closes.
            if e.shutdown != Some(pb::SkShutdown::Both as i32) {
                return Err(Error::invalid(
                    "files.img",
                    format!("{} is connected to nothing but not shut down", describe(&e)),
                ));
            }
            let (a, b) = sk_sys::socketpair(kind).map_err(Error::io(what()))?;
            self.fds.insert(id, a);
            self.fakes.insert(id, b);
            return Ok(());
        }
        if kind == libc::SOCK_DGRAM && queued.contains(&id) {
            let (a, b) = sk_sys::socketpair(kind).map_err(Error::io(what()))?;
            // Disconnected (connect to AF_UNSPEC), so that others can send
            // to it; the other end still sends to it.
            sk_sys::connect(a.as_fd(), &(libc::AF_UNSPEC as u16).to_ne_bytes())
                .map_err(Error::io(what()))?;
            self.fds.insert(id, a);
            self.fakes.insert(id, b);
            return Ok(());
        }
        let fd = sk_sys::socket(libc::AF_UNIX, kind, 0).map_err(Error::io(what()))?;
        self.fds.insert(id, fd);
        Ok(())
    }

    /// Binds socket `e` to its name.
    fn bind(&mut self, e: &pb::UnixSkEntry) -> Result<()> {
        let fd = self.fds[&e.id].as_fd();
        let dir = e.name_dir.as_deref();
        if !is_path(e) {
            return sk_sys::bind(fd, &sockaddr(&e.name))
                .map_err(Error::io(format!("binding {}", describe(e))));
        }
        if e.deleted == Some(true) {
            let kept = in_dir(dir, || bind_removed(fd, e))?;
            self.ghosts.insert(e.ino, kept);
            return Ok(());
        }
        in_dir(dir, || {
            let path = &path_of(e);
            // The dumped process's socket file is left behind: made anew.
            if let Ok(m) = std::fs::symlink_metadata(path)
                && m.file_type().is_socket()
            {
                std::fs::remove_file(path).map_err(Error::file("removing the old socket", path))?;
            }
            sk_sys::bind(fd, &sockaddr(&e.name))
                .map_err(Error::io(format!("binding {}", describe(e))))?;
            set_perms(e, path)
        })
    }

    /// Connects `e` to `peer` by the peer's name (through its kept file
    /// when the name was removed).
    fn connect(
        &self,
        fd: BorrowedFd<'_>,
        e: &pb::UnixSkEntry,
        peer: &pb::UnixSkEntry,
        opts: Options,
    ) -> Result<()> {
        if peer.uflags & USK_EXTERN != 0 && !opts.ext_unix_sk {
            return Err(Error::unsupported(format!(
                "restoring {}, connected to {} outside the dump, without --ext-unix-sk",
                describe(e),
                describe(peer)
            )));
        }
        if peer.name.is_empty() {
            return Err(Error::invalid(
                "files.img",
                format!(
                    "{} is connected to {}, which has no name",
                    describe(e),
                    describe(peer)
                ),
            ));
        }
        let what = || format!("connecting {} to {}", describe(e), describe(peer));
        let fl = sk_sys::get_fl(fd).map_err(Error::io(what()))?;
        sk_sys::set_fl(fd, fl | libc::O_NONBLOCK).map_err(Error::io(what()))?;
        let r = match self.ghosts.get(&peer.ino) {
            Some(kept) => {
                let via = format!("/proc/self/fd/{}", kept.as_raw_fd());
                sk_sys::connect(fd, &sockaddr(via.as_bytes())).map_err(Error::io(what()))
            }
            None => in_dir(peer.name_dir.as_deref(), || {
                sk_sys::connect(fd, &sockaddr(&peer.name)).map_err(Error::io(what()))
            }),
        };
        sk_sys::set_fl(fd, fl).map_err(Error::io(what()))?;
        r
    }

    /// Socket `id`, for the fd that holds it (the plan of the files
    /// keeps it from then on: `finish` reaches it through the plan).
    pub fn take(&mut self, id: u32) -> Result<OwnedFd> {
        self.fds.remove(&id).ok_or_else(|| {
            Error::invalid(
                "files.img",
                format!("unix socket {id} was not made, or is held twice"),
            )
        })
    }

    /// Queues, connections, shutdowns, options and flags; `get` gives
    /// the open file of an id (a socket, or a file in flight).
    pub fn finish<'a>(
        &mut self,
        queues: &mut Queues,
        get: &dyn Fn(u32) -> Result<BorrowedFd<'a>>,
    ) -> Result<()> {
        let ids: Vec<u32> = self.entries.keys().copied().collect();
        // The sockets whose buffers and flags were changed to queue.
        let mut dirty = std::collections::HashSet::new();
        let own = |id: u32| -> Result<BorrowedFd<'_>> {
            match self.fds.get(&id) {
                Some(f) => Ok(f.as_fd()),
                None => get(id),
            }
        };
        for &id in &ids {
            let packets = queues.take(id);
            if packets.is_empty() {
                continue;
            }
            let e = &self.entries[&id];
            let sender = match (self.pair_of(e), self.fakes.get(&id)) {
                (Some(p), _) => own(p)?,
                (None, Some(f)) => f.as_fd(),
                (None, None) => {
                    return Err(Error::invalid(
                        "sk-queues.img",
                        format!(
                            "messages waiting in {}, which nothing can send to",
                            describe(e)
                        ),
                    ));
                }
            };
            // A queue goes in as the sockets are while it fits; when one
            // cannot take more without waiting, their buffers are grown
            // (CRIU grows them for every queue: for ten thousand small
            // queues, forty thousand calls, then as many to undo them).
            let mut grown = false;
            for p in packets {
                let files = p
                    .rights
                    .iter()
                    .map(|&r| get(r))
                    .collect::<Result<Vec<_>>>()?;
                let mut done = 0;
                loop {
                    match send_all(sender, &p.data, &files, e.r#type as i32, &mut done) {
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock && !grown => {
                            sockets::prepare(sender)?;
                            sockets::prepare(own(id)?)?;
                            dirty.insert(id);
                            if let Some(p) = self.pair_of(e) {
                                dirty.insert(p);
                            }
                            grown = true;
                        }
                        r => {
                            r.map_err(Error::io(format!(
                                "queueing {} bytes in {}",
                                p.data.len(),
                                describe(e)
                            )))?;
                            break;
                        }
                    }
                }
            }
        }
        // The writers of the queues go: a stream whose peer was gone sees
        // the end after what waited.
        self.fakes.clear();
        for &id in &ids {
            let e = &self.entries[&id];
            if e.uflags & USK_EXTERN != 0 || e.r#type != libc::SOCK_DGRAM as u32 || e.peer == 0 {
                continue;
            }
            if self.pair_of(e).is_some() {
                continue;
            }
            let peer = self.peer_entry(e)?;
            self.connect(own(id)?, e, &peer, self.opts)?;
        }
        for &id in &ids {
            let e = &self.entries[&id];
            if e.uflags & USK_EXTERN != 0 {
                continue;
            }
            let fd = own(id)?;
            if let Some(how) = e.shutdown.and_then(sockets::shutdown_how) {
                sk_sys::shutdown(fd, how)
                    .map_err(Error::io(format!("shutting {} down", describe(e))))?;
            }
            let d = dirty.contains(&id);
            let fresh = if d {
                None
            } else {
                sockets::fresh(libc::AF_UNIX, e.r#type as i32, 0)
            };
            sockets::set_opts(fd, &e.opts, fresh).map_err(|err| annotate(err, &describe(e)))?;
            sockets::set_flags(fd, e.flags, d)?;
        }
        self.ghosts.clear();
        Ok(())
    }
}

/// Names the socket in an error about one of its options.
fn annotate(e: Error, what: &str) -> Error {
    match e {
        Error::Io { what: w, source } => Error::Io {
            what: format!("{w} ({what})"),
            source,
        },
        e => e,
    }
}

/// Sends one queued message whole: a stream in as many writes as it
/// takes, a datagram or seqpacket in one.
fn send_all(
    fd: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    kind: i32,
    done: &mut usize,
) -> std::io::Result<()> {
    loop {
        // The fds go with the first byte.
        let rights = if *done == 0 { fds } else { &[] };
        let n = sk_sys::send(fd, &data[*done..], rights)?;
        *done += n;
        let done = *done;
        if done == data.len() {
            return Ok(());
        }
        if kind != libc::SOCK_STREAM || n == 0 {
            return Err(std::io::Error::other(format!(
                "a message of {} bytes went out as {done}",
                data.len()
            )));
        }
    }
}

/// Gives the socket's file the mode and owner it had.
fn set_perms(e: &pb::UnixSkEntry, path: &Path) -> Result<()> {
    let Some(p) = &e.file_perms else {
        return Ok(());
    };
    std::os::unix::fs::lchown(path, Some(p.uid), Some(p.gid))
        .map_err(Error::file("giving its owner to", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(p.mode & 0o7777))
        .map_err(Error::file("giving its mode to", path))
}

/// Binds `fd` to `e`'s name, which was removed since the dump: whatever
/// is at that path now is moved aside meanwhile, missing directories are
/// made and removed again; returns an O_PATH fd of the socket's file.
fn bind_removed(fd: BorrowedFd<'_>, e: &pb::UnixSkEntry) -> Result<OwnedFd> {
    let path = path_of(e);
    let parked = PathBuf::from(format!("{}.criu-sk-ghost", path.display()));
    // The directories missing on the way, made now.
    let mut made_dirs = Vec::new();
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        made_dirs.push(d.to_owned());
        dir = d.parent();
    }
    for d in made_dirs.iter().rev() {
        std::fs::create_dir(d).map_err(Error::file("making the directory", d))?;
    }
    let moved = std::fs::symlink_metadata(&path).is_ok();
    if moved {
        let _ = std::fs::remove_file(&parked);
        std::fs::rename(&path, &parked).map_err(Error::file("moving aside", &path))?;
    }
    let result = sk_sys::bind(fd, &sockaddr(&e.name))
        .map_err(Error::io(format!(
            "binding {} (removed since)",
            describe(e)
        )))
        .and_then(|()| set_perms(e, &path))
        .and_then(|()| {
            rustix::fs::open(
                &path,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|err| Error::file("keeping", &path)(err.into()))
        });
    if result.is_ok()
        && let Err(err) = std::fs::remove_file(&path)
    {
        log::error!("cannot remove {}: {err}", path.display());
    }
    if moved && let Err(err) = std::fs::rename(&parked, &path) {
        log::error!("cannot put {} back: {err}", path.display());
    }
    for d in &made_dirs {
        let _ = std::fs::remove_dir(d);
    }
    result
}

/// Refuses, without making anything, unix sockets a restore would
/// refuse.
pub fn check(e: &pb::UnixSkEntry) -> Result<()> {
    Made::default().check(e)
}
