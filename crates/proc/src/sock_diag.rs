//! Sockets as the kernel describes them through the `sock_diag` netlink
//! families: `unix_diag`, `inet_diag` (TCP, UDP, UDP-Lite and raw, over
//! IPv4 and IPv6), `netlink_diag` and `packet_diag`.
//!
//! [`SockDiag`] asks for one whole family at a time (one dump request,
//! answered in as many datagrams as it takes) and hands each socket, found
//! by its inode, to the caller; the dump matches them to the task's fds.
//! Every answer goes through a pure parser of bytes ([`parse_messages`],
//! [`parse_unix`], [`parse_inet`], [`parse_netlink`], [`parse_packet`]),
//! tested on captured answers and fuzzed.
//!
//! Layouts (all host byte order but the inet ports and addresses, which
//! are the network's):
//! - a datagram holds `nlmsghdr`s (16 bytes: length, type, flags, seq,
//!   port), each padded to 4 bytes; `NLMSG_DONE` ends a dump,
//!   `NLMSG_ERROR` carries an errno;
//! - each answer is the family's fixed message, then attributes
//!   (`nlattr`: u16 length, u16 type, the payload padded to 4 bytes).

use std::borrow::Cow;
use std::io;
use std::os::fd::OwnedFd;

use crate::error::{Error, ParseError, ParseResult, Result};

/// `SOCK_DIAG_BY_FAMILY`, the message type of every request.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ROOT: u16 = 0x100;
const NLM_F_MATCH: u16 = 0x200;
const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
const NLMSG_HDRLEN: usize = 16;
/// `NLA_TYPE_MASK`: the bits of an attribute's type that name it.
const NLA_TYPE_MASK: u16 = 0x3fff;

const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_VFS: u32 = 0x2;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UDIAG_SHOW_ICONS: u32 = 0x8;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UDIAG_SHOW_UID: u32 = 0x40;

const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
const UNIX_DIAG_UID: u16 = 7;

const INET_DIAG_SHUTDOWN: u16 = 8;
const INET_DIAG_PROTOCOL: u16 = 10;
const INET_DIAG_SKV6ONLY: u16 = 11;

const NDIAG_PROTO_ALL: u8 = 0xff;
const NDIAG_SHOW_GROUPS: u32 = 0x2;
const NETLINK_DIAG_GROUPS: u16 = 1;

const PACKET_SHOW_INFO: u32 = 0x1;
const PACKET_SHOW_MCLIST: u32 = 0x2;
const PACKET_SHOW_RING_CFG: u32 = 0x4;
const PACKET_SHOW_FANOUT: u32 = 0x8;
const PACKET_DIAG_INFO: u16 = 0;
const PACKET_DIAG_MCLIST: u16 = 1;
const PACKET_DIAG_RX_RING: u16 = 2;
const PACKET_DIAG_TX_RING: u16 = 3;
const PACKET_DIAG_FANOUT: u16 = 4;

/// Every TCP state, as a mask of `1 << state`.
pub const ALL_STATES: u32 = u32::MAX;

/// A unix socket (`unix_diag_msg` and its attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixSock {
    pub ino: u32,
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub kind: u8,
    /// A TCP state number: `TCP_LISTEN`, `TCP_ESTABLISHED`, `TCP_CLOSE`.
    pub state: u8,
    /// The address it is bound to, as bind took it: a path, or an
    /// abstract name (a first byte 0). `None` when unbound.
    pub name: Option<Vec<u8>>,
    /// The inode and device of the socket's file, for a path.
    pub vfs: Option<(u32, u32)>,
    /// The inode of the socket it is connected to; 0 for none.
    pub peer: u32,
    /// A listening socket: the peers (the connecting sockets) of the
    /// connections queued and not accepted yet, in queue order; 0 for a
    /// connecting socket already closed.
    pub icons: Vec<u32>,
    /// A listening socket: the connections queued; otherwise the bytes
    /// queued to be read.
    pub rqueue: u32,
    /// A listening socket: its backlog; otherwise the bytes sent and not
    /// read yet by the peer.
    pub wqueue: u32,
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2).
    pub shutdown: u8,
    pub uid: Option<u32>,
}

/// An inet socket (`inet_diag_msg` and its attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InetSock {
    pub family: u8,
    pub state: u8,
    pub timer: u8,
    pub retrans: u8,
    /// Ports, in host byte order.
    pub sport: u16,
    pub dport: u16,
    /// Addresses as the kernel keeps them (network order), read as four
    /// native u32 words (an IPv4 address is the first): how CRIU's images
    /// hold them.
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub ifindex: u32,
    pub cookie: u64,
    pub expires: u32,
    /// A listening socket: connections waiting to be accepted; otherwise
    /// bytes queued to be read.
    pub rqueue: u32,
    /// A listening socket: its backlog; otherwise bytes not acknowledged
    /// yet (TCP) or queued to be sent (UDP).
    pub wqueue: u32,
    pub uid: u32,
    pub ino: u32,
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2), when the kernel tells.
    pub shutdown: Option<u8>,
    /// The protocol, when the kernel tells (raw sockets, UDP-Lite).
    pub protocol: Option<u8>,
    /// IPV6_V6ONLY, for IPv6 sockets.
    pub v6only: Option<bool>,
}

/// A netlink socket (`netlink_diag_msg` and its groups).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetlinkSock {
    pub kind: u8,
    pub protocol: u8,
    /// `NETLINK_UNCONNECTED` (0) or `NETLINK_CONNECTED` (1).
    pub state: u8,
    pub portid: u32,
    pub dst_portid: u32,
    pub dst_group: u32,
    pub ino: u32,
    /// The multicast groups it listens to, as the kernel's bitmap (whole
    /// longs, lowest group first).
    pub groups: Option<Vec<u8>>,
}

/// `packet_diag_info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketInfo {
    pub index: u32,
    pub version: u32,
    pub reserve: u32,
    pub copy_thresh: u32,
    pub tstamp: u32,
    /// `PDI_*`: running, auxdata, origdev, vnet header, loss.
    pub flags: u32,
}

/// `packet_diag_mclist`: one membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketMc {
    pub index: u32,
    pub count: u32,
    pub kind: u16,
    pub addr: Vec<u8>,
}

/// `packet_diag_ring`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketRing {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
    pub retire_tmo: u32,
    pub sizeof_priv: u32,
    pub features: u32,
}

/// A packet socket (`packet_diag_msg` and its attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketSock {
    pub kind: u8,
    /// The protocol as `socket(2)` took it (network byte order).
    pub protocol: u16,
    pub ino: u32,
    pub info: Option<PacketInfo>,
    pub mclist: Vec<PacketMc>,
    pub rx_ring: Option<PacketRing>,
    pub tx_ring: Option<PacketRing>,
    /// `id | type << 16 | flags << 24`, when it is in a fanout group.
    pub fanout: Option<u32>,
}

/// One netlink message of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// The messages of one datagram, in order. Stops at the first that does
/// not fit.
pub fn parse_messages(buf: &[u8]) -> ParseResult<Vec<Message<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest.len() < NLMSG_HDRLEN {
            return Err(ParseError::new(at, "a netlink header cut short"));
        }
        let len = u32_at(rest, 0) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(ParseError::new(
                at,
                format!(
                    "a netlink message of {len} bytes where {} are left",
                    rest.len()
                ),
            ));
        }
        out.push(Message {
            kind: u16_at(rest, 4),
            flags: u16_at(rest, 6),
            seq: u32_at(rest, 8),
            payload: &rest[NLMSG_HDRLEN..len],
        });
        at += align4(len).min(rest.len());
    }
    Ok(out)
}

/// The attributes after a family's fixed message: `(type, payload)`.
fn attrs(buf: &[u8], base: usize) -> ParseResult<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        let rest = &buf[at..];
        let len = usize::from(u16_at(rest, 0));
        if len < 4 || len > rest.len() {
            return Err(ParseError::new(
                base + at,
                format!("an attribute of {len} bytes where {} are left", rest.len()),
            ));
        }
        out.push((u16_at(rest, 2) & NLA_TYPE_MASK, &rest[4..len]));
        at += align4(len);
    }
    Ok(out)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The fixed part of a family's message, at least `n` bytes.
fn fixed<'a>(msg: &'a [u8], n: usize, what: &'static str) -> ParseResult<&'a [u8]> {
    if msg.len() < n {
        return Err(ParseError::new(
            msg.len(),
            format!("{what} of {} bytes, short of {n}", msg.len()),
        ));
    }
    Ok(&msg[..n])
}

/// An attribute's payload as a u32 (or u8), checked for size.
fn attr_u32(p: &[u8], at: usize, what: &'static str) -> ParseResult<u32> {
    if p.len() < 4 {
        return Err(ParseError::new(at, format!("{what} shorter than 4 bytes")));
    }
    Ok(u32_at(p, 0))
}

fn attr_u8(p: &[u8], at: usize, what: &'static str) -> ParseResult<u8> {
    p.first()
        .copied()
        .ok_or_else(|| ParseError::new(at, format!("{what} is empty")))
}

/// `unix_diag_msg` (16 bytes) and its attributes.
pub fn parse_unix(msg: &[u8]) -> ParseResult<UnixSock> {
    const LEN: usize = 16;
    let m = fixed(msg, LEN, "a unix_diag message")?;
    let mut s = UnixSock {
        kind: m[1],
        state: m[2],
        ino: u32_at(m, 4),
        ..UnixSock::default()
    };
    for (kind, p) in attrs(&msg[LEN..], LEN)? {
        match kind {
            UNIX_DIAG_NAME => s.name = Some(p.to_vec()),
            UNIX_DIAG_VFS => {
                if p.len() < 8 {
                    return Err(ParseError::new(LEN, "a unix_diag_vfs shorter than 8 bytes"));
                }
                s.vfs = Some((u32_at(p, 0), u32_at(p, 4)));
            }
            UNIX_DIAG_PEER => s.peer = attr_u32(p, LEN, "a unix peer")?,
            UNIX_DIAG_ICONS => {
                s.icons = p.chunks_exact(4).map(|c| u32_at(c, 0)).collect();
            }
            UNIX_DIAG_RQLEN => {
                if p.len() < 8 {
                    return Err(ParseError::new(
                        LEN,
                        "a unix_diag_rqlen shorter than 8 bytes",
                    ));
                }
                s.rqueue = u32_at(p, 0);
                s.wqueue = u32_at(p, 4);
            }
            UNIX_DIAG_SHUTDOWN => s.shutdown = attr_u8(p, LEN, "a unix shutdown")?,
            UNIX_DIAG_UID => s.uid = Some(attr_u32(p, LEN, "a unix uid")?),
            _ => {}
        }
    }
    Ok(s)
}

/// `inet_diag_msg` (72 bytes) and its attributes.
pub fn parse_inet(msg: &[u8]) -> ParseResult<InetSock> {
    const LEN: usize = 72;
    let m = fixed(msg, LEN, "an inet_diag message")?;
    let words = |at: usize| {
        let mut a = [0u32; 4];
        for (i, w) in a.iter_mut().enumerate() {
            *w = u32_at(m, at + 4 * i);
        }
        a
    };
    let mut s = InetSock {
        family: m[0],
        state: m[1],
        timer: m[2],
        retrans: m[3],
        sport: u16::from_be_bytes([m[4], m[5]]),
        dport: u16::from_be_bytes([m[6], m[7]]),
        src: words(8),
        dst: words(24),
        ifindex: u32_at(m, 40),
        cookie: u64::from(u32_at(m, 44)) | u64::from(u32_at(m, 48)) << 32,
        expires: u32_at(m, 52),
        rqueue: u32_at(m, 56),
        wqueue: u32_at(m, 60),
        uid: u32_at(m, 64),
        ino: u32_at(m, 68),
        ..InetSock::default()
    };
    for (kind, p) in attrs(&msg[LEN..], LEN)? {
        match kind {
            INET_DIAG_SHUTDOWN => s.shutdown = Some(attr_u8(p, LEN, "an inet shutdown")?),
            INET_DIAG_PROTOCOL => s.protocol = Some(attr_u8(p, LEN, "an inet protocol")?),
            INET_DIAG_SKV6ONLY => s.v6only = Some(attr_u8(p, LEN, "an IPv6-only flag")? != 0),
            _ => {}
        }
    }
    Ok(s)
}

/// `netlink_diag_msg` (28 bytes) and its attributes.
pub fn parse_netlink(msg: &[u8]) -> ParseResult<NetlinkSock> {
    const LEN: usize = 28;
    let m = fixed(msg, LEN, "a netlink_diag message")?;
    let mut s = NetlinkSock {
        kind: m[1],
        protocol: m[2],
        state: m[3],
        portid: u32_at(m, 4),
        dst_portid: u32_at(m, 8),
        dst_group: u32_at(m, 12),
        ino: u32_at(m, 16),
        groups: None,
    };
    for (kind, p) in attrs(&msg[LEN..], LEN)? {
        if kind == NETLINK_DIAG_GROUPS {
            s.groups = Some(p.to_vec());
        }
    }
    Ok(s)
}

fn ring(p: &[u8], at: usize) -> ParseResult<PacketRing> {
    if p.len() < 28 {
        return Err(ParseError::new(
            at,
            "a packet_diag_ring shorter than 28 bytes",
        ));
    }
    Ok(PacketRing {
        block_size: u32_at(p, 0),
        block_nr: u32_at(p, 4),
        frame_size: u32_at(p, 8),
        frame_nr: u32_at(p, 12),
        retire_tmo: u32_at(p, 16),
        sizeof_priv: u32_at(p, 20),
        features: u32_at(p, 24),
    })
}

/// `packet_diag_msg` (16 bytes) and its attributes.
pub fn parse_packet(msg: &[u8]) -> ParseResult<PacketSock> {
    const LEN: usize = 16;
    const MC: usize = 44;
    let m = fixed(msg, LEN, "a packet_diag message")?;
    let mut s = PacketSock {
        kind: m[1],
        protocol: u16_at(m, 2).to_be(),
        ino: u32_at(m, 4),
        ..PacketSock::default()
    };
    for (kind, p) in attrs(&msg[LEN..], LEN)? {
        match kind {
            PACKET_DIAG_INFO => {
                if p.len() < 24 {
                    return Err(ParseError::new(
                        LEN,
                        "a packet_diag_info shorter than 24 bytes",
                    ));
                }
                s.info = Some(PacketInfo {
                    index: u32_at(p, 0),
                    version: u32_at(p, 4),
                    reserve: u32_at(p, 8),
                    copy_thresh: u32_at(p, 12),
                    tstamp: u32_at(p, 16),
                    flags: u32_at(p, 20),
                });
            }
            PACKET_DIAG_MCLIST => {
                for c in p.chunks_exact(MC) {
                    let alen = usize::from(u16_at(c, 10)).min(32);
                    s.mclist.push(PacketMc {
                        index: u32_at(c, 0),
                        count: u32_at(c, 4),
                        kind: u16_at(c, 8),
                        addr: c[12..12 + alen].to_vec(),
                    });
                }
            }
            PACKET_DIAG_RX_RING => s.rx_ring = Some(ring(p, LEN)?),
            PACKET_DIAG_TX_RING => s.tx_ring = Some(ring(p, LEN)?),
            PACKET_DIAG_FANOUT => s.fanout = Some(attr_u32(p, LEN, "a packet fanout")?),
            _ => {}
        }
    }
    Ok(s)
}

/// A `NETLINK_SOCK_DIAG` socket, to ask the kernel about sockets.
#[derive(Debug)]
pub struct SockDiag {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

/// Room for one answer datagram: the kernel fills up to about a page per
/// message batch; 64 KiB takes any of them whole.
const ANSWER_ROOM: usize = 64 * 1024;

impl SockDiag {
    /// Opens the netlink socket.
    pub fn open() -> Result<SockDiag> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, netlink};
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(netlink::SOCK_DIAG),
        )
        .map_err(|e| diag_error("opening a sock_diag netlink socket", e.into()))?;
        Ok(SockDiag {
            fd,
            buf: vec![0; ANSWER_ROOM],
            seq: 0,
        })
    }

    /// Every unix socket of rcriu's network namespace.
    pub fn unix(&mut self) -> Result<Vec<UnixSock>> {
        let show = UDIAG_SHOW_NAME
            | UDIAG_SHOW_VFS
            | UDIAG_SHOW_PEER
            | UDIAG_SHOW_ICONS
            | UDIAG_SHOW_RQLEN
            | UDIAG_SHOW_UID;
        // unix_diag_req: family, protocol, pad, states, ino, show, cookie.
        let mut req = Vec::with_capacity(24);
        req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
        req.extend_from_slice(&u32::MAX.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(&show.to_ne_bytes());
        req.extend_from_slice(&[0xff; 8]);
        self.dump(&req, "unix sockets", parse_unix)
    }

    /// Every inet socket of `family` (AF_INET, AF_INET6) and `protocol`
    /// (IPPROTO_TCP, _UDP, _UDPLITE, _RAW) in one of `states` (a mask of
    /// `1 << state`).
    pub fn inet(&mut self, family: u8, protocol: u8, states: u32) -> Result<Vec<InetSock>> {
        // inet_diag_req_v2: family, protocol, ext, pad (a raw socket's
        // protocol), states, then a zeroed inet_diag_sockid (48 bytes).
        let raw_protocol = if i32::from(protocol) == libc::IPPROTO_RAW {
            protocol
        } else {
            0
        };
        let mut req = Vec::with_capacity(56);
        req.extend_from_slice(&[family, protocol, 0, raw_protocol]);
        req.extend_from_slice(&states.to_ne_bytes());
        req.extend_from_slice(&[0; 40]);
        req.extend_from_slice(&[0xff; 8]);
        self.dump(&req, "inet sockets", parse_inet)
    }

    /// Every netlink socket of rcriu's network namespace.
    pub fn netlink(&mut self) -> Result<Vec<NetlinkSock>> {
        // netlink_diag_req: family, protocol, pad, ino, show, cookie.
        let mut req = Vec::with_capacity(20);
        req.extend_from_slice(&[libc::AF_NETLINK as u8, NDIAG_PROTO_ALL, 0, 0]);
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(&NDIAG_SHOW_GROUPS.to_ne_bytes());
        req.extend_from_slice(&[0xff; 8]);
        self.dump(&req, "netlink sockets", parse_netlink)
    }

    /// Every packet socket of rcriu's network namespace.
    pub fn packet(&mut self) -> Result<Vec<PacketSock>> {
        let show =
            PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_FANOUT | PACKET_SHOW_RING_CFG;
        // packet_diag_req: family, protocol, pad, ino, show, cookie.
        let mut req = Vec::with_capacity(20);
        req.extend_from_slice(&[libc::AF_PACKET as u8, 0, 0, 0]);
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(&show.to_ne_bytes());
        req.extend_from_slice(&[0xff; 8]);
        self.dump(&req, "packet sockets", parse_packet)
    }

    /// Sends a dump request whose family part is `body` and parses every
    /// answer with `parse`, up to `NLMSG_DONE`.
    fn dump<T>(
        &mut self,
        body: &[u8],
        what: &'static str,
        parse: fn(&[u8]) -> ParseResult<T>,
    ) -> Result<Vec<T>> {
        use rustix::net::{RecvFlags, SendFlags, netlink::SocketAddrNetlink};
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len = (NLMSG_HDRLEN + body.len()) as u32;
        let mut req = Vec::with_capacity(len as usize);
        req.extend_from_slice(&len.to_ne_bytes());
        req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(body);
        let kernel = SocketAddrNetlink::new(0, 0);
        rustix::net::sendto(&self.fd, &req, SendFlags::empty(), &kernel)
            .map_err(|e| diag_error(format!("asking sock_diag for {what}"), e.into()))?;
        let mut out = Vec::new();
        loop {
            let (n, full) = rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::empty())
                .map_err(|e| diag_error(format!("reading sock_diag's {what}"), e.into()))?;
            if full > n {
                return Err(diag_error(
                    format!("reading sock_diag's {what}"),
                    io::Error::other(format!("an answer of {full} bytes cut to {n}")),
                ));
            }
            let parse_err = |source| Error::SockDiagParse { what, source };
            let msgs = parse_messages(&self.buf[..n]).map_err(parse_err)?;
            if msgs.is_empty() {
                return Err(diag_error(
                    format!("reading sock_diag's {what}"),
                    io::Error::other("an empty answer"),
                ));
            }
            for m in msgs {
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let errno = m
                            .payload
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if errno == 0 {
                            // An acknowledgement: nothing more follows.
                            return Ok(out);
                        }
                        return Err(diag_error(
                            format!("asking sock_diag for {what}"),
                            io::Error::from_raw_os_error(-errno),
                        ));
                    }
                    SOCK_DIAG_BY_FAMILY => out.push(parse(m.payload).map_err(parse_err)?),
                    _ => {}
                }
            }
        }
    }
}

fn diag_error(what: impl Into<Cow<'static, str>>, source: io::Error) -> Error {
    Error::SockDiag {
        what: what.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn a_unix_answer_is_read_whole() {
        let mut m = vec![libc::AF_UNIX as u8, libc::SOCK_STREAM as u8, 10, 0];
        m.extend_from_slice(&4242u32.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend(attr(UNIX_DIAG_NAME, b"\0abstract"));
        m.extend(attr(UNIX_DIAG_PEER, &7u32.to_ne_bytes()));
        let mut icons = 11u32.to_ne_bytes().to_vec();
        icons.extend_from_slice(&12u32.to_ne_bytes());
        m.extend(attr(UNIX_DIAG_ICONS, &icons));
        let mut rq = 2u32.to_ne_bytes().to_vec();
        rq.extend_from_slice(&128u32.to_ne_bytes());
        m.extend(attr(UNIX_DIAG_RQLEN, &rq));
        m.extend(attr(UNIX_DIAG_SHUTDOWN, &[3]));
        let s = parse_unix(&m).unwrap();
        assert_eq!(s.ino, 4242);
        assert_eq!(s.state, 10);
        assert_eq!(s.name.as_deref(), Some(&b"\0abstract"[..]));
        assert_eq!((s.peer, s.icons.as_slice()), (7, &[11, 12][..]));
        assert_eq!((s.rqueue, s.wqueue, s.shutdown), (2, 128, 3));
        // Cut anywhere, it fails without panicking.
        for cut in 0..m.len() {
            let _ = parse_unix(&m[..cut]);
        }
        assert!(parse_unix(&m[..10]).is_err());
    }

    #[test]
    fn an_inet_answer_keeps_network_order_as_criu_does() {
        let mut m = vec![libc::AF_INET as u8, 10, 0, 0];
        m.extend_from_slice(&8080u16.to_be_bytes());
        m.extend_from_slice(&0u16.to_be_bytes());
        m.extend_from_slice(&[127, 0, 0, 1]);
        m.extend_from_slice(&[0; 12 + 16 + 4 + 8]);
        m.extend_from_slice(&[0; 12]);
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&99u32.to_ne_bytes());
        m.extend(attr(INET_DIAG_SHUTDOWN, &[1]));
        let s = parse_inet(&m).unwrap();
        assert_eq!((s.sport, s.state, s.ino), (8080, 10, 99));
        assert_eq!(s.src[0], u32::from_ne_bytes([127, 0, 0, 1]));
        assert_eq!(s.shutdown, Some(1));
    }

    #[test]
    fn messages_are_split_and_bad_lengths_refused() {
        let mut b = Vec::new();
        for k in [SOCK_DIAG_BY_FAMILY, NLMSG_DONE] {
            b.extend_from_slice(&20u32.to_ne_bytes());
            b.extend_from_slice(&k.to_ne_bytes());
            b.extend_from_slice(&2u16.to_ne_bytes());
            b.extend_from_slice(&1u32.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(&[1, 2, 3, 4]);
        }
        let m = parse_messages(&b).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].kind, m[1].kind), (SOCK_DIAG_BY_FAMILY, NLMSG_DONE));
        assert_eq!(m[0].payload, &[1, 2, 3, 4]);
        b[0] = 200;
        assert!(parse_messages(&b).is_err());
        b[0] = 3;
        assert!(parse_messages(&b).is_err());
    }

    #[test]
    fn this_process_sees_its_own_sockets() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::os::unix::fs::MetadataExt;
        let ino_a = std::fs::metadata(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&a)
        ))
        .unwrap()
        .ino() as u32;
        let ino_b = std::fs::metadata(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&b)
        ))
        .unwrap()
        .ino() as u32;
        std::io::Write::write_all(&mut &a, b"hello").unwrap();
        let mut d = SockDiag::open().unwrap();
        let all = d.unix().unwrap();
        let sa = all.iter().find(|s| s.ino == ino_a).expect("a is listed");
        let sb = all.iter().find(|s| s.ino == ino_b).expect("b is listed");
        assert_eq!((sa.peer, sb.peer), (ino_b, ino_a));
        assert_eq!(sb.rqueue, 5);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let tcp = d
            .inet(libc::AF_INET as u8, libc::IPPROTO_TCP as u8, ALL_STATES)
            .unwrap();
        assert!(tcp.iter().any(|s| s.sport == port && s.state == 10));
        d.netlink().unwrap();
    }

    /// The fuzz seeds (answers captured on a live system) are read whole
    /// by their family's parser, and every truncation and single-byte
    /// change of them is refused or read without a panic.
    #[test]
    fn the_fuzz_seeds_are_read_and_their_mutations_never_panic() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/sock_diag");
        let mut read = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let buf = std::fs::read(&path).unwrap();
            let msgs = parse_messages(&buf).unwrap();
            for m in msgs.iter().filter(|m| m.kind == SOCK_DIAG_BY_FAMILY) {
                let ok = if name.starts_with("unix") {
                    parse_unix(m.payload).is_ok()
                } else if name.starts_with("netlink") {
                    parse_netlink(m.payload).is_ok()
                } else if name.starts_with("packet") {
                    parse_packet(m.payload).is_ok()
                } else {
                    parse_inet(m.payload).is_ok()
                };
                assert!(ok, "{name}: a message not read");
                read += 1;
            }
            for at in 0..buf.len() {
                let _ = parse_messages(&buf[..at]);
                for flip in [0u8, 0x7f, 0xff] {
                    let mut t = buf.clone();
                    t[at] = flip;
                    if let Ok(msgs) = parse_messages(&t) {
                        for m in msgs {
                            let _ = parse_unix(m.payload);
                            let _ = parse_inet(m.payload);
                            let _ = parse_netlink(m.payload);
                            let _ = parse_packet(m.payload);
                        }
                    }
                }
            }
        }
        assert!(read >= 4, "only {read} messages in the seeds");
    }
}
