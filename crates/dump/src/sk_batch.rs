//! `getsockopt` in batches, through an io_uring of rcriu's own
//! (`IORING_OP_URING_CMD` with `SOCKET_URING_OP_GETSOCKOPT`, Linux 6.7):
//! one `io_uring_enter` reads hundreds of `SOL_SOCKET` options, where
//! each `getsockopt` call costs a system call. A server's ten thousand
//! sockets have some 270,000 options to read; in batches the kernel does
//! the same work for a little over half the time.
//!
//! The kernel runs each command inline as it is submitted, through the
//! same `do_sock_getsockopt` a `getsockopt` call takes: the values are
//! the same. A kernel without the command (or with io_uring disabled)
//! answers the first batch with errors and [`Batch::new`] says so; the
//! caller then reads the options one call at a time.
//!
//! # Safety
//! The ring's memory is mapped here and unmapped on drop. The values the
//! kernel writes live in a buffer the [`Batch`] owns (never the
//! caller's); a batch is submitted only once every entry of the one
//! before completed, and if a completion could not be waited for, the
//! buffer is leaked rather than freed under the kernel.

use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use rcriu_compel::sys::uring;

/// `IORING_OP_URING_CMD`.
const OP_URING_CMD: u8 = 46;
/// `SOCKET_URING_OP_GETSOCKOPT`.
const SOCKET_URING_OP_GETSOCKOPT: u32 = 2;
/// Entries of the ring (and so options per `io_uring_enter`).
const ENTRIES: u32 = 1024;
/// Registered files of the ring (`IOSQE_FIXED_FILE`): a command on one
/// takes no reference of its own on the file, as a plain fd's does.
const SLOTS: usize = 256;
/// `IOSQE_FIXED_FILE`.
const SQE_FIXED_FILE: u8 = 1;
/// The largest option value read in a batch (a timeval is 16 bytes, an
/// interface name as many).
pub const MAX_VAL: usize = 16;

/// `struct io_uring_sqe`, as a socket command fills it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    cmd_op: u32,
    pad1: u32,
    level: u32,
    optname: u32,
    len: u32,
    cmd_flags: u32,
    user_data: u64,
    buf_index: u16,
    personality: u16,
    optlen: u32,
    optval: u64,
    pad2: u64,
}

/// `struct io_uring_cqe`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

const _: () = {
    assert!(std::mem::size_of::<Sqe>() == 64);
    assert!(std::mem::offset_of!(Sqe, level) == 16);
    assert!(std::mem::offset_of!(Sqe, optlen) == 44);
    assert!(std::mem::offset_of!(Sqe, optval) == 48);
    assert!(std::mem::size_of::<Cqe>() == 16);
};

/// One option to read: `getsockopt(fd, SOL_SOCKET, name)` with room for
/// `len` bytes (0 asks a length question, as `SO_GET_FILTER` takes: the
/// answer is [`Got::res`]).
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub fd: RawFd,
    pub name: i32,
    pub len: u32,
}

/// What one [`Ask`] got: the length the kernel gave, or its error.
#[derive(Debug, Clone, Copy)]
pub struct Got {
    pub res: i32,
    pub val: [u8; MAX_VAL],
}

impl Got {
    /// As `getsockopt` returns it: the value's bytes, or the error.
    pub fn bytes(&self) -> io::Result<&[u8]> {
        if self.res < 0 {
            return Err(io::Error::from_raw_os_error(-self.res));
        }
        Ok(&self.val[..(self.res as usize).min(MAX_VAL)])
    }
}

/// A mapping of the ring's, unmapped on drop.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    fn new(fd: &OwnedFd, len: usize, offset: u64) -> io::Result<Map> {
        // SAFETY: a new shared mapping of the ring fd at the offset the
        // io_uring ABI names; nothing else is at the address the kernel
        // chooses.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED | rustix::mm::MapFlags::POPULATE,
                fd.as_fd(),
                offset,
            )
        }?;
        Ok(Map {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The u32 at byte `off` (a head, tail or mask the kernel shares).
    fn word(&self, off: u32) -> &AtomicU32 {
        assert!(off as usize + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: in bounds and aligned (checked), in a mapping that
        // lives as long as `self`; the kernel accesses it atomically too.
        unsafe { &*self.ptr.add(off as usize).cast::<AtomicU32>() }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer referenced.
        let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), self.len) };
    }
}

/// An io_uring for reading socket options in batches.
pub struct Batch {
    // Dropped in order: the maps, then the ring.
    rings: Map,
    sqes: Map,
    fd: OwnedFd,
    p: uring::Params,
    /// Where the kernel writes the values of the batch in flight.
    vals: Box<[[u8; MAX_VAL]]>,
    /// Entries that may still be in flight (never, but for an error
    /// while waiting for them): the buffer is then leaked on drop.
    pending: bool,
    /// Whether the ring has its table of registered files.
    fixed: bool,
    /// The fds whose files the table holds, by slot ([`Batch::hold`]).
    slots: Vec<RawFd>,
}

// SAFETY: the raw pointers are the ring's mappings, owned by the batch
// and used by one thread at a time (`&mut self`).
unsafe impl Send for Batch {}

impl Batch {
    /// A ring, if the kernel has one and reads socket options through it
    /// (asked of `probe`, a socket of the caller's).
    pub fn new(probe: RawFd) -> io::Result<Batch> {
        let mut p = uring::Params::default();
        let fd = uring::setup(ENTRIES, &mut p)?;
        let len = p
            .rings_len()
            .max(p.cq_off.cqes as usize + p.cq_entries as usize * 16);
        let rings = Map::new(&fd, len, uring::OFF_SQ_RING)?;
        if p.features & uring::FEAT_SINGLE_MMAP == 0 {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let sqes = Map::new(&fd, p.sqes_len(), uring::OFF_SQES)?;
        let mut b = Batch {
            rings,
            sqes,
            fd,
            p,
            vals: vec![[0u8; MAX_VAL]; ENTRIES as usize].into_boxed_slice(),
            pending: false,
            fixed: false,
            slots: Vec::new(),
        };
        // An empty table, filled by `hold`; without one, every command
        // names its fd.
        b.fixed = uring::register_files(b.fd.as_fd(), &[-1; SLOTS])
            .map_err(|e| log::debug!("socket options without registered files: {e}"))
            .is_ok();
        // The array maps slot i to SQE i, once.
        for i in 0..p.sq_entries {
            b.rings
                .word(p.sq_off.array + 4 * i)
                .store(i, Ordering::Relaxed);
        }
        let got = b.read(&[Ask {
            fd: probe,
            name: libc::SO_TYPE,
            len: 4,
        }])?;
        got[0].bytes()?;
        Ok(b)
    }

    /// Registers the files open as `fds` (at most [`SLOTS`]; the ones
    /// registered before let go): asks naming these fds, while they stay
    /// open as they are, read through the registered files. Without a
    /// table (or when it cannot be updated), asks name their fds.
    pub fn hold(&mut self, fds: &[RawFd]) {
        self.slots.clear();
        if !self.fixed || fds.len() > SLOTS {
            return;
        }
        match uring::update_files(self.fd.as_fd(), 0, fds) {
            Ok(()) => self.slots.extend_from_slice(fds),
            Err(e) => {
                log::debug!("socket options without registered files: {e}");
                self.fixed = false;
            }
        }
    }

    /// Reads every option of `asks`, in order.
    pub fn read(&mut self, asks: &[Ask]) -> io::Result<Vec<Got>> {
        let mut out = Vec::with_capacity(asks.len());
        let n_max = self.p.sq_entries.min(self.p.cq_entries).min(ENTRIES) as usize;
        for chunk in asks.chunks(n_max) {
            self.submit(chunk)?;
            out.extend(self.complete(chunk.len())?);
        }
        Ok(out)
    }

    fn submit(&mut self, chunk: &[Ask]) -> io::Result<()> {
        let so = self.p.sq_off;
        let mask = self.rings.word(so.ring_mask).load(Ordering::Relaxed);
        let tail = self.rings.word(so.tail).load(Ordering::Relaxed);
        // Asks come socket by socket: the slot of the last one is tried
        // first.
        let mut hint = 0;
        for (i, a) in chunk.iter().enumerate() {
            let t = tail.wrapping_add(i as u32);
            let slot = (t & mask) as usize;
            let val = self.vals[i].as_mut_ptr();
            let fixed = if self.slots.get(hint) == Some(&a.fd) {
                Some(hint)
            } else {
                self.slots.iter().position(|&f| f == a.fd)
            };
            if let Some(k) = fixed {
                hint = k;
            }
            let sqe = Sqe {
                opcode: OP_URING_CMD,
                flags: if fixed.is_some() { SQE_FIXED_FILE } else { 0 },
                fd: fixed.map_or(a.fd, |k| k as i32),
                cmd_op: SOCKET_URING_OP_GETSOCKOPT,
                level: libc::SOL_SOCKET as u32,
                optname: a.name as u32,
                optlen: a.len.min(MAX_VAL as u32),
                optval: if a.len == 0 { 0 } else { val as u64 },
                user_data: i as u64,
                ..Sqe::default()
            };
            assert!((slot + 1) * 64 <= self.sqes.len);
            // SAFETY: SQE `slot` is in the mapped array (checked) and not
            // the kernel's until the tail below passes it.
            unsafe { self.sqes.ptr.cast::<Sqe>().add(slot).write(sqe) };
        }
        let n = chunk.len() as u32;
        self.rings
            .word(so.tail)
            .store(tail.wrapping_add(n), Ordering::Release);
        self.pending = true;
        let mut left = n;
        while left > 0 {
            match uring::enter(self.fd.as_fd(), left, 0, 0) {
                Ok(0) => return Err(io::Error::from_raw_os_error(libc::EBUSY)),
                Ok(k) => left -= k.min(left),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn complete(&mut self, n: usize) -> io::Result<Vec<Got>> {
        let co = self.p.cq_off;
        let mask = self.rings.word(co.ring_mask).load(Ordering::Relaxed);
        let mut out = vec![
            Got {
                res: -libc::EIO,
                val: [0; MAX_VAL],
            };
            n
        ];
        let mut seen = 0;
        while seen < n {
            let head = self.rings.word(co.head).load(Ordering::Relaxed);
            let tail = self.rings.word(co.tail).load(Ordering::Acquire);
            if head == tail {
                match uring::enter(
                    self.fd.as_fd(),
                    0,
                    (n - seen) as u32,
                    uring::ENTER_GETEVENTS,
                ) {
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            let mut h = head;
            while h != tail {
                let off = co.cqes as usize + (h & mask) as usize * 16;
                assert!(off + 16 <= self.rings.len);
                // SAFETY: CQE `h` is in the mapping (checked) and the
                // kernel's write of it is visible after the acquire load
                // of the tail.
                let c = unsafe { self.rings.ptr.add(off).cast::<Cqe>().read() };
                if let Some(g) = out.get_mut(c.user_data as usize) {
                    g.res = c.res;
                    if c.res > 0 {
                        g.val = self.vals[c.user_data as usize];
                    }
                }
                h = h.wrapping_add(1);
                seen += 1;
            }
            self.rings.word(co.head).store(h, Ordering::Release);
        }
        self.pending = false;
        Ok(out)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.pending {
            // The kernel may yet write there: never freed.
            std::mem::forget(std::mem::take(&mut self.vals));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn sync(fd: RawFd, name: i32, len: usize) -> io::Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        let mut l = len as libc::socklen_t;
        // SAFETY: the kernel writes at most `l` bytes to `b`.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                if len == 0 {
                    std::ptr::null_mut()
                } else {
                    b.as_mut_ptr().cast()
                },
                &mut l,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        b.truncate(if len == 0 { 0 } else { l as usize });
        if len == 0 {
            return Ok((l as u32).to_ne_bytes().to_vec());
        }
        Ok(b)
    }

    #[test]
    fn a_batch_reads_what_getsockopt_reads() {
        let (a, b) = UnixStream::pair().unwrap();
        let one = 1i32.to_ne_bytes();
        let set = |name, v: &[u8]| {
            // SAFETY: the kernel reads `v.len()` bytes of `v`.
            let r = unsafe {
                libc::setsockopt(
                    b.as_raw_fd(),
                    libc::SOL_SOCKET,
                    name,
                    v.as_ptr().cast(),
                    v.len() as u32,
                )
            };
            assert_eq!(r, 0, "{name}");
        };
        set(libc::SO_KEEPALIVE, &one);
        set(libc::SO_PRIORITY, &5i32.to_ne_bytes());
        set(libc::SO_SNDBUF, &65536i32.to_ne_bytes());
        let mut tv = [0u8; 16];
        tv[..8].copy_from_slice(&7i64.to_ne_bytes());
        set(libc::SO_RCVTIMEO, &tv);
        let names = [
            (libc::SO_KEEPALIVE, 4),
            (libc::SO_PRIORITY, 4),
            (libc::SO_SNDBUF, 4),
            (libc::SO_RCVTIMEO, 16),
            (libc::SO_LINGER, 8),
            (libc::SO_BINDTODEVICE, 16),
            (libc::SO_DOMAIN, 4),
        ];
        let Ok(mut batch) = Batch::new(a.as_raw_fd()) else {
            eprintln!("no io_uring socket commands here: nothing to compare");
            return;
        };
        let asks: Vec<Ask> = [a.as_raw_fd(), b.as_raw_fd()]
            .iter()
            .flat_map(|&fd| {
                names.iter().map(move |&(name, len)| Ask {
                    fd,
                    name,
                    len: len as u32,
                })
            })
            .collect();
        let got = batch.read(&asks).unwrap();
        for (ask, got) in asks.iter().zip(&got) {
            let want = sync(ask.fd, ask.name, ask.len as usize).unwrap();
            assert_eq!(got.bytes().unwrap(), &want[..], "option {}", ask.name);
        }
        // Read again through registered files (b's first: slots need not
        // follow the fds' order), the same.
        batch.hold(&[b.as_raw_fd(), a.as_raw_fd()]);
        let again = batch.read(&asks).unwrap();
        for ((ask, got), again) in asks.iter().zip(&got).zip(&again) {
            assert_eq!(
                got.bytes().unwrap(),
                again.bytes().unwrap(),
                "option {}",
                ask.name
            );
        }
        // The options set differ between the two ends: a batch that read
        // one socket twice would not match.
        assert_ne!(got[0].bytes().unwrap(), got[names.len()].bytes().unwrap());
        // An error comes back as getsockopt's.
        let bad = batch
            .read(&[Ask {
                fd: a.as_raw_fd(),
                name: 9999,
                len: 4,
            }])
            .unwrap();
        assert_eq!(
            bad[0].bytes().unwrap_err().raw_os_error(),
            sync(a.as_raw_fd(), 9999, 4).unwrap_err().raw_os_error()
        );
    }
}
