//! `sk-queues.img`: what waits to be read in a unix socket, read without
//! taking it (`MSG_PEEK` from a peek offset, `SO_PEEK_OFF`, which is put
//! back as it was) and written as CRIU 4.2 writes it: one
//! `sk_packet_entry` per message read (`id_for` the socket's file id,
//! `length` its bytes, which follow the entry), with the fds in flight
//! (`SCM_RIGHTS`) as the file ids of entries of their own.
//!
//! Other control messages cannot be queued again as they were: a
//! socket with credentials passing (`SO_PASSCRED`), security labels or
//! pidfds attached to its messages is refused, naming them (as CRIU).

use std::fs::File;
use std::os::fd::AsFd;

use rcriu_images::{ImageDir, ImageFile, pb};
use rcriu_proc::Pid;
use rcriu_proc::sock_diag::UnixSock;

use crate::files::{Files, OpenFd};
use crate::sockets::{so, what};
use crate::{Error, Result, sk_sys};

/// `SCM_RIGHTS`, as `scm_entry.type` holds it.
const SCM_RIGHTS: u32 = 1;

/// One message read from a queue.
#[derive(Debug)]
pub struct Packet {
    pub entry: pb::SkPacketEntry,
    pub data: Vec<u8>,
}

/// The most a queue is read into at once.
const MAX_CHUNK: usize = 64 << 20;

/// Reads what `f` (file `id`, of socket type `kind`) holds to be read:
/// `queued` bytes as sock_diag counts them.
pub fn dump(files: &mut Files, f: &OpenFd, id: u32, queued: u64, kind: i32) -> Result<()> {
    let pid = files.pid();
    if let Some(data) = f
        .ahead
        .as_ref()
        .and_then(|a| a.queue.as_ref())
        .filter(|d| d.len() as u64 == queued)
    {
        files.push_packets(vec![Packet {
            entry: pb::SkPacketEntry {
                id_for: id,
                length: data.len() as u32,
                scm: Vec::new(),
            },
            data: data.clone(),
        }]);
        return Ok(());
    }
    let fd = f.file.as_fd();
    // Off (-1) unless set, as read ahead with the options.
    let orig = match &f.ahead {
        Some(a) => a.opts.rcriu_peek_off.unwrap_or(-1),
        None => sk_sys::getsockopt_int(fd, libc::SOL_SOCKET, so::SO_PEEK_OFF).map_err(
            Error::sys("reading a socket's peek offset (SO_PEEK_OFF)", pid),
        )?,
    };
    sk_sys::setsockopt_int(fd, libc::SOL_SOCKET, so::SO_PEEK_OFF, 0).map_err(Error::sys(
        "setting a socket's peek offset (SO_PEEK_OFF)",
        pid,
    ))?;
    let read = read_all(files, f, id, queued, kind);
    let put_back = sk_sys::setsockopt_int(fd, libc::SOL_SOCKET, so::SO_PEEK_OFF, orig).map_err(
        Error::sys("putting a socket's peek offset back (SO_PEEK_OFF)", pid),
    );
    let packets = read?;
    put_back?;
    files.push_packets(packets);
    Ok(())
}

/// Room for the largest message: a datagram is at most its sender's
/// send buffer, a stream's chunk what is queued.
fn room(queued: u64, sndbuf: i32, rcvbuf: i32) -> usize {
    (queued as usize)
        .max(sndbuf.max(rcvbuf).max(0) as usize * 2)
        .clamp(64 << 10, MAX_CHUNK)
}

/// Reads ahead what unix socket `f` (`sk` its sock_diag entry) holds
/// queued, when it takes one peek: a stream socket whose peek offset is
/// off (a peek starts at the queue's head and leaves the offset be),
/// whose first peek gives every byte queued, without control messages.
/// [`dump`] then writes the same one packet its peeks would have read
/// (the second, from the offset past them, finding nothing); any other
/// socket is left to it. Run ahead, on threads of their own.
pub fn peek_ahead(sk: &UnixSock, f: &mut OpenFd, buf: &mut Vec<u8>) {
    const TCP_LISTEN: u8 = 10;
    let Some(a) = f.ahead.as_mut() else {
        return;
    };
    if i32::from(sk.kind) != libc::SOCK_STREAM
        || sk.state == TCP_LISTEN
        || sk.rqueue == 0
        || a.opts.rcriu_peek_off.is_some()
    {
        return;
    }
    let queued = sk.rqueue as usize;
    let room = room(
        queued as u64,
        a.opts.so_sndbuf as i32,
        a.opts.so_rcvbuf as i32,
    );
    if buf.len() < room {
        buf.resize(room, 0);
    }
    // Room for one control message: any is the dump's to read (more are
    // cut, the peek then truncated). Fds in flight that came with it are
    // closed as `p` goes.
    let mut control = [0u64; 8];
    let Ok(Some(p)) = sk_sys::peek_with(f.file.as_fd(), &mut buf[..room], &mut control) else {
        return;
    };
    if p.len == queued && !p.truncated && !p.end && p.rights.is_empty() && p.others.is_empty() {
        a.queue = Some(buf[..queued].to_vec());
    }
}

fn read_all(files: &mut Files, f: &OpenFd, id: u32, queued: u64, kind: i32) -> Result<Vec<Packet>> {
    let fd = f.file.as_fd();
    let (sndbuf, rcvbuf) = match &f.ahead {
        Some(a) => (a.opts.so_sndbuf as i32, a.opts.so_rcvbuf as i32),
        None => (
            sk_sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF).unwrap_or(0),
            sk_sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(0),
        ),
    };
    let room = room(queued, sndbuf, rcvbuf);
    // One buffer for every queue of the dump, grown as needed (zeroing
    // half a megabyte per socket would cost more than reading them).
    let mut buf = std::mem::take(&mut files.sockets.queue_buf);
    if buf.len() < room {
        buf.resize(room, 0);
    }
    let read = read_into(files, f, id, queued, kind, &mut buf);
    files.sockets.queue_buf = buf;
    read
}

fn read_into(
    files: &mut Files,
    f: &OpenFd,
    id: u32,
    queued: u64,
    kind: i32,
    buf: &mut [u8],
) -> Result<Vec<Packet>> {
    let pid = files.pid();
    let fd = f.file.as_fd();
    let mut out = Vec::new();
    let mut total = 0u64;
    loop {
        let Some(p) = sk_sys::peek(fd, buf)
            .map_err(Error::sys("reading a socket's queue (MSG_PEEK)", pid))?
        else {
            break;
        };
        if p.end {
            // The end of a stream, or an empty datagram (which the peek
            // offset does not move past): as CRIU, the queue ends there.
            break;
        }
        if p.truncated {
            return Err(Error::Inconsistent {
                pid,
                what: format!(
                    "{}: a queued message of more than {} bytes",
                    what(f),
                    buf.len()
                ),
            });
        }
        if let Some(&(level, kind)) = p.others.first() {
            return Err(Error::unsupported(pid, refusal(f, level, kind)));
        }
        let mut entry = pb::SkPacketEntry {
            id_for: id,
            length: p.len as u32,
            scm: Vec::new(),
        };
        if !p.rights.is_empty() {
            let mut ids = Vec::with_capacity(p.rights.len());
            for fd in p.rights {
                ids.push(files.in_flight(File::from(fd))?);
            }
            entry.scm.push(pb::ScmEntry {
                r#type: SCM_RIGHTS,
                rights: ids,
            });
        }
        total += p.len as u64;
        out.push(Packet {
            entry,
            data: buf[..p.len].to_vec(),
        });
    }
    if kind != libc::SOCK_DGRAM && total != queued {
        return Err(Error::Inconsistent {
            pid,
            what: format!("{}: {queued} bytes queued, {total} could be read", what(f)),
        });
    }
    Ok(out)
}

fn refusal(f: &OpenFd, level: i32, kind: i32) -> String {
    const SCM_CREDENTIALS: i32 = 2;
    const SCM_SECURITY: i32 = 3;
    const SCM_PIDFD: i32 = 4;
    let what_msg = match (level, kind) {
        (libc::SOL_SOCKET, SCM_CREDENTIALS) => {
            "messages queued with the sender's credentials (SO_PASSCRED)".to_string()
        }
        (libc::SOL_SOCKET, SCM_SECURITY) => {
            "messages queued with security labels (SO_PASSSEC)".to_string()
        }
        (libc::SOL_SOCKET, SCM_PIDFD) => {
            "messages queued with the sender's pidfd (SO_PASSPIDFD)".to_string()
        }
        (l, k) => format!("messages queued with control messages of level {l} type {k}"),
    };
    format!("{}: {what_msg}", what(f))
}

/// Writes `sk-queues.img`: each entry, then its bytes.
pub fn write(
    pid: Pid,
    packets: &[Packet],
    create: &mut dyn FnMut(ImageFile) -> Result<ImageDir>,
) -> Result<()> {
    if packets.is_empty() {
        return Ok(());
    }
    let dir = create(ImageFile::SkQueues)?;
    let mut w = dir.writer(ImageFile::SkQueues).map_err(Error::image(pid))?;
    for p in packets {
        w.write(&p.entry).map_err(Error::image(pid))?;
        w.write_payload(&p.data).map_err(Error::image(pid))?;
    }
    w.finish().map_err(Error::image(pid))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// `b` as the dump holds it, its options read ahead.
    fn open(b: &UnixStream) -> OpenFd {
        let file = File::from(std::os::fd::OwnedFd::from(b.try_clone().unwrap()));
        let info = crate::files::FileInfo::of(1, file.as_fd(), std::path::Path::new("socket:[1]"))
            .unwrap();
        OpenFd {
            fd: file.as_raw_fd(),
            file,
            info,
            fdinfo: rcriu_proc::FdInfo::default(),
            ahead: Some(Box::new(crate::sockets::Ahead {
                family: libc::AF_UNIX,
                opts: pb::SkOptsEntry::default(),
                fown: pb::FownEntry::default(),
                queue: None,
            })),
        }
    }

    fn sk(rqueue: u32) -> UnixSock {
        UnixSock {
            kind: libc::SOCK_STREAM as u8,
            state: 1,
            rqueue,
            ..UnixSock::default()
        }
    }

    fn ahead(f: &OpenFd) -> Option<&[u8]> {
        f.ahead.as_ref().and_then(|a| a.queue.as_deref())
    }

    #[test]
    fn one_peek_reads_a_plain_stream_queue_and_nothing_else() {
        let mut buf = Vec::new();
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"0123456789").unwrap();
        a.write_all(b"abcdef").unwrap();
        let mut f = open(&b);
        peek_ahead(&sk(16), &mut f, &mut buf);
        assert_eq!(ahead(&f), Some(&b"0123456789abcdef"[..]));
        // Left where it was: the peek offset stays off.
        assert_eq!(
            sk_sys::getsockopt_int(b.as_fd(), libc::SOL_SOCKET, so::SO_PEEK_OFF).unwrap(),
            -1
        );

        // More queued than the table said: left to the dump.
        let mut f = open(&b);
        peek_ahead(&sk(10), &mut f, &mut buf);
        assert_eq!(ahead(&f), None);

        // A peek offset set: a peek would move it.
        sk_sys::setsockopt_int(b.as_fd(), libc::SOL_SOCKET, so::SO_PEEK_OFF, 4).unwrap();
        let mut f = open(&b);
        f.ahead.as_mut().unwrap().opts.rcriu_peek_off = Some(4);
        peek_ahead(&sk(16), &mut f, &mut buf);
        assert_eq!(ahead(&f), None);
        assert_eq!(
            sk_sys::getsockopt_int(b.as_fd(), libc::SOL_SOCKET, so::SO_PEEK_OFF).unwrap(),
            4
        );
    }

    #[test]
    fn fds_in_flight_are_left_to_the_dump() {
        let mut buf = Vec::new();
        let (a, b) = UnixStream::pair().unwrap();
        let passed = File::open("/dev/null").unwrap();
        let fds = [passed.as_fd()];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
        assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
        let sent = rustix::net::sendmsg(
            &a,
            &[std::io::IoSlice::new(b"xyz")],
            &mut control,
            rustix::net::SendFlags::empty(),
        )
        .unwrap();
        assert_eq!(sent, 3);
        let mut f = open(&b);
        peek_ahead(&sk(3), &mut f, &mut buf);
        assert_eq!(ahead(&f), None);
        // Still queued, with its fd.
        let p = sk_sys::peek(b.as_fd(), &mut buf).unwrap().unwrap();
        assert_eq!((p.len, p.rights.len()), (3, 1));
    }
}
