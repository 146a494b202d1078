//! Small files: auxv, cmdline, environ, comm, and the one-number files.

use crate::error::{ParseError, ParseResult};
use crate::text::{self, num};

/// One auxiliary vector entry (`AT_*` type and value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuxvEntry {
    pub key: u64,
    pub value: u64,
}

/// Parses `/proc/PID/auxv`: native-endian u64 pairs, up to and without
/// the `AT_NULL` entry.
pub fn parse_auxv(bytes: &[u8]) -> ParseResult<Vec<AuxvEntry>> {
    if !bytes.len().is_multiple_of(16) {
        return Err(ParseError::new(
            bytes.len(),
            format!(
                "{} bytes is not a whole number of 16-byte entries",
                bytes.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(bytes.len() / 16);
    for pair in bytes.chunks_exact(16) {
        let (k, v) = pair.split_at(8);
        let key = u64::from_ne_bytes(k.try_into().expect("split_at(8) of a 16-byte chunk"));
        let value = u64::from_ne_bytes(v.try_into().expect("split_at(8) of a 16-byte chunk"));
        if key == libc::AT_NULL {
            break;
        }
        out.push(AuxvEntry { key, value });
    }
    Ok(out)
}

/// Splits a NUL-separated list (cmdline, environ) into its strings. A
/// final NUL ends the last string rather than starting an empty one.
pub fn split_nul(bytes: &[u8]) -> Vec<Vec<u8>> {
    let body = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if body.is_empty() && bytes.len() <= 1 {
        return Vec::new();
    }
    body.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

/// The comm file without its newline.
pub fn parse_comm(bytes: &[u8]) -> Vec<u8> {
    bytes.strip_suffix(b"\n").unwrap_or(bytes).to_vec()
}

fn one(bytes: &[u8]) -> &[u8] {
    text::trim(bytes.strip_suffix(b"\n").unwrap_or(bytes))
}

/// A file holding one unsigned decimal number (`timerslack_ns`).
pub fn parse_u64(bytes: &[u8]) -> ParseResult<u64> {
    num(text::dec_u64, one(bytes), 0, "number")
}

/// A file holding one signed decimal number (`oom_score_adj`).
pub fn parse_i64(bytes: &[u8]) -> ParseResult<i64> {
    num(text::dec_i64, one(bytes), 0, "number")
}

/// `/proc/PID/personality`: hexadecimal.
pub fn parse_personality(bytes: &[u8]) -> ParseResult<u32> {
    num(text::hex_u32, one(bytes), 0, "personality")
}

/// The children file: blank-separated pids.
pub fn parse_pid_list(bytes: &[u8]) -> ParseResult<Vec<crate::Pid>> {
    text::fields(one(bytes))
        .map(|(o, f)| num(text::dec_i32, f, o, "pid"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auxv() {
        let mut b = Vec::new();
        for (k, v) in [
            (libc::AT_PAGESZ, 4096u64),
            (libc::AT_ENTRY, 0x1234),
            (0, 0),
            (99, 1),
        ] {
            b.extend_from_slice(&k.to_ne_bytes());
            b.extend_from_slice(&v.to_ne_bytes());
        }
        let a = parse_auxv(&b).unwrap();
        assert_eq!(
            a,
            vec![
                AuxvEntry {
                    key: libc::AT_PAGESZ,
                    value: 4096
                },
                AuxvEntry {
                    key: libc::AT_ENTRY,
                    value: 0x1234
                }
            ]
        );
        assert!(parse_auxv(&b[..20]).is_err());
    }

    #[test]
    fn lists_and_numbers() {
        assert_eq!(
            split_nul(b"a b\0\0c\0"),
            vec![b"a b".to_vec(), vec![], b"c".to_vec()]
        );
        assert_eq!(split_nul(b"no-nul"), vec![b"no-nul".to_vec()]);
        assert_eq!(split_nul(b""), Vec::<Vec<u8>>::new());
        assert_eq!(split_nul(b"\0"), Vec::<Vec<u8>>::new());
        assert_eq!(parse_comm(b"a) b (c\n"), b"a) b (c");
        assert_eq!(parse_u64(b"50000\n").unwrap(), 50000);
        assert_eq!(parse_u64(b"4294967295").unwrap(), 4294967295);
        assert_eq!(parse_i64(b"-1000\n").unwrap(), -1000);
        assert!(parse_i64(b"x\n").is_err());
        assert_eq!(parse_personality(b"00400000\n").unwrap(), 0x400000);
        assert_eq!(parse_pid_list(b"12 34 \n").unwrap(), vec![12, 34]);
        assert_eq!(parse_pid_list(b"").unwrap(), vec![]);
        assert!(parse_pid_list(b"12 x").is_err());
    }
}
