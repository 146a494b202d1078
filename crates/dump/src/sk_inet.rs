//! Inet sockets (TCP, UDP, UDP-Lite, raw and ping sockets over IPv4 and
//! IPv6): an `inet_sk_entry` in files.img per socket, as CRIU 4.2 writes
//! it, with its addresses, state, options (socket, IP, raw and TCP) and
//! shutdown.
//!
//! What is refused, as CRIU refuses it: a connected TCP socket without
//! `--tcp-established` or `--tcp-close`; connections waiting to be
//! accepted on a listening socket without `--skip-in-flight`; a corked
//! UDP socket; states a restore cannot make (SYN_RECV, TIME_WAIT); MPTCP
//! and other protocols. A connected TCP socket is dumped through
//! TCP_REPAIR ([`tcp_stream`](crate::tcp_stream)). As CRIU, datagrams
//! queued in a UDP socket are not carried (UDP may lose them); a warning
//! says how many bytes.

use std::os::fd::AsFd;

use rcriu_images::pb;
use rcriu_proc::Pid;
use rcriu_proc::sock_diag::InetSock;

use crate::files::{Files, OpenFd};
use crate::sockets::{self, what};
use crate::{Error, Result, sk_sys, tcp_stream};

pub const TCP_ESTABLISHED: u32 = 1;
pub const TCP_SYN_SENT: u32 = 2;
pub const TCP_FIN_WAIT1: u32 = 4;
pub const TCP_FIN_WAIT2: u32 = 5;
pub const TCP_CLOSE: u32 = 7;
pub const TCP_CLOSE_WAIT: u32 = 8;
pub const TCP_LAST_ACK: u32 = 9;
pub const TCP_LISTEN: u32 = 10;
pub const TCP_CLOSING: u32 = 11;

const IPPROTO_MPTCP: i32 = 262;
const IP_NODEFRAG: i32 = 22;
const IPV6_HDRINCL: i32 = 36;
const IPV6_FREEBIND: i32 = 78;
const ICMP_FILTER: i32 = 1;
const ICMPV6_FILTER: i32 = 1;
const SOL_ICMPV6: i32 = 58;
const SOL_RAW: i32 = 255;
const UDP_CORK: i32 = 1;
const SO_PEERNAME: i32 = 28;

/// What the dump knows of an inet socket: sock_diag's description, or
/// for a socket it does not list (unbound, closed, ping sockets) what the
/// socket itself tells.
#[derive(Debug, Clone, Default)]
struct Desc {
    state: u32,
    sport: u16,
    dport: u16,
    src: [u32; 4],
    dst: [u32; 4],
    rqueue: u32,
    wqueue: u32,
    shutdown: u8,
}

impl From<&InetSock> for Desc {
    fn from(s: &InetSock) -> Desc {
        Desc {
            state: u32::from(s.state),
            sport: s.sport,
            dport: s.dport,
            src: s.src,
            dst: s.dst,
            rqueue: s.rqueue,
            wqueue: s.wqueue,
            shutdown: s.shutdown.unwrap_or(0),
        }
    }
}

/// Dumps the inet socket (of `family`) open as `f`, as file `id`.
pub fn dump(
    files: &mut Files,
    f: &OpenFd,
    id: u32,
    fown: pb::FownEntry,
    family: i32,
) -> Result<()> {
    let pid = files.pid();
    let fd = f.file.as_fd();
    let int = |name, what| {
        sk_sys::getsockopt_int(fd, libc::SOL_SOCKET, name).map_err(Error::sys(what, pid))
    };
    let proto = int(
        libc::SO_PROTOCOL,
        "reading a socket's protocol (SO_PROTOCOL)",
    )?;
    let kind = int(libc::SO_TYPE, "reading a socket's type (SO_TYPE)")?;
    if kind != libc::SOCK_RAW
        && ![
            0,
            libc::IPPROTO_TCP,
            libc::IPPROTO_UDP,
            libc::IPPROTO_UDPLITE,
            libc::IPPROTO_ICMP,
            libc::IPPROTO_ICMPV6,
        ]
        .contains(&proto)
    {
        let hint = if proto == IPPROTO_MPTCP {
            " (for a Go program, GODEBUG=multipathtcp=0 turns it off)"
        } else {
            ""
        };
        return Err(Error::unsupported(
            pid,
            format!(
                "{}: an {} socket of protocol {}{hint}",
                what(f),
                sockets::family_name(family),
                proto_name(proto)
            ),
        ));
    }
    let ino = f.info.ino as u32;
    let diag_proto = if kind == libc::SOCK_RAW {
        libc::IPPROTO_RAW
    } else {
        proto
    };
    let listed =
        if [libc::IPPROTO_ICMP, libc::IPPROTO_ICMPV6].contains(&proto) && kind != libc::SOCK_RAW {
            None
        } else {
            files
                .sockets
                .inet(pid, family as u8, diag_proto as u8)?
                .get(&ino)
                .map(Desc::from)
        };
    let sk = match listed {
        Some(d) => d,
        None => unlisted(pid, f, family, proto, kind)?,
    };
    if kind != libc::SOCK_RAW
        && (proto == libc::IPPROTO_UDP || proto == libc::IPPROTO_UDPLITE)
        && sk_sys::getsockopt_int(fd, libc::IPPROTO_UDP, UDP_CORK).unwrap_or(0) != 0
    {
        return Err(Error::unsupported(
            pid,
            format!("{}: a corked UDP socket (UDP_CORK)", what(f)),
        ));
    }
    check(files, f, kind, &sk)?;
    let empty_ns = files.sockets.net().is_some_and(|n| n.empty);
    let closed_on_restore = proto == libc::IPPROTO_TCP && files.sockets.opts.tcp_close;
    if empty_ns && sk.dport != 0 && !closed_on_restore {
        // Its `lo` comes back down (as CRIU 4.2 leaves it): connecting
        // again, even over loopback, meets "network is unreachable".
        return Err(Error::unsupported(
            pid,
            format!(
                "{}: an {} socket connected to {} port {}, in the container's network \
                 namespace, which the restore makes again empty with lo down (--empty-ns net)",
                what(f),
                sockets::family_name(family),
                address(family, &sk.dst),
                sk.dport
            ),
        ));
    }
    if empty_ns && sk.sport != 0 {
        let addr = address(family, &sk.src);
        if !addr.is_unspecified() && !addr.is_loopback() {
            return Err(Error::unsupported(
                pid,
                format!(
                    "{}: an {} socket bound to {addr}, an address the container's network \
                     namespace, made again empty (--empty-ns net), will not have",
                    what(f),
                    sockets::family_name(family),
                ),
            ));
        }
    }

    let v6 = family == libc::AF_INET6;
    let words = if v6 { 4 } else { 1 };
    let mut e = pb::InetSkEntry {
        id,
        ino,
        family: family as u32,
        r#type: kind as u32,
        proto: proto as u32,
        state: sk.state,
        src_port: u32::from(sk.sport),
        dst_port: u32::from(sk.dport),
        flags: f.flags(),
        backlog: sk.wqueue,
        src_addr: sk.src[..words].to_vec(),
        dst_addr: sk.dst[..words].to_vec(),
        fown,
        opts: pb::SkOptsEntry::default(),
        v6only: None,
        ip_opts: None,
        ifname: None,
        ns_id: Some(files.sockets.ns_id()),
        shutdown: None,
        tcp_opts: None,
    };
    if v6 {
        e.v6only = Some(
            sk_sys::getsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)
                .map_err(Error::sys("reading a socket's IPV6_V6ONLY", pid))?
                != 0,
        );
        if sk.sport != 0 && needs_scope_id(&sk.src) {
            let mut dev = [0u8; libc::IFNAMSIZ];
            let n = sk_sys::getsockopt(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &mut dev)
                .map_err(Error::sys("reading a socket's bound device", pid))?;
            let name = dev[..n.min(dev.len())]
                .split(|&b| b == 0)
                .next()
                .unwrap_or_default();
            if name.is_empty() {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "{}: an IPv6 socket bound to a link-local address with no device",
                        what(f)
                    ),
                ));
            }
            e.ifname = Some(name.to_vec());
        }
    }
    e.ip_opts = Some(ip_opts(pid, f, family, kind, proto)?);
    e.opts = sockets::opts(pid, f, family)?;
    match proto {
        libc::IPPROTO_TCP if kind != libc::SOCK_RAW => {
            e.shutdown = sockets::shutdown(sk.shutdown);
            e.tcp_opts = Some(tcp_opts(pid, f)?);
            if sk.dport != 0 && !files.sockets.opts.tcp_close {
                // Its state and queues, through TCP_REPAIR, once every
                // connection of the dump is locked (crate::tcp_stream).
                let at = files.entries.len();
                let held = if f.fd >= 0 {
                    tcp_stream::Held::Task(pid, f.fd)
                } else {
                    let dup = f
                        .file
                        .try_clone()
                        .map_err(Error::file(pid, format!("socket:[{ino}]")))?;
                    tcp_stream::Held::Copy(dup.into())
                };
                files.sockets.tcp.add(tcp_stream::Pending {
                    entry: at,
                    ino,
                    family,
                    src: sk.src,
                    sport: sk.sport,
                    dst: sk.dst,
                    dport: sk.dport,
                    reuseaddr: e.opts.reuseaddr.unwrap_or(false),
                    held,
                    what: what(f),
                });
            }
        }
        libc::IPPROTO_TCP => {
            e.shutdown = sockets::shutdown(sk.shutdown);
        }
        libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE => e.shutdown = sockets::shutdown(sk.shutdown),
        _ => {}
    }
    files.entries.push(pb::FileEntry {
        r#type: pb::FdTypes::Inetsk as i32,
        id,
        isk: Some(Box::new(e)),
        ..Default::default()
    });
    Ok(())
}

/// An address of sock_diag's (network order words) as an IP address;
/// an IPv4 one mapped into IPv6 as the IPv4 one.
fn address(family: i32, words: &[u32; 4]) -> std::net::IpAddr {
    let mut b = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    if family == libc::AF_INET {
        return std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).into();
    }
    let v6 = std::net::Ipv6Addr::from(b);
    match v6.to_ipv4_mapped() {
        Some(v4) => v4.into(),
        None => v6.into(),
    }
}

fn proto_name(proto: i32) -> String {
    match proto {
        libc::IPPROTO_TCP => "TCP".into(),
        libc::IPPROTO_UDP => "UDP".into(),
        libc::IPPROTO_UDPLITE => "UDP-Lite".into(),
        libc::IPPROTO_ICMP => "ICMP".into(),
        libc::IPPROTO_ICMPV6 => "ICMPv6".into(),
        libc::IPPROTO_SCTP => "SCTP".into(),
        IPPROTO_MPTCP => "MPTCP".into(),
        p => p.to_string(),
    }
}

/// What the dump allows, as CRIU's `can_dump_inet_sk`.
fn check(files: &Files, f: &OpenFd, kind: i32, sk: &Desc) -> Result<()> {
    let pid = files.pid();
    let o = &files.sockets.opts;
    if kind == libc::SOCK_DGRAM {
        if sk.wqueue != 0 {
            log::warn!(
                "process {pid}: {}: {} bytes not sent yet are dropped",
                what(f),
                sk.wqueue
            );
        }
        if sk.rqueue != 0 {
            log::warn!(
                "process {pid}: {}: {} bytes of datagrams not read are dropped (as CRIU)",
                what(f),
                sk.rqueue
            );
        }
        return Ok(());
    }
    if kind != libc::SOCK_STREAM && kind != libc::SOCK_RAW {
        return Err(Error::unsupported(
            pid,
            format!(
                "{}: an inet socket of type {}",
                what(f),
                sockets::type_name(kind as u32)
            ),
        ));
    }
    match sk.state {
        TCP_LISTEN if sk.rqueue != 0 && !o.skip_in_flight => Err(Error::unsupported(
            pid,
            format!(
                "{}: a listening TCP socket with {} connection(s) waiting to be accepted (--skip-in-flight leaves them out)",
                what(f),
                sk.rqueue
            ),
        )),
        TCP_LISTEN | TCP_CLOSE => Ok(()),
        TCP_ESTABLISHED | TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSE_WAIT | TCP_LAST_ACK
        | TCP_CLOSING | TCP_SYN_SENT => {
            if o.tcp_established || o.tcp_close {
                Ok(())
            } else {
                Err(Error::unsupported(
                    pid,
                    format!(
                        "{}: a connected TCP socket ({}; --tcp-established dumps it)",
                        what(f),
                        sockets::state_name(sk.state)
                    ),
                ))
            }
        }
        s => Err(Error::unsupported(
            pid,
            format!(
                "{}: a TCP socket in state {}",
                what(f),
                sockets::state_name(s)
            ),
        )),
    }
}

/// A socket sock_diag does not list (unbound, closed, a ping socket):
/// its addresses from the socket itself (CRIU's `gen_uncon_sk`).
fn unlisted(pid: Pid, f: &OpenFd, family: i32, proto: i32, kind: i32) -> Result<Desc> {
    let fd = f.file.as_fd();
    let mut d = Desc {
        state: TCP_CLOSE,
        ..Desc::default()
    };
    // SO_PEERNAME, not getpeername: it names the peer of a connection
    // closed (reset, or both ends shut) too, which then is dumped as a
    // connection (as CRIU does).
    // The kernel wants the address's exact size.
    let mut peer = [0u8; 28];
    let len = if family == libc::AF_INET6 { 28 } else { 16 };
    match sk_sys::getsockopt(fd, libc::SOL_SOCKET, SO_PEERNAME, &mut peer[..len]) {
        Ok(n) => (d.dport, d.dst) = parse_sockaddr(&peer[..n.min(peer.len())], family),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
        Err(e) => return Err(Error::sys("reading a socket's peer (SO_PEERNAME)", pid)(e)),
    }
    let own = sk_sys::address(fd, false).map_err(Error::sys("reading a socket's address", pid))?;
    if let Some(a) = own {
        (d.sport, d.src) = parse_sockaddr(&a, family);
    }
    if kind != libc::SOCK_RAW && proto == libc::IPPROTO_TCP {
        let mut info = [0u8; 8];
        sk_sys::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info)
            .map_err(Error::sys("reading a socket's TCP_INFO", pid))?;
        if u32::from(info[0]) != TCP_CLOSE {
            return Err(Error::Inconsistent {
                pid,
                what: format!(
                    "{}: a TCP socket in state {} that sock_diag does not list",
                    what(f),
                    sockets::state_name(u32::from(info[0]))
                ),
            });
        }
        // CRIU keeps tcpi_backoff as the backlog of such a socket.
        d.wqueue = u32::from(info[4]);
        let ev = sk_sys::poll_now(fd, libc::POLLRDHUP | libc::POLLHUP)
            .map_err(Error::sys("polling a socket", pid))?;
        if ev & libc::POLLHUP != 0 && ev & libc::POLLRDHUP != 0 {
            d.shutdown = 1;
        }
    }
    Ok(d)
}

/// A `sockaddr_in` or `sockaddr_in6`: the port (host order) and the
/// address as four native words.
fn parse_sockaddr(a: &[u8], family: i32) -> (u16, [u32; 4]) {
    let mut words = [0u32; 4];
    if a.len() < 8 {
        return (0, words);
    }
    let port = u16::from_be_bytes([a[2], a[3]]);
    let (at, n) = if family == libc::AF_INET6 {
        (8, 4)
    } else {
        (4, 1)
    };
    for (i, w) in words.iter_mut().take(n).enumerate() {
        let o = at + 4 * i;
        if let Some(b) = a.get(o..o + 4) {
            *w = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    (port, words)
}

/// Link-local IPv6 addresses (fe80::/10) need the interface to bind to
/// (CRIU's `needs_scope_id`, whose multicast test never matches).
fn needs_scope_id(a: &[u32; 4]) -> bool {
    let b0 = a[0].to_ne_bytes();
    b0[0] == 0xfe && (b0[1] & 0xc0) == 0x80
}

/// The IP options, as CRIU's `dump_ip_opts`.
fn ip_opts(pid: Pid, f: &OpenFd, family: i32, kind: i32, proto: i32) -> Result<pb::IpOptsEntry> {
    let fd = f.file.as_fd();
    let int =
        |level, name, what| sk_sys::getsockopt_int(fd, level, name).map_err(Error::sys(what, pid));
    let mut e = pb::IpOptsEntry::default();
    if kind == libc::SOCK_RAW {
        let mut raw = pb::IpOptsRawEntry::default();
        if family == libc::AF_INET6 {
            raw.hdrincl = Some(int(libc::IPPROTO_IPV6, IPV6_HDRINCL, "reading IPV6_HDRINCL")? != 0)
                .filter(|&v| v);
            if proto == libc::IPPROTO_ICMPV6 {
                let mut b = [0u8; 32];
                sk_sys::getsockopt(fd, SOL_ICMPV6, ICMPV6_FILTER, &mut b)
                    .map_err(Error::sys("reading ICMPV6_FILTER", pid))?;
                raw.icmpv_filter = words(&b);
            }
        } else {
            raw.hdrincl = Some(int(libc::IPPROTO_IP, libc::IP_HDRINCL, "reading IP_HDRINCL")? != 0)
                .filter(|&v| v);
            raw.nodefrag = Some(int(libc::IPPROTO_IP, IP_NODEFRAG, "reading IP_NODEFRAG")? != 0)
                .filter(|&v| v);
            if proto == libc::IPPROTO_ICMP {
                let mut b = [0u8; 4];
                sk_sys::getsockopt(fd, SOL_RAW, ICMP_FILTER, &mut b)
                    .map_err(Error::sys("reading ICMP_FILTER", pid))?;
                raw.icmpv_filter = words(&b);
            }
        }
        e.raw = Some(raw);
    }
    if family == libc::AF_INET6 {
        e.freebind = Some(int(libc::IPPROTO_IPV6, IPV6_FREEBIND, "reading IPV6_FREEBIND")? != 0)
            .filter(|&v| v);
        e.pktinfo = Some(
            int(
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVPKTINFO,
                "reading IPV6_RECVPKTINFO",
            )? != 0,
        )
        .filter(|&v| v);
    } else {
        e.freebind = Some(int(libc::IPPROTO_IP, libc::IP_FREEBIND, "reading IP_FREEBIND")? != 0)
            .filter(|&v| v);
        e.pktinfo = Some(int(libc::IPPROTO_IP, libc::IP_PKTINFO, "reading IP_PKTINFO")? != 0)
            .filter(|&v| v);
        let tos = int(libc::IPPROTO_IP, libc::IP_TOS, "reading IP_TOS")? as u32;
        e.tos = (tos != 0).then_some(tos);
        let ttl = int(libc::IPPROTO_IP, libc::IP_TTL, "reading IP_TTL")? as u32;
        e.ttl = (ttl != 0).then_some(ttl);
    }
    Ok(e)
}

fn words(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// TCP_NODELAY, TCP_CORK and the keepalive timers, as CRIU's
/// `dump_tcp_opts` (each only when not 0).
fn tcp_opts(pid: Pid, f: &OpenFd) -> Result<pb::TcpOptsEntry> {
    let fd = f.file.as_fd();
    let int = |name, what| {
        sk_sys::getsockopt_int(fd, libc::IPPROTO_TCP, name).map_err(Error::sys(what, pid))
    };
    let nz = |v: i32| (v != 0).then_some(v as u32);
    Ok(pb::TcpOptsEntry {
        nodelay: Some(int(libc::TCP_NODELAY, "reading TCP_NODELAY")? != 0).filter(|&v| v),
        cork: Some(int(libc::TCP_CORK, "reading TCP_CORK")? != 0).filter(|&v| v),
        keepcnt: nz(int(libc::TCP_KEEPCNT, "reading TCP_KEEPCNT")?),
        keepidle: nz(int(libc::TCP_KEEPIDLE, "reading TCP_KEEPIDLE")?),
        keepintvl: nz(int(libc::TCP_KEEPINTVL, "reading TCP_KEEPINTVL")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_sock_diag_gives_them() {
        let v4 = [u32::from_ne_bytes([127, 0, 0, 1]), 0, 0, 0];
        assert!(address(libc::AF_INET, &v4).is_loopback());
        let ten = [u32::from_ne_bytes([10, 88, 0, 2]), 0, 0, 0];
        assert_eq!(address(libc::AF_INET, &ten).to_string(), "10.88.0.2");
        let mapped = [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), ten[0]];
        assert_eq!(address(libc::AF_INET6, &mapped).to_string(), "10.88.0.2");
        assert!(address(libc::AF_INET6, &[0; 4]).is_unspecified());
    }

    #[test]
    fn scope_ids_are_needed_for_link_local_addresses() {
        let ll = [u32::from_ne_bytes([0xfe, 0x80, 0, 0]), 0, 0, 1];
        let global = [u32::from_ne_bytes([0x20, 0x01, 0x0d, 0xb8]), 0, 0, 1];
        assert!(needs_scope_id(&ll));
        assert!(!needs_scope_id(&global));
        let sa = [2u8, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let (port, w) = parse_sockaddr(&sa, libc::AF_INET);
        assert_eq!(port, 8080);
        assert_eq!(w[0], u32::from_ne_bytes([127, 0, 0, 1]));
    }
}
