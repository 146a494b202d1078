//! `/proc/PID/cgroup`: `hierarchy:controllers:path` lines.

use crate::error::ParseResult;
use crate::text::{self, bad, num};

/// One line: a hierarchy (0 is the unified cgroup2 one), its controllers,
/// and the task's cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CgroupEntry {
    pub hierarchy: u32,
    /// Controllers (`cpu`, `memory`, `name=systemd`...); empty for cgroup2.
    pub controllers: Vec<String>,
    pub path: String,
}

/// Parses the text of a cgroup file. The path may itself hold colons.
pub fn parse_cgroup(text: &[u8]) -> ParseResult<Vec<CgroupEntry>> {
    let mut out = Vec::new();
    for (off, line) in text::lines(text) {
        if line.is_empty() {
            continue;
        }
        let c1 = memchr::memchr(b':', line).ok_or_else(|| bad(off, "cgroup line", line))?;
        let rest = &line[c1 + 1..];
        let c2 = memchr::memchr(b':', rest).ok_or_else(|| bad(off, "cgroup line", line))?;
        let ctl = &rest[..c2];
        out.push(CgroupEntry {
            hierarchy: num(text::dec_u32, &line[..c1], off, "cgroup hierarchy")?,
            controllers: if ctl.is_empty() {
                Vec::new()
            } else {
                ctl.split(|&b| b == b',')
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect()
            },
            path: String::from_utf8_lossy(&rest[c2 + 1..]).into_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2() {
        let v = parse_cgroup(b"9:name=systemd:/\n4:memory,cpu:/a:b\n0::/\n").unwrap();
        assert_eq!(v[0].controllers, vec!["name=systemd"]);
        assert_eq!(v[1].controllers, vec!["memory", "cpu"]);
        assert_eq!(v[1].path, "/a:b");
        assert_eq!(
            (v[2].hierarchy, v[2].controllers.len(), v[2].path.as_str()),
            (0, 0, "/")
        );
        assert!(parse_cgroup(b"x::/\n").is_err());
        assert!(parse_cgroup(b"0/\n").is_err());
    }
}
