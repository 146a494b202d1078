//! `/proc/PID/stat` (and `/proc/PID/task/TID/stat`): all 52 fields.

use crate::Pid;
use crate::error::{ParseError, ParseResult};
use crate::status::TaskState;
use crate::text::{self, num};

/// Every field of a stat file, named as proc(5) names them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stat {
    pub pid: Pid,
    /// The comm, raw: it may hold blanks, parentheses, even newlines.
    pub comm: Vec<u8>,
    pub state: Option<TaskState>,
    pub ppid: Pid,
    pub pgrp: Pid,
    pub session: Pid,
    pub tty_nr: i32,
    pub tpgid: Pid,
    /// `PF_*` flags.
    pub flags: u32,
    pub minflt: u64,
    pub cminflt: u64,
    pub majflt: u64,
    pub cmajflt: u64,
    pub utime: u64,
    pub stime: u64,
    pub cutime: i64,
    pub cstime: i64,
    pub priority: i64,
    pub nice: i64,
    pub num_threads: i64,
    pub itrealvalue: i64,
    /// Start time after boot, in clock ticks.
    pub starttime: u64,
    pub vsize: u64,
    pub rss: i64,
    pub rsslim: u64,
    pub startcode: u64,
    pub endcode: u64,
    pub startstack: u64,
    pub kstkesp: u64,
    pub kstkeip: u64,
    pub signal: u64,
    pub blocked: u64,
    pub sigignore: u64,
    pub sigcatch: u64,
    pub wchan: u64,
    pub nswap: u64,
    pub cnswap: u64,
    pub exit_signal: i32,
    pub processor: i32,
    pub rt_priority: u32,
    pub policy: u32,
    pub delayacct_blkio_ticks: u64,
    pub guest_time: u64,
    pub cguest_time: i64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub exit_code: i32,
}

/// Parses the text of a stat file. The comm runs from the first `(` to
/// the last `)`, so any comm is read whole.
pub fn parse_stat(text: &[u8]) -> ParseResult<Stat> {
    let open =
        memchr::memchr(b'(', text).ok_or_else(|| ParseError::new(0, "no '(' before the comm"))?;
    let close =
        memchr::memrchr(b')', text).ok_or_else(|| ParseError::new(0, "no ')' after the comm"))?;
    if close < open {
        return Err(ParseError::new(close, "')' before '('"));
    }
    let mut st = Stat {
        pid: num(text::dec_i32, text::trim(&text[..open]), 0, "pid")?,
        comm: text[open + 1..close].to_vec(),
        ..Stat::default()
    };
    let tail_at = close + 1;
    let mut tail = &text[tail_at..];
    if let Some(t) = tail.strip_suffix(b"\n") {
        tail = t;
    }
    let mut f = text::fields(tail);
    let mut field = |what: &'static str| -> ParseResult<(usize, &[u8])> {
        f.next()
            .map(|(o, v)| (tail_at + o, v))
            .ok_or_else(|| ParseError::new(text.len(), format!("no field {what}")))
    };
    macro_rules! get {
        ($parse:path, $what:literal) => {{
            let (o, v) = field($what)?;
            num($parse, v, o, $what)?
        }};
    }
    let (o, state) = field("state")?;
    st.state = match state {
        [c] => Some(TaskState::from_letter(*c)),
        _ => return Err(text::bad(o, "state", state)),
    };
    st.ppid = get!(text::dec_i32, "ppid");
    st.pgrp = get!(text::dec_i32, "pgrp");
    st.session = get!(text::dec_i32, "session");
    st.tty_nr = get!(text::dec_i32, "tty_nr");
    st.tpgid = get!(text::dec_i32, "tpgid");
    st.flags = get!(text::dec_u32, "flags");
    st.minflt = get!(text::dec_u64, "minflt");
    st.cminflt = get!(text::dec_u64, "cminflt");
    st.majflt = get!(text::dec_u64, "majflt");
    st.cmajflt = get!(text::dec_u64, "cmajflt");
    st.utime = get!(text::dec_u64, "utime");
    st.stime = get!(text::dec_u64, "stime");
    st.cutime = get!(text::dec_i64, "cutime");
    st.cstime = get!(text::dec_i64, "cstime");
    st.priority = get!(text::dec_i64, "priority");
    st.nice = get!(text::dec_i64, "nice");
    st.num_threads = get!(text::dec_i64, "num_threads");
    st.itrealvalue = get!(text::dec_i64, "itrealvalue");
    st.starttime = get!(text::dec_u64, "starttime");
    st.vsize = get!(text::dec_u64, "vsize");
    st.rss = get!(text::dec_i64, "rss");
    st.rsslim = get!(text::dec_u64, "rsslim");
    st.startcode = get!(text::dec_u64, "startcode");
    st.endcode = get!(text::dec_u64, "endcode");
    st.startstack = get!(text::dec_u64, "startstack");
    st.kstkesp = get!(text::dec_u64, "kstkesp");
    st.kstkeip = get!(text::dec_u64, "kstkeip");
    st.signal = get!(text::dec_u64, "signal");
    st.blocked = get!(text::dec_u64, "blocked");
    st.sigignore = get!(text::dec_u64, "sigignore");
    st.sigcatch = get!(text::dec_u64, "sigcatch");
    st.wchan = get!(text::dec_u64, "wchan");
    st.nswap = get!(text::dec_u64, "nswap");
    st.cnswap = get!(text::dec_u64, "cnswap");
    st.exit_signal = get!(text::dec_i32, "exit_signal");
    st.processor = get!(text::dec_i32, "processor");
    st.rt_priority = get!(text::dec_u32, "rt_priority");
    st.policy = get!(text::dec_u32, "policy");
    st.delayacct_blkio_ticks = get!(text::dec_u64, "delayacct_blkio_ticks");
    st.guest_time = get!(text::dec_u64, "guest_time");
    st.cguest_time = get!(text::dec_i64, "cguest_time");
    st.start_data = get!(text::dec_u64, "start_data");
    st.end_data = get!(text::dec_u64, "end_data");
    st.start_brk = get!(text::dec_u64, "start_brk");
    st.arg_start = get!(text::dec_u64, "arg_start");
    st.arg_end = get!(text::dec_u64, "arg_end");
    st.env_start = get!(text::dec_u64, "env_start");
    st.env_end = get!(text::dec_u64, "env_end");
    st.exit_code = get!(text::dec_i32, "exit_code");
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_comm_and_every_field() {
        let text = b"9918 (a) b (c) R 9915 9915 3915 34816 -1 4194304 99 1 2 3 4 5 -6 -7 20 -5 1 0 30462 3133440 381 18446744073709551615 94679116042240 94679116062121 140731598878848 11 12 13 14 15 16 17 18 19 17 1 0 0 21 22 -23 94679116078128 94679116079744 94679236489216 140731598883553 140731598883573 140731598883573 140731598884843 256\n";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.pid, 9918);
        assert_eq!(s.comm, b"a) b (c");
        assert_eq!(s.state, Some(TaskState::Running));
        assert_eq!(
            (s.ppid, s.pgrp, s.session, s.tty_nr, s.tpgid),
            (9915, 9915, 3915, 34816, -1)
        );
        assert_eq!(s.flags, 4194304);
        assert_eq!((s.minflt, s.cminflt, s.majflt, s.cmajflt), (99, 1, 2, 3));
        assert_eq!((s.utime, s.stime, s.cutime, s.cstime), (4, 5, -6, -7));
        assert_eq!(
            (s.priority, s.nice, s.num_threads, s.itrealvalue),
            (20, -5, 1, 0)
        );
        assert_eq!((s.starttime, s.vsize, s.rss), (30462, 3133440, 381));
        assert_eq!(s.rsslim, u64::MAX);
        assert_eq!(s.startcode, 94679116042240);
        assert_eq!(s.endcode, 94679116062121);
        assert_eq!(s.startstack, 140731598878848);
        assert_eq!((s.kstkesp, s.kstkeip), (11, 12));
        assert_eq!(
            (s.signal, s.blocked, s.sigignore, s.sigcatch),
            (13, 14, 15, 16)
        );
        assert_eq!((s.wchan, s.nswap, s.cnswap), (17, 18, 19));
        assert_eq!(
            (s.exit_signal, s.processor, s.rt_priority, s.policy),
            (17, 1, 0, 0)
        );
        assert_eq!(
            (s.delayacct_blkio_ticks, s.guest_time, s.cguest_time),
            (21, 22, -23)
        );
        assert_eq!(s.start_data, 94679116078128);
        assert_eq!(s.end_data, 94679116079744);
        assert_eq!(s.start_brk, 94679236489216);
        assert_eq!(s.arg_start, 140731598883553);
        assert_eq!((s.arg_end, s.env_start), (140731598883573, 140731598883573));
        assert_eq!(s.env_end, 140731598884843);
        assert_eq!(s.exit_code, 256);
    }

    #[test]
    fn comm_with_newline_and_empty_comm() {
        let mut text = b"1 (x\n) y) S".to_vec();
        text.extend_from_slice(&b" 0".repeat(49));
        let s = parse_stat(&text).unwrap();
        assert_eq!(s.comm, b"x\n) y");
        assert_eq!(s.state, Some(TaskState::Sleeping));
        let mut text = b"2 () Z".to_vec();
        text.extend_from_slice(&b" 0".repeat(49));
        assert_eq!(parse_stat(&text).unwrap().comm, b"");
    }

    #[test]
    fn short_or_bad() {
        let mut text = b"1 (x) S".to_vec();
        text.extend_from_slice(&b" 0".repeat(48));
        let err = parse_stat(&text).unwrap_err();
        assert!(err.msg.contains("exit_code"), "{err}");
        text.extend_from_slice(b" q");
        assert!(parse_stat(&text).is_err());
        assert!(parse_stat(b"1 x) S").is_err());
        assert!(parse_stat(b"1 )x( S").is_err());
        assert!(parse_stat(b"z (x) S").is_err());
    }
}
