//! `/proc/PID/cgroup`: `hierarchy:controllers:path` lines.

use crate::MountInfo;
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

/// The mount, at the root of its hierarchy, of the cgroup hierarchy that
/// `name` names as `/proc/PID/cgroup` does: `""` for the cgroup2 unified
/// hierarchy, otherwise its controllers joined by commas (`cpu,cpuacct`,
/// `name=systemd`). A v1 mount matches when its options hold every one of
/// them.
pub fn hierarchy_mount<'a>(mounts: &'a [MountInfo], name: &str) -> Option<&'a MountInfo> {
    mounts.iter().find(|m| {
        if m.root.as_os_str() != "/" {
            return false;
        }
        if name.is_empty() {
            return m.fs_type == "cgroup2";
        }
        m.fs_type == "cgroup"
            && name
                .split(',')
                .all(|c| m.super_options.split(',').any(|o| o == c))
    })
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
        let mi = crate::parse_mountinfo(
            b"32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct\n\
              40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
              41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        let at = |n: &str| hierarchy_mount(&mi, n).map(|m| m.mount_id);
        assert_eq!(at("cpu"), Some(32));
        assert_eq!(at("cpuacct,cpu"), Some(32));
        assert_eq!(at("name=systemd"), Some(40));
        assert_eq!(at(""), Some(41));
        assert_eq!(at("memory"), None);
        assert!(parse_cgroup(b"0/\n").is_err());
    }
}
