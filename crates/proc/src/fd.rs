//! Open files: the links of `/proc/PID/fd/N` and the text of
//! `/proc/PID/fdinfo/N`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::Pid;
use crate::error::{ParseError, ParseResult};
use crate::text::{self, bad, num};

/// One entry of `/proc/PID/fd`: the number and where its link points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fd {
    pub fd: i32,
    /// The link's text, raw.
    pub link: PathBuf,
}

impl Fd {
    /// The link classified.
    pub fn target(&self) -> FdTarget {
        FdTarget::from_link(self.link.as_os_str().as_bytes())
    }
}

/// What an fd link says the fd refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FdTarget {
    /// A path; `deleted` when the link ended in ` (deleted)` (removed).
    Path { path: PathBuf, deleted: bool },
    /// `pipe:[INODE]`
    Pipe(u64),
    /// `socket:[INODE]`
    Socket(u64),
    /// Any other `KIND:[INODE]`: namespace files (`net:[...]`), ...
    Inode { kind: String, ino: u64 },
    /// `anon_inode:[NAME]` or `anon_inode:NAME`: `eventfd`, `timerfd`,
    /// `signalfd`, `eventpoll`, `inotify`, `fanotify`, `pidfd`,
    /// `io_uring`, `bpf-map`, ...
    AnonInode(String),
    /// Anything else.
    Other(Vec<u8>),
}

impl FdTarget {
    /// Classifies the text of an fd link.
    pub fn from_link(link: &[u8]) -> FdTarget {
        if link.first() == Some(&b'/') {
            let (path, deleted) = match link.strip_suffix(b" (deleted)") {
                Some(p) => (p, true),
                None => (link, false),
            };
            return FdTarget::Path {
                path: PathBuf::from(OsString::from_vec(path.to_vec())),
                deleted,
            };
        }
        if let Some(name) = link.strip_prefix(b"anon_inode:") {
            let name = name
                .strip_prefix(b"[")
                .and_then(|n| n.strip_suffix(b"]"))
                .unwrap_or(name);
            return FdTarget::AnonInode(String::from_utf8_lossy(name).into_owned());
        }
        if let Some(colon) = memchr::memchr(b':', link) {
            let kind = &link[..colon];
            let ino = link[colon + 1..]
                .strip_prefix(b"[")
                .and_then(|n| n.strip_suffix(b"]"))
                .and_then(text::dec_u64);
            if let Some(ino) = ino {
                return match kind {
                    b"pipe" => FdTarget::Pipe(ino),
                    b"socket" => FdTarget::Socket(ino),
                    _ => FdTarget::Inode {
                        kind: String::from_utf8_lossy(kind).into_owned(),
                        ino,
                    },
                };
            }
        }
        FdTarget::Other(link.to_vec())
    }
}

/// An `f_handle` as fdinfo prints it for inotify and fanotify marks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FileHandle {
    /// `fhandle-bytes:`
    pub bytes: u32,
    /// `fhandle-type:`
    pub handle_type: i32,
    /// `f_handle:` decoded from hex.
    pub handle: Vec<u8>,
}

/// A target of an epoll instance (`tfd:` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EpollTarget {
    pub tfd: i32,
    pub events: u32,
    pub data: u64,
    /// Position, inode and device of the target file (Linux 4.14 and
    /// later).
    pub pos: Option<i64>,
    pub ino: Option<u64>,
    pub sdev: Option<u32>,
}

/// An inotify watch (`inotify wd:` line).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct InotifyWatch {
    pub wd: i32,
    pub ino: u64,
    pub sdev: u32,
    pub mask: u32,
    pub ignored_mask: u32,
    pub handle: FileHandle,
}

/// A fanotify mark.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FanotifyMark {
    /// `fanotify ino:` — a mark on an inode.
    Inode {
        ino: u64,
        sdev: u32,
        mflags: u32,
        mask: u32,
        ignored_mask: u32,
        handle: FileHandle,
    },
    /// `fanotify mnt_id:` — a mark on a mount.
    Mount {
        mnt_id: u32,
        mflags: u32,
        mask: u32,
        ignored_mask: u32,
    },
    /// `fanotify sdev:` — a mark on a filesystem.
    Superblock {
        sdev: u32,
        mflags: u32,
        mask: u32,
        ignored_mask: u32,
    },
}

/// A timerfd's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TimerfdInfo {
    pub clockid: i32,
    /// Expirations not yet read.
    pub ticks: u64,
    /// `TFD_TIMER_ABSTIME` / `TFD_TIMER_CANCEL_ON_SET` given to settime.
    pub settime_flags: u32,
    /// Time to the next expiry, (seconds, nanoseconds).
    pub it_value: (u64, u64),
    pub it_interval: (u64, u64),
}

/// What the kind-specific lines of an fdinfo file say. An epoll or inotify
/// instance with nothing registered prints no such line and reads as
/// `Plain`: tell kinds apart by the fd's link.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum FdInfoKind {
    #[default]
    Plain,
    Eventfd {
        count: u64,
        id: Option<u32>,
        semaphore: Option<bool>,
    },
    Epoll(Vec<EpollTarget>),
    Inotify(Vec<InotifyWatch>),
    Fanotify {
        flags: u32,
        event_flags: u32,
        marks: Vec<FanotifyMark>,
    },
    Signalfd {
        sigmask: u64,
    },
    Timerfd(TimerfdInfo),
    Pidfd {
        /// `Pid:`: the pid in the reader's namespace, 0 when not visible
        /// there, -1 once the process is gone.
        pid: Pid,
        ns_pid: Vec<Pid>,
    },
}

/// The parsed fdinfo file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FdInfo {
    pub pos: i64,
    /// `O_*` flags of the open file (octal in the file).
    pub flags: u32,
    pub mnt_id: i32,
    /// `ino:` (Linux 5.14 and later).
    pub ino: Option<u64>,
    pub kind: FdInfoKind,
    /// `lock:` lines, verbatim after the tab.
    pub locks: Vec<Vec<u8>>,
    /// Lines this parser does not know, as (key, value).
    pub other: Vec<(Vec<u8>, Vec<u8>)>,
}

/// `key:value` and `key: value` pairs of a line, in order.
fn pairs(line: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut it = text::fields(line);
    while let Some((_, f)) = it.next() {
        let Some(colon) = memchr::memchr(b':', f) else {
            continue;
        };
        if colon + 1 == f.len() {
            let v = it.next().map_or(&b""[..], |(_, v)| v);
            out.push((&f[..colon], v));
        } else {
            out.push((&f[..colon], &f[colon + 1..]));
        }
    }
    out
}

fn get<'a>(p: &[(&[u8], &'a [u8])], key: &str) -> Option<&'a [u8]> {
    p.iter()
        .find(|(k, _)| *k == key.as_bytes())
        .map(|(_, v)| *v)
}

fn need<T>(
    p: &[(&[u8], &[u8])],
    key: &'static str,
    f: fn(&[u8]) -> Option<T>,
    off: usize,
    line: &[u8],
) -> ParseResult<T> {
    let v = get(p, key).ok_or_else(|| bad(off, key, line))?;
    num(f, v, off, key)
}

fn hex_bytes(s: &[u8], off: usize) -> ParseResult<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(bad(off, "f_handle", s));
    }
    s.chunks_exact(2)
        .map(|c| match (text::hex_digit(c[0]), text::hex_digit(c[1])) {
            (Some(h), Some(l)) => Ok((h << 4) | l),
            _ => Err(bad(off, "f_handle", s)),
        })
        .collect()
}

fn handle(p: &[(&[u8], &[u8])], off: usize, line: &[u8]) -> ParseResult<FileHandle> {
    Ok(FileHandle {
        bytes: need(p, "fhandle-bytes", text::hex_u32, off, line)?,
        handle_type: need(p, "fhandle-type", text::hex_u32, off, line)? as i32,
        handle: hex_bytes(get(p, "f_handle").unwrap_or(b""), off)?,
    })
}

/// `(seconds, nanoseconds)` as timerfd prints it.
fn timespec(v: &[u8], off: usize, what: &str) -> ParseResult<(u64, u64)> {
    let inner = v
        .strip_prefix(b"(")
        .and_then(|v| v.strip_suffix(b")"))
        .ok_or_else(|| bad(off, what, v))?;
    let comma = memchr::memchr(b',', inner).ok_or_else(|| bad(off, what, v))?;
    Ok((
        num(text::dec_u64, text::trim(&inner[..comma]), off, what)?,
        num(text::dec_u64, text::trim(&inner[comma + 1..]), off, what)?,
    ))
}

/// Makes `kind` the given variant, or fails if the file already showed
/// lines of another kind.
fn kind_mut(
    kind: &mut FdInfoKind,
    fresh: impl FnOnce() -> FdInfoKind,
    is: fn(&FdInfoKind) -> bool,
    off: usize,
) -> ParseResult<&mut FdInfoKind> {
    if matches!(kind, FdInfoKind::Plain) {
        *kind = fresh();
    } else if !is(kind) {
        return Err(ParseError::new(off, "lines of two kinds of file"));
    }
    Ok(kind)
}

/// Parses the text of an fdinfo file.
pub fn parse_fdinfo(text: &[u8]) -> ParseResult<FdInfo> {
    let mut info = FdInfo::default();
    let mut seen_pos = false;
    let mut seen_flags = false;
    let mut lines = text::lines(text).peekable();
    while let Some((off, line)) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let (key, v) = text::key_value(line).ok_or_else(|| bad(off, "fdinfo line", line))?;
        match key {
            // The rest is an io_uring instance's, in a form of its own
            // (`parse_io_uring_fdinfo`).
            b"SqMask" => break,
            b"pos" => {
                info.pos = num(text::dec_i64, v, off, "pos")?;
                seen_pos = true;
            }
            b"flags" => {
                info.flags = num(text::oct_u32, v, off, "flags")?;
                seen_flags = true;
            }
            b"mnt_id" => info.mnt_id = num(text::dec_i32, v, off, "mnt_id")?,
            b"ino" => info.ino = Some(num(text::dec_u64, v, off, "ino")?),
            b"lock" => info.locks.push(v.to_vec()),
            b"eventfd-count" => {
                let count = num(text::hex_u64, v, off, "eventfd-count")?;
                let k = kind_mut(
                    &mut info.kind,
                    || FdInfoKind::Eventfd {
                        count: 0,
                        id: None,
                        semaphore: None,
                    },
                    |k| matches!(k, FdInfoKind::Eventfd { .. }),
                    off,
                )?;
                if let FdInfoKind::Eventfd { count: c, .. } = k {
                    *c = count;
                }
            }
            b"eventfd-id" | b"eventfd-semaphore" => {
                let n = num(text::dec_u32, v, off, "eventfd field")?;
                if let FdInfoKind::Eventfd { id, semaphore, .. } = &mut info.kind {
                    if key == b"eventfd-id" {
                        *id = Some(n);
                    } else {
                        *semaphore = Some(n != 0);
                    }
                } else {
                    return Err(bad(off, "eventfd line before eventfd-count", line));
                }
            }
            b"tfd" => {
                let p = pairs(line);
                let t = EpollTarget {
                    tfd: need(&p, "tfd", text::dec_i32, off, line)?,
                    events: need(&p, "events", text::hex_u32, off, line)?,
                    data: need(&p, "data", text::hex_u64, off, line)?,
                    pos: get(&p, "pos")
                        .map(|v| num(text::dec_i64, v, off, "pos"))
                        .transpose()?,
                    ino: get(&p, "ino")
                        .map(|v| num(text::hex_u64, v, off, "ino"))
                        .transpose()?,
                    sdev: get(&p, "sdev")
                        .map(|v| num(text::hex_u32, v, off, "sdev"))
                        .transpose()?,
                };
                if let FdInfoKind::Epoll(v) = kind_mut(
                    &mut info.kind,
                    || FdInfoKind::Epoll(Vec::new()),
                    |k| matches!(k, FdInfoKind::Epoll(_)),
                    off,
                )? {
                    v.push(t);
                }
            }
            b"inotify wd" => {
                let p = pairs(line);
                let w = InotifyWatch {
                    wd: need(&p, "wd", text::hex_u32, off, line)? as i32,
                    ino: need(&p, "ino", text::hex_u64, off, line)?,
                    sdev: need(&p, "sdev", text::hex_u32, off, line)?,
                    mask: need(&p, "mask", text::hex_u32, off, line)?,
                    ignored_mask: need(&p, "ignored_mask", text::hex_u32, off, line)?,
                    handle: handle(&p, off, line)?,
                };
                if let FdInfoKind::Inotify(v) = kind_mut(
                    &mut info.kind,
                    || FdInfoKind::Inotify(Vec::new()),
                    |k| matches!(k, FdInfoKind::Inotify(_)),
                    off,
                )? {
                    v.push(w);
                }
            }
            b"fanotify flags" | b"fanotify ino" | b"fanotify mnt_id" | b"fanotify sdev" => {
                let p = pairs(line);
                let k = kind_mut(
                    &mut info.kind,
                    || FdInfoKind::Fanotify {
                        flags: 0,
                        event_flags: 0,
                        marks: Vec::new(),
                    },
                    |k| matches!(k, FdInfoKind::Fanotify { .. }),
                    off,
                )?;
                let FdInfoKind::Fanotify {
                    flags,
                    event_flags,
                    marks,
                } = k
                else {
                    unreachable!("kind_mut returned a fanotify kind");
                };
                let mflags = || need(&p, "mflags", text::hex_u32, off, line);
                let mask = || need(&p, "mask", text::hex_u32, off, line);
                let ignored = || need(&p, "ignored_mask", text::hex_u32, off, line);
                match key {
                    b"fanotify flags" => {
                        *flags = need(&p, "flags", text::hex_u32, off, line)?;
                        *event_flags = need(&p, "event-flags", text::hex_u32, off, line)?;
                    }
                    b"fanotify ino" => marks.push(FanotifyMark::Inode {
                        ino: need(&p, "ino", text::hex_u64, off, line)?,
                        sdev: need(&p, "sdev", text::hex_u32, off, line)?,
                        mflags: mflags()?,
                        mask: mask()?,
                        ignored_mask: ignored()?,
                        handle: handle(&p, off, line)?,
                    }),
                    b"fanotify mnt_id" => marks.push(FanotifyMark::Mount {
                        mnt_id: need(&p, "mnt_id", text::hex_u32, off, line)?,
                        mflags: mflags()?,
                        mask: mask()?,
                        ignored_mask: ignored()?,
                    }),
                    _ => marks.push(FanotifyMark::Superblock {
                        sdev: need(&p, "sdev", text::hex_u32, off, line)?,
                        mflags: mflags()?,
                        mask: mask()?,
                        ignored_mask: ignored()?,
                    }),
                }
            }
            b"sigmask" => {
                let sigmask = num(text::hex_u64, v, off, "sigmask")?;
                kind_mut(
                    &mut info.kind,
                    || FdInfoKind::Signalfd { sigmask },
                    |_| false,
                    off,
                )?;
            }
            b"clockid" => {
                let mut t = TimerfdInfo {
                    clockid: num(text::dec_i32, v, off, "clockid")?,
                    ..TimerfdInfo::default()
                };
                // The other four lines follow in a fixed order.
                for want in [&b"ticks"[..], b"settime flags", b"it_value", b"it_interval"] {
                    let (o, l) = lines
                        .next()
                        .ok_or_else(|| ParseError::new(text.len(), "timerfd lines cut short"))?;
                    let (k, v) = text::key_value(l).ok_or_else(|| bad(o, "timerfd line", l))?;
                    if k != want {
                        return Err(bad(o, "timerfd line", l));
                    }
                    match want {
                        b"ticks" => t.ticks = num(text::dec_u64, v, o, "ticks")?,
                        b"settime flags" => {
                            t.settime_flags = num(text::oct_u32, v, o, "settime flags")?
                        }
                        b"it_value" => t.it_value = timespec(v, o, "it_value")?,
                        _ => t.it_interval = timespec(v, o, "it_interval")?,
                    }
                }
                kind_mut(&mut info.kind, || FdInfoKind::Timerfd(t), |_| false, off)?;
            }
            b"Pid" => {
                let pid = num(text::dec_i32, v, off, "Pid")?;
                match &mut info.kind {
                    FdInfoKind::Plain => {
                        info.kind = FdInfoKind::Pidfd {
                            pid,
                            ns_pid: Vec::new(),
                        }
                    }
                    _ => return Err(ParseError::new(off, "lines of two kinds of file")),
                }
            }
            b"NSpid" => {
                let ids = text::fields(v)
                    .map(|(_, x)| num(text::dec_i32, x, off, "NSpid"))
                    .collect::<ParseResult<Vec<_>>>()?;
                match &mut info.kind {
                    FdInfoKind::Pidfd { ns_pid, .. } => *ns_pid = ids,
                    _ => return Err(bad(off, "NSpid line before Pid", line)),
                }
            }
            _ => info.other.push((key.to_vec(), v.to_vec())),
        }
    }
    if !seen_pos || !seen_flags {
        return Err(ParseError::new(text.len(), "no pos or flags line"));
    }
    Ok(info)
}

/// Parses an fd directory entry's name.
pub(crate) fn fd_number(name: &std::ffi::OsStr) -> Option<i32> {
    text::dec_i32(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_kinds() {
        assert_eq!(
            FdTarget::from_link(b"/tmp/x y (deleted)"),
            FdTarget::Path {
                path: "/tmp/x y".into(),
                deleted: true
            }
        );
        assert_eq!(FdTarget::from_link(b"pipe:[22834]"), FdTarget::Pipe(22834));
        assert_eq!(FdTarget::from_link(b"socket:[7]"), FdTarget::Socket(7));
        assert_eq!(
            FdTarget::from_link(b"net:[4026531833]"),
            FdTarget::Inode {
                kind: "net".into(),
                ino: 4026531833
            }
        );
        assert_eq!(
            FdTarget::from_link(b"anon_inode:[eventfd]"),
            FdTarget::AnonInode("eventfd".into())
        );
        assert_eq!(
            FdTarget::from_link(b"anon_inode:inotify"),
            FdTarget::AnonInode("inotify".into())
        );
        assert_eq!(
            FdTarget::from_link(b"pipe:[x]"),
            FdTarget::Other(b"pipe:[x]".to_vec())
        );
    }

    fn parse(s: &str) -> FdInfo {
        parse_fdinfo(s.as_bytes()).unwrap()
    }

    #[test]
    fn common_and_locks() {
        let i = parse(
            "pos:\t123\nflags:\t0102000\nmnt_id:\t27\nino:\t10010770\nlock:\t1: POSIX  ADVISORY  WRITE 14242 fe:00:10010807 0 9\ntty-index:\t3\n",
        );
        assert_eq!(
            (i.pos, i.flags, i.mnt_id, i.ino),
            (123, 0o102000, 27, Some(10010770))
        );
        assert_eq!(i.kind, FdInfoKind::Plain);
        assert_eq!(
            i.locks,
            vec![b"1: POSIX  ADVISORY  WRITE 14242 fe:00:10010807 0 9".to_vec()]
        );
        assert_eq!(i.other, vec![(b"tty-index".to_vec(), b"3".to_vec())]);
    }

    #[test]
    fn eventfd_signalfd_pidfd() {
        let i = parse(
            "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t17\neventfd-count:               1a\neventfd-id: 1\neventfd-semaphore: 1\n",
        );
        assert_eq!(
            i.kind,
            FdInfoKind::Eventfd {
                count: 0x1a,
                id: Some(1),
                semaphore: Some(true)
            }
        );
        let i = parse("pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t17\nsigmask:\t0000000000000202\n");
        assert_eq!(i.kind, FdInfoKind::Signalfd { sigmask: 0x202 });
        let i = parse(
            "pos:\t0\nflags:\t02000002\nmnt_id:\t4\nino:\t14190\nPid:\t14182\nNSpid:\t14182\t1\n",
        );
        assert_eq!(
            i.kind,
            FdInfoKind::Pidfd {
                pid: 14182,
                ns_pid: vec![14182, 1]
            }
        );
        let i = parse("pos:\t0\nflags:\t02000002\nmnt_id:\t4\nino:\t1\nPid:\t-1\nNSpid:\t-1\n");
        assert!(matches!(i.kind, FdInfoKind::Pidfd { pid: -1, .. }));
    }

    #[test]
    fn timerfd() {
        let i = parse(
            "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t17\nclockid: 1\nticks: 3\nsettime flags: 03\nit_value: (99, 999990756)\nit_interval: (5, 0)\n",
        );
        assert_eq!(
            i.kind,
            FdInfoKind::Timerfd(TimerfdInfo {
                clockid: 1,
                ticks: 3,
                settime_flags: 3,
                it_value: (99, 999990756),
                it_interval: (5, 0)
            })
        );
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t02\nclockid: 1\nticks: 3\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t02\nclockid: 1\nticks: 3\nsettime flags: 0\nit_value: 1\nit_interval: (0, 0)\n").is_err());
    }

    #[test]
    fn epoll_inotify_fanotify() {
        let i = parse(
            "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t17\ntfd:        3 events: 80000019 data: 1122334455667788  pos:0 ino:11 sdev:10\ntfd:        4 events:       1c data:               2a  pos:0 ino:11 sdev:10\n",
        );
        assert_eq!(
            i.kind,
            FdInfoKind::Epoll(vec![
                EpollTarget {
                    tfd: 3,
                    events: 0x80000019,
                    data: 0x1122334455667788,
                    pos: Some(0),
                    ino: Some(0x11),
                    sdev: Some(0x10)
                },
                EpollTarget {
                    tfd: 4,
                    events: 0x1c,
                    data: 0x2a,
                    pos: Some(0),
                    ino: Some(0x11),
                    sdev: Some(0x10)
                },
            ])
        );
        let old = parse(
            "pos:\t0\nflags:\t02\nmnt_id:\t17\ntfd:        5 events:       19 data:                0\n",
        );
        assert!(matches!(&old.kind, FdInfoKind::Epoll(v) if v[0].tfd == 5 && v[0].pos.is_none()));

        let i = parse(
            "pos:\t0\nflags:\t00\nmnt_id:\t17\nino:\t17\ninotify wd:1 ino:3c4a7 sdev:fe00000 mask:300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4030000000000\n",
        );
        assert_eq!(
            i.kind,
            FdInfoKind::Inotify(vec![InotifyWatch {
                wd: 1,
                ino: 0x3c4a7,
                sdev: 0xfe00000,
                mask: 0x300,
                ignored_mask: 0,
                handle: FileHandle {
                    bytes: 8,
                    handle_type: 1,
                    handle: vec![0xa7, 0xc4, 3, 0, 0, 0, 0, 0]
                }
            }])
        );
        let i = parse(
            "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t17\nfanotify flags:0 event-flags:8000\nfanotify mnt_id:1b mflags:0 mask:20 ignored_mask:0\nfanotify ino:3c4a7 sdev:fe00000 mflags:0 mask:28 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4030000000000\nfanotify sdev:fe00000 mflags:1 mask:2 ignored_mask:4\n",
        );
        let FdInfoKind::Fanotify {
            flags,
            event_flags,
            marks,
        } = i.kind
        else {
            panic!("not fanotify: {:?}", i.kind);
        };
        assert_eq!((flags, event_flags), (0, 0x8000));
        assert_eq!(
            marks[0],
            FanotifyMark::Mount {
                mnt_id: 0x1b,
                mflags: 0,
                mask: 0x20,
                ignored_mask: 0
            }
        );
        assert!(
            matches!(&marks[1], FanotifyMark::Inode { ino: 0x3c4a7, mask: 0x28, handle, .. } if handle.handle.len() == 8)
        );
        assert_eq!(
            marks[2],
            FanotifyMark::Superblock {
                sdev: 0xfe00000,
                mflags: 1,
                mask: 2,
                ignored_mask: 4
            }
        );
    }

    #[test]
    fn malformed() {
        assert!(parse_fdinfo(b"flags:\t02\n").is_err());
        assert!(parse_fdinfo(b"pos:\tx\nflags:\t02\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t08\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t02\nsigmask:\t1\neventfd-count: 1\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t02\ntfd: 1 events: 1\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t02\ninotify wd:1 ino:1 sdev:1 mask:1 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:abc\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t02\nnot a line\n").is_err());
    }
}
