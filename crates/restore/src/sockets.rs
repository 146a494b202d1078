//! Sockets: what every kind shares ([`set_opts`], the file's flags), and
//! the sockets of a restore ([`Sockets`]), made in rcriu before the fork
//! as pipes are, so that every process holding one shares it:
//! [`sk_unix`](crate::sk_unix) (all of them at once: pairs, names,
//! listeners, connections), [`sk_inet`](crate::sk_inet) and
//! [`tcp_stream`](crate::tcp_stream), [`sk_netlink`](crate::sk_netlink),
//! [`sk_packet`](crate::sk_packet).
//!
//! Sockets are made when their first fd is opened; once every fd is
//! opened, [`Sockets::finish`] queues what waited to be read (with the
//! files in flight, opened by id), connects what was connected, shuts
//! down what was, and sets options and flags last (the queues are
//! written with buffers at their largest, non-blocking).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use rcriu_images::pb;

use crate::load::Images;
use crate::{Error, Result, sk_inet, sk_netlink, sk_packet, sk_queue, sk_sys, sk_unix, tcp_stream};

/// Socket options libc leaves out (asm-generic/socket.h).
pub(crate) mod so {
    pub const SO_TIMESTAMP_OLD: i32 = 29;
    pub const SO_SNDBUFFORCE: i32 = 32;
    pub const SO_RCVBUFFORCE: i32 = 33;
    pub const SO_PASSSEC: i32 = 34;
    pub const SO_TIMESTAMPNS_OLD: i32 = 35;
    pub const SO_TIMESTAMPING_OLD: i32 = 37;
    pub const SO_PEEK_OFF: i32 = 42;
    pub const SO_TIMESTAMP_NEW: i32 = 63;
    pub const SO_TIMESTAMPNS_NEW: i32 = 64;
    pub const SO_BUF_LOCK: i32 = 72;
}

/// What the restore of sockets is told (criu's options).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `--ext-unix-sk`: connect sockets to their named peers outside the
    /// dump.
    pub ext_unix_sk: bool,
    /// `--tcp-close`: connected TCP sockets come back closed.
    pub tcp_close: bool,
    /// `--tcp-established`: connected TCP sockets come back connected
    /// (also implied by a dump that had them).
    pub tcp_established: bool,
}

/// The sockets of a restore.
#[derive(Debug, Default)]
pub struct Sockets {
    pub opts: Options,
    unix: Option<sk_unix::Made>,
    queues: Option<sk_queue::Queues>,
    pub tcp: tcp_stream::Repaired,
    /// Inet sockets made (their ids): options set in `finish`.
    inet: Vec<u32>,
}

impl Sockets {
    pub fn new(opts: Options) -> Sockets {
        Sockets {
            opts,
            ..Sockets::default()
        }
    }

    fn queues(&mut self, img: &Images) -> Result<&mut sk_queue::Queues> {
        if self.queues.is_none() {
            self.queues = Some(sk_queue::Queues::load(&img.dir)?);
        }
        Ok(self.queues.as_mut().expect("loaded above when missing"))
    }

    /// The ids of the files in flight in unix sockets' queues.
    pub fn in_flight(&mut self, img: &Images) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.queues(img)?.in_flight().collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// The unix socket of file entry `e` (every unix socket of the dump
    /// is made at the first).
    pub fn unix(&mut self, img: &Images, e: &pb::UnixSkEntry) -> Result<OwnedFd> {
        if self.unix.is_none() {
            let opts = self.opts;
            let queued = self.queues(img)?.receivers();
            let made = match crate::files::task_root() {
                None => sk_unix::Made::make(img, &queued, opts)?,
                // A container's names are its root's.
                Some(root) => in_root(&root, || sk_unix::Made::make(img, &queued, opts))?,
            };
            self.unix = Some(made);
        }
        self.unix
            .as_mut()
            .expect("made above when missing")
            .take(e.id)
    }

    /// The inet socket of entry `e`, which fd `fd` of process `pid` holds
    /// (-1: a socket in flight).
    pub fn inet(
        &mut self,
        img: &Images,
        e: &pb::InetSkEntry,
        pid: i32,
        fd: i32,
    ) -> Result<OwnedFd> {
        let s = sk_inet::make(img, e, self.opts, &mut self.tcp, pid, fd)?;
        self.inet.push(e.id);
        Ok(s)
    }

    /// The netlink socket of entry `e`.
    pub fn netlink(&mut self, e: &pb::NetlinkSkEntry) -> Result<OwnedFd> {
        sk_netlink::make(e)
    }

    /// The packet socket of entry `e`.
    pub fn packet(&mut self, e: &pb::PacketSockEntry) -> Result<OwnedFd> {
        sk_packet::make(e)
    }

    /// Once every fd is open: the queues (`get` gives the open file of an
    /// id, a socket or a file in flight), the connections, shutdowns,
    /// options and flags.
    pub fn finish<'a>(
        &mut self,
        img: &Images,
        get: &dyn Fn(u32) -> Result<BorrowedFd<'a>>,
    ) -> Result<()> {
        let mut q = match self.queues.take() {
            Some(q) => q,
            None => sk_queue::Queues::load(&img.dir)?,
        };
        if let Some(mut u) = self.unix.take() {
            u.finish(&mut q, get)?;
        }
        q.check_empty()?;
        for id in std::mem::take(&mut self.inet) {
            let e = img
                .files
                .get(&id)
                .and_then(|f| f.isk.as_deref())
                .ok_or_else(|| Error::invalid("files.img", format!("inet socket {id} vanished")))?;
            sk_inet::finish(get(id)?, e)?;
        }
        Ok(())
    }
}

/// Buffers at their largest and non-blocking, to write a queue into a
/// socket without waiting (CRIU's `restore_prepare_socket`).
pub fn prepare(fd: BorrowedFd<'_>) -> Result<()> {
    let max = i32::MAX / 2;
    sk_sys::setsockopt_int(fd, libc::SOL_SOCKET, so::SO_SNDBUFFORCE, max)
        .and_then(|()| sk_sys::setsockopt_int(fd, libc::SOL_SOCKET, so::SO_RCVBUFFORCE, max))
        .map_err(Error::io("growing a socket's buffers (SO_*BUFFORCE)"))?;
    let fl = sk_sys::get_fl(fd).map_err(Error::io("reading a socket's flags"))?;
    sk_sys::set_fl(fd, fl | libc::O_NONBLOCK).map_err(Error::io("making a socket non-blocking"))
}

/// Runs `f` in a thread of rcriu whose root and directory are `root` (a
/// container's, seen through its namespace holder): unix sockets bound
/// there get the names the container gave them. The thread is in the
/// caller's network namespace.
fn in_root<T: Send>(root: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            crate::sys::unshare(rustix::thread::UnshareFlags::FS)
                .map_err(Error::host("unsharing a thread's root (CLONE_FS)"))?;
            rustix::process::chroot(root)
                .and_then(|()| rustix::process::chdir("/"))
                .map_err(|e| Error::file("entering the container's root", root)(e.into()))?;
            f()
        })
        .join()
    })
    .map_err(|_| {
        Error::host("working in the container's root")(std::io::Error::other("the thread panicked"))
    })?
}

/// The open file's flags as they were (`F_SETFL`: non-blocking, async,
/// ...); a fresh socket (not `dirty`) has none to clear.
pub fn set_flags(fd: BorrowedFd<'_>, flags: u32, dirty: bool) -> Result<()> {
    let status = flags as i32 & !libc::O_ACCMODE;
    if status == 0 && !dirty {
        return Ok(());
    }
    sk_sys::set_fl(fd, status).map_err(Error::io(format!("setting a socket's flags {flags:#o}")))
}

/// What a fresh socket of a kind has: its buffer sizes (as getsockopt
/// tells them), asked once of a socket made for that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fresh {
    sndbuf: u32,
    rcvbuf: u32,
}

/// The fresh values of sockets of `family`, `kind` and `protocol` (None
/// when no such socket can be made to ask).
pub fn fresh(family: i32, kind: i32, protocol: i32) -> Option<Fresh> {
    use std::collections::HashMap;
    use std::os::fd::AsFd;
    use std::sync::Mutex;
    type Known = Option<HashMap<(i32, i32, i32), Option<Fresh>>>;
    static KNOWN: Mutex<Known> = Mutex::new(None);
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    let map = known.get_or_insert_with(HashMap::new);
    *map.entry((family, kind, protocol)).or_insert_with(|| {
        let s = sk_sys::socket(family, kind, protocol).ok()?;
        let get = |name| {
            let mut b = [0u8; 4];
            sk_sys::getsockopt(s.as_fd(), libc::SOL_SOCKET, name, &mut b)
                .ok()
                .map(|_| u32::from_ne_bytes(b))
        };
        Some(Fresh {
            sndbuf: get(libc::SO_SNDBUF)?,
            rcvbuf: get(libc::SO_RCVBUF)?,
        })
    })
}

fn opt(fd: BorrowedFd<'_>, level: i32, name: i32, val: i32, what: &str) -> Result<()> {
    sk_sys::setsockopt_int(fd, level, name, val)
        .map_err(Error::io(format!("setting a socket's {what} to {val}")))
}

/// The options of `e` (CRIU's `restore_socket_opts`, then rcriu's own
/// fields). SO_REUSEADDR, SO_REUSEPORT, SO_BROADCAST and SO_KEEPALIVE
/// are set when on; inet sockets turn them off later
/// ([`sk_inet::finish`]). On a socket made just now whose buffers were
/// not touched (`fresh` says what such a socket has), what it has
/// already is not set again: ten thousand sockets are a hundred thousand
/// calls less.
pub fn set_opts(fd: BorrowedFd<'_>, e: &pb::SkOptsEntry, fresh: Option<Fresh>) -> Result<()> {
    use libc::SOL_SOCKET as SOL;
    // The kernel doubles what it is given.
    let (snd, rcv) = ((e.so_sndbuf / 2) as i32, (e.so_rcvbuf / 2) as i32);
    if fresh.is_none_or(|f| f.sndbuf != e.so_sndbuf) {
        opt(fd, SOL, so::SO_SNDBUFFORCE, snd, "SO_SNDBUFFORCE")?;
    }
    if fresh.is_none_or(|f| f.rcvbuf != e.so_rcvbuf) {
        opt(fd, SOL, so::SO_RCVBUFFORCE, rcv, "SO_RCVBUFFORCE")?;
    }
    // What a fresh socket has already is not set again.
    let untouched = fresh.is_some();
    if let Some(v) = e.so_buf_lock.filter(|&v| !(untouched && v == 0)) {
        opt(fd, SOL, so::SO_BUF_LOCK, v as i32, "SO_BUF_LOCK")?;
    }
    if let Some(v) = e.so_priority.filter(|&v| !(untouched && v == 0)) {
        opt(fd, SOL, libc::SO_PRIORITY, v as i32, "SO_PRIORITY")?;
    }
    if let Some(v) = e.so_rcvlowat.filter(|&v| !(untouched && v == 1)) {
        opt(fd, SOL, libc::SO_RCVLOWAT, v as i32, "SO_RCVLOWAT")?;
    }
    if let Some(v) = e.so_mark {
        opt(fd, SOL, libc::SO_MARK, v as i32, "SO_MARK")?;
    }
    let on = |v: Option<bool>| v == Some(true);
    if on(e.so_passcred) {
        opt(fd, SOL, libc::SO_PASSCRED, 1, "SO_PASSCRED")?;
    }
    if on(e.so_passsec) {
        opt(fd, SOL, so::SO_PASSSEC, 1, "SO_PASSSEC")?;
    }
    if on(e.so_dontroute) {
        opt(fd, SOL, libc::SO_DONTROUTE, 1, "SO_DONTROUTE")?;
    }
    if on(e.so_no_check) {
        opt(fd, SOL, libc::SO_NO_CHECK, 1, "SO_NO_CHECK")?;
    }
    if on(e.so_broadcast) {
        opt(fd, SOL, libc::SO_BROADCAST, 1, "SO_BROADCAST")?;
    }
    if e.so_oobinline.is_some_and(|v| v != 0) {
        opt(fd, SOL, libc::SO_OOBINLINE, 1, "SO_OOBINLINE")?;
    }
    if let Some(l) = e.so_linger {
        let mut v = 1i32.to_ne_bytes().to_vec();
        v.extend_from_slice(&(l as i32).to_ne_bytes());
        sk_sys::setsockopt(fd, SOL, libc::SO_LINGER, &v)
            .map_err(Error::io("setting a socket's SO_LINGER"))?;
    }
    if on(e.so_keepalive) {
        opt(fd, SOL, libc::SO_KEEPALIVE, 1, "SO_KEEPALIVE")?;
    }
    // Older images carry the keepalive timers here.
    for (v, name, what) in [
        (e.tcp_keepcnt, libc::TCP_KEEPCNT, "TCP_KEEPCNT"),
        (e.tcp_keepidle, libc::TCP_KEEPIDLE, "TCP_KEEPIDLE"),
        (e.tcp_keepintvl, libc::TCP_KEEPINTVL, "TCP_KEEPINTVL"),
    ] {
        if let Some(v) = v {
            opt(fd, libc::IPPROTO_TCP, name, v as i32, what)?;
        }
    }
    for (name, s, us, what) in [
        (
            libc::SO_SNDTIMEO,
            e.so_snd_tmo_sec,
            e.so_snd_tmo_usec,
            "SO_SNDTIMEO",
        ),
        (
            libc::SO_RCVTIMEO,
            e.so_rcv_tmo_sec,
            e.so_rcv_tmo_usec,
            "SO_RCVTIMEO",
        ),
    ] {
        if untouched && s == 0 && us == 0 {
            continue;
        }
        let mut tv = (s as i64).to_ne_bytes().to_vec();
        tv.extend_from_slice(&(us as i64).to_ne_bytes());
        sk_sys::setsockopt(fd, SOL, name, &tv)
            .map_err(Error::io(format!("setting a socket's {what}")))?;
    }
    if let Some(dev) = e.so_bound_dev.as_ref().filter(|d| !d.is_empty()) {
        sk_sys::setsockopt(fd, SOL, libc::SO_BINDTODEVICE, dev).map_err(Error::io(format!(
            "binding a socket to device {}",
            String::from_utf8_lossy(dev)
        )))?;
    }
    if !e.so_filter.is_empty() {
        let mut prog = Vec::with_capacity(e.so_filter.len() * 8);
        for &w in &e.so_filter {
            prog.extend_from_slice(&((w >> 48) as u16).to_ne_bytes());
            prog.push((w >> 40) as u8);
            prog.push((w >> 32) as u8);
            prog.extend_from_slice(&(w as u32).to_ne_bytes());
        }
        // struct sock_fprog: an unsigned short count, then a pointer.
        let mut fprog = [0u8; 16];
        fprog[..2].copy_from_slice(&(e.so_filter.len() as u16).to_ne_bytes());
        fprog[8..].copy_from_slice(&(prog.as_ptr() as u64).to_ne_bytes());
        sk_sys::setsockopt(fd, SOL, libc::SO_ATTACH_FILTER, &fprog)
            .map_err(Error::io("attaching a socket's filter (SO_ATTACH_FILTER)"))?;
    }
    if let Some(off) = e.rcriu_peek_off {
        opt(fd, SOL, so::SO_PEEK_OFF, off, "SO_PEEK_OFF")?;
    }
    if let Some(t) = e.rcriu_timestamp {
        let name = match t {
            1 => so::SO_TIMESTAMP_OLD,
            2 => so::SO_TIMESTAMPNS_OLD,
            3 => so::SO_TIMESTAMP_NEW,
            4 => so::SO_TIMESTAMPNS_NEW,
            _ => {
                return Err(Error::invalid(
                    "files.img",
                    format!("a socket's timestamps of kind {t}"),
                ));
            }
        };
        opt(fd, SOL, name, 1, "SO_TIMESTAMP*")?;
    }
    if let Some(flags) = e.rcriu_timestamping {
        opt(
            fd,
            SOL,
            so::SO_TIMESTAMPING_OLD,
            flags as i32,
            "SO_TIMESTAMPING",
        )?;
    }
    Ok(())
}

/// CRIU's `sk_shutdown` to `shutdown(2)`'s `how`.
pub fn shutdown_how(v: i32) -> Option<i32> {
    match v {
        1 => Some(libc::SHUT_RD),
        2 => Some(libc::SHUT_WR),
        3 => Some(libc::SHUT_RDWR),
        _ => None,
    }
}
