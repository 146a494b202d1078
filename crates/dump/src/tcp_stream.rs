//! `tcp-stream-<ino>.img`: a connected TCP socket's state, read through
//! TCP_REPAIR as CRIU 4.2 (libsoccr) reads it: sequence numbers of both
//! queues, what waits in each (the receive queue not read yet, the send
//! queue not acknowledged, of which `unsq_len` bytes not sent yet), MSS,
//! window scales, timestamps, SACK and the windows. The entry is followed
//! by the receive queue's bytes, then the send queue's.
//!
//! Every connection of the dump is locked first, all at once
//! ([`rcriu_restore::net_lock`]); then each socket is put in repair mode
//! and read. A dump that kills the process leaves them so: closed in
//! repair mode, a socket sends nothing, and the lock drops what the peer
//! sends until the restore lifts it. A dump that fails, or leaves the
//! process running, takes repair mode off and lifts the lock before the
//! process runs again ([`Streams::release`], also on drop).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rcriu_images::{ImageDir, ImageFile, pb};
use rcriu_proc::Pid;
use rcriu_restore::net_lock::{self, Conn};

pub use rcriu_restore::net_lock::Method as LockMethod;

use crate::sk_inet::{
    TCP_CLOSE, TCP_CLOSE_WAIT, TCP_CLOSING, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
    TCP_LAST_ACK, TCP_SYN_SENT,
};
use crate::{Error, Result, sk_sys, sockets};

const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;
const TCPI_OPT_TIMESTAMPS: u32 = 1;
const TCPI_OPT_WSCALE: u32 = 4;
const SIOCINQ: u64 = 0x541b;
const SIOCOUTQ: u64 = 0x5411;
const SIOCOUTQNSD: u64 = 0x894b;

/// States whose send queue ends with a FIN (not data): libsoccr's
/// `SNDQ_FIRST_FIN | SNDQ_SECOND_FIN`.
fn fin_in_send_queue(state: u32) -> bool {
    [
        TCP_FIN_WAIT1,
        TCP_FIN_WAIT2,
        TCP_CLOSING,
        TCP_LAST_ACK,
        TCP_CLOSE,
    ]
    .contains(&state)
}

/// A connection met among the fds, read once every one is locked.
#[derive(Debug)]
pub struct Pending {
    /// Its entry's index in files.img's entries (its state is set there).
    pub entry: usize,
    pub ino: u32,
    pub family: i32,
    pub src: [u32; 4],
    pub sport: u16,
    pub dst: [u32; 4],
    pub dport: u16,
    /// SO_REUSEADDR as it was (repair mode changes it).
    pub reuseaddr: bool,
    /// How rcriu reaches the socket.
    pub held: Held,
    /// How messages name it.
    pub what: String,
}

/// How rcriu reaches a socket it repairs.
#[derive(Debug)]
pub enum Held {
    /// As fd N of process P, taken each time it is needed
    /// (`pidfd_getfd`): rcriu keeps no copy, so that a process may hold
    /// as many connections as its limit of open files.
    Task(Pid, i32),
    /// A copy rcriu keeps (a socket in flight).
    Copy(OwnedFd),
}

impl Held {
    /// An fd of the socket for a moment; `pidfds` caches a pidfd by pid.
    fn get(&self, pidfds: &mut Vec<(Pid, OwnedFd)>) -> std::io::Result<Taken<'_>> {
        match self {
            Held::Copy(fd) => Ok(Taken::Borrowed(fd.as_fd())),
            Held::Task(pid, n) => {
                if !pidfds.iter().any(|(p, _)| p == pid) {
                    let p = rustix::process::Pid::from_raw(*pid)
                        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
                    let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())?;
                    pidfds.push((*pid, fd));
                }
                let pfd = &pidfds
                    .iter()
                    .find(|(p, _)| p == pid)
                    .expect("opened above")
                    .1;
                let fd = rustix::process::pidfd_getfd(
                    pfd,
                    *n,
                    rustix::process::PidfdGetfdFlags::empty(),
                )?;
                Ok(Taken::Own(fd))
            }
        }
    }
}

/// A socket's fd for a moment.
enum Taken<'a> {
    Borrowed(BorrowedFd<'a>),
    Own(OwnedFd),
}

impl Taken<'_> {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Taken::Borrowed(b) => *b,
            Taken::Own(o) => o.as_fd(),
        }
    }
}

impl Pending {
    fn conn(&self) -> Conn {
        Conn {
            v6: self.family == libc::AF_INET6,
            src: self.src,
            sport: self.sport,
            dst: self.dst,
            dport: self.dport,
        }
    }
}

/// One connection's image.
#[derive(Debug)]
pub struct Stream {
    pub ino: u32,
    pub entry: pb::TcpStreamEntry,
    pub inq: Vec<u8>,
    pub outq: Vec<u8>,
}

/// The connections of a dump.
#[derive(Debug, Default)]
pub struct Streams {
    pending: Vec<Pending>,
    /// Sockets in repair mode, with SO_REUSEADDR to put back.
    repaired: Vec<(Held, bool)>,
    locked: Vec<Conn>,
    method: LockMethod,
    run_id: String,
    /// The process was killed: leave the sockets in repair mode and the
    /// lock in place.
    keep: bool,
    /// The container's network namespace the connections live in: the
    /// lock's rules are set there (where their packets pass).
    net: Option<std::fs::File>,
    /// The namespace is locked as a whole.
    ns_locked: bool,
    pub streams: Vec<Stream>,
}

/// Runs a lock's `f` in network namespace `net` (rcriu's when `None`).
fn in_ns(
    net: Option<&std::fs::File>,
    f: impl FnOnce() -> rcriu_restore::Result<()> + Send,
) -> rcriu_restore::Result<()> {
    match net {
        None => f(),
        Some(ns) => sockets::joined(ns, f).map_err(|source| rcriu_restore::Error::Io {
            what: "joining the container's network namespace to lock its connections".into(),
            source,
        })?,
    }
}

impl Streams {
    /// The connections live in the container's network namespace `net`.
    pub fn set_net(&mut self, net: Option<std::fs::File>) {
        self.net = net;
    }

    /// Their network namespace is locked as a whole
    /// ([`crate::namespaces::NsLock`]): no rules of their own.
    pub fn ns_locked(&mut self) {
        self.ns_locked = true;
    }

    pub fn add(&mut self, p: Pending) {
        self.pending.push(p);
    }

    /// Locks every connection met, puts each in repair mode and reads
    /// it; sets each entry's state to the one read.
    pub fn dump_all(
        &mut self,
        pid: Pid,
        opts: &sockets::Options,
        run_id: &str,
        entries: &mut [pb::FileEntry],
    ) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.method = if self.ns_locked {
            LockMethod::Skip
        } else {
            opts.network_lock
        };
        self.run_id = run_id.to_owned();
        let conns: Vec<Conn> = self.pending.iter().map(Pending::conn).collect();
        let method = self.method;
        in_ns(self.net.as_ref(), || net_lock::lock(method, run_id, &conns))
            .map_err(|source| Error::NetworkLock { pid, source })?;
        self.locked = conns;
        let mut pidfds = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            let taken = p.held.get(&mut pidfds).map_err(Error::sys(
                "taking a socket of the process (pidfd_getfd)",
                pid,
            ))?;
            let fd = taken.fd();
            sk_sys::setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR, 1)
                .map_err(Error::sys("turning TCP_REPAIR on", pid))?;
            let saved = save(pid, fd, p.ino, &p.what);
            drop(taken);
            self.repaired.push((p.held, p.reuseaddr));
            let (state, s) = saved?;
            if let Some(isk) = entries.get_mut(p.entry).and_then(|e| e.isk.as_deref_mut()) {
                isk.state = state;
            }
            self.streams.push(s);
        }
        Ok(())
    }

    /// The process is gone: the sockets close in repair mode (silently)
    /// and the lock stays for the restore to lift.
    pub fn keep_locked(&mut self) {
        self.keep = true;
    }

    /// Takes repair mode off and lifts the lock (the process runs on).
    pub fn release(&mut self) {
        let mut pidfds = Vec::new();
        for (held, reuseaddr) in std::mem::take(&mut self.repaired) {
            let taken = match held.get(&mut pidfds) {
                Ok(t) => t,
                Err(e) => {
                    log::error!("taking a socket to turn TCP_REPAIR off: {e}");
                    continue;
                }
            };
            let fd = taken.fd();
            if let Err(e) = sk_sys::setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR, 0) {
                log::error!("turning TCP_REPAIR off: {e}");
            }
            if let Err(e) = sk_sys::setsockopt_int(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                i32::from(reuseaddr),
            ) {
                log::error!("putting SO_REUSEADDR back: {e}");
            }
        }
        let locked = std::mem::take(&mut self.locked);
        let (method, run_id) = (self.method, self.run_id.as_str());
        if let Err(e) = in_ns(self.net.as_ref(), || {
            net_lock::unlock(method, run_id, &locked)
        }) {
            log::error!("lifting the network lock: {e}");
        }
    }

    /// Writes each connection's `tcp-stream-<ino>.img`.
    pub fn write(
        &self,
        pid: Pid,
        create: &mut dyn FnMut(ImageFile) -> Result<ImageDir>,
    ) -> Result<()> {
        for s in &self.streams {
            let file = ImageFile::TcpStream(s.ino.into());
            let dir = create(file)?;
            let mut w = dir.writer(file).map_err(Error::image(pid))?;
            w.write(&s.entry).map_err(Error::image(pid))?;
            w.write_payload(&s.inq).map_err(Error::image(pid))?;
            w.write_payload(&s.outq).map_err(Error::image(pid))?;
            w.finish().map_err(Error::image(pid))?;
        }
        Ok(())
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        if !self.keep {
            self.release();
        }
    }
}

/// Reads a socket in repair mode (libsoccr's `libsoccr_save`): its state
/// and its stream.
fn save(pid: Pid, fd: BorrowedFd<'_>, ino: u32, what: &str) -> Result<(u32, Stream)> {
    let sys = |w| Error::sys(w, pid);
    let mut info = [0u8; 8];
    let n = sk_sys::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info)
        .map_err(sys("reading TCP_INFO"))?;
    if n < 7 {
        return Err(Error::Inconsistent {
            pid,
            what: format!("{what}: a TCP_INFO of {n} bytes"),
        });
    }
    let state = u32::from(info[0]);
    if ![
        TCP_ESTABLISHED,
        TCP_FIN_WAIT1,
        TCP_FIN_WAIT2,
        TCP_LAST_ACK,
        TCP_CLOSE_WAIT,
        TCP_CLOSING,
        TCP_CLOSE,
        TCP_SYN_SENT,
    ]
    .contains(&state)
    {
        return Err(Error::unsupported(
            pid,
            format!(
                "{what}: a TCP connection in state {}",
                sockets::state_name(state)
            ),
        ));
    }
    let options = u32::from(info[5]);
    let (snd_wscale, rcv_wscale) = (u32::from(info[6] & 0xf), u32::from(info[6] >> 4));
    let ioctl = |req, w| sk_sys::ioctl_int(fd, req).map_err(sys(w));
    let mut outq = ioctl(SIOCOUTQ, "reading a send queue's length (SIOCOUTQ)")? as u32;
    let mut unsq = ioctl(SIOCOUTQNSD, "reading what is not sent yet (SIOCOUTQNSD)")? as u32;
    if state == TCP_CLOSE {
        // A reset connection: what it held cannot be read any more.
        outq = 0;
        unsq = 0;
    }
    if fin_in_send_queue(state) {
        outq = outq.saturating_sub(1);
        unsq = unsq.saturating_sub(1);
    }
    let inq = ioctl(SIOCINQ, "reading a receive queue's length (SIOCINQ)")? as u32;
    let mss = sk_sys::getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG)
        .map_err(sys("reading TCP_MAXSEG"))? as u32;
    let mut e = pb::TcpStreamEntry {
        inq_len: inq,
        outq_len: outq,
        unsq_len: Some(unsq),
        mss_clamp: mss,
        opt_mask: options,
        ..Default::default()
    };
    if options & TCPI_OPT_WSCALE != 0 {
        e.snd_wscale = snd_wscale;
        e.rcv_wscale = Some(rcv_wscale);
    }
    if options & TCPI_OPT_TIMESTAMPS != 0 {
        e.timestamp = Some(
            sk_sys::getsockopt_int(fd, libc::IPPROTO_TCP, TCP_TIMESTAMP)
                .map_err(sys("reading TCP_TIMESTAMP"))? as u32,
        );
    }
    let mut w = [0u8; 20];
    match sk_sys::getsockopt(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &mut w) {
        Ok(20) => {
            let word = |i: usize| u32::from_ne_bytes(w[4 * i..4 * i + 4].try_into().expect("4"));
            e.snd_wl1 = Some(word(0));
            e.snd_wnd = Some(word(1));
            e.max_window = Some(word(2));
            e.rcv_wnd = Some(word(3));
            e.rcv_wup = Some(word(4));
        }
        Ok(n) => {
            return Err(Error::Inconsistent {
                pid,
                what: format!("{what}: a TCP_REPAIR_WINDOW of {n} bytes"),
            });
        }
        Err(err) if err.raw_os_error() == Some(libc::ENOPROTOOPT) => {}
        Err(err) => return Err(Error::sys("reading TCP_REPAIR_WINDOW", pid)(err)),
    }
    let (inq_seq, in_bytes) = queue(pid, fd, TCP_RECV_QUEUE, inq, what)?;
    let (outq_seq, out_bytes) = queue(pid, fd, TCP_SEND_QUEUE, outq, what)?;
    e.inq_seq = inq_seq;
    e.outq_seq = outq_seq;
    Ok((
        state,
        Stream {
            ino,
            entry: e,
            inq: in_bytes,
            outq: out_bytes,
        },
    ))
}

/// A queue's sequence number and its `len` bytes (libsoccr's
/// `get_queue`): one byte more is asked for, to be sure there are no
/// more.
fn queue(pid: Pid, fd: BorrowedFd<'_>, which: i32, len: u32, what: &str) -> Result<(u32, Vec<u8>)> {
    sk_sys::setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, which).map_err(Error::sys(
        "choosing a queue to repair (TCP_REPAIR_QUEUE)",
        pid,
    ))?;
    let seq = sk_sys::getsockopt_int(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ).map_err(Error::sys(
        "reading a queue's sequence number (TCP_QUEUE_SEQ)",
        pid,
    ))? as u32;
    if len == 0 {
        return Ok((seq, Vec::new()));
    }
    let mut buf = vec![0u8; len as usize + 1];
    use rustix::net::RecvFlags;
    let (n, _) = rustix::net::recv(fd, &mut buf[..], RecvFlags::PEEK | RecvFlags::DONTWAIT)
        .map_err(|e| Error::sys("reading a TCP queue (MSG_PEEK)", pid)(e.into()))?;
    if n != len as usize {
        return Err(Error::Inconsistent {
            pid,
            what: format!(
                "{what}: a {} queue of {len} bytes gave {n}",
                if which == TCP_RECV_QUEUE {
                    "receive"
                } else {
                    "send"
                }
            ),
        });
    }
    buf.truncate(n);
    Ok((seq, buf))
}
