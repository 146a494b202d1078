//! `/proc/PID/timers`: the POSIX timers of a process (`timer_create`).
//!
//! Each timer is four lines:
//! `ID: n`, `signal: signo/sival_ptr`, `notify: how/pid.N` or `/tid.N`,
//! `ClockID: n`. The expiry times are not here; the parasite reads them
//! with `timer_gettime`.

use crate::Pid;
use crate::error::{ParseError, ParseResult};
use crate::text::{self, bad, num};

/// How a timer notifies, from `sigev_notify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerNotify {
    /// `SIGEV_SIGNAL` to the process.
    Signal,
    /// `SIGEV_NONE`.
    None,
    /// `SIGEV_THREAD` (glibc turns it into a thread-directed signal).
    Thread,
    /// `SIGEV_THREAD_ID` (with `SIGEV_SIGNAL`) to thread `tid`.
    ThreadId,
}

impl TimerNotify {
    /// The `sigev_notify` value (`SIGEV_*`).
    pub fn sigev_notify(self) -> i32 {
        match self {
            TimerNotify::Signal => libc::SIGEV_SIGNAL,
            TimerNotify::None => libc::SIGEV_NONE,
            TimerNotify::Thread => libc::SIGEV_THREAD,
            TimerNotify::ThreadId => libc::SIGEV_THREAD_ID,
        }
    }
}

/// One POSIX timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PosixTimer {
    pub id: i32,
    pub signal: i32,
    /// `sigev_value.sival_ptr`.
    pub sival_ptr: u64,
    pub notify: TimerNotify,
    /// The pid (or tid, for [`TimerNotify::ThreadId`]) notified.
    pub notify_pid: Pid,
    pub clock_id: i32,
}

/// Parses the text of a timers file.
pub fn parse_timers(text: &[u8]) -> ParseResult<Vec<PosixTimer>> {
    let mut out = Vec::new();
    let mut lines = text::lines(text).filter(|(_, l)| !l.is_empty());
    while let Some((off, line)) = lines.next() {
        let mut next = |want: &'static str| -> ParseResult<(usize, &[u8])> {
            let (o, l) = lines.next().ok_or_else(|| {
                ParseError::new(text.len(), format!("timer cut short before {want}"))
            })?;
            match text::key_value(l) {
                Some((k, v)) if k == want.as_bytes() => Ok((o, v)),
                _ => Err(bad(o, want, l)),
            }
        };
        let id = match text::key_value(line) {
            Some((b"ID", v)) => num(text::dec_i32, v, off, "timer ID")?,
            _ => return Err(bad(off, "timer ID line", line)),
        };
        let (so, sig) = next("signal")?;
        let slash = memchr::memchr(b'/', sig).ok_or_else(|| bad(so, "signal", sig))?;
        let signal = num(text::dec_i32, &sig[..slash], so, "signal number")?;
        let ptr = &sig[slash + 1..];
        let sival_ptr = if ptr == b"(null)" {
            0
        } else {
            let ptr = ptr.strip_prefix(b"0x").unwrap_or(ptr);
            num(text::hex_u64, ptr, so, "sival_ptr")?
        };
        let (no, nv) = next("notify")?;
        let slash = memchr::memchr(b'/', nv).ok_or_else(|| bad(no, "notify", nv))?;
        let how = &nv[..slash];
        let who = &nv[slash + 1..];
        let dot = memchr::memchr(b'.', who).ok_or_else(|| bad(no, "notify", nv))?;
        let notify_pid = num(text::dec_i32, &who[dot + 1..], no, "notify pid")?;
        let notify = match (&who[..dot], how) {
            (b"tid", _) => TimerNotify::ThreadId,
            (b"pid", b"signal") => TimerNotify::Signal,
            (b"pid", b"none") => TimerNotify::None,
            (b"pid", b"thread") => TimerNotify::Thread,
            _ => return Err(bad(no, "notify", nv)),
        };
        let (co, cv) = next("ClockID")?;
        out.push(PosixTimer {
            id,
            signal,
            sival_ptr,
            notify,
            notify_pid,
            clock_id: num(text::dec_i32, cv, co, "ClockID")?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_timers() {
        let t = parse_timers(b"ID: 2\nsignal: 12/0000000000000000\nnotify: signal/tid.14210\nClockID: 0\nID: 1\nsignal: 0/0000000000000000\nnotify: none/pid.14210\nClockID: 7\nID: 0\nsignal: 14/0000000000001234\nnotify: signal/pid.14210\nClockID: 1\n").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(
            t[0],
            PosixTimer {
                id: 2,
                signal: 12,
                sival_ptr: 0,
                notify: TimerNotify::ThreadId,
                notify_pid: 14210,
                clock_id: 0
            }
        );
        assert_eq!(t[1].notify, TimerNotify::None);
        assert_eq!(t[1].clock_id, 7);
        assert_eq!(
            (t[2].signal, t[2].sival_ptr, t[2].notify),
            (14, 0x1234, TimerNotify::Signal)
        );
        assert_eq!(parse_timers(b"").unwrap(), vec![]);
        let old =
            parse_timers(b"ID: 0\nsignal: 14/(null)\nnotify: thread/pid.1\nClockID: 1\n").unwrap();
        assert_eq!((old[0].sival_ptr, old[0].notify), (0, TimerNotify::Thread));
    }

    #[test]
    fn broken_timers() {
        assert!(parse_timers(b"ID: 0\nsignal: 14/0\nnotify: signal/pid.1\n").is_err());
        assert!(parse_timers(b"ID: 0\nsignal: 14\nnotify: signal/pid.1\nClockID: 1\n").is_err());
        assert!(parse_timers(b"ID: 0\nsignal: 14/0\nnotify: bogus/pid.1\nClockID: 1\n").is_err());
        assert!(parse_timers(b"ID: 0\nsignal: 14/0\nClockID: 1\nnotify: signal/pid.1\n").is_err());
        assert!(parse_timers(b"signal: 14/0\n").is_err());
    }
}
