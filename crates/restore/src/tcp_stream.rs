//! Connected TCP sockets made again through TCP_REPAIR from their
//! `tcp-stream-<ino>.img` (CRIU 4.2's libsoccr restore): in repair mode,
//! the socket is bound and "connected" without a packet, its queues'
//! sequence numbers set, the options the handshake agreed on (MSS,
//! window scales, SACK, timestamps) and the windows set, the receive
//! queue and the sent-but-unacknowledged part of the send queue written
//! in place, the unsent part sent for real; a FIN is restored in the
//! send queue with `shutdown`, one from the peer by a packet sent to the
//! socket (marked, so that the lock lets it through).
//!
//! The sockets stay in repair mode, and their connections locked, until
//! the process is ready to run: then the lock is lifted and repair ends
//! ([`Repaired::release`]); a restore that fails before closes them in
//! repair mode, silently, and leaves the lock for another try.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rcriu_images::{ImageFile, pb};

use crate::load::Images;
use crate::net_lock::{self, Conn, Method};
use crate::sk_inet::{describe, sockaddr};
use crate::{Error, Result, sk_sys, sockets};

const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_OPTIONS: i32 = 22;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;
const TCP_NO_QUEUE: i32 = 0;
const TCPI_OPT_TIMESTAMPS: u32 = 1;
const TCPI_OPT_SACK: u32 = 2;
const TCPI_OPT_WSCALE: u32 = 4;
const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;

const ESTABLISHED: u32 = 1;
const SYN_SENT: u32 = 2;
const FIN_WAIT1: u32 = 4;
const FIN_WAIT2: u32 = 5;
const CLOSE: u32 = 7;
const CLOSE_WAIT: u32 = 8;
const LAST_ACK: u32 = 9;
const CLOSING: u32 = 11;

fn bit(s: u32) -> u32 {
    1 << s
}
/// libsoccr's masks of states: a FIN first or second in the send
/// queue, acknowledged; in the receive queue, first or second,
/// acknowledged.
const SNDQ_FIRST_FIN: u32 = (1 << FIN_WAIT1) | (1 << FIN_WAIT2) | (1 << CLOSING);
const SNDQ_SECOND_FIN: u32 = (1 << LAST_ACK) | (1 << CLOSE);
const SNDQ_FIN_ACKED: u32 = (1 << FIN_WAIT2) | (1 << CLOSE);
const RCVQ_FIRST_FIN: u32 = (1 << CLOSE_WAIT) | (1 << LAST_ACK) | (1 << CLOSE);
const RCVQ_SECOND_FIN: u32 = 1 << CLOSING;
const RCVQ_FIN_ACKED: u32 = 1 << CLOSE;

/// The most bytes one queue holds (a corrupt image beyond).
const MAX_QUEUE: u32 = 1 << 30;

/// A TCP socket that was connected (CRIU's `tcp_connection`).
pub fn is_connection(e: &pb::InetSkEntry) -> bool {
    e.proto == libc::IPPROTO_TCP as u32 && e.r#type == libc::SOCK_STREAM as u32 && e.dst_port != 0
}

/// The states a restore makes.
pub fn check_state(e: &pb::InetSkEntry) -> Result<()> {
    let ok = [
        ESTABLISHED,
        SYN_SENT,
        FIN_WAIT1,
        FIN_WAIT2,
        CLOSE,
        CLOSE_WAIT,
        LAST_ACK,
        CLOSING,
    ];
    if ok.contains(&e.state) {
        Ok(())
    } else {
        Err(Error::unsupported(format!(
            "restoring {} in TCP state {}",
            describe(e),
            e.state
        )))
    }
}

/// The connection of an entry, for the lock.
pub fn conn(e: &pb::InetSkEntry) -> Conn {
    let words = |w: &[u32]| {
        let mut a = [0u32; 4];
        for (x, y) in a.iter_mut().zip(w) {
            *x = *y;
        }
        a
    };
    Conn {
        v6: e.family == libc::AF_INET6 as u32,
        src: words(&e.src_addr),
        sport: e.src_port as u16,
        dst: words(&e.dst_addr),
        dport: e.dst_port as u16,
    }
}

/// How a socket in repair mode is reached once the process exists.
#[derive(Debug)]
pub enum Held {
    /// As fd `fd` of process `pid` (rcriu keeps no copy: a process may
    /// hold as many connections as its limit of open files).
    Fd { pid: i32, fd: i32 },
    /// A copy rcriu keeps (a socket in flight, which no fd holds).
    Copy(OwnedFd),
}

/// The sockets in repair mode and the lock of their connections.
#[derive(Debug, Default)]
pub struct Repaired {
    socks: Vec<(Held, bool, String)>,
    conns: Vec<Conn>,
}

impl Repaired {
    pub fn add(&mut self, held: Held, e: &pb::InetSkEntry) {
        self.socks
            .push((held, e.opts.reuseaddr == Some(true), describe(e)));
        self.conns.push(conn(e));
    }

    /// The lock's connections, for `--tcp-close` restores (no socket).
    pub fn add_conn(&mut self, e: &pb::InetSkEntry) {
        self.conns.push(conn(e));
    }

    /// The connections are locked with their whole network namespace:
    /// none of their own to lift.
    pub fn ns_locked(&mut self) {
        self.conns.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.socks.is_empty() && self.conns.is_empty()
    }

    /// Locks the connections again (`method`, `run_id` from the
    /// inventory) in the calling thread's network namespace: a
    /// container's, made anew, which the dump's lock did not reach.
    pub fn lock(&self, method: Method, run_id: &str) -> Result<()> {
        net_lock::lock(method, run_id, &self.conns)
    }

    /// Lifts the dump's lock (`method`, `run_id` from the inventory),
    /// then takes the sockets out of repair mode, SO_REUSEADDR as it was;
    /// the restored processes hold them. `on_host` gives a process's pid
    /// on the host from its pid in the images (in a pid namespace of its
    /// own, they differ).
    pub fn release(
        &mut self,
        method: Method,
        run_id: &str,
        on_host: &dyn Fn(i32) -> i32,
    ) -> Result<()> {
        let conns = std::mem::take(&mut self.conns);
        if let Err(e) = net_lock::unlock(method, run_id, &conns) {
            log::warn!("lifting the network lock: {e}");
        }
        let mut pidfds: Vec<(i32, OwnedFd)> = Vec::new();
        for (held, reuseaddr, what) in self.socks.drain(..) {
            let fd = match held {
                Held::Copy(fd) => fd,
                Held::Fd { pid, fd: n } => {
                    let pid = on_host(pid);
                    let at = match pidfds.iter().position(|(p, _)| *p == pid) {
                        Some(i) => i,
                        None => {
                            let p = rustix::process::Pid::from_raw(pid).ok_or_else(|| {
                                Error::invalid("pstree.img", format!("pid {pid}"))
                            })?;
                            let fd = rustix::process::pidfd_open(
                                p,
                                rustix::process::PidfdFlags::empty(),
                            )
                            .map_err(|e| {
                                Error::io(format!("opening a pidfd of {pid}"))(e.into())
                            })?;
                            pidfds.push((pid, fd));
                            pidfds.len() - 1
                        }
                    };
                    let pfd = &pidfds[at].1;
                    rustix::process::pidfd_getfd(pfd, n, rustix::process::PidfdGetfdFlags::empty())
                        .map_err(|e| {
                            Error::io(format!("taking fd {n} of process {pid} ({what})"))(e.into())
                        })?
                }
            };
            sk_sys::setsockopt_int(fd.as_fd(), libc::IPPROTO_TCP, TCP_REPAIR, 0)
                .map_err(Error::io(format!("turning TCP_REPAIR off on {what}")))?;
            sk_sys::setsockopt_int(
                fd.as_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                i32::from(reuseaddr),
            )
            .map_err(Error::io(format!("putting SO_REUSEADDR back on {what}")))?;
        }
        Ok(())
    }
}

/// A tcp-stream image.
struct Stream {
    e: pb::TcpStreamEntry,
    inq: Vec<u8>,
    outq: Vec<u8>,
}

fn load(img: &Images, ino: u32) -> Result<Stream> {
    let file = ImageFile::TcpStream(ino.into());
    let mut r = img.dir.reader(file)?;
    let e: pb::TcpStreamEntry = r.expect_next()?;
    if e.inq_len > MAX_QUEUE || e.outq_len > MAX_QUEUE {
        return Err(Error::invalid(
            file.name(),
            format!("queues of {} and {} bytes", e.inq_len, e.outq_len),
        ));
    }
    if e.unsq_len.is_none_or(|u| u > e.outq_len) {
        return Err(Error::invalid(file.name(), "no or a bad unsq_len"));
    }
    if e.opt_mask & TCPI_OPT_WSCALE != 0 && e.rcv_wscale.is_none() {
        return Err(Error::invalid(file.name(), "no rcv_wscale"));
    }
    if e.opt_mask & TCPI_OPT_TIMESTAMPS != 0 && e.timestamp.is_none() {
        return Err(Error::invalid(file.name(), "no timestamp"));
    }
    let inq = r.read_payload(u64::from(e.inq_len))?;
    let outq = r.read_payload(u64::from(e.outq_len))?;
    Ok(Stream { e, inq, outq })
}

/// Checks a connection's stream image without making anything.
pub fn check(img: &Images, e: &pb::InetSkEntry) -> Result<()> {
    load(img, e.ino).map(|_| ())
}

fn set(s: BorrowedFd<'_>, name: i32, v: i32, what: &str) -> Result<()> {
    sk_sys::setsockopt_int(s, libc::IPPROTO_TCP, name, v).map_err(Error::io(what.to_string()))
}

/// Makes `s` (a new TCP socket) the connection of `e`, in repair mode.
pub fn restore(img: &Images, s: BorrowedFd<'_>, e: &pb::InetSkEntry) -> Result<()> {
    let st = load(img, e.ino)?;
    let t = &st.e;
    let name = describe(e);
    let w = |what: &str| format!("{what} of {name}");
    set(s, TCP_REPAIR, 1, &w("turning TCP_REPAIR on"))?;
    sockets::prepare(s)?;
    let state = e.state;
    let mstate = bit(state);
    let src = sockaddr(e.family, e.src_port, &e.src_addr, 0);
    let dst = sockaddr(e.family, e.dst_port, &e.dst_addr, 0);
    sk_sys::bind(s, &src).map_err(Error::io(w("binding")))?;
    let mut inq_seq = t.inq_seq;
    let mut outq_seq = t.outq_seq;
    if mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN) != 0 {
        inq_seq = inq_seq.wrapping_sub(1);
    }
    if mstate & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN) != 0 {
        outq_seq = outq_seq.wrapping_sub(1);
    }
    set(
        s,
        TCP_REPAIR_QUEUE,
        TCP_RECV_QUEUE,
        &w("choosing the receive queue"),
    )?;
    set(
        s,
        TCP_QUEUE_SEQ,
        inq_seq.wrapping_sub(t.inq_len) as i32,
        &w("setting the receive sequence"),
    )?;
    let mut seq = outq_seq.wrapping_sub(t.outq_len);
    if state == SYN_SENT {
        seq = seq.wrapping_sub(1);
    }
    set(
        s,
        TCP_REPAIR_QUEUE,
        TCP_SEND_QUEUE,
        &w("choosing the send queue"),
    )?;
    set(
        s,
        TCP_QUEUE_SEQ,
        seq as i32,
        &w("setting the send sequence"),
    )?;
    if state == SYN_SENT {
        set(s, TCP_REPAIR, 0, &w("turning TCP_REPAIR off"))?;
    }
    if let Err(err) = sk_sys::connect(s, &dst)
        && err.raw_os_error() != Some(libc::EINPROGRESS)
    {
        return Err(Error::io(w("connecting"))(err));
    }
    if state == SYN_SENT {
        set(s, TCP_REPAIR, 1, &w("turning TCP_REPAIR on"))?;
    }
    let mut opts: Vec<(u32, u32)> = Vec::new();
    if t.opt_mask & TCPI_OPT_SACK != 0 {
        opts.push((TCPOPT_SACK_PERM, 0));
    }
    if t.opt_mask & TCPI_OPT_WSCALE != 0 {
        opts.push((
            TCPOPT_WINDOW,
            t.snd_wscale + (t.rcv_wscale.unwrap_or(0) << 16),
        ));
    }
    if t.opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        opts.push((TCPOPT_TIMESTAMP, 0));
    }
    opts.push((TCPOPT_MAXSEG, t.mss_clamp));
    if state != SYN_SENT {
        let bytes: Vec<u8> = opts
            .iter()
            .flat_map(|(c, v)| c.to_ne_bytes().into_iter().chain(v.to_ne_bytes()))
            .collect();
        sk_sys::setsockopt(s, libc::IPPROTO_TCP, TCP_REPAIR_OPTIONS, &bytes)
            .map_err(Error::io(w("setting the options (TCP_REPAIR_OPTIONS)")))?;
    }
    if t.opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        set(
            s,
            TCP_TIMESTAMP,
            t.timestamp.unwrap_or(0) as i32,
            &w("setting TCP_TIMESTAMP"),
        )?;
    }
    // The queues.
    if !st.inq.is_empty() {
        set(
            s,
            TCP_REPAIR_QUEUE,
            TCP_RECV_QUEUE,
            &w("choosing the receive queue"),
        )?;
        send_queue(s, &st.inq).map_err(Error::io(w("writing the receive queue")))?;
    }
    let unsent = t.unsq_len.unwrap_or(0) as usize;
    let sent = st.outq.len() - unsent.min(st.outq.len());
    if sent > 0 {
        set(
            s,
            TCP_REPAIR_QUEUE,
            TCP_SEND_QUEUE,
            &w("choosing the send queue"),
        )?;
        send_queue(s, &st.outq[..sent]).map_err(Error::io(w("writing the send queue")))?;
    }
    if sent < st.outq.len() {
        // Never sent: sent now for real.
        set(s, TCP_REPAIR, 0, &w("turning TCP_REPAIR off"))?;
        send_queue(s, &st.outq[sent..]).map_err(Error::io(w("sending the unsent queue")))?;
        set(s, TCP_REPAIR, 1, &w("turning TCP_REPAIR on"))?;
    }
    if let (Some(wl1), Some(wnd), Some(max), Some(rwnd), Some(rwup)) =
        (t.snd_wl1, t.snd_wnd, t.max_window, t.rcv_wnd, t.rcv_wup)
    {
        let (mut rwnd, mut rwup) = (rwnd, rwup);
        if mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN) != 0 {
            rwup = rwup.wrapping_sub(1);
            rwnd = rwnd.wrapping_add(1);
        }
        let bytes: Vec<u8> = [wl1, wnd, max, rwnd, rwup]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        sk_sys::setsockopt(s, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &bytes)
            .map_err(Error::io(w("setting the windows (TCP_REPAIR_WINDOW)")))?;
    }
    // FINs: ours with shutdown, the peer's by a packet to the socket.
    let fin = Fin {
        e,
        inq_seq,
        ack: outq_seq.wrapping_sub(t.outq_len),
        rcv_wnd: t.rcv_wnd.unwrap_or(0),
    };
    if mstate & SNDQ_FIRST_FIN != 0 {
        fin_in_send_queue(s, mstate & SNDQ_FIN_ACKED != 0, &name)?;
    }
    if mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN) != 0 {
        fin.send(FIN | ACK, &name)?;
    }
    if mstate & SNDQ_SECOND_FIN != 0 {
        fin_in_send_queue(s, mstate & SNDQ_FIN_ACKED != 0, &name)?;
    }
    if mstate & RCVQ_FIN_ACKED != 0 {
        inq_seq = inq_seq.wrapping_add(1);
    }
    if mstate & SNDQ_FIN_ACKED != 0 {
        let fin = Fin {
            inq_seq,
            ack: fin.ack.wrapping_add(1),
            ..fin
        };
        fin.send(ACK, &name)?;
    }
    Ok(())
}

/// Writes a queue in repair mode: the kernel takes a whole linear buffer
/// per write, so a large one goes in halves until it fits (libsoccr).
fn send_queue(s: BorrowedFd<'_>, buf: &[u8]) -> std::io::Result<()> {
    let mut off = 0;
    let mut chunk = buf.len();
    while off < buf.len() {
        let n = chunk.min(buf.len() - off);
        match rustix::net::send(s, &buf[off..off + n], rustix::net::SendFlags::empty()) {
            Ok(0) | Err(_) if chunk > 1024 => chunk /= 2,
            Ok(0) => return Err(std::io::Error::other("the queue takes no more")),
            Ok(k) => off += k,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A FIN of ours, restored into the send queue by `shutdown` (as sent
/// already when `acked`).
fn fin_in_send_queue(s: BorrowedFd<'_>, acked: bool, name: &str) -> Result<()> {
    if acked {
        set(
            s,
            TCP_REPAIR_QUEUE,
            TCP_SEND_QUEUE,
            &format!("choosing the send queue of {name}"),
        )?;
    }
    let r = sk_sys::shutdown(s, libc::SHUT_WR);
    if let Err(e) = r {
        log::warn!("shutting {name} down for its FIN: {e}");
    }
    if acked {
        set(
            s,
            TCP_REPAIR_QUEUE,
            TCP_NO_QUEUE,
            &format!("leaving the send queue of {name}"),
        )?;
    }
    Ok(())
}

const FIN: u8 = 0x01;
const ACK: u8 = 0x10;

/// A packet from the peer to the socket (libsoccr's `send_fin`).
struct Fin<'a> {
    e: &'a pb::InetSkEntry,
    inq_seq: u32,
    ack: u32,
    rcv_wnd: u32,
}

impl Fin<'_> {
    fn send(&self, flags: u8, name: &str) -> Result<()> {
        let e = self.e;
        let what = || format!("sending the peer's FIN to {name}");
        let bytes = |w: &[u32]| -> [u8; 16] {
            let mut b = [0u8; 16];
            for (i, x) in w.iter().take(4).enumerate() {
                b[4 * i..4 * i + 4].copy_from_slice(&x.to_ne_bytes());
            }
            b
        };
        let (local, remote) = (bytes(&e.src_addr), bytes(&e.dst_addr));
        let v6 = e.family == libc::AF_INET6 as u32;
        let mapped = v6 && remote[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        let ipv4 = !v6 || mapped;
        let (src, dst): (&[u8], &[u8]) = if !v6 {
            (&remote[..4], &local[..4])
        } else if mapped {
            (&remote[12..16], &local[12..16])
        } else {
            (&remote[..], &local[..])
        };
        let tcp = tcp_header(
            e.dst_port as u16,
            e.src_port as u16,
            self.inq_seq,
            self.ack,
            flags,
            self.rcv_wnd.min(0xffff) as u16,
            src,
            dst,
        );
        let (family, packet, to) = if ipv4 {
            let mut p = ipv4_header(src, dst, tcp.len());
            p.extend_from_slice(&tcp);
            (
                libc::AF_INET,
                p,
                sockaddr(
                    libc::AF_INET as u32,
                    0,
                    &[u32::from_ne_bytes(dst.try_into().expect("4 bytes"))],
                    0,
                ),
            )
        } else {
            let mut p = ipv6_header(src, dst, tcp.len());
            p.extend_from_slice(&tcp);
            let words: Vec<u32> = dst
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes(c.try_into().expect("4 bytes")))
                .collect();
            (
                libc::AF_INET6,
                p,
                sockaddr(libc::AF_INET6 as u32, 0, &words, 0),
            )
        };
        let raw =
            sk_sys::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW).map_err(Error::io(what()))?;
        sk_sys::setsockopt_int(
            raw.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            net_lock::MARK as i32,
        )
        .map_err(Error::io(what()))?;
        if !ipv4 {
            sk_sys::setsockopt_int(raw.as_fd(), libc::IPPROTO_IPV6, 36, 1)
                .map_err(Error::io(what()))?;
        }
        sk_sys::send_to(raw.as_fd(), &packet, &to).map_err(Error::io(what()))?;
        Ok(())
    }
}

fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for p in parts {
        for &b in p.iter() {
            match odd.take() {
                Some(h) => sum += u32::from(u16::from_be_bytes([h, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(h) = odd {
        sum += u32::from(u16::from_be_bytes([h, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[allow(clippy::too_many_arguments)]
fn tcp_header(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    src: &[u8],
    dst: &[u8],
) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&ack.to_be_bytes());
    h.push(5 << 4);
    h.push(flags);
    h.extend_from_slice(&win.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    let len = (h.len() as u32).to_be_bytes();
    let pseudo: Vec<u8> = if src.len() == 4 {
        let mut p = src.to_vec();
        p.extend_from_slice(dst);
        p.extend_from_slice(&[0, libc::IPPROTO_TCP as u8, len[2], len[3]]);
        p
    } else {
        let mut p = src.to_vec();
        p.extend_from_slice(dst);
        p.extend_from_slice(&len);
        p.extend_from_slice(&[0, 0, 0, libc::IPPROTO_TCP as u8]);
        p
    };
    let c = checksum(&[&pseudo, &h]);
    h[16..18].copy_from_slice(&c.to_be_bytes());
    h
}

fn ipv4_header(src: &[u8], dst: &[u8], payload: usize) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&242u16.to_be_bytes());
    h.extend_from_slice(&[0, 0, 64, libc::IPPROTO_TCP as u8, 0, 0]);
    h.extend_from_slice(src);
    h.extend_from_slice(dst);
    let c = checksum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

fn ipv6_header(src: &[u8], dst: &[u8], payload: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload as u16).to_be_bytes());
    h.extend_from_slice(&[libc::IPPROTO_TCP as u8, 64]);
    h.extend_from_slice(src);
    h.extend_from_slice(dst);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_fold_to_the_known_value() {
        // The IPv4 header of RFC 1071's usual example.
        let h = [
            0x45u8, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&h]), 0xb861);
        let ip = ipv4_header(&[127, 0, 0, 1], &[127, 0, 0, 1], 20);
        assert_eq!(checksum(&[&ip]), 0);
    }
}
