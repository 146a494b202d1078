//! crit's pretty forms of numbers: flag names, value names, devices.

/// crit's flag tables (`(criu).flags`), in crit's order.
fn flag_table(name: &str) -> Option<&'static [(&'static str, u64)]> {
    Some(match name {
        "mmap.prot" => &[("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4)],
        "mmap.flags" => &[
            ("MAP_SHARED", 0x1),
            ("MAP_PRIVATE", 0x2),
            ("MAP_DROPPABLE", 0x08),
            ("MAP_ANON", 0x20),
            ("MAP_GROWSDOWN", 0x0100),
        ],
        "mmap.status" => &[
            ("VMA_AREA_NONE", 0),
            ("VMA_AREA_REGULAR", 1 << 0),
            ("VMA_AREA_STACK", 1 << 1),
            ("VMA_AREA_VSYSCALL", 1 << 2),
            ("VMA_AREA_VDSO", 1 << 3),
            ("VMA_AREA_HEAP", 1 << 5),
            ("VMA_FILE_PRIVATE", 1 << 6),
            ("VMA_FILE_SHARED", 1 << 7),
            ("VMA_ANON_SHARED", 1 << 8),
            ("VMA_ANON_PRIVATE", 1 << 9),
            ("VMA_AREA_SYSVIPC", 1 << 10),
            ("VMA_AREA_SOCKET", 1 << 11),
            ("VMA_AREA_VVAR", 1 << 12),
            ("VMA_AREA_AIORING", 1 << 13),
            ("VMA_AREA_MEMFD", 1 << 14),
            ("VMA_AREA_SHSTK", 1 << 15),
            ("VMA_AREA_UPROBES", 1 << 17),
            ("VMA_UNSUPP", 1 << 31),
        ],
        "rfile.flags" => &[
            ("O_WRONLY", 0o1),
            ("O_RDWR", 0o2),
            ("O_CREAT", 0o100),
            ("O_EXCL", 0o200),
            ("O_NOCTTY", 0o400),
            ("O_TRUNC", 0o1000),
            ("O_APPEND", 0o2000),
            ("O_NONBLOCK", 0o4000),
            ("O_DSYNC", 0o10000),
            ("FASYNC", 0o20000),
            ("O_DIRECT", 0o40000),
            ("O_LARGEFILE", 0o100000),
            ("O_DIRECTORY", 0o200000),
            ("O_NOFOLLOW", 0o400000),
            ("O_NOATIME", 0o1000000),
            ("O_CLOEXEC", 0o2000000),
        ],
        "pmap.flags" => &[("PE_PARENT", 1), ("PE_LAZY", 2), ("PE_PRESENT", 4)],
        "seals.flags" => &[
            ("F_SEAL_SEAL", 0x1),
            ("F_SEAL_SHRINK", 0x2),
            ("F_SEAL_GROW", 0x4),
            ("F_SEAL_WRITE", 0x8),
            ("F_SEAL_FUTURE_WRITE", 0x10),
        ],
        _ => return None,
    })
}

/// crit's value tables (`(criu).dict`), by table and field name.
fn dict_table(dict: &str, field: &str) -> Option<&'static [(u64, &'static str)]> {
    Some(match (dict, field) {
        ("gen", "task_state") => &[(1, "Alive"), (3, "Zombie"), (6, "Stopped")],
        ("sk", "family") => &[
            (1, "UNIX"),
            (2, "INET"),
            (10, "INET6"),
            (16, "NETLINK"),
            (17, "PACKET"),
        ],
        ("sk", "type") => &[
            (1, "STREAM"),
            (2, "DGRAM"),
            (3, "RAW"),
            (5, "SEQPACKET"),
            (10, "PACKET"),
        ],
        ("sk", "state") => &[
            (1, "ESTABLISHED"),
            (2, "SYN_SENT"),
            (3, "SYN_RECV"),
            (4, "FIN_WAIT1"),
            (5, "FIN_WAIT2"),
            (6, "TIME_WAIT"),
            (7, "CLOSE"),
            (8, "CLOSE_WAIT"),
            (9, "LAST_ACK"),
            (10, "LISTEN"),
        ],
        ("sk", "proto") => &[(0, "IP"), (6, "TCP"), (17, "UDP"), (136, "UDPLITE")],
        _ => return None,
    })
}

/// `"0x%x" % v`.
pub fn hex(v: i128) -> String {
    if v < 0 {
        format!("-{:#x}", -v)
    } else {
        format!("{v:#x}")
    }
}

/// Flag names joined by " | ", leftover bits in hex; `None` for an
/// unknown table (crit then prints hex).
pub fn flags(table: &str, v: u64) -> Option<String> {
    let t = flag_table(table)?;
    let mut parts: Vec<String> = t
        .iter()
        .filter(|(_, bit)| v & bit != 0)
        .map(|(n, _)| (*n).to_owned())
        .collect();
    let rest = v & !t.iter().fold(0, |a, (_, b)| a | b);
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    Some(parts.join(" | "))
}

/// The value of a " | "-joined flag string (names or numbers).
pub fn unflags(table: &str, s: &str) -> Option<Option<i128>> {
    let t = flag_table(table)?;
    if s.is_empty() {
        return Some(Some(0));
    }
    let mut sum: i128 = 0;
    for part in s.split('|').map(str::trim) {
        let v = match t.iter().find(|(n, _)| *n == part) {
            Some((_, b)) => i128::from(*b),
            None => match super::py::int0(part) {
                Some(v) => v,
                None => return Some(None),
            },
        };
        sum += v;
    }
    Some(Some(sum))
}

/// The name a value table gives `v`, if any.
pub fn dict_name(dict: &str, field: &str, v: u64) -> Option<&'static str> {
    dict_table(dict, field)?
        .iter()
        .find(|(k, _)| *k == v)
        .map(|(_, n)| *n)
}

/// The value a value table gives `name`, if any.
pub fn dict_value(dict: &str, field: &str, name: &str) -> Option<u64> {
    dict_table(dict, field)?
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(k, _)| *k)
}

/// "major:minor" of a dev_t, in the kernel's encoding or (`old`) glibc's.
pub fn dev(v: u64, old: bool) -> String {
    if old {
        let major = ((v >> 8) & 0xfff) | ((v >> 32) & !0xfff);
        let minor = (v & 0xff) | ((v >> 12) & !0xff);
        format!("{major}:{minor}")
    } else {
        format!("{}:{}", v >> 20, v & ((1 << 20) - 1))
    }
}

/// The dev_t of "major:minor".
pub fn undev(s: &str, old: bool) -> Option<u64> {
    let (a, b) = s.split_once(':')?;
    let major: u64 = a.trim().parse().ok()?;
    let minor: u64 = b.trim().parse().ok()?;
    Some(if old {
        ((major & 0xffff_f000) << 32)
            | ((major & 0xfff) << 8)
            | ((minor & 0xffff_ff00) << 12)
            | (minor & 0xff)
    } else {
        (major << 20) | minor
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_both_ways() {
        assert_eq!(flags("mmap.prot", 3).unwrap(), "PROT_READ | PROT_WRITE");
        assert_eq!(flags("mmap.status", 0).unwrap(), "");
        assert_eq!(flags("pmap.flags", 4 | 8).unwrap(), "PE_PRESENT | 0x8");
        assert_eq!(unflags("pmap.flags", "PE_PRESENT | 0x8"), Some(Some(12)));
        assert_eq!(unflags("pmap.flags", ""), Some(Some(0)));
        assert_eq!(unflags("pmap.flags", "NOPE"), Some(None));
        assert_eq!(flags("nope", 1), None);
    }

    #[test]
    fn devices() {
        assert_eq!(dev((8 << 20) | 1, false), "8:1");
        assert_eq!(undev("8:1", false), Some((8 << 20) | 1));
        assert_eq!(dev(0x0801, true), "8:1");
        assert_eq!(undev("8:1", true), Some(0x801));
        let big = undev("4095:1048575", true).unwrap();
        assert_eq!(dev(big, true), "4095:1048575");
        assert_eq!(hex(-5), "-0x5");
        assert_eq!(hex(255), "0xff");
    }
}
