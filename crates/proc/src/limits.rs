//! `/proc/PID/limits`: the 16 resource limits.
//!
//! `prlimit64` on a task of another user fails where the caller lacks
//! CAP_SYS_RESOURCE over it, and ptrace does not help; this file can be read
//! by anyone who may read the task's /proc.

use crate::error::{ParseError, ParseResult};
use crate::text::{self, bad, num};

/// `RLIM_INFINITY`, what the file prints as `unlimited`.
pub const RLIM_INFINITY: u64 = u64::MAX;

/// The number of resources the kernel knows (`RLIM_NLIMITS`).
pub const RLIM_NLIMITS: usize = 16;

/// A soft and hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rlimit {
    pub soft: u64,
    pub hard: u64,
}

/// All limits, indexed by `RLIMIT_*` (`RLIMIT_CPU` = 0 ... `RLIMIT_RTTIME`
/// = 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Limits(pub [Rlimit; RLIM_NLIMITS]);

impl Limits {
    /// The limit of resource `RLIMIT_*` number `resource`.
    pub fn get(&self, resource: u32) -> Option<Rlimit> {
        self.0.get(resource as usize).copied()
    }
}

/// The names the file gives the resources, in `RLIMIT_*` order.
pub const NAMES: [&str; RLIM_NLIMITS] = [
    "Max cpu time",
    "Max file size",
    "Max data size",
    "Max stack size",
    "Max core file size",
    "Max resident set",
    "Max processes",
    "Max open files",
    "Max locked memory",
    "Max address space",
    "Max file locks",
    "Max pending signals",
    "Max msgqueue size",
    "Max nice priority",
    "Max realtime priority",
    "Max realtime timeout",
];

fn value(v: &[u8], off: usize) -> ParseResult<u64> {
    if v == b"unlimited" {
        Ok(RLIM_INFINITY)
    } else {
        num(text::dec_u64, v, off, "limit")
    }
}

/// Parses the text of a limits file. Every one of the 16 resources must be
/// there, once.
pub fn parse_limits(text: &[u8]) -> ParseResult<Limits> {
    let mut out = Limits::default();
    let mut seen = 0u32;
    for (off, line) in text::lines(text) {
        if line.starts_with(b"Limit ") || line.is_empty() {
            continue;
        }
        // Names hold blanks, so match them whole; the values follow.
        let Some(idx) = NAMES
            .iter()
            .position(|n| line.starts_with(n.as_bytes()) && line.get(n.len()) == Some(&b' '))
        else {
            return Err(bad(off, "limit name", line));
        };
        let rest_at = NAMES[idx].len();
        let mut f = text::fields(&line[rest_at..]);
        let (so, soft) = f.next().ok_or_else(|| bad(off, "soft limit", line))?;
        let (ho, hard) = f.next().ok_or_else(|| bad(off, "hard limit", line))?;
        let bit = 1u32 << idx;
        if seen & bit != 0 {
            return Err(bad(off, "repeated limit", line));
        }
        seen |= bit;
        out.0[idx] = Rlimit {
            soft: value(soft, off + rest_at + so)?,
            hard: value(hard, off + rest_at + ho)?,
        };
    }
    if seen != (1 << RLIM_NLIMITS) - 1 {
        let missing: Vec<&str> = (0..RLIM_NLIMITS)
            .filter(|i| seen & (1 << i) == 0)
            .map(|i| NAMES[i])
            .collect();
        return Err(ParseError::new(
            text.len(),
            format!("missing limits: {}", missing.join(", ")),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &[u8] = b"\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max data size             unlimited            unlimited            bytes     
Max stack size            8388608              unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max resident set          unlimited            unlimited            bytes     
Max processes             96365                96365                processes 
Max open files            20000                20001                files     
Max locked memory         8388608              8388608              bytes     
Max address space         unlimited            unlimited            bytes     
Max file locks            unlimited            unlimited            locks     
Max pending signals       96365                96365                signals   
Max msgqueue size         819200               819200               bytes     
Max nice priority         0                    0                    
Max realtime priority     0                    0                    
Max realtime timeout      unlimited            unlimited            us        
";

    #[test]
    fn all_sixteen() {
        let l = parse_limits(LIMITS).unwrap();
        assert_eq!(l.get(libc::RLIMIT_CPU).unwrap().soft, RLIM_INFINITY);
        assert_eq!(
            l.get(libc::RLIMIT_STACK),
            Some(Rlimit {
                soft: 8388608,
                hard: RLIM_INFINITY
            })
        );
        assert_eq!(
            l.get(libc::RLIMIT_NOFILE),
            Some(Rlimit {
                soft: 20000,
                hard: 20001
            })
        );
        assert_eq!(l.get(libc::RLIMIT_CORE).unwrap().soft, 0);
        assert_eq!(l.get(libc::RLIMIT_MSGQUEUE).unwrap().hard, 819200);
        assert_eq!(l.get(libc::RLIMIT_RTPRIO).unwrap().hard, 0);
        assert_eq!(l.get(libc::RLIMIT_RTTIME).unwrap().hard, RLIM_INFINITY);
        assert_eq!(l.get(16), None);
    }

    #[test]
    fn missing_repeated_or_bad() {
        let s = String::from_utf8_lossy(LIMITS);
        let missing: String = s
            .lines()
            .filter(|l| !l.starts_with("Max nice"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = parse_limits(missing.as_bytes()).unwrap_err();
        assert!(err.msg.contains("Max nice priority"), "{err}");
        let repeated = format!("{s}Max cpu time 1 1 seconds\n");
        assert!(parse_limits(repeated.as_bytes()).is_err());
        let bad = s.replace("20001", "2000x");
        assert!(parse_limits(bad.as_bytes()).is_err());
        let unknown = format!("{s}Max fun 1 1\n");
        assert!(parse_limits(unknown.as_bytes()).is_err());
    }
}
