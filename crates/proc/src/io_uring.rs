//! The fdinfo of an io_uring instance (`anon_inode:[io_uring]`), which
//! the generic [`parse_fdinfo`](crate::parse_fdinfo) leaves in `other`:
//! the rings' masks, heads and tails, the entries waiting in each queue,
//! the SQPOLL thread, the registered files and buffers, and the lists of
//! requests the kernel holds (poll, overflow).

use crate::error::{ParseError, ParseResult};
use crate::text::{bad, dec_i64, dec_u32, dec_u64, hex_u32, hex_u64, num, trim};

/// What an io_uring's fdinfo says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IoUringInfo {
    pub sq_mask: u32,
    pub sq_head: u32,
    pub sq_tail: u32,
    pub cached_sq_head: u32,
    pub cq_mask: u32,
    pub cq_head: u32,
    pub cq_tail: u32,
    pub cached_cq_tail: u32,
    /// The lines of the submissions waiting (`SQEs:` count lines after
    /// it), verbatim.
    pub sqe_lines: Vec<Vec<u8>>,
    /// The lines of the completions waiting, verbatim.
    pub cqe_lines: Vec<Vec<u8>>,
    /// `SqThread:`: the SQPOLL thread's pid, -1 for none.
    pub sq_thread: i64,
    /// Registered files by index: the path, `None` for an empty slot.
    pub files: Vec<Option<Vec<u8>>>,
    /// Registered buffers by index: address and length.
    pub bufs: Vec<(u64, u64)>,
    /// A `Personalities:` section is present.
    pub personalities: bool,
    /// Lines under `PollList:`.
    pub poll_list: usize,
    /// Lines under `CqOverflowList:`.
    pub overflow_list: usize,
    /// `NAPI:` says other than `disabled`.
    pub napi: bool,
}

/// The most registered files taken (the kernel's own limit,
/// IORING_MAX_FIXED_FILES, is 1 << 20).
const MAX_FILES: u32 = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Sqes,
    Cqes,
    Files,
    Bufs,
    Personalities,
    Poll,
    Overflow,
}

fn hex32(v: &[u8]) -> Option<u32> {
    hex_u32(v.strip_prefix(b"0x").unwrap_or(v))
}

/// Parses the fdinfo file of an io_uring instance (Linux 6.x).
pub fn parse_io_uring_fdinfo(text: &[u8]) -> ParseResult<IoUringInfo> {
    let mut out = IoUringInfo {
        sq_thread: -1,
        ..IoUringInfo::default()
    };
    let mut seen = 0u32;
    let mut files_seen = 0usize;
    let mut section = Section::None;
    let mut off = 0usize;
    for line in text.split(|&b| b == b'\n') {
        let at = off;
        off += line.len() + 1;
        if line.is_empty() {
            continue;
        }
        let indented = line[0] == b' ' || line[0] == b'\t';
        if indented {
            let body = trim(line);
            match section {
                Section::Sqes => out.sqe_lines.push(body.to_vec()),
                Section::Cqes => out.cqe_lines.push(body.to_vec()),
                Section::Files | Section::Bufs => {
                    let colon = memchr::memchr(b':', body).ok_or_else(|| bad(at, "slot", line))?;
                    let index = num(dec_u32, &body[..colon], at, "slot index")? as usize;
                    let value = trim(&body[colon + 1..]);
                    if section == Section::Files {
                        // Empty slots are not listed (or listed as
                        // `<none>`); the count said how many there are.
                        if index >= out.files.len() || index < files_seen {
                            return Err(bad(at, "registered file index", line));
                        }
                        files_seen = index + 1;
                        out.files[index] = (value != b"<none>").then(|| value.to_vec());
                    } else {
                        if index != out.bufs.len() {
                            return Err(bad(at, "registered buffer index", line));
                        }
                        let slash =
                            memchr::memchr(b'/', value).ok_or_else(|| bad(at, "buffer", line))?;
                        let addr = num(
                            |v| hex_u64(v.strip_prefix(b"0x").unwrap_or(v)),
                            &value[..slash],
                            at,
                            "buffer address",
                        )?;
                        let len = num(dec_u64, &value[slash + 1..], at, "buffer length")?;
                        out.bufs.push((addr, len));
                    }
                }
                Section::Personalities => {}
                Section::Poll => out.poll_list += 1,
                Section::Overflow => out.overflow_list += 1,
                Section::None => {}
            }
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Err(bad(at, "line", line));
        };
        let key = &line[..colon];
        let value = trim(&line[colon + 1..]);
        section = Section::None;
        match key {
            b"SqMask" => {
                out.sq_mask = num(hex32, value, at, "SqMask")?;
                seen |= 1;
            }
            b"SqHead" => {
                out.sq_head = num(dec_u32, value, at, "SqHead")?;
                seen |= 2;
            }
            b"SqTail" => {
                out.sq_tail = num(dec_u32, value, at, "SqTail")?;
                seen |= 4;
            }
            b"CachedSqHead" => {
                out.cached_sq_head = num(dec_u32, value, at, "CachedSqHead")?;
                seen |= 8;
            }
            b"CqMask" => {
                out.cq_mask = num(hex32, value, at, "CqMask")?;
                seen |= 16;
            }
            b"CqHead" => {
                out.cq_head = num(dec_u32, value, at, "CqHead")?;
                seen |= 32;
            }
            b"CqTail" => {
                out.cq_tail = num(dec_u32, value, at, "CqTail")?;
                seen |= 64;
            }
            b"CachedCqTail" => {
                out.cached_cq_tail = num(dec_u32, value, at, "CachedCqTail")?;
                seen |= 128;
            }
            b"SqThread" => {
                out.sq_thread = num(dec_i64, value, at, "SqThread")?;
                seen |= 256;
            }
            b"SQEs" => section = Section::Sqes,
            b"CQEs" => section = Section::Cqes,
            b"UserFiles" => {
                let n = num(dec_u32, value, at, "UserFiles")?;
                if n > MAX_FILES {
                    return Err(bad(at, "UserFiles", value));
                }
                out.files = vec![None; n as usize];
                section = Section::Files;
                seen |= 512;
            }
            b"UserBufs" => {
                section = Section::Bufs;
                seen |= 1024;
            }
            b"Personalities" => {
                out.personalities = true;
                section = Section::Personalities;
            }
            b"PollList" => section = Section::Poll,
            b"CqOverflowList" => section = Section::Overflow,
            b"NAPI" => out.napi = value != b"disabled",
            _ => {}
        }
    }
    if seen != 2047 {
        return Err(ParseError::new(text.len(), "io_uring lines missing"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: &[u8] = concat!(
        "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t15565875\n",
        "SqMask:\t0x7\nSqHead:\t5\nSqTail:\t5\nCachedSqHead:\t5\nCqMask:\t0xf\n",
        "CqHead:\t5\nCqTail:\t5\nCachedCqTail:\t5\nSQEs:\t0\nCQEs:\t0\nSqThread:\t-1\n",
        "SqThreadCpu:\t-1\nSqTotalTime:\t0\nSqWorkTime:\t0\nUserFiles:\t4\n",
        "    0: /dev/null\n",
        "    1: <none>\n",
        "    3: /tmp/a b\n",
        "UserBufs:\t1\n",
        "    0: 0x5630e7b77080/4096\n",
        "PollList:\nCqOverflowList:\nNAPI:\tdisabled\n",
    )
    .as_bytes();

    #[test]
    fn an_idle_ring() {
        let i = parse_io_uring_fdinfo(IDLE).unwrap();
        assert_eq!((i.sq_mask, i.cq_mask), (7, 15));
        assert_eq!((i.sq_head, i.sq_tail, i.cq_head, i.cq_tail), (5, 5, 5, 5));
        assert_eq!(i.sq_thread, -1);
        assert_eq!(
            i.files,
            vec![
                Some(b"/dev/null".to_vec()),
                None,
                None,
                Some(b"/tmp/a b".to_vec())
            ]
        );
        assert_eq!(i.bufs, vec![(0x5630_e7b7_7080, 4096)]);
        assert_eq!((i.poll_list, i.overflow_list, i.napi), (0, 0, false));
        assert!(i.sqe_lines.is_empty() && i.cqe_lines.is_empty());
    }

    #[test]
    fn waiting_entries_and_lists() {
        let text = concat!(
            "SqMask:\t0x7\nSqHead:\t0\nSqTail:\t1\nCachedSqHead:\t0\nCqMask:\t0xf\n",
            "CqHead:\t4294967295\nCqTail:\t0\nCachedCqTail:\t0\nSQEs:\t1\n",
            "    0: opcode:NOP, fd:0, flags:0, off:0, addr:0x0, rw_flags:0x0, buf_index:0 ",
            "user_data:0, e0:0x0\n",
            "CQEs:\t1\n",
            "   15: user_data:0, res:0, flag:0, extra1:0, extra2:0\n",
            "SqThread:\t-1\nUserFiles:\t0\nUserBufs:\t0\nPollList:\n",
            "  op=1, task_works=0\n",
            "CqOverflowList:\nNAPI:\tenabled\n",
        )
        .as_bytes();
        let i = parse_io_uring_fdinfo(text).unwrap();
        assert_eq!(i.cq_head, u32::MAX);
        assert_eq!(i.sqe_lines.len(), 1);
        assert!(i.cqe_lines[0].ends_with(b"extra2:0"));
        assert_eq!((i.poll_list, i.napi), (1, true));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse_io_uring_fdinfo(b"SqMask:\t0x7\n").is_err());
        let mut t = IDLE.to_vec();
        t.extend_from_slice(b"garbage\n");
        assert!(parse_io_uring_fdinfo(&t).is_err());
        let t = String::from_utf8_lossy(IDLE).replace("    1: <none>", "    7: <none>");
        assert!(parse_io_uring_fdinfo(t.as_bytes()).is_err());
        let t = String::from_utf8_lossy(IDLE).replace("    3: /tmp", "    0: /tmp");
        assert!(parse_io_uring_fdinfo(t.as_bytes()).is_err());
    }
}
