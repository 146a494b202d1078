//! Lifelines: how a thread holding our registers puts itself back when
//! rcriu dies.
//!
//! When its tracer dies, the kernel lets a tracee go with whatever
//! registers it has at that instant. A thread set up for a remote syscall
//! or running the parasite would run on from there into the victim's own
//! code with registers that are not its own, and die of it. So every
//! register set rcriu gives a thread has a *continuation* that ends with
//! the thread exactly as it was found, whatever instant rcriu dies at:
//!
//! - before touching a thread, rcriu writes on its stack, below the red
//!   zone (where a signal frame would go), a signal frame of its original
//!   state, as the kernel's `rt_sigreturn` reads it;
//! - every syscall rcriu makes the thread run, it runs at a `syscall`
//!   instruction of the vDSO whose following code only clears registers
//!   and pops the stack before a `ret` (the *gadget*); its stack pointer
//!   is set so that this `ret` lands in an `rt_sigreturn` trampoline of
//!   the victim's C library (`mov rax, 15; syscall`, the restorer of its
//!   signal handlers) with that frame on top: whether rcriu is there to
//!   catch the syscall's end or not, the thread goes back to its state;
//! - a syscall whose effect must be undone too (the `mmap` of the
//!   parasite's area) lands instead in a second frame that runs the undo
//!   (`munmap`) at the gadget, landing in turn in the original frame;
//! - the parasite, when its control socket breaks, unmaps its own area
//!   with that same gadget: it jumps out of the area to run the `munmap`,
//!   and lands in the original frame. Nothing of rcriu's is left.
//!
//! On the normal path rcriu stops the thread after each syscall (and
//! after the parasite's `munmap`) and puts its registers back itself, so
//! that `rt_sigreturn` (which drops a syscall's restart block) never runs.
//!
//! A victim without such code (no vDSO gadget, no trampoline) gets the
//! parasite's own copies of them once its area exists: rcriu's death then
//! still leaves a working process, but the area stays mapped and the
//! first remote syscalls are not covered.

use rcriu_proc::{Pid, Prot, VmaPath};

use crate::regs::UserRegs;
use crate::remote::ThreadCtx;
use crate::{Error, Result, sigframe, sys};

/// `syscall`.
const SYSCALL: [u8; 2] = [0x0f, 0x05];
/// `mov rax, 15; syscall` and `mov eax, 15; syscall`: an `rt_sigreturn`
/// trampoline, as C libraries give signal handlers.
const TRAMPOLINES: [&[u8]; 2] = [
    &[0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0, 0x0f, 0x05],
    &[0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05],
];
/// `pop rax; ret`: with the gadget, an `rt_sigreturn` too.
const POP_RAX_RET: [u8; 2] = [0x58, 0xc3];

const NR_RT_SIGRETURN: u64 = 15;
/// The red zone a signal frame leaves alone, and some slack.
const BELOW_SP: u64 = 128 + 64;
/// Most bytes of a victim's code read while looking for a trampoline.
const SCAN_LIMIT: usize = 64 << 20;

/// What a gadget's `ret` reads relative to: the stack pointer or the frame
/// pointer the thread had at the `syscall`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    Sp,
    Bp,
}

/// A `syscall` instruction whose following code ends in a `ret` that
/// reads the stack at `base + off`, having touched nothing else than
/// registers and the stack below that slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gadget {
    pub addr: u64,
    base: Base,
    off: i64,
    /// The bytes from the `syscall` to the end of the `ret`.
    len: u64,
}

/// How an `rt_sigreturn` is reached from a `ret`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    /// At this trampoline; the frame starts at the slot the `ret` read.
    Trampoline(u64),
    /// `pop rax; ret` here, 15, then the gadget: the frame starts 16
    /// bytes above the slot.
    PopRax(u64),
}

impl Tail {
    /// From the slot the `ret` reads to the frame.
    fn frame_off(self) -> u64 {
        match self {
            Tail::Trampoline(_) => 0,
            Tail::PopRax(_) => 16,
        }
    }
}

/// The victim's code a lifeline runs through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gadgets {
    pub syscall: Gadget,
    tail: Tail,
}

/// Where the thread must stand for a syscall at the gadget to land in a
/// frame: its stack pointer, and its frame pointer when the gadget's
/// `ret` is found through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exit {
    pub sp: u64,
    pub bp: Option<u64>,
}

impl Exit {
    /// `regs` set to run syscall `nr` with `args` at `g`, landing here.
    pub fn regs(&self, g: &Gadget, from: &UserRegs, nr: u64, args: [u64; 6]) -> UserRegs {
        let mut r = from.for_call(g.addr, Some(self.sp));
        if let Some(bp) = self.bp {
            r.bp = bp;
        }
        r.ax = nr;
        r.di = args[0];
        r.si = args[1];
        r.dx = args[2];
        r.r10 = args[3];
        r.r8 = args[4];
        r.r9 = args[5];
        r
    }
}

impl Gadgets {
    /// Looks for the gadget (in the vDSO first) and a way to
    /// `rt_sigreturn` in the process's executable mappings. What was found
    /// in a process before is taken again if its bytes are still there.
    pub fn find(pid: Pid) -> Result<Option<Gadgets>> {
        static FOUND: std::sync::Mutex<Option<(Pid, Gadgets)>> = std::sync::Mutex::new(None);
        let cached = *FOUND.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, g)) = cached
            && p == pid
            && g.still_there(pid)
        {
            return Ok(Some(g));
        }
        let g = Gadgets::scan(pid)?;
        if let Some(g) = g {
            *FOUND.lock().unwrap_or_else(|e| e.into_inner()) = Some((pid, g));
        }
        Ok(g)
    }

    /// Whether the gadget and the tail are still where they were found.
    fn still_there(&self, pid: Pid) -> bool {
        let mut buf = [0u8; 64];
        let g = self.syscall.addr;
        let n = read_all(pid, g, &mut buf);
        if n < 2 || buf[..2] != SYSCALL || find_gadget(&buf[..n], g) != Some(self.syscall) {
            return false;
        }
        match self.tail {
            Tail::Trampoline(r) => {
                let n = read_all(pid, r, &mut buf[..9]);
                TRAMPOLINES.iter().any(|t| buf[..n].starts_with(t))
            }
            Tail::PopRax(p) => read_all(pid, p, &mut buf[..2]) == 2 && buf[..2] == POP_RAX_RET,
        }
    }

    fn scan(pid: Pid) -> Result<Option<Gadgets>> {
        let maps = rcriu_proc::Task::open(pid)
            .and_then(|mut t| t.maps())
            .map_err(Error::proc(pid))?;
        let mut exec: Vec<_> = maps
            .iter()
            .filter(|v| v.prot.contains(Prot::EXEC | Prot::READ))
            .collect();
        // The vDSO first (small, its fallbacks end as wanted), then the C
        // library (the trampoline), then the rest.
        exec.sort_by_key(|v| {
            if v.path == VmaPath::Vdso {
                0
            } else if matches!(&v.path, VmaPath::File { path, .. } if is_libc(path)) {
                1
            } else {
                2
            }
        });
        const CHUNK: usize = 64 << 10;
        let mut gadget: Option<Gadget> = None;
        let mut trampoline = None;
        let mut pop_rax = None;
        let mut scanned = 0usize;
        let mut code = vec![0u8; CHUNK + 16];
        'maps: for v in exec {
            let mut at = v.start;
            while at < v.end {
                if (gadget.is_some() && trampoline.is_some()) || scanned >= SCAN_LIMIT {
                    break 'maps;
                }
                // Chunks overlap by 16 bytes: a pattern may straddle two.
                let len = ((v.end - at) as usize).min(code.len());
                let got = read_all(pid, at, &mut code[..len]);
                if got == 0 {
                    break;
                }
                let c = &code[..got];
                scanned += got;
                if gadget.is_none() {
                    gadget = find_gadget(c, at);
                }
                if trampoline.is_none() {
                    trampoline = TRAMPOLINES
                        .iter()
                        .find_map(|t| memchr::memmem::find(c, t).map(|i| at + i as u64));
                }
                if pop_rax.is_none() {
                    pop_rax = memchr::memmem::find(c, &POP_RAX_RET).map(|i| at + i as u64);
                }
                if got < len || at + got as u64 >= v.end {
                    break;
                }
                at += (got - 16) as u64;
            }
        }
        let Some(syscall) = gadget else {
            return Ok(None);
        };
        let tail = match (trampoline, pop_rax) {
            (Some(t), _) => Tail::Trampoline(t),
            (None, Some(p)) => Tail::PopRax(p),
            (None, None) => return Ok(None),
        };
        log::debug!("lifeline of {pid}: gadget {syscall:x?}, {tail:x?}");
        Ok(Some(Gadgets { syscall, tail }))
    }

    /// The parasite's own copies, once its area is at `base`: a `syscall;
    /// ret` and a trampoline at these offsets.
    pub fn in_area(base: u64, syscall_ret: u64, sigreturn: u64) -> Gadgets {
        Gadgets {
            syscall: Gadget {
                addr: base + syscall_ret,
                base: Base::Sp,
                off: 0,
                len: 3,
            },
            tail: Tail::Trampoline(base + sigreturn),
        }
    }

    /// Whether `ip` is on the way out through this code past the gadget's
    /// `syscall` (`Some(true)`), at that `syscall` (`Some(false)`), or
    /// elsewhere (`None`).
    pub fn past_syscall(&self, ip: u64) -> Option<bool> {
        let g = self.syscall;
        if ip == g.addr {
            return Some(false);
        }
        if ip > g.addr && ip < g.addr + g.len {
            return Some(true);
        }
        let (t, n) = match self.tail {
            Tail::Trampoline(r) => (r, 9),
            Tail::PopRax(p) => (p, 2),
        };
        (ip >= t && ip < t + n).then_some(true)
    }

    /// Where to stand at the gadget for its `ret` to read `slot`; `low`
    /// is the lowest stack address this makes the gadget read.
    fn exit_for(&self, slot: u64) -> (Exit, u64) {
        let g = self.syscall;
        match g.base {
            Base::Sp => {
                let sp = slot.wrapping_add_signed(-g.off);
                (Exit { sp, bp: None }, sp.min(slot))
            }
            Base::Bp => {
                let bp = slot.wrapping_add_signed(-g.off);
                // The stack pointer is not used before the frame pointer
                // replaces it: put it below, out of the way.
                let sp = bp.min(slot) - 64;
                (Exit { sp, bp: Some(bp) }, sp)
            }
        }
    }

    /// The bytes of the landing at `slot` (before the frame).
    fn landing(&self) -> Vec<u8> {
        match self.tail {
            Tail::Trampoline(r) => r.to_le_bytes().to_vec(),
            Tail::PopRax(p) => {
                let mut v = Vec::with_capacity(24);
                v.extend_from_slice(&p.to_le_bytes());
                v.extend_from_slice(&NR_RT_SIGRETURN.to_le_bytes());
                v.extend_from_slice(&self.syscall.addr.to_le_bytes());
                v
            }
        }
    }
}

fn is_libc(p: &std::path::Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("libc.") || n.starts_with("libc-") || n.contains("musl"))
}

/// Reads as much of `buf` as the process lets us, from `addr`.
fn read_all(pid: Pid, addr: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let n = buf.len() - done;
        match sys::process_vm_read(pid, addr + done as u64, &mut buf[done..done + n]) {
            Ok(0) | Err(_) => break,
            Ok(got) => done += got,
        }
    }
    done
}

/// The first `syscall` in `code` (mapped at `at`) followed by a gadget
/// tail; the ones whose `ret` reads right at the stack pointer first.
fn find_gadget(code: &[u8], at: u64) -> Option<Gadget> {
    let mut best: Option<Gadget> = None;
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&code[from..], &SYSCALL) {
        let pos = from + i;
        from = pos + 1;
        if let Some((base, off, len)) = tail_effect(&code[pos + 2..]) {
            let g = Gadget {
                addr: at + pos as u64,
                base,
                off,
                len: 2 + len as u64,
            };
            if base == Base::Sp && off == 0 {
                return Some(g);
            }
            best.get_or_insert(g);
        }
    }
    best
}

/// Follows the code after a `syscall` while it only clears or moves
/// registers, pops, moves the stack pointer or the frame pointer, up to a
/// `ret`; returns where that `ret` reads the return address, and the
/// length of the code up to the end of the `ret`.
fn tail_effect(code: &[u8]) -> Option<(Base, i64, usize)> {
    const RSP: u8 = 4;
    const RBP: u8 = 5;
    // The stack pointer as base + offset; the frame pointer as Bp + offset
    // while it still holds the value it had (None once loaded from memory).
    let mut sp = (Base::Sp, 0i64);
    let mut bp = Some(0i64);
    let mut i = 0;
    for _ in 0..32 {
        let b = *code.get(i)?;
        let (rex, op) = if (0x40..=0x4f).contains(&b) {
            (b, *code.get(i + 1)?)
        } else {
            (0, b)
        };
        let o = if rex != 0 { i + 1 } else { i };
        let rex_b = rex & 1 != 0;
        let rex_r = rex & 4 != 0;
        let rex_w = rex & 8 != 0;
        match op {
            0xc3 if rex == 0 => return Some((sp.0, sp.1, i + 1)),
            0xf3 if rex == 0 && code.get(i + 1) == Some(&0xc3) => return Some((sp.0, sp.1, i + 2)),
            0x90 if rex == 0 => i += 1,
            0x66 if rex == 0 && code.get(i + 1) == Some(&0x90) => i += 2,
            // vzeroupper
            0xc5 if rex == 0 && code.get(i + 1..i + 3) == Some(&[0xf8, 0x77]) => i += 3,
            // Multi-byte nop: 0f 1f /0.
            0x0f if code.get(o + 1) == Some(&0x1f) => {
                i = o + 2 + modrm_len(code.get(o + 2..)?)?;
            }
            0x66 if rex == 0 && code.get(i + 1..i + 3) == Some(&[0x0f, 0x1f]) => {
                i += 3 + modrm_len(code.get(i + 3..)?)?;
            }
            // xor r, r / mov r, r (register forms).
            0x31 | 0x33 | 0x89 | 0x8b => {
                let m = *code.get(o + 1)?;
                if m >> 6 != 3 {
                    return None;
                }
                let (reg, rm) = ((m >> 3) & 7, m & 7);
                let (dst, dst_ext) = if op == 0x31 || op == 0x89 {
                    (rm, rex_b)
                } else {
                    (reg, rex_r)
                };
                if !dst_ext && (dst == RSP || dst == RBP) {
                    return None;
                }
                i = o + 2;
            }
            // pop r
            0x58..=0x5f => {
                let r = op - 0x58;
                if !rex_b && r == RSP {
                    return None;
                }
                if !rex_b && r == RBP {
                    bp = None;
                }
                sp.1 += 8;
                i = o + 1;
            }
            // add rsp, imm8 / imm32
            0x83 | 0x81 if rex_w && code.get(o + 1) == Some(&0xc4) => {
                let imm = if op == 0x83 {
                    i64::from(*code.get(o + 2)? as i8)
                } else {
                    i64::from(i32::from_le_bytes(code.get(o + 2..o + 6)?.try_into().ok()?))
                };
                sp.1 += imm;
                i = o + if op == 0x83 { 3 } else { 6 };
            }
            // lea rsp, [rbp + disp8/disp32]
            0x8d if rex_w && matches!(code.get(o + 1), Some(0x65 | 0xa5)) => {
                let long = code[o + 1] == 0xa5;
                let disp = if long {
                    i64::from(i32::from_le_bytes(code.get(o + 2..o + 6)?.try_into().ok()?))
                } else {
                    i64::from(*code.get(o + 2)? as i8)
                };
                sp = (Base::Bp, bp? + disp);
                i = o + if long { 6 } else { 3 };
            }
            // leave
            0xc9 if rex == 0 => {
                sp = (Base::Bp, bp? + 8);
                bp = None;
                i += 1;
            }
            _ => return None,
        }
    }
    None
}

/// The length of a ModRM operand (the ModRM byte, a SIB, a displacement).
fn modrm_len(b: &[u8]) -> Option<usize> {
    let m = *b.first()?;
    let (md, rm) = (m >> 6, m & 7);
    let sib = usize::from(md != 3 && rm == 4);
    let disp = match md {
        0 if rm == 5 => 4,
        0 if rm == 4 && b.get(1).is_some_and(|s| s & 7 == 5) => 4,
        1 => 1,
        2 => 4,
        _ => 0,
    };
    Some(1 + sib + disp)
}

/// A thread's way back, written on its stack.
#[derive(Clone, Debug)]
pub(crate) struct Lifeline {
    pub gadgets: Gadgets,
    /// Standing here at the gadget, any syscall lands in the original
    /// state.
    pub exit: Exit,
    /// The lowest stack address written so far (where the next frame goes
    /// below).
    low: u64,
}

impl Lifeline {
    /// Writes the frame of `ctx`'s state on its stack. `None` when the
    /// stack has no room (the writes fail).
    pub fn new(pid: Pid, ctx: &ThreadCtx, gadgets: Gadgets) -> Result<Option<Lifeline>> {
        Lifeline::new_at(pid, ctx, gadgets, ctx.regs.sp.wrapping_sub(BELOW_SP))
    }

    /// As [`Lifeline::new`], with the frame below `top` (in the parasite's
    /// area, when the thread's stack has no room: the area must then stay
    /// until the thread has landed).
    pub fn new_at(
        pid: Pid,
        ctx: &ThreadCtx,
        gadgets: Gadgets,
        top: u64,
    ) -> Result<Option<Lifeline>> {
        // Running rcriu's code drops an rseq critical section the thread
        // was in (the kernel sees it outside the section): back on its own,
        // it resumes at the section's abort handler, as the kernel would
        // have sent it.
        let mut ctx = ctx.clone();
        ctx.regs.ip = rseq_resume_ip(pid, ctx.tid, ctx.regs.ip);
        let frame = sigframe::for_sigreturn(&ctx);
        let Some((exit, low)) = place(pid, &gadgets, top, frame, ctx.tid)? else {
            return Ok(None);
        };
        Ok(Some(Lifeline { gadgets, exit, low }))
    }

    /// This lifeline, landing by `exit` instead (an undo frame's).
    pub fn with_exit(&self, exit: Exit) -> Lifeline {
        Lifeline {
            exit,
            ..self.clone()
        }
    }

    /// Writes below the original frame a second one that runs syscall
    /// `nr` with `args` at the gadget (rcriu's undo of what it is about
    /// to do) before landing in the original state; returns where to
    /// stand for a syscall to land in it.
    pub fn undo(&mut self, pid: Pid, ctx: &ThreadCtx, nr: u64, args: [u64; 6]) -> Result<Exit> {
        let regs = self.exit.regs(&self.gadgets.syscall, &ctx.regs, nr, args);
        let frame = sigframe::for_undo(&regs);
        let top = self.low - 256;
        match place(pid, &self.gadgets, top, frame, ctx.tid)? {
            Some((exit, low)) => {
                self.low = low;
                Ok(exit)
            }
            None => Err(Error::Host {
                what: "writing the undo frame on the stack",
                pid,
                source: std::io::Error::from_raw_os_error(libc::EFAULT),
            }),
        }
    }
}

/// Where thread `tid`, stopped at `ip`, resumes once its rseq critical
/// section (if it is in one that restarts) is dropped: its abort handler.
fn rseq_resume_ip(pid: Pid, tid: Pid, ip: u64) -> u64 {
    const NO_RESTART_ON_SIGNAL: u32 = 1 << 1;
    let Ok(cfg) = sys::get_rseq_config(tid) else {
        return ip;
    };
    if cfg.rseq_abi_pointer == 0 {
        return ip;
    }
    // struct rseq: the rseq_cs pointer at 8; struct rseq_cs: version,
    // flags, start_ip, post_commit_offset, abort_ip.
    let mut p = [0u8; 8];
    if read_all(pid, cfg.rseq_abi_pointer + 8, &mut p) != 8 {
        return ip;
    }
    let cs = u64::from_le_bytes(p);
    let mut c = [0u8; 32];
    if cs == 0 || read_all(pid, cs, &mut c) != 32 {
        return ip;
    }
    let word = |o: usize| u64::from_le_bytes(c[o..o + 8].try_into().expect("eight bytes"));
    let flags = u32::from_le_bytes(c[4..8].try_into().expect("four bytes"));
    let (start, len, abort) = (word(8), word(16), word(24));
    if ip >= start && ip < start.wrapping_add(len) && flags & NO_RESTART_ON_SIGNAL == 0 {
        abort
    } else {
        ip
    }
}

/// Writes `frame` below `top` on the stack of `pid`, with its landing;
/// returns where to stand at the gadget and the lowest address used.
fn place(
    pid: Pid,
    g: &Gadgets,
    top: u64,
    mut frame: Vec<u8>,
    tid: Pid,
) -> Result<Option<(Exit, u64)>> {
    // The FPU state in the frame must be 64-byte aligned.
    let f = (top - frame.len() as u64) & !63;
    sigframe::locate(&mut frame, f);
    let landing = g.landing();
    let slot = f - g.tail.frame_off();
    let (exit, low) = g.exit_for(slot);
    // Everything from the lowest byte the gadget reads to the frame's end;
    // the landing goes over the frame's first bytes (its pretcode).
    let mut bytes = vec![0u8; (f + frame.len() as u64 - low) as usize];
    let at = |a: u64| (a - low) as usize;
    bytes[at(f)..].copy_from_slice(&frame);
    bytes[at(slot)..at(slot) + landing.len()].copy_from_slice(&landing);
    match sys::process_vm_write(pid, low, &bytes) {
        Ok(n) if n == bytes.len() => Ok(Some((exit, low))),
        Ok(_) | Err(_) => {
            log::warn!("no room for a lifeline on the stack of task {tid} below {top:#x}");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_of_this_kernels_vdso_shapes() {
        // syscall; xor edx,edx; xor ecx,ecx; xor esi,esi; xor edi,edi;
        // xor r11d,r11d; ret
        let a = [
            0x31, 0xd2, 0x31, 0xc9, 0x31, 0xf6, 0x31, 0xff, 0x45, 0x31, 0xdb, 0xc3,
        ];
        assert_eq!(tail_effect(&a), Some((Base::Sp, 0, 12)));
        // leave; xor edx,edx; ...; ret
        let b = [0xc9, 0x31, 0xd2, 0x45, 0x31, 0xc0, 0xc3];
        assert_eq!(tail_effect(&b), Some((Base::Bp, 8, 7)));
        // lea rsp,[rbp-0x10]; pop rbx; pop r14; pop rbp; xor edx,edx; ret
        let c = [
            0x48, 0x8d, 0x65, 0xf0, 0x5b, 0x41, 0x5e, 0x5d, 0x31, 0xd2, 0xc3,
        ];
        assert_eq!(tail_effect(&c), Some((Base::Bp, 8, 11)));
        // add rsp,0x30; pop rbx; ret
        let d = [0x48, 0x83, 0xc4, 0x30, 0x5b, 0xc3];
        assert_eq!(tail_effect(&d), Some((Base::Sp, 0x38, 6)));
    }

    #[test]
    fn tails_that_are_refused() {
        // cmp rax,0x20; jne ...
        assert_eq!(tail_effect(&[0x48, 0x83, 0xf8, 0x20, 0x75, 0x00]), None);
        // mov [rbx+0x88], 0x60 (a store)
        assert_eq!(tail_effect(&[0xc6, 0x83, 0x88, 0, 0, 0, 0x60, 0xc3]), None);
        // pop rsp; ret
        assert_eq!(tail_effect(&[0x5c, 0xc3]), None);
        // xor esp, esp; ret
        assert_eq!(tail_effect(&[0x31, 0xe4, 0xc3]), None);
        // leave after the frame pointer was popped
        assert_eq!(tail_effect(&[0x5d, 0xc9, 0xc3]), None);
        // runs off the end
        assert_eq!(tail_effect(&[0x90, 0x90]), None);
    }

    #[test]
    fn the_straight_gadget_is_preferred() {
        let mut code = vec![0x0f, 0x05, 0xc9, 0xc3, 0xcc];
        code.extend_from_slice(&[0x0f, 0x05, 0x31, 0xd2, 0xc3]);
        let g = find_gadget(&code, 0x1000).expect("a gadget");
        assert_eq!((g.addr, g.base, g.off), (0x1005, Base::Sp, 0));
        let g = find_gadget(&code[..5], 0x1000).expect("a gadget");
        assert_eq!((g.addr, g.base, g.off), (0x1000, Base::Bp, 8));
    }

    #[test]
    fn landings() {
        let g = Gadget {
            addr: 0x5000,
            base: Base::Sp,
            off: 8,
            len: 3,
        };
        let t = Gadgets {
            syscall: g,
            tail: Tail::Trampoline(0x9000),
        };
        let (e, low) = t.exit_for(0x7000);
        assert_eq!((e.sp, e.bp, low), (0x6ff8, None, 0x6ff8));
        assert_eq!(t.landing(), 0x9000u64.to_le_bytes());
        let p = Gadgets {
            syscall: g,
            tail: Tail::PopRax(0x9100),
        };
        assert_eq!(p.tail.frame_off(), 16);
        assert_eq!(&p.landing()[8..16], &15u64.to_le_bytes());
        assert_eq!(&p.landing()[16..], &0x5000u64.to_le_bytes());
    }
}
