//! The thread's restartable-sequences registration (core's `rseq_entry`),
//! read before the parasite runs: running anything in the task makes the
//! kernel clear a critical section's descriptor.

use rcriu_compel::sys::{RseqConfig, get_rseq_config, process_vm_read};
use rcriu_images::pb;
use rcriu_proc::Pid;

use crate::{Error, Result};

const RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL: u32 = 1 << 1;

/// `struct rseq_cs`: the critical section the thread is in, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CriticalSection {
    pub version: u32,
    pub flags: u32,
    pub start_ip: u64,
    pub post_commit_offset: u64,
    pub abort_ip: u64,
}

/// What the dump keeps of a thread's rseq state.
#[derive(Debug, Clone, Default)]
pub struct Rseq {
    pub config: RseqConfig,
    /// `struct rseq`'s `rseq_cs` pointer.
    pub cs_pointer: u64,
    pub cs: CriticalSection,
}

fn read(pid: Pid, addr: u64, buf: &mut [u8]) -> Result<()> {
    let n = process_vm_read(pid, addr, buf).map_err(Error::sys("reading the rseq area", pid))?;
    if n != buf.len() {
        return Err(Error::Inconsistent {
            pid,
            what: format!("the rseq area at {addr:#x} is not readable"),
        });
    }
    Ok(())
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Reads the rseq registration of stopped thread `tid` of `pid`.
pub fn read_thread(pid: Pid, tid: Pid) -> Result<Rseq> {
    let config = get_rseq_config(tid).map_err(Error::sys("reading the rseq configuration", tid))?;
    if config.flags != 0 {
        return Err(Error::Inconsistent {
            pid,
            what: format!("rseq configuration flags {:#x}", config.flags),
        });
    }
    let mut out = Rseq {
        config,
        ..Rseq::default()
    };
    if config.rseq_abi_pointer == 0 {
        return Ok(out);
    }
    // cpu_id_start, cpu_id, rseq_cs, flags.
    let mut area = [0u8; 20];
    read(pid, config.rseq_abi_pointer, &mut area)?;
    out.cs_pointer = u64_at(&area, 8);
    let area_flags = u32_at(&area, 16);
    if out.cs_pointer != 0 {
        let mut cs = [0u8; 32];
        read(pid, out.cs_pointer, &mut cs)?;
        out.cs = CriticalSection {
            version: u32_at(&cs, 0),
            flags: u32_at(&cs, 4),
            start_ip: u64_at(&cs, 8),
            post_commit_offset: u64_at(&cs, 16),
            abort_ip: u64_at(&cs, 24),
        };
    }
    // As the kernel does, the area's (deprecated) flags count with the
    // section's.
    out.cs.flags |= area_flags;
    Ok(out)
}

impl Rseq {
    pub fn entry(&self) -> pb::RseqEntry {
        pb::RseqEntry {
            rseq_abi_pointer: self.config.rseq_abi_pointer,
            rseq_abi_size: self.config.rseq_abi_size,
            signature: self.config.signature,
            rseq_cs_pointer: (self.cs.flags & RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL != 0)
                .then_some(self.cs_pointer),
        }
    }

    /// Where the thread resumes when it was stopped at `ip` inside a
    /// critical section that restarts on signals: its abort handler (as
    /// the kernel would send it there).
    pub fn fixup_ip(&self, pid: Pid, ip: u64) -> Result<u64> {
        let cs = &self.cs;
        if cs.start_ip == 0 {
            return Ok(ip);
        }
        if cs.version != 0 {
            return Err(Error::unsupported(
                pid,
                format!("an rseq critical section of ABI version {}", cs.version),
            ));
        }
        let inside = ip >= cs.start_ip && ip < cs.start_ip.wrapping_add(cs.post_commit_offset);
        if inside && cs.flags & RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL == 0 {
            log::warn!(
                "process {pid} is in an rseq critical section: it resumes at its abort handler"
            );
            return Ok(cs.abort_ip);
        }
        Ok(ip)
    }
}
