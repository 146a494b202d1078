//! The wire format of CRIU 4.2's page server (`criu/page-xfer.c`).
//!
//! Every request is one `struct page_server_iov`, 32 bytes in the
//! machine's byte order (little-endian on x86_64), C's layout:
//!
//! ```text
//! offset  0  u32 cmd        command in the low 16 bits, PE_* flags above
//!         4  (4 bytes of padding, sent as zeros)
//!         8  u64 nr_pages
//!        16  u64 vaddr
//!        24  u64 dst_id     (id << 8) | type: 1 a process's pagemap,
//!                           2 a shared memory's (older CRIUs' numbers
//!                           are taken too)
//! ```
//!
//! A dump opens a pagemap (`OPEN2`, answered with one byte: whether the
//! server has a parent pagemap for it), then sends `ADD_F` requests in
//! pagemap order, each followed by `nr_pages` pages of bytes when its
//! flags have PE_PRESENT, and finally `CLOSE`, answered with an `i32`
//! status (0) once everything before it is written. `PARENT` asks about
//! a parent pagemap (answered with an `i32`); `GET` belongs to lazy
//! pages: the restore's daemon asks a lazy dump for pages ([`crate::lazy`]).

use rcriu_images::pages::PAGE_SIZE;

/// The size of a request.
pub const IOV_SIZE: usize = 32;

/// Pages and entry flags of the run (the old command, PE_PRESENT).
pub const ADD: u32 = 1;
/// Pages in the parent's images (the old command, PE_PARENT).
pub const HOLE: u32 = 2;
/// Opens a pagemap, unanswered (older CRIUs).
pub const OPEN: u32 = 3;
/// Opens a pagemap; answered with a byte: whether it has a parent.
pub const OPEN2: u32 = 4;
/// Whether a pagemap has a parent; answered with an `i32`.
pub const PARENT: u32 = 5;
/// A run, its `PE_*` flags in the command's upper 16 bits.
pub const ADD_F: u32 = 6;
/// Lazy pages: asks the dumping side for pages.
pub const GET: u32 = 7;
/// The end of the session; answered with an `i32` status.
pub const CLOSE: u32 = 0x1023;
/// As CLOSE, from a dump that does not close the connection itself
/// (`--ps-socket`).
pub const FORCE_CLOSE: u32 = 0x1024;

const CMD_BITS: u32 = 16;
const CMD_MASK: u32 = (1 << CMD_BITS) - 1;
const TYPE_BITS: u32 = 8;
const TYPE_MASK: u64 = (1 << TYPE_BITS) - 1;
const TYPE_PID: u64 = 1;
const TYPE_SHMEM: u64 = 2;

/// Which pagemap a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dst {
    /// `pagemap-<pid>.img`.
    Pid(u32),
    /// `pagemap-shmem-<shmid>.img`.
    Shmem(u32),
}

impl Dst {
    /// Its `dst_id`.
    pub fn encode(self) -> u64 {
        match self {
            Dst::Pid(p) => (u64::from(p) << TYPE_BITS) | TYPE_PID,
            Dst::Shmem(s) => (u64::from(s) << TYPE_BITS) | TYPE_SHMEM,
        }
    }

    /// The pagemap of `dst_id`, as CRIU 4.2 reads it (with the numbers
    /// older CRIUs gave the types); `None` for an unknown type or an id
    /// that names no image rcriu can write.
    pub fn decode(dst_id: u64) -> Option<Dst> {
        let id = u32::try_from(dst_id >> TYPE_BITS).ok()?;
        match dst_id & TYPE_MASK {
            TYPE_PID | 10 | 11 | 16 | 17 => Some(Dst::Pid(id)),
            TYPE_SHMEM | 27 | 28 | 29 | 32 | 33 | 34 => Some(Dst::Shmem(id)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dst::Pid(p) => write!(f, "the pagemap of process {p}"),
            Dst::Shmem(s) => write!(f, "the pagemap of shared memory {s}"),
        }
    }
}

/// One request (`struct page_server_iov`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Iov {
    pub cmd: u32,
    pub nr_pages: u64,
    pub vaddr: u64,
    pub dst_id: u64,
}

impl Iov {
    /// A request of command `cmd` with `flags` for `dst`.
    pub fn new(cmd: u32, flags: u32, dst: Option<Dst>) -> Iov {
        Iov {
            cmd: (flags << CMD_BITS) | cmd,
            dst_id: dst.map_or(0, Dst::encode),
            ..Iov::default()
        }
    }

    /// The command, without its flags.
    pub fn command(&self) -> u32 {
        self.cmd & CMD_MASK
    }

    /// The flags `ADD_F` carries.
    pub fn flags(&self) -> u32 {
        self.cmd >> CMD_BITS
    }

    /// The bytes of the run's pages, `None` when they overflow.
    pub fn bytes(&self) -> Option<u64> {
        self.nr_pages.checked_mul(PAGE_SIZE)
    }

    pub fn to_bytes(&self) -> [u8; IOV_SIZE] {
        let mut b = [0u8; IOV_SIZE];
        b[0..4].copy_from_slice(&self.cmd.to_ne_bytes());
        b[8..16].copy_from_slice(&self.nr_pages.to_ne_bytes());
        b[16..24].copy_from_slice(&self.vaddr.to_ne_bytes());
        b[24..32].copy_from_slice(&self.dst_id.to_ne_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; IOV_SIZE]) -> Iov {
        let u64_at = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_ne_bytes(w)
        };
        Iov {
            cmd: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            nr_pages: u64_at(8),
            vaddr: u64_at(16),
            dst_id: u64_at(24),
        }
    }
}

/// CRIU's name of a command, for messages.
pub fn command_name(cmd: u32) -> String {
    match cmd {
        ADD => "PS_IOV_ADD".into(),
        HOLE => "PS_IOV_HOLE".into(),
        OPEN => "PS_IOV_OPEN".into(),
        OPEN2 => "PS_IOV_OPEN2".into(),
        PARENT => "PS_IOV_PARENT".into(),
        ADD_F => "PS_IOV_ADD_F".into(),
        GET => "PS_IOV_GET".into(),
        CLOSE => "PS_IOV_CLOSE".into(),
        FORCE_CLOSE => "PS_IOV_FORCE_CLOSE".into(),
        n => format!("unknown command {n:#x}"),
    }
}

/// The next request read from `sock` (a peer's at `peer`); `None` when
/// the connection ends between requests.
pub fn read_request<S: std::io::Read>(sock: &mut S, peer: &str) -> crate::Result<Option<Iov>> {
    let mut b = [0u8; IOV_SIZE];
    let mut got = 0;
    while got < IOV_SIZE {
        match sock.read(&mut b[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(crate::Error::protocol(
                    peer,
                    format!("the connection ended in a request ({got} of {IOV_SIZE} bytes)"),
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(crate::Error::io(peer, "reading a request")(e)),
        }
    }
    Ok(Some(Iov::from_bytes(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_c_s() {
        let i = Iov {
            cmd: (4 << 16) | ADD_F,
            nr_pages: 3,
            vaddr: 0x7f00_0000_1000,
            dst_id: Dst::Pid(42).encode(),
        };
        let b = i.to_bytes();
        assert_eq!(&b[0..4], &[6, 0, 4, 0]);
        assert_eq!(&b[4..8], &[0; 4], "padding");
        assert_eq!(b[8], 3);
        assert_eq!(b[24], 1, "PS_TYPE_PID");
        assert_eq!(b[25], 42);
        assert_eq!(Iov::from_bytes(&b), i);
        assert_eq!(i.command(), ADD_F);
        assert_eq!(i.flags(), 4);
    }

    #[test]
    fn destinations_as_criu_reads_them() {
        assert_eq!(Dst::decode(Dst::Pid(7).encode()), Some(Dst::Pid(7)));
        assert_eq!(Dst::decode(Dst::Shmem(9).encode()), Some(Dst::Shmem(9)));
        assert_eq!(Dst::decode((5 << 8) | 11), Some(Dst::Pid(5)), "CRIU 2.x");
        assert_eq!(Dst::decode((5 << 8) | 34), Some(Dst::Shmem(5)));
        assert_eq!(Dst::decode((5 << 8) | 3), None);
        assert_eq!(Dst::decode((1u64 << 40 << 8) | 1), None, "no such pid");
        let huge = Iov {
            nr_pages: u64::MAX / 2,
            ..Iov::default()
        };
        assert_eq!(huge.bytes(), None);
    }
}
