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

fn read_all(files: &mut Files, f: &OpenFd, id: u32, queued: u64, kind: i32) -> Result<Vec<Packet>> {
    let fd = f.file.as_fd();
    let (sndbuf, rcvbuf) = match &f.ahead {
        Some(a) => (a.opts.so_sndbuf as i32, a.opts.so_rcvbuf as i32),
        None => (
            sk_sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF).unwrap_or(0),
            sk_sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(0),
        ),
    };
    // Room for the largest message: a datagram is at most its sender's
    // send buffer, a stream's chunk what is queued.
    let room = (queued as usize)
        .max(sndbuf.max(rcvbuf).max(0) as usize * 2)
        .clamp(64 << 10, MAX_CHUNK);
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
