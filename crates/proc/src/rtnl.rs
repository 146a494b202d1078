//! Route and netfilter netlink (`NETLINK_ROUTE`, `NETLINK_NETFILTER`):
//! dumps whose answers are kept whole (a link list, the conntrack
//! table), and requests the kernel acknowledges (a link made or set, a
//! conntrack entry put back).

use std::borrow::Cow;
use std::io;
use std::os::fd::OwnedFd;

use crate::sock_diag::{Message, parse_messages};
use crate::{Error, ParseError, ParseResult, Result};

pub const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `NLA_F_NESTED`.
pub const NLA_F_NESTED: u16 = 0x8000;

/// The sequence number of every request, CRIU's (`CR_NLMSG_SEQ`): the
/// kernel echoes it in the conntrack messages the images keep, and CRIU
/// waits for the acknowledgement of each it puts back by that number.
pub const SEQ: u32 = 24680;

/// Room for one answer datagram.
const ANSWER_ROOM: usize = 64 * 1024;

/// A netlink socket of one protocol, in the calling thread's network
/// namespace (where it was opened).
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    buf: Vec<u8>,
    what: &'static str,
}

fn nl_error(what: impl Into<Cow<'static, str>>, source: io::Error) -> Error {
    Error::SockDiag {
        what: what.into(),
        source,
    }
}

impl Netlink {
    /// A `NETLINK_ROUTE` socket.
    pub fn route() -> Result<Netlink> {
        Netlink::open(None, "rtnetlink")
    }

    /// A `NETLINK_NETFILTER` socket.
    pub fn netfilter() -> Result<Netlink> {
        Netlink::open(Some(rustix::net::netlink::NETFILTER), "nfnetlink")
    }

    fn open(proto: Option<rustix::net::Protocol>, what: &'static str) -> Result<Netlink> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType};
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            proto,
        )
        .map_err(|e| nl_error(format!("opening a {what} socket"), e.into()))?;
        Ok(Netlink {
            fd,
            buf: vec![0; ANSWER_ROOM],
            what,
        })
    }

    fn send(&mut self, msg: &[u8], about: &str) -> Result<()> {
        use rustix::net::{SendFlags, netlink::SocketAddrNetlink};
        let kernel = SocketAddrNetlink::new(0, 0);
        rustix::net::sendto(&self.fd, msg, SendFlags::empty(), &kernel)
            .map_err(|e| nl_error(format!("sending {about} to {}", self.what), e.into()))?;
        Ok(())
    }

    /// Reads answers to `seq` until `NLMSG_DONE` or an acknowledgement;
    /// hands each other message (header included) to `each`.
    fn answers(&mut self, seq: u32, about: &str, each: &mut dyn FnMut(&[u8])) -> Result<()> {
        use rustix::net::RecvFlags;
        loop {
            let (n, full) = rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::empty())
                .map_err(|e| {
                    nl_error(
                        format!("reading {}'s answer to {about}", self.what),
                        e.into(),
                    )
                })?;
            if full > n {
                return Err(nl_error(
                    format!("reading {}'s answer to {about}", self.what),
                    io::Error::other(format!("an answer of {full} bytes cut to {n}")),
                ));
            }
            let buf = &self.buf[..n];
            let msgs: Vec<Message<'_>> = parse_messages(buf).map_err(|e| {
                nl_error(
                    format!("reading {}'s answer to {about}", self.what),
                    io::Error::other(e.to_string()),
                )
            })?;
            if msgs.is_empty() {
                return Err(nl_error(
                    format!("reading {}'s answer to {about}", self.what),
                    io::Error::other("an empty answer"),
                ));
            }
            let mut at = 0usize;
            for m in msgs {
                let len = NLMSG_HDRLEN + m.payload.len();
                let whole = &buf[at..at + len];
                at += (len + 3) & !3;
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let errno = m
                            .payload
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if errno == 0 {
                            return Ok(());
                        }
                        return Err(nl_error(
                            format!("{} refused {about}", self.what),
                            io::Error::from_raw_os_error(-errno),
                        ));
                    }
                    _ => each(whole),
                }
            }
        }
    }

    /// Sends a dump request of `kind` whose family part is `body`;
    /// returns every answer message whole (header included), in order.
    pub fn dump(&mut self, kind: u16, body: &[u8], about: &str) -> Result<Vec<Vec<u8>>> {
        let seq = SEQ;
        let mut req = header(kind, NLM_F_REQUEST | NLM_F_DUMP, seq);
        req.extend_from_slice(body);
        finish(&mut req);
        self.send(&req, about)?;
        let mut out = Vec::new();
        self.answers(seq, about, &mut |m| out.push(m.to_vec()))?;
        Ok(out)
    }

    /// Sends the whole message `msg` (its sequence number set to [`SEQ`],
    /// its flags as given) and waits for the kernel's acknowledgement.
    pub fn request(&mut self, msg: &mut [u8], about: &str) -> Result<()> {
        if msg.len() < NLMSG_HDRLEN {
            return Err(nl_error(
                format!("sending {about}"),
                io::Error::other("a message shorter than its header"),
            ));
        }
        let seq = SEQ;
        msg[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.send(msg, about)?;
        self.answers(seq, about, &mut |_| {})
    }
}

/// A message header (its length set by [`finish`]).
pub fn header(kind: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(256);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m
}

/// Sets a message's length to what it holds.
pub fn finish(m: &mut [u8]) {
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends attribute `kind` with `payload`, padded to 4 bytes.
pub fn put_attr(m: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = (4 + payload.len()) as u16;
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(payload);
    while !m.len().is_multiple_of(4) {
        m.push(0);
    }
}

/// Opens a nested attribute `kind`; returns where it starts, for
/// [`end_nest`].
pub fn begin_nest(m: &mut Vec<u8>, kind: u16) -> usize {
    let at = m.len();
    put_attr(m, kind, &[]);
    at
}

/// Closes the nested attribute begun at `at`.
pub fn end_nest(m: &mut [u8], at: usize) {
    let len = (m.len() - at) as u16;
    m[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// The attributes in `buf`: `(type, offset of the payload in buf,
/// payload length)`.
pub fn attr_spans(buf: &[u8]) -> ParseResult<Vec<(u16, usize, usize)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        let len = usize::from(u16::from_ne_bytes([buf[at], buf[at + 1]]));
        let kind = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() - at {
            return Err(ParseError::new(
                at,
                format!(
                    "an attribute of {len} bytes where {} are left",
                    buf.len() - at
                ),
            ));
        }
        out.push((kind, at + 4, len - 4));
        at += (len + 3) & !3;
    }
    Ok(out)
}

/// The attributes in `buf`, `(type, payload)`.
pub fn attrs(buf: &[u8]) -> ParseResult<Vec<(u16, &[u8])>> {
    Ok(attr_spans(buf)?
        .into_iter()
        .map(|(k, at, len)| (k, &buf[at..at + len]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_nest_and_parse_back() {
        let mut m = header(16, NLM_F_REQUEST, 0);
        put_attr(&mut m, 3, b"lo");
        let n = begin_nest(&mut m, 18);
        put_attr(&mut m, 1, b"veth");
        end_nest(&mut m, n);
        finish(&mut m);
        let a = attrs(&m[NLMSG_HDRLEN..]).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], (3, &b"lo"[..]));
        let inner = attrs(a[1].1).unwrap();
        assert_eq!(inner, vec![(1, &b"veth"[..])]);
        assert!(attrs(&[9, 0, 1, 0]).is_err());
    }
}
