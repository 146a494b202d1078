//! Sockets: what every kind shares, and the dispatch to each kind's
//! module ([`sk_unix`], [`sk_inet`], [`sk_netlink`], [`sk_packet`]).
//!
//! The kernel describes sockets through sock_diag ([`rcriu_proc::sock_diag`]),
//! one family at a time: a family is asked for whole the first time a
//! socket of it is met (one dump request, a map by inode), so that a
//! process with ten thousand sockets costs one request per family. What
//! only the socket itself tells (its options, its queues) is read through
//! rcriu's copy of the fd, which shares the task's open file description.
//!
//! Every kind's entry carries `sk_opts_entry`, the options CRIU 4.2
//! carries ([`opts`]), and rcriu's own fields beside them (CRIU skips
//! them): the peek offset (`SO_PEEK_OFF`) and the receive timestamps
//! (`SO_TIMESTAMP*`, `SO_TIMESTAMPING`).
//!
//! [`sk_unix`]: crate::sk_unix
//! [`sk_inet`]: crate::sk_inet
//! [`sk_netlink`]: crate::sk_netlink
//! [`sk_packet`]: crate::sk_packet

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcriu_images::pb;
use rcriu_proc::Pid;
use rcriu_proc::sock_diag::{InetSock, NetlinkSock, PacketSock, SockDiag, UnixSock};

use crate::files::{Files, OpenFd};
use crate::{Error, Result, sk_batch, sk_inet, sk_netlink, sk_packet, sk_sys, sk_unix};

/// Socket options libc leaves out (asm-generic/socket.h).
pub(crate) mod so {
    pub const SO_TIMESTAMP_OLD: i32 = 29;
    pub const SO_PASSSEC: i32 = 34;
    pub const SO_TIMESTAMPNS_OLD: i32 = 35;
    pub const SO_TIMESTAMPING_OLD: i32 = 37;
    pub const SO_PEEK_OFF: i32 = 42;
    pub const SO_LOCK_FILTER: i32 = 44;
    pub const SO_TIMESTAMP_NEW: i32 = 63;
    pub const SO_TIMESTAMPNS_NEW: i32 = 64;
    pub const SO_BUF_LOCK: i32 = 72;
}

/// The id of rcriu's network namespace in the images: CRIU numbers the
/// dumper's namespaces first, pid then net ([`crate::ids`]). A dumped
/// socket lives there, or in its container's ([`NetNs`]).
pub const NET_NS_ID: u32 = 2;

/// The network namespace of a container's sockets (one of its own, as
/// runc and podman make): sock_diag is asked there, every socket dumped
/// must live there, and its id in the images names it.
#[derive(Debug)]
pub struct NetNs {
    /// `/proc/<root>/ns/net`, open.
    pub file: std::fs::File,
    /// Its inode (`net:[INO]`).
    pub ino: u64,
    /// Whether the restore makes it anew, empty but for `lo`
    /// (`--empty-ns net`, as runc asks), `lo` down: a socket bound to an
    /// address other than a loopback or wildcard one, or connected,
    /// could not be made again.
    pub empty: bool,
    /// Whether it is dumped whole, locked as a whole (its connections
    /// need no lock of their own).
    pub whole: bool,
}

/// What the dump of sockets is told (criu's options).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--ext-unix-sk`: a unix socket may be connected to one outside the
    /// dump (a named datagram socket, as `/dev/log`).
    pub ext_unix_sk: bool,
    /// `--ext-unix-sk=INO,...`: these sockets may have a peer outside.
    pub ext_unix_inodes: Vec<u32>,
    /// `--tcp-established`: connected TCP sockets are dumped (through
    /// TCP_REPAIR).
    pub tcp_established: bool,
    /// `--tcp-close`: connected TCP sockets are dumped as closed ones.
    pub tcp_close: bool,
    /// `--skip-in-flight`: connections waiting to be accepted are left
    /// out.
    pub skip_in_flight: bool,
    /// `--network-lock`: how connections are kept quiet while dumped.
    pub network_lock: crate::tcp_stream::LockMethod,
}

/// What the dump knows of sockets: sock_diag's tables, asked once per
/// family, and each kind's state.
#[derive(Debug, Default)]
pub struct Sockets {
    pub opts: Options,
    /// A container's network namespace, when the sockets live there.
    net: Option<NetNs>,
    /// The id of the sockets' network namespace in the images (of the
    /// process being dumped); [`NET_NS_ID`] when unset.
    ns_id: Option<u32>,
    diag: Option<SockDiag>,
    /// Shared with the threads reading sockets ahead ([`Prefetch`]).
    unix: Option<Arc<HashMap<u32, UnixSock>>>,
    inet: HashMap<(u8, u8), HashMap<u32, InetSock>>,
    netlink: Option<HashMap<u32, NetlinkSock>>,
    packet: Option<HashMap<u32, PacketSock>>,
    pub unix_state: sk_unix::State,
    /// The buffer queues are read into (sk_queue).
    pub queue_buf: Vec<u8>,
    pub tcp: crate::tcp_stream::Streams,
}

impl Sockets {
    pub fn new(opts: Options) -> Sockets {
        Sockets {
            opts,
            ..Sockets::default()
        }
    }

    /// The sockets live in a container's network namespace, `net`: the
    /// tables are asked there, and sockets of any other are refused.
    pub fn set_net(&mut self, pid: Pid, net: NetNs) -> Result<()> {
        let copy = net.file.try_clone().map_err(Error::sys(
            "keeping the container's network namespace open",
            pid,
        ))?;
        self.tcp.set_net(Some(copy));
        if net.whole {
            self.tcp.ns_locked();
        }
        self.net = Some(net);
        Ok(())
    }

    /// The id, in the images, of the network namespace of the process
    /// now dumped (its `ids` entry's `net_ns_id`).
    pub fn set_ns_id(&mut self, id: Option<u32>) {
        self.ns_id = id;
    }

    /// The `ns_id` of the socket entries written now.
    pub fn ns_id(&self) -> u32 {
        self.ns_id.unwrap_or(NET_NS_ID)
    }

    /// The container's network namespace, if the sockets live in one.
    pub fn net(&self) -> Option<&NetNs> {
        self.net.as_ref()
    }

    /// Refuses socket `f` of process `pid` when it does not live in the
    /// container's network namespace (a socket made outside and passed
    /// in: the restore makes every socket in the container's).
    pub fn check_ns(&self, pid: Pid, f: &OpenFd) -> Result<()> {
        let Some(net) = &self.net else {
            return Ok(());
        };
        let ns = sk_sys::net_ns(f.file.as_fd()).map_err(Error::sys(
            "reading a socket's network namespace (SIOCGSKNS)",
            pid,
        ))?;
        let ino = rustix::fs::fstat(&ns)
            .map_err(|e| Error::sys("examining a socket's network namespace", pid)(e.into()))?
            .st_ino;
        if ino != net.ino {
            return Err(Error::unsupported(
                pid,
                format!(
                    "{}: a socket of another network namespace (net:[{ino}]) than the container's (net:[{}])",
                    what(f),
                    net.ino
                ),
            ));
        }
        Ok(())
    }

    fn diag(&mut self, pid: Pid) -> Result<&mut SockDiag> {
        if self.diag.is_none() {
            let d = match &self.net {
                None => SockDiag::open().map_err(Error::proc(pid))?,
                Some(net) => open_diag_in(pid, net)?,
            };
            self.diag = Some(d);
        }
        Ok(self.diag.as_mut().expect("opened above when missing"))
    }

    /// The unix sockets of the sockets' network namespace, by inode.
    pub fn unix(&mut self, pid: Pid) -> Result<&HashMap<u32, UnixSock>> {
        if self.unix.is_none() {
            let all = self.diag(pid)?.unix().map_err(Error::proc(pid))?;
            self.set_unix(Arc::new(all.into_iter().map(|s| (s.ino, s)).collect()));
        }
        Ok(self.unix.as_deref().expect("read above when missing"))
    }

    /// The table of unix sockets, read by [`Prefetch`].
    fn set_unix(&mut self, map: Arc<HashMap<u32, UnixSock>>) {
        self.unix_state.index_icons(&map);
        self.unix = Some(map);
    }

    /// Where [`Prefetch`] finds the table of unix sockets: the one read
    /// already, or a sock_diag socket of its own to read it with (in the
    /// sockets' network namespace).
    fn table_source(&self, pid: Pid) -> Option<TableSource> {
        if let Some(t) = &self.unix {
            return Some(TableSource::Read(t.clone()));
        }
        let diag = match &self.net {
            None => SockDiag::open().map_err(Error::proc(pid)),
            Some(net) => open_diag_in(pid, net),
        };
        diag.map_err(|e| log::debug!("the unix sockets' table, read ahead: {e}"))
            .ok()
            .map(TableSource::Ask)
    }

    /// The inet sockets of `family` and `protocol`, by inode.
    pub fn inet(&mut self, pid: Pid, family: u8, protocol: u8) -> Result<&HashMap<u32, InetSock>> {
        if !self.inet.contains_key(&(family, protocol)) {
            let all = self
                .diag(pid)?
                .inet(family, protocol, rcriu_proc::sock_diag::ALL_STATES)
                .map_err(Error::proc(pid))?;
            self.inet.insert(
                (family, protocol),
                all.into_iter().map(|s| (s.ino, s)).collect(),
            );
        }
        Ok(&self.inet[&(family, protocol)])
    }

    pub fn netlink(&mut self, pid: Pid) -> Result<&HashMap<u32, NetlinkSock>> {
        if self.netlink.is_none() {
            let all = self.diag(pid)?.netlink().map_err(Error::proc(pid))?;
            self.netlink = Some(all.into_iter().map(|s| (s.ino, s)).collect());
        }
        Ok(self.netlink.as_ref().expect("read above when missing"))
    }

    pub fn packet(&mut self, pid: Pid) -> Result<&HashMap<u32, PacketSock>> {
        if self.packet.is_none() {
            let all = self.diag(pid)?.packet().map_err(Error::proc(pid))?;
            self.packet = Some(all.into_iter().map(|s| (s.ino, s)).collect());
        }
        Ok(self.packet.as_ref().expect("read above when missing"))
    }
}

/// Opens the sock_diag socket in network namespace `net`, from a thread
/// that joins it (`setns` moves only the calling thread; a netlink
/// socket answers for the namespace it was made in).
fn open_diag_in(pid: Pid, net: &NetNs) -> Result<SockDiag> {
    in_net(pid, net, || SockDiag::open().map_err(Error::proc(pid)))
}

/// Runs `f` in a thread of rcriu that joined network namespace `net`;
/// rcriu itself stays in its own.
pub fn in_net<T: Send>(pid: Pid, net: &NetNs, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    joined(&net.file, f).map_err(Error::sys(
        "joining the container's network namespace (setns)",
        pid,
    ))?
}

/// Runs `f` in a thread of rcriu that joined the network namespace open
/// as `ns`; fails when it cannot be joined (or the thread panicked).
/// Programs the thread starts run there too.
pub fn joined<T: Send>(ns: &std::fs::File, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(move || {
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            Ok(f())
        })
        .join()
    })
    .map_err(|_| std::io::Error::other("the thread working in a network namespace panicked"))?
}

/// Raises rcriu's soft limit of open files to the hard one: the dump
/// holds a copy of every fd of the process (as many sockets as its own
/// limit allows), as CRIU raises its own.
pub fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            log::debug!("raising the limit of open files: {e}");
        }
    }
}

/// A socket's entry, written as file `id` of the dump: found by its
/// family, dumped by its kind's module.
pub fn dump(files: &mut Files, f: &OpenFd, id: u32, fown: pb::FownEntry) -> Result<()> {
    let pid = files.pid();
    files.sockets.check_ns(pid, f)?;
    let family = family(f).map_err(Error::sys("reading a socket's family (SO_DOMAIN)", pid))?;
    match family {
        libc::AF_UNIX => sk_unix::dump(files, f, id, fown),
        libc::AF_INET | libc::AF_INET6 => sk_inet::dump(files, f, id, fown, family),
        libc::AF_NETLINK => sk_netlink::dump(files, f, id, fown),
        libc::AF_PACKET => sk_packet::dump(files, f, id, fown),
        other => Err(Error::unsupported(
            pid,
            format!("{}: a socket of family {}", what(f), family_name(other)),
        )),
    }
}

/// The fdinfo type of a socket: its family's.
pub fn fd_type(f: &OpenFd) -> pb::FdTypes {
    match family(f) {
        Ok(libc::AF_UNIX) => pb::FdTypes::Unixsk,
        Ok(libc::AF_INET | libc::AF_INET6) => pb::FdTypes::Inetsk,
        Ok(libc::AF_NETLINK) => pb::FdTypes::Netlinksk,
        Ok(libc::AF_PACKET) => pb::FdTypes::Packetsk,
        _ => pb::FdTypes::Und,
    }
}

/// How a socket is named in messages: `fd N` of the task, or a socket in
/// flight.
pub fn what(f: &OpenFd) -> String {
    if f.fd < 0 {
        format!("a socket in flight (socket:[{}])", f.info.ino)
    } else {
        format!("fd {} (socket:[{}])", f.fd, f.info.ino)
    }
}

pub fn family_name(family: i32) -> String {
    match family {
        libc::AF_UNIX => "AF_UNIX".into(),
        libc::AF_INET => "AF_INET".into(),
        libc::AF_INET6 => "AF_INET6".into(),
        libc::AF_NETLINK => "AF_NETLINK".into(),
        libc::AF_PACKET => "AF_PACKET".into(),
        libc::AF_VSOCK => "AF_VSOCK".into(),
        libc::AF_ALG => "AF_ALG".into(),
        libc::AF_BLUETOOTH => "AF_BLUETOOTH".into(),
        libc::AF_XDP => "AF_XDP".into(),
        libc::AF_KEY => "AF_KEY".into(),
        libc::AF_TIPC => "AF_TIPC".into(),
        n => n.to_string(),
    }
}

/// `SOCK_*` by name.
pub fn type_name(kind: u32) -> String {
    match kind as i32 {
        libc::SOCK_STREAM => "SOCK_STREAM".into(),
        libc::SOCK_DGRAM => "SOCK_DGRAM".into(),
        libc::SOCK_RAW => "SOCK_RAW".into(),
        libc::SOCK_SEQPACKET => "SOCK_SEQPACKET".into(),
        10 => "SOCK_PACKET".into(),
        n => n.to_string(),
    }
}

/// A TCP state number by name.
pub fn state_name(state: u32) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "an unknown state",
    }
}

/// CRIU's `sk_shutdown` from the kernel's mask (the values are the
/// same); `None` when not shut down.
pub fn shutdown(mask: u8) -> Option<i32> {
    (mask & 3 != 0).then_some(i32::from(mask & 3))
}

/// What is read of a socket ahead of its dump, when it is one of
/// thousands ([`Prefetch`]).
#[derive(Debug)]
pub struct Ahead {
    /// `SO_DOMAIN`.
    pub family: i32,
    pub opts: pb::SkOptsEntry,
    /// [`crate::files::fown`].
    pub fown: pb::FownEntry,
    /// What a unix stream socket holds queued, when one peek read it all
    /// ([`crate::sk_queue::peek_ahead`]).
    pub queue: Option<Vec<u8>>,
}

/// A socket's family (`SO_DOMAIN`), as read ahead with its options.
fn family(f: &OpenFd) -> std::io::Result<i32> {
    match &f.ahead {
        Some(a) => Ok(a.family),
        None => sk_sys::getsockopt_int(f.file.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN),
    }
}

/// The options of a socket of `family`, as CRIU 4.2's
/// `dump_socket_opts` records them, with rcriu's fields.
pub fn opts(pid: Pid, f: &OpenFd, family: i32) -> Result<pb::SkOptsEntry> {
    match &f.ahead {
        Some(a) => Ok(a.opts.clone()),
        None => read_opts(pid, f, family, &Source::Calls(f.file.as_fd())),
    }
}

/// Below this many sockets, their options are read as each is dumped.
const SOCKETS_PER_READER: usize = 512;

/// Every option [`read_opts`] reads, with the room each takes: what a
/// batch asks of each socket (`SO_GET_FILTER` as a length question).
const ASKED: [(i32, u32); 27] = [
    (libc::SO_DOMAIN, 4),
    (libc::SO_SNDBUF, 4),
    (libc::SO_RCVBUF, 4),
    (so::SO_BUF_LOCK, 4),
    (libc::SO_PRIORITY, 4),
    (libc::SO_RCVLOWAT, 4),
    (libc::SO_MARK, 4),
    (libc::SO_SNDTIMEO, 16),
    (libc::SO_RCVTIMEO, 16),
    (libc::SO_REUSEADDR, 4),
    (libc::SO_REUSEPORT, 4),
    (libc::SO_PASSCRED, 4),
    (so::SO_PASSSEC, 4),
    (libc::SO_DONTROUTE, 4),
    (libc::SO_NO_CHECK, 4),
    (libc::SO_BROADCAST, 4),
    (libc::SO_KEEPALIVE, 4),
    (libc::SO_OOBINLINE, 4),
    (libc::SO_LINGER, 8),
    (libc::SO_BINDTODEVICE, libc::IFNAMSIZ as u32),
    (libc::SO_ATTACH_FILTER, 0),
    (so::SO_PEEK_OFF, 4),
    (so::SO_TIMESTAMPNS_NEW, 4),
    (so::SO_TIMESTAMP_NEW, 4),
    (so::SO_TIMESTAMPNS_OLD, 4),
    (so::SO_TIMESTAMP_OLD, 4),
    (so::SO_TIMESTAMPING_OLD, 8),
];

/// Where a socket's options come from: a `getsockopt` call each, or what
/// a batch read of them ([`ASKED`], in order).
enum Source<'a> {
    Calls(BorrowedFd<'a>),
    Read(&'a [sk_batch::Got]),
}

impl Source<'_> {
    /// `getsockopt(SOL_SOCKET, name)` into `buf`: the length given.
    fn get(&self, name: i32, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::Calls(fd) => sk_sys::getsockopt(*fd, libc::SOL_SOCKET, name, buf),
            Source::Read(got) => {
                let i = ASKED
                    .iter()
                    .position(|&(n, _)| n == name)
                    .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOPROTOOPT))?;
                let v = got[i].bytes()?;
                let n = v.len().min(buf.len());
                buf[..n].copy_from_slice(&v[..n]);
                Ok(v.len())
            }
        }
    }

    /// An int option.
    fn int(&self, name: i32) -> std::io::Result<i32> {
        let mut b = [0u8; 4];
        let n = self.get(name, &mut b)?;
        if n != 4 {
            return Err(std::io::Error::other(format!(
                "option {name} has {n} bytes, not 4"
            )));
        }
        Ok(i32::from_ne_bytes(b))
    }

    /// `SO_GET_FILTER`'s length question.
    fn filter_len(&self) -> std::io::Result<usize> {
        match self {
            Source::Calls(fd) => sk_sys::filter_len(*fd),
            Source::Read(got) => {
                let i = ASKED
                    .iter()
                    .position(|&(n, _)| n == libc::SO_ATTACH_FILTER)
                    .unwrap_or(0);
                got[i].bytes()?;
                Ok(got[i].res as usize)
            }
        }
    }
}

/// Sockets to a group: their options are asked in one batch.
const GROUP: usize = 64;

/// Takes the next group of sockets not taken yet by any thread.
fn take<'a, 'b>(
    groups: &'a [Mutex<&'b mut [&'b mut OpenFd]>],
    next: &AtomicUsize,
) -> Option<std::sync::MutexGuard<'a, &'b mut [&'b mut OpenFd]>> {
    let i = next.fetch_add(1, Ordering::Relaxed);
    let g = groups.get(i)?;
    Some(g.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Where [`Prefetch`] finds the table of unix sockets.
enum TableSource {
    Read(Arc<HashMap<u32, UnixSock>>),
    Ask(SockDiag),
}

/// Sockets read ahead, by their place among the fds.
pub type Socks = Vec<(usize, OpenFd)>;

/// What the threads reading ahead give back: the sockets, and the unix
/// table when they read it.
type Read = (Socks, Option<Arc<HashMap<u32, UnixSock>>>);

/// Reads ahead, in the background (while the parasite is set up), what
/// dumping thousands of sockets (a server's) takes: their options (some
/// twenty-five each are most of what dumping them costs), their owners,
/// and what unix stream sockets hold queued ([`sk_queue::peek_ahead`]).
/// Two threads read options in batches, each through an io_uring of its
/// own ([`sk_batch`]) where the kernel can (else a call each), taking
/// groups of sockets as they go; one of them asks for the table of unix
/// sockets first (their queues' lengths). A socket whose options cannot
/// be read so is read again as it is dumped, which reports why. Dropped
/// before it is [`Prefetch::join`]ed, it waits for its threads.
///
/// [`sk_queue::peek_ahead`]: crate::sk_queue::peek_ahead
pub struct Prefetch {
    thread: Option<std::thread::JoinHandle<Option<Read>>>,
    /// The sockets, when too few to be read ahead.
    few: Socks,
}

impl Prefetch {
    /// Starts reading `socks` (sockets of process `pid`) ahead.
    pub fn start(pid: Pid, sockets: &Sockets, socks: Socks) -> Prefetch {
        if socks.len() < SOCKETS_PER_READER {
            return Prefetch {
                thread: None,
                few: socks,
            };
        }
        let table = sockets.table_source(pid);
        // Taken by the thread; left here if none could be started, and
        // read now.
        let work = Arc::new(Mutex::new(Some((table, socks))));
        let theirs = work.clone();
        let spawned = std::thread::Builder::new()
            .name("sk-ahead".into())
            .spawn(move || {
                let taken = theirs.lock().unwrap_or_else(|e| e.into_inner()).take();
                taken.map(|(table, socks)| read_ahead(pid, table, socks))
            });
        match spawned {
            Ok(t) => Prefetch {
                thread: Some(t),
                few: Vec::new(),
            },
            Err(e) => {
                log::debug!("sockets read ahead here: no thread ({e})");
                let taken = work.lock().unwrap_or_else(|e| e.into_inner()).take();
                let few = taken.map_or_else(Vec::new, |(_, socks)| socks);
                Prefetch { thread: None, few }
            }
        }
    }

    /// The sockets, read ahead; the unix table, when read, joins the
    /// dump's.
    pub fn join(mut self, sockets: &mut Sockets) -> Socks {
        let Some(t) = self.thread.take() else {
            return std::mem::take(&mut self.few);
        };
        let Some((socks, table)) = t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)) else {
            return Vec::new();
        };
        if let Some(t) = table
            && sockets.unix.is_none()
        {
            sockets.set_unix(t);
        }
        socks
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// [`Prefetch`]'s work, on this thread and one more.
fn read_ahead(pid: Pid, table: Option<TableSource>, mut owned: Socks) -> Read {
    let mut socks: Vec<&mut OpenFd> = owned.iter_mut().map(|(_, f)| f).collect();
    let probe = socks[0].file.as_raw_fd();
    let groups: Vec<Mutex<&mut [&mut OpenFd]>> = socks.chunks_mut(GROUP).map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let read = || {
        let mut batch = sk_batch::Batch::new(probe)
            .map_err(|e| log::debug!("socket options one call each: {e}"))
            .ok();
        while let Some(mut group) = take(&groups, &next) {
            read_group(pid, batch.as_mut(), &mut group);
        }
    };
    let (table, fresh) = std::thread::scope(|s| {
        s.spawn(read);
        // Meanwhile, the unix table: which sockets hold bytes queued. An
        // error comes again as the first unix socket is dumped.
        let table = match table {
            Some(TableSource::Read(t)) => (Some(t), false),
            Some(TableSource::Ask(mut diag)) => (
                diag.unix()
                    .map_err(|e| log::debug!("the unix sockets' table, read ahead: {e}"))
                    .ok()
                    .map(|all| Arc::new(all.into_iter().map(|s| (s.ino, s)).collect())),
                true,
            ),
            None => (None, false),
        };
        read();
        table
    });
    if let Some(table) = &table {
        let next = AtomicUsize::new(0);
        let peek = || {
            let mut buf = Vec::new();
            while let Some(mut group) = take(&groups, &next) {
                for f in group.iter_mut() {
                    if let Some(sk) = table.get(&(f.info.ino as u32)) {
                        crate::sk_queue::peek_ahead(sk, f, &mut buf);
                    }
                }
            }
        };
        let queued = owned_queued(&groups, table);
        if queued < SOCKETS_PER_READER {
            peek();
        } else {
            std::thread::scope(|s| {
                s.spawn(peek);
                peek();
            });
        }
    }
    drop(groups);
    (owned, table.filter(|_| fresh))
}

/// How many of the sockets hold bytes queued, as `table` says.
fn owned_queued(groups: &[Mutex<&mut [&mut OpenFd]>], table: &HashMap<u32, UnixSock>) -> usize {
    groups
        .iter()
        .map(|g| {
            let g = g.lock().unwrap_or_else(|e| e.into_inner());
            g.iter()
                .filter(|f| {
                    table
                        .get(&(f.info.ino as u32))
                        .is_some_and(|s| s.rqueue != 0)
                })
                .count()
        })
        .sum()
}

/// Reads the options and owners of a group of sockets, in one batch when
/// there is a ring.
fn read_group(pid: Pid, batch: Option<&mut sk_batch::Batch>, group: &mut [&mut OpenFd]) {
    let got = batch.and_then(|b| {
        let fds: Vec<_> = group.iter().map(|f| f.file.as_raw_fd()).collect();
        b.hold(&fds);
        let asks: Vec<sk_batch::Ask> = group
            .iter()
            .flat_map(|f| {
                let fd = f.file.as_raw_fd();
                ASKED
                    .iter()
                    .map(move |&(name, len)| sk_batch::Ask { fd, name, len })
            })
            .collect();
        b.read(&asks).ok()
    });
    for (i, f) in group.iter_mut().enumerate() {
        let src = match &got {
            Some(g) => Source::Read(&g[i * ASKED.len()..(i + 1) * ASKED.len()]),
            None => Source::Calls(f.file.as_fd()),
        };
        let Ok(family) = src.int(libc::SO_DOMAIN) else {
            continue;
        };
        let (Ok(opts), Ok(fown)) = (read_opts(pid, f, family, &src), crate::files::fown(pid, f))
        else {
            continue;
        };
        f.ahead = Some(Box::new(Ahead {
            family,
            opts,
            fown,
            queue: None,
        }));
    }
}

/// [`opts`], read from `src`.
fn read_opts(pid: Pid, f: &OpenFd, family: i32, src: &Source<'_>) -> Result<pb::SkOptsEntry> {
    let int = |name, what| src.int(name).map_err(Error::sys(what, pid));
    let flag = |name, what| int(name, what).map(|v| Some(v != 0));
    let mut e = pb::SkOptsEntry {
        so_sndbuf: int(libc::SO_SNDBUF, "reading a socket's SO_SNDBUF")? as u32,
        so_rcvbuf: int(libc::SO_RCVBUF, "reading a socket's SO_RCVBUF")? as u32,
        ..Default::default()
    };
    // SO_BUF_LOCK (5.14): kernels without it have no lock to carry.
    if let Ok(v) = src.int(so::SO_BUF_LOCK) {
        e.so_buf_lock = Some(v as u32);
    }
    e.so_priority = Some(int(libc::SO_PRIORITY, "reading a socket's SO_PRIORITY")? as u32);
    e.so_rcvlowat = Some(int(libc::SO_RCVLOWAT, "reading a socket's SO_RCVLOWAT")? as u32);
    let mark = int(libc::SO_MARK, "reading a socket's SO_MARK")? as u32;
    e.so_mark = (mark != 0).then_some(mark);
    let (s, us) = timeout(pid, src, libc::SO_SNDTIMEO)?;
    e.so_snd_tmo_sec = s;
    e.so_snd_tmo_usec = us;
    let (s, us) = timeout(pid, src, libc::SO_RCVTIMEO)?;
    e.so_rcv_tmo_sec = s;
    e.so_rcv_tmo_usec = us;
    e.reuseaddr = flag(libc::SO_REUSEADDR, "reading a socket's SO_REUSEADDR")?;
    e.so_reuseport = flag(libc::SO_REUSEPORT, "reading a socket's SO_REUSEPORT")?;
    if family == libc::AF_UNIX || family == libc::AF_NETLINK {
        e.so_passcred = flag(libc::SO_PASSCRED, "reading a socket's SO_PASSCRED")?;
        e.so_passsec = flag(so::SO_PASSSEC, "reading a socket's SO_PASSSEC")?;
    }
    e.so_dontroute = flag(libc::SO_DONTROUTE, "reading a socket's SO_DONTROUTE")?;
    e.so_no_check = flag(libc::SO_NO_CHECK, "reading a socket's SO_NO_CHECK")?;
    e.so_broadcast = flag(libc::SO_BROADCAST, "reading a socket's SO_BROADCAST")?;
    e.so_keepalive = flag(libc::SO_KEEPALIVE, "reading a socket's SO_KEEPALIVE")?;
    e.so_oobinline = Some(u32::from(
        int(libc::SO_OOBINLINE, "reading a socket's SO_OOBINLINE")? != 0,
    ));
    let mut linger = [0u8; 8];
    src.get(libc::SO_LINGER, &mut linger)
        .map_err(Error::sys("reading a socket's SO_LINGER", pid))?;
    let onoff = i32::from_ne_bytes(linger[..4].try_into().expect("4 bytes"));
    if onoff != 0 {
        e.so_linger = Some(i32::from_ne_bytes(linger[4..].try_into().expect("4 bytes")) as u32);
    }
    let mut dev = [0u8; libc::IFNAMSIZ];
    let n = src
        .get(libc::SO_BINDTODEVICE, &mut dev)
        .map_err(Error::sys(
            "reading a socket's bound device (SO_BINDTODEVICE)",
            pid,
        ))?;
    if n > 0 {
        let name = &dev[..n.min(dev.len())];
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        if !name.is_empty() {
            e.so_bound_dev = Some(name.to_vec());
        }
    }
    e.so_filter = filter(pid, f, src)?;
    rcriu_fields(pid, f, src, &mut e)?;
    Ok(e)
}

/// SO_SNDTIMEO or SO_RCVTIMEO: (seconds, microseconds).
fn timeout(pid: Pid, src: &Source<'_>, name: i32) -> Result<(u64, u64)> {
    let mut tv = [0u8; 16];
    let n = src
        .get(name, &mut tv)
        .map_err(Error::sys("reading a socket's timeout (SO_*TIMEO)", pid))?;
    if n != 16 {
        return Err(Error::Inconsistent {
            pid,
            what: format!("a socket timeout of {n} bytes"),
        });
    }
    let s = i64::from_ne_bytes(tv[..8].try_into().expect("8 bytes"));
    let us = i64::from_ne_bytes(tv[8..].try_into().expect("8 bytes"));
    Ok((s as u64, us as u64))
}

/// The classic filter attached (`SO_ATTACH_FILTER`), each instruction
/// packed as CRIU packs it: code << 48 | jt << 40 | jf << 32 | k. A
/// locked filter (`SO_LOCK_FILTER`) is refused: rcriu does not lock it
/// again.
fn filter(pid: Pid, f: &OpenFd, src: &Source<'_>) -> Result<Vec<u64>> {
    let fd = f.file.as_fd();
    let n = src
        .filter_len()
        .map_err(Error::sys("reading a socket's filter length", pid))?;
    if n == 0 {
        return Ok(Vec::new());
    }
    if n > 4096 {
        return Err(Error::Inconsistent {
            pid,
            what: format!("{}: a filter of {n} instructions", what(f)),
        });
    }
    let locked = sk_sys::getsockopt_int(fd, libc::SOL_SOCKET, so::SO_LOCK_FILTER).unwrap_or(0);
    if locked != 0 {
        return Err(Error::unsupported(
            pid,
            format!("{}: a locked socket filter (SO_LOCK_FILTER)", what(f)),
        ));
    }
    let mut buf = vec![0u8; n * 8];
    let got = sk_sys::filter(fd, &mut buf).map_err(Error::sys("reading a socket's filter", pid))?;
    Ok(buf[..got.min(n) * 8]
        .chunks_exact(8)
        .map(|c| {
            let code = u16::from_ne_bytes([c[0], c[1]]);
            let (jt, jf) = (c[2], c[3]);
            let k = u32::from_ne_bytes([c[4], c[5], c[6], c[7]]);
            u64::from(code) << 48 | u64::from(jt) << 40 | u64::from(jf) << 32 | u64::from(k)
        })
        .collect())
}

/// rcriu's fields: the peek offset and receive timestamps.
fn rcriu_fields(pid: Pid, f: &OpenFd, src: &Source<'_>, e: &mut pb::SkOptsEntry) -> Result<()> {
    // SO_PEEK_OFF is -1 (off) unless set; only some families have it.
    if let Ok(off) = src.int(so::SO_PEEK_OFF)
        && off >= 0
    {
        e.rcriu_peek_off = Some(off);
    }
    let on = |name| src.int(name).is_ok_and(|v| v != 0);
    let stamp = if on(so::SO_TIMESTAMPNS_NEW) {
        4
    } else if on(so::SO_TIMESTAMP_NEW) {
        3
    } else if on(so::SO_TIMESTAMPNS_OLD) {
        2
    } else if on(so::SO_TIMESTAMP_OLD) {
        1
    } else {
        0
    };
    if stamp != 0 {
        e.rcriu_timestamp = Some(stamp);
    }
    let mut ts = [0u8; 8];
    let n = src
        .get(so::SO_TIMESTAMPING_OLD, &mut ts)
        .map_err(Error::sys("reading a socket's SO_TIMESTAMPING", pid))?;
    if n >= 4 {
        let flags = u32::from_ne_bytes(ts[..4].try_into().expect("4 bytes"));
        let phc = if n >= 8 {
            i32::from_ne_bytes(ts[4..8].try_into().expect("4 bytes"))
        } else {
            0
        };
        if phc != 0 {
            return Err(Error::unsupported(
                pid,
                format!(
                    "{}: timestamps bound to a PTP clock (SO_TIMESTAMPING)",
                    what(f)
                ),
            ));
        }
        if flags != 0 {
            e.rcriu_timestamping = Some(flags);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcriu_net_namespace_is_the_second_numbered() {
        let me = rcriu_proc::Task::open_self().unwrap().namespaces().unwrap();
        let ids = crate::ids::NsIds::new().task(1, &me);
        assert_eq!(ids.entry.net_ns_id, Some(NET_NS_ID));
    }

    #[test]
    fn shutdown_masks_are_criu_s() {
        assert_eq!(shutdown(0), None);
        assert_eq!(shutdown(1), Some(pb::SkShutdown::Read as i32));
        assert_eq!(shutdown(2), Some(pb::SkShutdown::Write as i32));
        assert_eq!(shutdown(3), Some(pb::SkShutdown::Both as i32));
    }
}
