//! `/proc/PID/status` (and `/proc/PID/task/TID/status`).

use crate::Pid;
use crate::error::{ParseError, ParseResult};
use crate::text::{self, bad, num};

/// The scheduler state letter of `State:` (and of stat's third field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// `R`
    Running,
    /// `S`
    Sleeping,
    /// `D`
    DiskSleep,
    /// `T`: stopped by a signal.
    Stopped,
    /// `t`: stopped by a tracer.
    TracingStop,
    /// `Z`
    Zombie,
    /// `X`
    Dead,
    /// `P`
    Parked,
    /// `I`
    Idle,
    /// Any other letter.
    Other(u8),
}

impl TaskState {
    pub fn from_letter(c: u8) -> TaskState {
        match c {
            b'R' => TaskState::Running,
            b'S' => TaskState::Sleeping,
            b'D' => TaskState::DiskSleep,
            b'T' => TaskState::Stopped,
            b't' => TaskState::TracingStop,
            b'Z' => TaskState::Zombie,
            b'X' | b'x' => TaskState::Dead,
            b'P' => TaskState::Parked,
            b'I' => TaskState::Idle,
            c => TaskState::Other(c),
        }
    }

    pub fn letter(self) -> u8 {
        match self {
            TaskState::Running => b'R',
            TaskState::Sleeping => b'S',
            TaskState::DiskSleep => b'D',
            TaskState::Stopped => b'T',
            TaskState::TracingStop => b't',
            TaskState::Zombie => b'Z',
            TaskState::Dead => b'X',
            TaskState::Parked => b'P',
            TaskState::Idle => b'I',
            TaskState::Other(c) => c,
        }
    }
}

/// A signal set as status prints it (bit `n - 1` for signal `n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SigSet(pub u64);

impl SigSet {
    /// Whether signal number `sig` (1-based) is in the set.
    pub fn has(self, sig: i32) -> bool {
        (1..=64).contains(&sig) && self.0 & (1u64 << (sig - 1)) != 0
    }
}

/// `Seccomp:` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SeccompMode {
    #[default]
    Disabled,
    Strict,
    Filter,
    Other(u32),
}

/// The four ids of `Uid:` or `Gid:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ids {
    pub real: u32,
    pub effective: u32,
    pub saved: u32,
    pub fs: u32,
}

/// The parsed status file. Fields a kernel may lack are `Option`s; the
/// ones every kernel CRIU supports prints are plain and required.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// `Name:` as printed: the comm with `\n` and `\\` escaped (read
    /// `comm` for the raw bytes).
    pub name: Vec<u8>,
    pub umask: Option<u32>,
    pub state: Option<TaskState>,
    pub tgid: Pid,
    pub ngid: Option<Pid>,
    pub pid: Pid,
    pub ppid: Pid,
    pub tracer_pid: Pid,
    pub uid: Ids,
    pub gid: Ids,
    pub fd_size: Option<u32>,
    pub groups: Vec<u32>,
    /// Thread-group id in each pid namespace, outermost first.
    pub ns_tgid: Vec<Pid>,
    pub ns_pid: Vec<Pid>,
    pub ns_pgid: Vec<Pid>,
    pub ns_sid: Vec<Pid>,
    /// `Kthread:` 1 for kernel threads.
    pub kthread: Option<bool>,
    pub vm_peak_kb: Option<u64>,
    pub vm_size_kb: Option<u64>,
    pub vm_lck_kb: Option<u64>,
    pub vm_pin_kb: Option<u64>,
    pub vm_hwm_kb: Option<u64>,
    pub vm_rss_kb: Option<u64>,
    pub rss_anon_kb: Option<u64>,
    pub rss_file_kb: Option<u64>,
    pub rss_shmem_kb: Option<u64>,
    pub vm_data_kb: Option<u64>,
    pub vm_stk_kb: Option<u64>,
    pub vm_exe_kb: Option<u64>,
    pub vm_lib_kb: Option<u64>,
    pub vm_pte_kb: Option<u64>,
    pub vm_swap_kb: Option<u64>,
    pub core_dumping: Option<bool>,
    pub thp_enabled: Option<bool>,
    /// `untag_mask:` (x86 LAM): all ones unless tagged addresses are on.
    pub untag_mask: Option<u64>,
    /// `x86_Thread_features:` text (shadow stack and the like), on kernels
    /// and CPUs that have them.
    pub x86_thread_features: Option<String>,
    pub threads: u32,
    /// `SigQ:` queued signals / limit.
    pub sig_q: (u64, u64),
    /// Signals pending for this thread.
    pub sig_pnd: SigSet,
    /// Signals pending for the whole thread group.
    pub shd_pnd: SigSet,
    pub sig_blk: SigSet,
    pub sig_ign: SigSet,
    pub sig_cgt: SigSet,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: Option<u64>,
    pub no_new_privs: Option<bool>,
    pub seccomp: Option<SeccompMode>,
    pub seccomp_filters: Option<u32>,
    /// `Speculation_Store_Bypass:` text.
    pub speculation_store_bypass: Option<String>,
    /// `Cpus_allowed_list:` text.
    pub cpus_allowed_list: Option<String>,
    /// `Mems_allowed_list:` text.
    pub mems_allowed_list: Option<String>,
    pub voluntary_ctxt_switches: Option<u64>,
    pub nonvoluntary_ctxt_switches: Option<u64>,
}

fn ids4(v: &[u8], off: usize, what: &str) -> ParseResult<Ids> {
    let mut it = text::fields(v);
    let mut next = || -> ParseResult<u32> {
        let (_, f) = it.next().ok_or_else(|| bad(off, what, v))?;
        num(text::dec_u32, f, off, what)
    };
    Ok(Ids {
        real: next()?,
        effective: next()?,
        saved: next()?,
        fs: next()?,
    })
}

fn id_list<T>(v: &[u8], off: usize, what: &str, f: fn(&[u8]) -> Option<T>) -> ParseResult<Vec<T>> {
    text::fields(v).map(|(_, x)| num(f, x, off, what)).collect()
}

fn kb(v: &[u8], off: usize, what: &str) -> ParseResult<Option<u64>> {
    let n = text::fields(v).next().map(|(_, n)| n).unwrap_or(b"");
    num(text::dec_u64, n, off, what).map(Some)
}

fn flag(v: &[u8], off: usize, what: &str) -> ParseResult<Option<bool>> {
    Ok(Some(num(text::dec_u64, v, off, what)? != 0))
}

fn lossy(v: &[u8]) -> Option<String> {
    Some(String::from_utf8_lossy(v).into_owned())
}

/// Parses the text of a status file.
pub fn parse_status(text: &[u8]) -> ParseResult<Status> {
    let mut s = Status::default();
    // Which of the fields every supported kernel prints were seen.
    let mut seen = 0u32;
    const NAME: u32 = 1;
    const TGID: u32 = 1 << 1;
    const PID: u32 = 1 << 2;
    const PPID: u32 = 1 << 3;
    const TRACER: u32 = 1 << 4;
    const UID: u32 = 1 << 5;
    const GID: u32 = 1 << 6;
    const THREADS: u32 = 1 << 7;
    const SIGQ: u32 = 1 << 8;
    const SIGS: u32 = 1 << 9;
    const CAPS: u32 = 1 << 10;
    for (off, line) in text::lines(text) {
        let Some(colon) = memchr::memchr(b':', line) else {
            if line.is_empty() {
                continue;
            }
            return Err(bad(off, "status line", line));
        };
        let key = &line[..colon];
        let raw = &line[colon + 1..];
        let v = text::trim(raw);
        match key {
            b"Name" => {
                // Only the tab after the colon is a separator: a comm may
                // begin or end with blanks.
                s.name = raw.strip_prefix(b"\t").unwrap_or(raw).to_vec();
                seen |= NAME;
            }
            b"Umask" => s.umask = Some(num(text::oct_u32, v, off, "Umask")?),
            b"State" => {
                let c = *v.first().ok_or_else(|| bad(off, "State", v))?;
                s.state = Some(TaskState::from_letter(c));
            }
            b"Tgid" => {
                s.tgid = num(text::dec_i32, v, off, "Tgid")?;
                seen |= TGID;
            }
            b"Ngid" => s.ngid = Some(num(text::dec_i32, v, off, "Ngid")?),
            b"Pid" => {
                s.pid = num(text::dec_i32, v, off, "Pid")?;
                seen |= PID;
            }
            b"PPid" => {
                s.ppid = num(text::dec_i32, v, off, "PPid")?;
                seen |= PPID;
            }
            b"TracerPid" => {
                s.tracer_pid = num(text::dec_i32, v, off, "TracerPid")?;
                seen |= TRACER;
            }
            b"Uid" => {
                s.uid = ids4(v, off, "Uid")?;
                seen |= UID;
            }
            b"Gid" => {
                s.gid = ids4(v, off, "Gid")?;
                seen |= GID;
            }
            b"FDSize" => s.fd_size = Some(num(text::dec_u32, v, off, "FDSize")?),
            b"Groups" => s.groups = id_list(v, off, "Groups", text::dec_u32)?,
            b"NStgid" => s.ns_tgid = id_list(v, off, "NStgid", text::dec_i32)?,
            b"NSpid" => s.ns_pid = id_list(v, off, "NSpid", text::dec_i32)?,
            b"NSpgid" => s.ns_pgid = id_list(v, off, "NSpgid", text::dec_i32)?,
            b"NSsid" => s.ns_sid = id_list(v, off, "NSsid", text::dec_i32)?,
            b"Kthread" => s.kthread = flag(v, off, "Kthread")?,
            b"VmPeak" => s.vm_peak_kb = kb(v, off, "VmPeak")?,
            b"VmSize" => s.vm_size_kb = kb(v, off, "VmSize")?,
            b"VmLck" => s.vm_lck_kb = kb(v, off, "VmLck")?,
            b"VmPin" => s.vm_pin_kb = kb(v, off, "VmPin")?,
            b"VmHWM" => s.vm_hwm_kb = kb(v, off, "VmHWM")?,
            b"VmRSS" => s.vm_rss_kb = kb(v, off, "VmRSS")?,
            b"RssAnon" => s.rss_anon_kb = kb(v, off, "RssAnon")?,
            b"RssFile" => s.rss_file_kb = kb(v, off, "RssFile")?,
            b"RssShmem" => s.rss_shmem_kb = kb(v, off, "RssShmem")?,
            b"VmData" => s.vm_data_kb = kb(v, off, "VmData")?,
            b"VmStk" => s.vm_stk_kb = kb(v, off, "VmStk")?,
            b"VmExe" => s.vm_exe_kb = kb(v, off, "VmExe")?,
            b"VmLib" => s.vm_lib_kb = kb(v, off, "VmLib")?,
            b"VmPTE" => s.vm_pte_kb = kb(v, off, "VmPTE")?,
            b"VmSwap" => s.vm_swap_kb = kb(v, off, "VmSwap")?,
            b"CoreDumping" => s.core_dumping = flag(v, off, "CoreDumping")?,
            b"THP_enabled" => s.thp_enabled = flag(v, off, "THP_enabled")?,
            b"Threads" => {
                s.threads = num(text::dec_u32, v, off, "Threads")?;
                seen |= THREADS;
            }
            b"SigQ" => {
                let slash = memchr::memchr(b'/', v).ok_or_else(|| bad(off, "SigQ", v))?;
                s.sig_q = (
                    num(text::dec_u64, &v[..slash], off, "SigQ")?,
                    num(text::dec_u64, &v[slash + 1..], off, "SigQ")?,
                );
                seen |= SIGQ;
            }
            b"SigPnd" => s.sig_pnd = SigSet(num(text::hex_u64, v, off, "SigPnd")?),
            b"ShdPnd" => s.shd_pnd = SigSet(num(text::hex_u64, v, off, "ShdPnd")?),
            b"SigBlk" => {
                s.sig_blk = SigSet(num(text::hex_u64, v, off, "SigBlk")?);
                seen |= SIGS;
            }
            b"SigIgn" => s.sig_ign = SigSet(num(text::hex_u64, v, off, "SigIgn")?),
            b"SigCgt" => s.sig_cgt = SigSet(num(text::hex_u64, v, off, "SigCgt")?),
            b"CapInh" => s.cap_inh = num(text::hex_u64, v, off, "CapInh")?,
            b"CapPrm" => s.cap_prm = num(text::hex_u64, v, off, "CapPrm")?,
            b"CapEff" => {
                s.cap_eff = num(text::hex_u64, v, off, "CapEff")?;
                seen |= CAPS;
            }
            b"CapBnd" => s.cap_bnd = num(text::hex_u64, v, off, "CapBnd")?,
            b"CapAmb" => s.cap_amb = Some(num(text::hex_u64, v, off, "CapAmb")?),
            b"NoNewPrivs" => s.no_new_privs = flag(v, off, "NoNewPrivs")?,
            b"Seccomp" => {
                s.seccomp = Some(match num(text::dec_u32, v, off, "Seccomp")? {
                    0 => SeccompMode::Disabled,
                    1 => SeccompMode::Strict,
                    2 => SeccompMode::Filter,
                    n => SeccompMode::Other(n),
                })
            }
            b"Seccomp_filters" => {
                s.seccomp_filters = Some(num(text::dec_u32, v, off, "Seccomp_filters")?)
            }
            b"Speculation_Store_Bypass" => s.speculation_store_bypass = lossy(v),
            b"untag_mask" => {
                let hex = v.strip_prefix(b"0x").unwrap_or(v);
                s.untag_mask = Some(num(text::hex_u64, hex, off, "untag_mask")?);
            }
            b"x86_Thread_features" => s.x86_thread_features = lossy(v),
            b"Cpus_allowed_list" => s.cpus_allowed_list = lossy(v),
            b"Mems_allowed_list" => s.mems_allowed_list = lossy(v),
            b"voluntary_ctxt_switches" => {
                s.voluntary_ctxt_switches = kb(v, off, "voluntary_ctxt_switches")?
            }
            b"nonvoluntary_ctxt_switches" => {
                s.nonvoluntary_ctxt_switches = kb(v, off, "nonvoluntary_ctxt_switches")?
            }
            _ => {}
        }
    }
    let required = NAME | TGID | PID | PPID | TRACER | UID | GID | THREADS | SIGQ | SIGS | CAPS;
    if seen & required != required {
        let missing = [
            (NAME, "Name"),
            (TGID, "Tgid"),
            (PID, "Pid"),
            (PPID, "PPid"),
            (TRACER, "TracerPid"),
            (UID, "Uid"),
            (GID, "Gid"),
            (THREADS, "Threads"),
            (SIGQ, "SigQ"),
            (SIGS, "SigBlk"),
            (CAPS, "CapEff"),
        ]
        .iter()
        .filter(|(bit, _)| seen & bit == 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ");
        return Err(ParseError::new(text.len(), format!("no {missing} line")));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const STATUS: &[u8] = b"Name:\t a) b (c\nUmask:\t0027\nState:\tS (sleeping)\nTgid:\t9917\nNgid:\t0\nPid:\t9918\nPPid:\t9915\nTracerPid:\t7\nUid:\t0\t1\t2\t3\nGid:\t4\t5\t6\t7\nFDSize:\t256\nGroups:\t10 20 \nNStgid:\t9917\t1\nNSpid:\t9918\t2\nNSpgid:\t9915\t1\nNSsid:\t3915\t1\nKthread:\t0\nVmPeak:\t    3060 kB\nVmSize:\t    3060 kB\nVmLck:\t       0 kB\nVmPin:\t       0 kB\nVmHWM:\t    1772 kB\nVmRSS:\t    1772 kB\nRssAnon:\t     112 kB\nRssFile:\t    1660 kB\nRssShmem:\t       0 kB\nVmData:\t     360 kB\nVmStk:\t     132 kB\nVmExe:\t      20 kB\nVmLib:\t    1528 kB\nVmPTE:\t      40 kB\nVmSwap:\t       0 kB\nHugetlbPages:\t       0 kB\nCoreDumping:\t0\nTHP_enabled:\t1\nuntag_mask:\t0xffffffffffffffff\nThreads:\t2\nSigQ:\t2/96365\nSigPnd:\t0000000000000200\nShdPnd:\t0000000000000001\nSigBlk:\t0000000000000a00\nSigIgn:\t0000000000001000\nSigCgt:\t0000000000004001\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000001\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t3\nSpeculation_Store_Bypass:\tvulnerable\nSpeculationIndirectBranch:\talways enabled\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed:\t00000000,00000001\nMems_allowed_list:\t0\nvoluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t1\n";

    #[test]
    fn all_fields() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(s.name, b" a) b (c");
        assert_eq!(s.umask, Some(0o027));
        assert_eq!(s.state, Some(TaskState::Sleeping));
        assert_eq!((s.tgid, s.pid, s.ppid, s.tracer_pid), (9917, 9918, 9915, 7));
        assert_eq!(s.ngid, Some(0));
        assert_eq!(
            s.uid,
            Ids {
                real: 0,
                effective: 1,
                saved: 2,
                fs: 3
            }
        );
        assert_eq!(s.gid.fs, 7);
        assert_eq!(s.fd_size, Some(256));
        assert_eq!(s.groups, vec![10, 20]);
        assert_eq!(s.ns_tgid, vec![9917, 1]);
        assert_eq!(s.ns_pid, vec![9918, 2]);
        assert_eq!(s.ns_pgid, vec![9915, 1]);
        assert_eq!(s.ns_sid, vec![3915, 1]);
        assert_eq!(s.kthread, Some(false));
        assert_eq!(s.vm_rss_kb, Some(1772));
        assert_eq!(s.vm_stk_kb, Some(132));
        assert_eq!(s.thp_enabled, Some(true));
        assert_eq!(s.threads, 2);
        assert_eq!(s.sig_q, (2, 96365));
        assert!(s.sig_pnd.has(10));
        assert!(!s.sig_pnd.has(9));
        assert!(s.shd_pnd.has(1));
        assert_eq!(s.sig_blk, SigSet(0xa00));
        assert!(s.sig_ign.has(13));
        assert!(s.sig_cgt.has(15) && s.sig_cgt.has(1));
        assert!(!SigSet(u64::MAX).has(0) && !SigSet(u64::MAX).has(65));
        assert_eq!(s.cap_prm, 0x1fffeffffff);
        assert_eq!(s.cap_bnd, 0x1ffffffffff);
        assert_eq!(s.cap_amb, Some(1));
        assert_eq!(s.no_new_privs, Some(true));
        assert_eq!(s.seccomp, Some(SeccompMode::Filter));
        assert_eq!(s.seccomp_filters, Some(3));
        assert_eq!(s.cpus_allowed_list.as_deref(), Some("0-1"));
        assert_eq!(s.voluntary_ctxt_switches, Some(5));
    }

    #[test]
    fn missing_and_bad_fields() {
        let without_threads: Vec<u8> = STATUS
            .split(|&b| b == b'\n')
            .filter(|l| !l.starts_with(b"Threads:"))
            .flat_map(|l| l.iter().copied().chain([b'\n']))
            .collect();
        let err = parse_status(&without_threads).unwrap_err();
        assert!(err.msg.contains("Threads"), "{err}");
        let bad_sig =
            String::from_utf8_lossy(STATUS).replace("SigBlk:\t0000000000000a00", "SigBlk:\tzz");
        assert!(parse_status(bad_sig.as_bytes()).is_err());
        let bad_uid = String::from_utf8_lossy(STATUS).replace("Uid:\t0\t1\t2\t3", "Uid:\t0\t1\t2");
        assert!(parse_status(bad_uid.as_bytes()).is_err());
        assert!(parse_status(b"").is_err());
    }
}
