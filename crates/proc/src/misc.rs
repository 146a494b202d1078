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

/// `/proc/PID/timens_offsets`: the offsets of the task's time namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TimensOffsets {
    /// CLOCK_MONOTONIC offset, (seconds, nanoseconds).
    pub monotonic: (i64, i64),
    /// CLOCK_BOOTTIME offset.
    pub boottime: (i64, i64),
}

/// Parses a timens_offsets file: `monotonic S NS` and `boottime S NS`
/// lines (clock names or, from older kernels, their numbers 1 and 7).
pub fn parse_timens_offsets(bytes: &[u8]) -> ParseResult<TimensOffsets> {
    let mut out = TimensOffsets::default();
    let mut seen = 0;
    for (off, line) in text::lines(bytes) {
        let mut f = text::fields(line);
        let (Some((_, clock)), Some((so, s)), Some((no, ns)), None) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            if line.is_empty() {
                continue;
            }
            return Err(text::bad(off, "timens_offsets line", line));
        };
        let v = (
            num(text::dec_i64, s, off + so, "seconds")?,
            num(text::dec_i64, ns, off + no, "nanoseconds")?,
        );
        match clock {
            b"monotonic" | b"1" => out.monotonic = v,
            b"boottime" | b"7" => out.boottime = v,
            _ => return Err(text::bad(off, "clock", clock)),
        }
        seen += 1;
    }
    if seen != 2 {
        return Err(ParseError::new(
            bytes.len(),
            "no monotonic and boottime lines",
        ));
    }
    Ok(out)
}

/// One line of `uid_map` or `gid_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdMapping {
    /// First id inside the namespace.
    pub inside: u32,
    /// First id it maps to in the parent namespace (of the reader).
    pub outside: u32,
    pub count: u32,
}

/// Parses `uid_map` / `gid_map`.
pub fn parse_id_map(bytes: &[u8]) -> ParseResult<Vec<IdMapping>> {
    let mut out = Vec::new();
    for (off, line) in text::lines(bytes) {
        let mut f = text::fields(line);
        match (f.next(), f.next(), f.next(), f.next()) {
            (None, ..) => continue,
            (Some((io, i)), Some((oo, o)), Some((co, c)), None) => out.push(IdMapping {
                inside: num(text::dec_u32, i, off + io, "inside id")?,
                outside: num(text::dec_u32, o, off + oo, "outside id")?,
                count: num(text::dec_u32, c, off + co, "count")?,
            }),
            _ => return Err(text::bad(off, "id map line", line)),
        }
    }
    Ok(out)
}

/// `coredump_filter`: the mask, in hex.
pub fn parse_coredump_filter(bytes: &[u8]) -> ParseResult<u32> {
    let t = trim(bytes);
    crate::text::hex_u32(t)
        .ok_or_else(|| ParseError::new(0, format!("bad coredump_filter {:?}", lossy(t))))
}

/// `autogroup`: `/autogroup-ID nice N`; returns `(ID, N)`.
pub fn parse_autogroup(bytes: &[u8]) -> ParseResult<(u64, i32)> {
    let t = trim(bytes);
    let bad = || ParseError::new(0, format!("bad autogroup line {:?}", lossy(t)));
    let rest = t.strip_prefix(b"/autogroup-").ok_or_else(bad)?;
    let mut it = rest.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let id = it.next().and_then(crate::text::dec_u64).ok_or_else(bad)?;
    if it.next() != Some(b"nice") {
        return Err(bad());
    }
    let nice = it
        .next()
        .and_then(|w| std::str::from_utf8(w).ok()?.parse::<i32>().ok())
        .ok_or_else(bad)?;
    Ok((id, nice))
}

/// `ksm_stat`'s `ksm_merge_any:` (the process's PR_SET_MEMORY_MERGE);
/// false when the kernel does not print it.
pub fn parse_ksm_merge_any(bytes: &[u8]) -> ParseResult<bool> {
    for line in bytes.split(|&b| b == b'\n') {
        if let Some(v) = line.strip_prefix(b"ksm_merge_any:") {
            return match trim(v) {
                b"yes" => Ok(true),
                b"no" => Ok(false),
                other => Err(ParseError::new(
                    0,
                    format!("bad ksm_merge_any {:?}", lossy(other)),
                )),
            };
        }
    }
    Ok(false)
}

/// `numa_maps`: each area's start and memory policy (`default`,
/// `bind:0`, `interleave:0-1`, ...).
pub fn parse_numa_policies(bytes: &[u8]) -> ParseResult<Vec<(u64, String)>> {
    let mut out = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut it = line.split(|&b| b == b' ');
        let bad = || ParseError::new(n, format!("bad numa_maps line {:?}", lossy(line)));
        let start = it.next().and_then(crate::text::hex_u64).ok_or_else(bad)?;
        let policy = it.next().filter(|p| !p.is_empty()).ok_or_else(bad)?;
        out.push((start, String::from_utf8_lossy(policy).into_owned()));
    }
    Ok(out)
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
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
    fn timens_and_id_maps() {
        let t = parse_timens_offsets(
            b"monotonic           5         6\nboottime        -7         8\n",
        )
        .unwrap();
        assert_eq!((t.monotonic, t.boottime), ((5, 6), (-7, 8)));
        assert_eq!(
            parse_timens_offsets(b"1 1 2\n7 3 4\n").unwrap().boottime,
            (3, 4)
        );
        assert!(parse_timens_offsets(b"monotonic 0 0\n").is_err());
        assert!(parse_timens_offsets(b"monotonic 0 0\nrealtime 0 0\n").is_err());
        let m =
            parse_id_map(b"         0          0 4294967295\n      1000     100000      65536\n")
                .unwrap();
        assert_eq!(
            m,
            vec![
                IdMapping {
                    inside: 0,
                    outside: 0,
                    count: u32::MAX
                },
                IdMapping {
                    inside: 1000,
                    outside: 100000,
                    count: 65536
                }
            ]
        );
        assert!(parse_id_map(b"0 0\n").is_err());
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

    #[test]
    fn coredump_filter_autogroup_ksm_and_numa() {
        assert_eq!(parse_coredump_filter(b"00000033\n").unwrap(), 0x33);
        assert!(parse_coredump_filter(b"zz\n").is_err());
        assert_eq!(
            parse_autogroup(b"/autogroup-17 nice -5\n").unwrap(),
            (17, -5)
        );
        assert!(parse_autogroup(b"/autogroup-17 nasty 5\n").is_err());
        let ksm = b"ksm_rmap_items 0\nksm_merge_any: yes\nksm_mergeable: yes\n";
        assert!(parse_ksm_merge_any(ksm).unwrap());
        assert!(!parse_ksm_merge_any(b"ksm_rmap_items 0\n").unwrap());
        assert!(parse_ksm_merge_any(b"ksm_merge_any: maybe\n").is_err());
        let numa =
            b"55fa37b99000 default file=/usr/bin/head mapped=2 N0=2\n7f0000000000 bind:0 anon=1\n";
        assert_eq!(
            parse_numa_policies(numa).unwrap(),
            vec![
                (0x55fa37b99000, "default".to_string()),
                (0x7f0000000000, "bind:0".to_string())
            ]
        );
        assert!(parse_numa_policies(b"xyz\n").is_err());
    }
}
