//! Inet sockets made again from their `inet_sk_entry` (CRIU 4.2's
//! `open_inet_sk`): a socket of the family, type and protocol; IPv6-only
//! as it was; bound to its address (an IPv6 link-local one on its
//! interface; IPv6 addresses may still be tentative, so IP_FREEBIND is
//! on while binding); listening with its backlog; a UDP socket connected
//! to its peer; a connected TCP socket through TCP_REPAIR
//! ([`tcp_stream`](crate::tcp_stream)), or closed with `--tcp-close`;
//! then its flags, IP, socket and TCP options and its shutdown.
//!
//! Every socket is made with SO_REUSEADDR and SO_REUSEPORT on (sockets
//! sharing a port are made one after the other: a listener and the
//! connections it accepted); once all are made ([`finish`]), the ones
//! that had them off get them off again.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rcriu_images::pb;

use crate::load::Images;
use crate::sockets::{self, Options};
use crate::{Error, Result, sk_sys, tcp_stream};

const TCP_LISTEN: u32 = 10;
const TCP_CLOSE: u32 = 7;
const IP_NODEFRAG: i32 = 22;
const IPV6_HDRINCL: i32 = 36;
const IPV6_FREEBIND: i32 = 78;
const ICMP_FILTER: i32 = 1;
const ICMPV6_FILTER: i32 = 1;
const SOL_ICMPV6: i32 = 58;
const SOL_RAW: i32 = 255;

pub fn describe(e: &pb::InetSkEntry) -> String {
    let proto = match e.proto as i32 {
        libc::IPPROTO_TCP => "TCP",
        libc::IPPROTO_UDP => "UDP",
        libc::IPPROTO_UDPLITE => "UDP-Lite",
        libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6 => "ICMP",
        _ => "inet",
    };
    let (src, dst) = addrs(e);
    if e.dst_port != 0 {
        format!(
            "{proto} socket socket:[{}] {src}:{} -> {dst}:{}",
            e.ino, e.src_port, e.dst_port
        )
    } else {
        format!("{proto} socket socket:[{}] {src}:{}", e.ino, e.src_port)
    }
}

fn addrs(e: &pb::InetSkEntry) -> (String, String) {
    let text = |w: &[u32]| -> String {
        let mut b = [0u8; 16];
        for (i, x) in w.iter().take(4).enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&x.to_ne_bytes());
        }
        if e.family == libc::AF_INET6 as u32 {
            std::net::Ipv6Addr::from(b).to_string()
        } else {
            std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()
        }
    };
    (text(&e.src_addr), text(&e.dst_addr))
}

/// A `sockaddr_in` or `sockaddr_in6` of `port` and `addr` (native words,
/// network-order bytes), with `scope` for IPv6.
pub fn sockaddr(family: u32, port: u32, addr: &[u32], scope: u32) -> Vec<u8> {
    let mut a = (family as u16).to_ne_bytes().to_vec();
    a.extend_from_slice(&(port as u16).to_be_bytes());
    if family == libc::AF_INET6 as u32 {
        a.extend_from_slice(&[0; 4]);
        for i in 0..4 {
            a.extend_from_slice(&addr.get(i).copied().unwrap_or(0).to_ne_bytes());
        }
        a.extend_from_slice(&scope.to_ne_bytes());
    } else {
        a.extend_from_slice(&addr.first().copied().unwrap_or(0).to_ne_bytes());
        a.extend_from_slice(&[0; 8]);
    }
    a
}

/// Refuses entries a restore cannot make (CRIU's checks), without making
/// anything.
pub fn check(e: &pb::InetSkEntry, opts: Options) -> Result<()> {
    let v6 = e.family == libc::AF_INET6 as u32;
    if e.family != libc::AF_INET as u32 && !v6 {
        return Err(Error::invalid(
            "files.img",
            format!("{} of family {}", describe(e), e.family),
        ));
    }
    let t = e.r#type as i32;
    if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_RAW].contains(&t) {
        return Err(Error::invalid(
            "files.img",
            format!("{} of type {}", describe(e), e.r#type),
        ));
    }
    let ok = if v6 {
        e.src_addr.len() == 4 && e.dst_addr.len() == 4
    } else {
        !e.src_addr.is_empty() && !e.dst_addr.is_empty()
    };
    if !ok {
        return Err(Error::invalid(
            "files.img",
            format!(
                "{} with addresses of {} and {} words",
                describe(e),
                e.src_addr.len(),
                e.dst_addr.len()
            ),
        ));
    }
    if e.state == TCP_LISTEN && e.proto != libc::IPPROTO_TCP as u32 {
        return Err(Error::invalid(
            "files.img",
            format!("{} listening", describe(e)),
        ));
    }
    if tcp_stream::is_connection(e) && !opts.tcp_established && !opts.tcp_close {
        return Err(Error::unsupported(format!(
            "restoring {}, a connected TCP socket, without --tcp-established or --tcp-close",
            describe(e)
        )));
    }
    if tcp_stream::is_connection(e) && !opts.tcp_close {
        tcp_stream::check_state(e)?;
    }
    Ok(())
}

/// Makes the socket of `e`; a connection in repair mode joins `tcp`.
pub fn make(
    img: &Images,
    e: &pb::InetSkEntry,
    opts: Options,
    tcp: &mut tcp_stream::Repaired,
    pid: i32,
    target: i32,
) -> Result<OwnedFd> {
    check(e, opts)?;
    let what = || format!("making {}", describe(e));
    let fd = sk_sys::socket(e.family as i32, e.r#type as i32, e.proto as i32)
        .map_err(Error::io(what()))?;
    let s = fd.as_fd();
    let v6 = e.family == libc::AF_INET6 as u32;
    if e.v6only == Some(true) {
        sk_sys::setsockopt_int(s, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)
            .map_err(Error::io(what()))?;
    }
    sk_sys::setsockopt_int(s, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
        .and_then(|()| sk_sys::setsockopt_int(s, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1))
        .map_err(Error::io(what()))?;
    let ip_opts = e.ip_opts.clone().unwrap_or_default();
    let mut freebind_done = false;
    if tcp_stream::is_connection(e) {
        if opts.tcp_close {
            // As CRIU: a new socket, shut down (it reads the end).
            if let Err(err) = sk_sys::shutdown(s, libc::SHUT_RDWR)
                && err.raw_os_error() != Some(libc::ENOTCONN)
            {
                return Err(Error::io(what())(err));
            }
            // The dump's lock of it is lifted all the same.
            tcp.add_conn(e);
        } else {
            tcp_stream::restore(img, s, e)?;
            // Taken out of repair once the process holds it, through its fd
            // there; one in flight through a copy.
            let held = if target < 0 {
                tcp_stream::Held::Copy(fd.try_clone().map_err(Error::host("copying a socket"))?)
            } else {
                tcp_stream::Held::Fd { pid, fd: target }
            };
            tcp.add(held, e);
        }
    } else {
        let icmp = [libc::IPPROTO_ICMP as u32, libc::IPPROTO_ICMPV6 as u32].contains(&e.proto);
        if e.src_port != 0 && !icmp {
            freebind_done = bind(s, e, &ip_opts)?;
        }
        if e.state == TCP_LISTEN {
            sk_sys::listen(s, e.backlog as i32).map_err(Error::io(format!(
                "making {} listen (backlog {})",
                describe(e),
                e.backlog
            )))?;
        }
        if e.dst_port != 0 {
            let a = sockaddr(e.family, e.dst_port, &e.dst_addr, 0);
            sk_sys::connect(s, &a).map_err(Error::io(format!("connecting {}", describe(e))))?;
        }
    }
    sockets::set_flags(s, e.flags, true)?;
    set_ip_opts(s, e, &ip_opts, freebind_done)?;
    sockets::set_opts(s, &e.opts, None).map_err(|err| match err {
        Error::Io { what, source } => Error::Io {
            what: format!("{what} ({})", describe(e)),
            source,
        },
        err => err,
    })?;
    if e.proto == libc::IPPROTO_TCP as u32 {
        set_tcp_opts(s, e)?;
    }
    let shut = [
        libc::IPPROTO_TCP as u32,
        libc::IPPROTO_UDP as u32,
        libc::IPPROTO_UDPLITE as u32,
    ];
    if let Some(how) = e.shutdown.and_then(sockets::shutdown_how)
        && shut.contains(&e.proto)
        && let Err(err) = sk_sys::shutdown(s, how)
        && e.state != TCP_CLOSE
        && err.raw_os_error() != Some(libc::ENOTCONN)
    {
        return Err(Error::io(format!("shutting {} down", describe(e)))(err));
    }
    let _ = v6;
    Ok(fd)
}

/// Binds to the source address; whether IP_FREEBIND was set as the
/// options want (it was needed on for the bind).
fn bind(s: BorrowedFd<'_>, e: &pb::InetSkEntry, ip: &pb::IpOptsEntry) -> Result<bool> {
    let mut scope = 0;
    if let Some(name) = e.ifname.as_ref().filter(|n| !n.is_empty()) {
        scope = sk_sys::if_index(name);
        if scope == 0 {
            return Err(Error::unsupported(format!(
                "restoring {}, bound on interface {}, which is not here",
                describe(e),
                String::from_utf8_lossy(name)
            )));
        }
    }
    let what = || format!("binding {}", describe(e));
    let v6 = e.family == libc::AF_INET6 as u32;
    let tentative = v6 && e.r#type != libc::SOCK_RAW as u32;
    if tentative {
        sk_sys::setsockopt_int(s, libc::IPPROTO_IP, libc::IP_FREEBIND, 1)
            .map_err(Error::io(what()))?;
    }
    let a = sockaddr(e.family, e.src_port, &e.src_addr, scope);
    sk_sys::bind(s, &a).map_err(Error::io(what()))?;
    if tentative {
        if ip.freebind == Some(true) {
            return Ok(true);
        }
        sk_sys::setsockopt_int(s, libc::IPPROTO_IP, libc::IP_FREEBIND, 0)
            .map_err(Error::io(what()))?;
    }
    Ok(false)
}

fn set_ip_opts(
    s: BorrowedFd<'_>,
    e: &pb::InetSkEntry,
    ip: &pb::IpOptsEntry,
    freebind_done: bool,
) -> Result<()> {
    let what = |o: &str| format!("setting {o} of {}", describe(e));
    let set = |level, name, v: i32, o: &str| {
        sk_sys::setsockopt_int(s, level, name, v).map_err(Error::io(what(o)))
    };
    if e.family == libc::AF_INET6 as u32 {
        if let Some(v) = ip.freebind.filter(|_| !freebind_done) {
            set(
                libc::IPPROTO_IPV6,
                IPV6_FREEBIND,
                i32::from(v),
                "IPV6_FREEBIND",
            )?;
        }
        if let Some(v) = ip.pktinfo {
            set(
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVPKTINFO,
                i32::from(v),
                "IPV6_RECVPKTINFO",
            )?;
        }
    } else {
        if let Some(v) = ip.freebind {
            set(
                libc::IPPROTO_IP,
                libc::IP_FREEBIND,
                i32::from(v),
                "IP_FREEBIND",
            )?;
        }
        if let Some(v) = ip.pktinfo {
            set(
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                i32::from(v),
                "IP_PKTINFO",
            )?;
        }
        if let Some(v) = ip.tos {
            set(libc::IPPROTO_IP, libc::IP_TOS, v as i32, "IP_TOS")?;
        }
        if let Some(v) = ip.ttl {
            set(libc::IPPROTO_IP, libc::IP_TTL, v as i32, "IP_TTL")?;
        }
    }
    if let Some(raw) = &ip.raw {
        let v6 = e.family == libc::AF_INET6 as u32;
        if !raw.icmpv_filter.is_empty() {
            let icmp = [libc::IPPROTO_ICMP as u32, libc::IPPROTO_ICMPV6 as u32];
            if icmp.contains(&e.proto) {
                let bytes: Vec<u8> = raw
                    .icmpv_filter
                    .iter()
                    .flat_map(|w| w.to_ne_bytes())
                    .collect();
                let (level, name) = if v6 {
                    (SOL_ICMPV6, ICMPV6_FILTER)
                } else {
                    (SOL_RAW, ICMP_FILTER)
                };
                sk_sys::setsockopt(s, level, name, &bytes)
                    .map_err(Error::io(what("the ICMP filter")))?;
            }
        }
        if let Some(v) = raw.nodefrag {
            set(libc::IPPROTO_IP, IP_NODEFRAG, i32::from(v), "IP_NODEFRAG")?;
        }
        if let Some(v) = raw.hdrincl {
            if v6 {
                set(
                    libc::IPPROTO_IPV6,
                    IPV6_HDRINCL,
                    i32::from(v),
                    "IPV6_HDRINCL",
                )?;
            } else {
                set(
                    libc::IPPROTO_IP,
                    libc::IP_HDRINCL,
                    i32::from(v),
                    "IP_HDRINCL",
                )?;
            }
        }
    }
    Ok(())
}

fn set_tcp_opts(s: BorrowedFd<'_>, e: &pb::InetSkEntry) -> Result<()> {
    let Some(t) = &e.tcp_opts else {
        return Ok(());
    };
    let what = |o: &str| format!("setting {o} of {}", describe(e));
    let set = |name, v: i32, o: &str| {
        sk_sys::setsockopt_int(s, libc::IPPROTO_TCP, name, v).map_err(Error::io(what(o)))
    };
    if let Some(v) = t.nodelay {
        set(libc::TCP_NODELAY, i32::from(v), "TCP_NODELAY")?;
    }
    if let Some(v) = t.cork {
        set(libc::TCP_CORK, i32::from(v), "TCP_CORK")?;
    }
    if let Some(v) = t.keepcnt {
        set(libc::TCP_KEEPCNT, v as i32, "TCP_KEEPCNT")?;
    }
    if let Some(v) = t.keepidle {
        set(libc::TCP_KEEPIDLE, v as i32, "TCP_KEEPIDLE")?;
    }
    if let Some(v) = t.keepintvl {
        set(libc::TCP_KEEPINTVL, v as i32, "TCP_KEEPINTVL")?;
    }
    Ok(())
}

/// Once every socket is made: SO_REUSEADDR, SO_REUSEPORT, SO_BROADCAST
/// and SO_KEEPALIVE off where they were (connections get SO_REUSEADDR
/// back when their repair ends).
pub fn finish(s: BorrowedFd<'_>, e: &pb::InetSkEntry) -> Result<()> {
    if tcp_stream::is_connection(e) {
        return Ok(());
    }
    let o = &e.opts;
    if o.reuseaddr == Some(true) && o.so_reuseport == Some(true) {
        return Ok(());
    }
    let what = || format!("setting the options of {}", describe(e));
    for (v, name) in [
        (o.reuseaddr, libc::SO_REUSEADDR),
        (o.so_reuseport, libc::SO_REUSEPORT),
        (o.so_broadcast, libc::SO_BROADCAST),
        (o.so_keepalive, libc::SO_KEEPALIVE),
    ] {
        if v != Some(true) {
            sk_sys::setsockopt_int(s, libc::SOL_SOCKET, name, 0).map_err(Error::io(what()))?;
        }
    }
    Ok(())
}
