//! The `lock:` lines of `/proc/PID/fdinfo/N` (as `/proc/locks` writes
//! them): the locks and leases held through that open file.
//!
//! `1: POSIX  ADVISORY  WRITE 14242 fe:00:10010807 0 9`
//! `2: FLOCK  ADVISORY  READ 14242 fe:00:10010807 0 EOF`
//! `3: OFDLCK ADVISORY  WRITE -1 fe:00:10010807 100 EOF`
//! `4: LEASE  BREAKING  UNLCK 14242 fe:00:10010807 0 EOF`

use crate::error::ParseResult;
use crate::text::{self, bad, num};

/// Who owns a lock, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockKind {
    /// `fcntl(F_SETLK)`: owned by the process (its fd table).
    Posix,
    /// `fcntl(F_OFD_SETLK)`: owned by the open file description.
    Ofd,
    /// `flock()`: owned by the open file description.
    Flock,
    /// `fcntl(F_SETLEASE)`.
    Lease,
    /// An NFS delegation, a lock probe (`ACCESS`), or anything else.
    Other,
}

/// A lease's state (the second word): `ACTIVE`, `BREAKING` (being broken:
/// the lease type shown is what it breaks to) or `BREAKER`; locks show
/// `ADVISORY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockState {
    Advisory,
    Active,
    Breaking,
    Breaker,
    Other,
}

/// What the lock allows others: `READ` (shared), `WRITE` (exclusive) or
/// `UNLCK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockType {
    Read,
    Write,
    Unlock,
}

/// One `lock:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileLock {
    pub id: u64,
    pub kind: LockKind,
    pub state: LockState,
    pub ltype: LockType,
    /// The pid of the owner (of the process that made it, for a lock of
    /// an open file description), as the reader's namespace sees it; -1
    /// for an OFD lock.
    pub pid: i32,
    /// The file's device (major, minor) and inode.
    pub dev: (u32, u32),
    pub ino: u64,
    pub start: i64,
    /// The last byte, `None` for `EOF` (to the end, however far).
    pub end: Option<i64>,
}

/// Parses one lock line (after `lock:\t`).
pub fn parse_lock(line: &[u8]) -> ParseResult<FileLock> {
    let mut f = text::fields(line);
    let mut next = |what: &'static str| f.next().map(|(_, v)| v).ok_or_else(|| bad(0, what, line));
    let id = next("lock id")?;
    let id = num(
        text::dec_u64,
        id.strip_suffix(b":").unwrap_or(id),
        0,
        "lock id",
    )?;
    let kind = match next("lock kind")? {
        b"POSIX" => LockKind::Posix,
        b"OFDLCK" => LockKind::Ofd,
        b"FLOCK" => LockKind::Flock,
        b"LEASE" => LockKind::Lease,
        _ => LockKind::Other,
    };
    let state = match next("lock state")? {
        b"ADVISORY" => LockState::Advisory,
        b"ACTIVE" => LockState::Active,
        b"BREAKING" => LockState::Breaking,
        b"BREAKER" => LockState::Breaker,
        _ => LockState::Other,
    };
    let t = next("lock type")?;
    let ltype = match t {
        b"READ" => LockType::Read,
        b"WRITE" => LockType::Write,
        b"UNLCK" => LockType::Unlock,
        _ => return Err(bad(0, "lock type", t)),
    };
    let pid = num(text::dec_i32, next("lock owner")?, 0, "lock owner")?;
    let file = next("lock file")?;
    let mut parts = file.split(|&b| b == b':');
    let mut part = |what: &'static str| parts.next().ok_or_else(|| bad(0, what, file));
    let major = num(text::hex_u32, part("lock device")?, 0, "lock device")?;
    let minor = num(text::hex_u32, part("lock device")?, 0, "lock device")?;
    let ino = num(text::dec_u64, part("lock inode")?, 0, "lock inode")?;
    let start = num(text::dec_i64, next("lock start")?, 0, "lock start")?;
    let end = match next("lock end")? {
        b"EOF" => None,
        e => Some(num(text::dec_i64, e, 0, "lock end")?),
    };
    Ok(FileLock {
        id,
        kind,
        state,
        ltype,
        pid,
        dev: (major, minor),
        ino,
        start,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_every_kind() {
        let l = parse_lock(b"1: POSIX  ADVISORY  WRITE 14242 fe:00:10010807 0 9").unwrap();
        assert_eq!(
            l,
            FileLock {
                id: 1,
                kind: LockKind::Posix,
                state: LockState::Advisory,
                ltype: LockType::Write,
                pid: 14242,
                dev: (0xfe, 0),
                ino: 10010807,
                start: 0,
                end: Some(9),
            }
        );
        let l = parse_lock(b"2: FLOCK  ADVISORY  READ 7 00:2a:99 0 EOF").unwrap();
        assert_eq!(
            (l.kind, l.ltype, l.end, l.dev),
            (LockKind::Flock, LockType::Read, None, (0, 0x2a))
        );
        let l = parse_lock(b"3: OFDLCK ADVISORY  WRITE -1 fe:00:5 100 EOF").unwrap();
        assert_eq!((l.kind, l.pid, l.start), (LockKind::Ofd, -1, 100));
        let l = parse_lock(b"4: LEASE  BREAKING  UNLCK 7 fe:00:5 0 EOF").unwrap();
        assert_eq!(
            (l.kind, l.state, l.ltype),
            (LockKind::Lease, LockState::Breaking, LockType::Unlock)
        );
        let l = parse_lock(b"5: DELEG  ACTIVE    READ 7 fe:00:5 0 EOF").unwrap();
        assert_eq!(l.kind, LockKind::Other);
    }

    #[test]
    fn malformed_lines() {
        for bad in [
            &b""[..],
            b"1: POSIX ADVISORY",
            b"x: POSIX ADVISORY WRITE 1 fe:00:5 0 EOF",
            b"1: POSIX ADVISORY MAYBE 1 fe:00:5 0 EOF",
            b"1: POSIX ADVISORY WRITE 1 fe:00 0 EOF",
            b"1: POSIX ADVISORY WRITE 1 fe:00:5 0 END",
        ] {
            assert!(parse_lock(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
