//! The vDSO: when the dumped one has the same size and symbols as the
//! running kernel's (as CRIU compares them), the running `[vdso]`,
//! `[vvar]` and `[vvar_vclock]` move to where the process had them;
//! otherwise the dumped one becomes a proxy whose functions jump to the
//! running one's, parked elsewhere.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;

use rcriu_compel::abi::restorer::{Range, VdsoMove};
use rcriu_images::ImageFile;

use crate::load::Images;
use crate::mm::MemPlan;
use crate::{Error, Result};

/// The running kernel's special mappings, in rcriu (and so in its fork).
#[derive(Clone, Copy, Debug, Default)]
pub struct Runtime {
    pub vdso: Option<Range>,
    pub vvar: Option<Range>,
    pub vvar_vclock: Option<Range>,
}

impl Runtime {
    /// Reads them from /proc/self/maps.
    pub fn read() -> Result<Runtime> {
        let maps = rcriu_proc::Task::open_self()
            .and_then(|mut t| t.maps())
            .map_err(|e| Error::Host {
                what: "reading rcriu's own maps",
                source: std::io::Error::other(e),
            })?;
        let mut rt = Runtime::default();
        for v in maps {
            let r = Some(Range {
                start: v.start,
                end: v.end,
            });
            match v.path {
                rcriu_proc::VmaPath::Vdso => rt.vdso = r,
                rcriu_proc::VmaPath::Vvar => rt.vvar = r,
                rcriu_proc::VmaPath::VvarVclock => rt.vvar_vclock = r,
                _ => {}
            }
        }
        Ok(rt)
    }

    /// The ranges a fork of rcriu must keep.
    pub fn ranges(&self) -> Vec<Range> {
        [self.vdso, self.vvar, self.vvar_vclock]
            .into_iter()
            .flatten()
            .collect()
    }

    fn vvar_len(&self) -> u64 {
        [self.vvar, self.vvar_vclock]
            .into_iter()
            .flatten()
            .map(|r| r.end - r.start)
            .sum()
    }
}

/// The function symbols of a vDSO image, by name: (offset, size).
fn symbols(image: &[u8]) -> Option<BTreeMap<String, (u64, u64)>> {
    let elf = goblin::elf::Elf::parse(image).ok()?;
    let mut out = BTreeMap::new();
    for s in elf.dynsyms.iter() {
        if s.st_type() != goblin::elf::sym::STT_FUNC || s.st_value == 0 {
            continue;
        }
        if let Some(name) = elf.dynstrtab.get_at(s.st_name) {
            out.insert(name.to_owned(), (s.st_value, s.st_size));
        }
    }
    Some(out)
}

/// How the process gets a vDSO back.
#[derive(Debug)]
pub enum Mode {
    /// The dump had none.
    None,
    /// The running one has the same size and symbols: it moves where the
    /// process had its own.
    Remap,
    /// It differs: the dumped vDSO comes back as plain memory at its old
    /// place, each of its functions jumping to the running vDSO's, which
    /// is parked elsewhere (CRIU's vDSO proxy).
    Proxy {
        /// The dumped vDSO's function symbols.
        symbols: BTreeMap<String, (u64, u64)>,
        /// The running vDSO's.
        rt_symbols: BTreeMap<String, (u64, u64)>,
    },
}

/// Compares the dumped vDSO (its bytes in `dumped`) with the running one.
/// `force_proxy` takes the proxy road even when they match (for tests).
pub fn decide(
    img: &Images,
    mem: &MemPlan,
    dumped: Option<&[u8]>,
    rt: &Runtime,
    force_proxy: bool,
) -> Result<Mode> {
    let Some((start, end)) = mem.vdso else {
        return Ok(Mode::None);
    };
    let pid = img.task.pid;
    let rt_vdso = rt.vdso.ok_or_else(|| {
        Error::unsupported(format!(
            "restoring process {pid}, which had a vDSO, on a kernel without one"
        ))
    })?;
    let dumped = dumped.ok_or_else(|| {
        Error::invalid(
            ImageFile::Pagemap(pid.into()).name(),
            format!("the vDSO at {start:#x} has no pages in the dump"),
        )
    })?;
    let symbols = symbols(dumped).ok_or_else(|| {
        Error::invalid(
            ImageFile::Mm(pid.into()).name(),
            format!("the vDSO at {start:#x} is not an ELF image"),
        )
    })?;
    let mut running = vec![0u8; (rt_vdso.end - rt_vdso.start) as usize];
    std::fs::File::open("/proc/self/mem")
        .and_then(|m| m.read_exact_at(&mut running, rt_vdso.start))
        .map_err(Error::host("reading rcriu's own vDSO"))?;
    let rt_symbols = symbols_of_running(&running)?;
    let vvar_matches = mem.vvar.is_none_or(|(s, e)| e - s == rt.vvar_len());
    let same = end - start == rt_vdso.end - rt_vdso.start && symbols == rt_symbols && vvar_matches;
    if same && !force_proxy {
        return Ok(Mode::Remap);
    }
    log::info!(
        "process {pid}: its vDSO differs from this kernel's (or a proxy is forced): proxying"
    );
    Ok(Mode::Proxy {
        symbols,
        rt_symbols,
    })
}

fn symbols_of_running(image: &[u8]) -> Result<BTreeMap<String, (u64, u64)>> {
    symbols(image).ok_or(Error::Host {
        what: "parsing rcriu's own vDSO",
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })
}

/// The moves of the running vDSO and vvar: where the process had them
/// (`Mode::Remap`), or, keeping their layout, to `park` (`Mode::Proxy`).
pub fn moves(mode: &Mode, mem: &MemPlan, rt: &Runtime, park: u64) -> Result<Vec<VdsoMove>> {
    let ranges = rt.ranges();
    match mode {
        Mode::None => Ok(Vec::new()),
        Mode::Remap => {
            let (Some(rt_vdso), Some((start, _))) = (rt.vdso, mem.vdso) else {
                return Ok(Vec::new());
            };
            let mut moves = vec![VdsoMove {
                from: rt_vdso,
                to: start,
                _pad: 0,
            }];
            if let Some((vstart, _)) = mem.vvar {
                let mut at = vstart;
                for r in [rt.vvar, rt.vvar_vclock].into_iter().flatten() {
                    moves.push(VdsoMove {
                        from: r,
                        to: at,
                        _pad: 0,
                    });
                    at += r.end - r.start;
                }
            }
            Ok(with_detour(moves, park))
        }
        Mode::Proxy { .. } => {
            // The running vDSO's code reaches its vvar at fixed offsets: the
            // three move together, as they lie.
            let base = ranges.iter().map(|r| r.start).min().unwrap_or(0);
            Ok(ranges
                .iter()
                .map(|r| VdsoMove {
                    from: *r,
                    to: park + (r.start - base),
                    _pad: 0,
                })
                .collect())
        }
    }
}

/// The dumped vDSO with each function replaced by a jump to the running
/// vDSO's (parked at `park`): `movabs rax, target; jmp rax`.
pub fn proxy_image(mode: &Mode, dumped: &[u8], rt: &Runtime, park: u64) -> Result<Vec<u8>> {
    let Mode::Proxy {
        symbols,
        rt_symbols,
    } = mode
    else {
        return Ok(Vec::new());
    };
    let base = rt.ranges().iter().map(|r| r.start).min().unwrap_or(0);
    let rt_vdso = rt.vdso.map_or(0, |r| r.start);
    let rt_at = park + (rt_vdso - base);
    let mut out = dumped.to_vec();
    for (name, &(off, _)) in symbols {
        let Some(&(rt_off, _)) = rt_symbols.get(name) else {
            // A function this kernel's vDSO lacks: left as it was (it may
            // still work, reading data it no longer has).
            log::warn!("vDSO proxy: this kernel's vDSO has no {name}");
            continue;
        };
        let off = off as usize;
        let Some(slot) = out.get_mut(off..off + TRAMPOLINE_LEN) else {
            return Err(Error::invalid(
                "vdso",
                format!("symbol {name} at {off:#x} lies past the vDSO's end"),
            ));
        };
        slot[..2].copy_from_slice(&[0x48, 0xb8]);
        slot[2..10].copy_from_slice(&(rt_at + rt_off).to_le_bytes());
        slot[10..12].copy_from_slice(&[0xff, 0xe0]);
    }
    Ok(out)
}

/// `movabs rax, imm64` (10 bytes) and `jmp rax` (2).
const TRAMPOLINE_LEN: usize = 12;

/// When a destination overlaps a mapping still to be moved, everything
/// goes to `park` first.
/// Where the running vDSO and vvar end up once the restorer moved them
/// (`moves`), sorted; `None` for a proxy, which is rebuilt in place.
pub fn placed(mode: &Mode, mem: &MemPlan, rt: &Runtime) -> Result<Option<Vec<Range>>> {
    if matches!(mode, Mode::Proxy { .. }) {
        return Ok(None);
    }
    if matches!(mode, Mode::None) {
        // rcriu's are unmapped with the rest.
        return Ok(Some(Vec::new()));
    }
    let mut at = rt.ranges();
    for m in moves(mode, mem, rt, 0)? {
        if let Some(r) = at.iter_mut().find(|r| **r == m.from) {
            *r = Range {
                start: m.to,
                end: m.to + (r.end - r.start),
            };
        }
    }
    at.sort_by_key(|r| r.start);
    Ok(Some(at))
}

fn with_detour(moves: Vec<VdsoMove>, park: u64) -> Vec<VdsoMove> {
    let overlaps = |a: &VdsoMove, b: &VdsoMove| {
        let len = a.from.end - a.from.start;
        a.to < b.from.end && b.from.start < a.to + len
    };
    let conflict = moves.iter().enumerate().any(|(i, a)| {
        moves
            .iter()
            .enumerate()
            .any(|(j, b)| i != j && overlaps(a, b))
    });
    if !conflict {
        return moves;
    }
    let mut out = Vec::new();
    let mut at = park;
    let mut parked = Vec::new();
    for m in &moves {
        let len = m.from.end - m.from.start;
        out.push(VdsoMove {
            from: m.from,
            to: at,
            _pad: 0,
        });
        parked.push(VdsoMove {
            from: Range {
                start: at,
                end: at + len,
            },
            to: m.to,
            _pad: 0,
        });
        at += len;
    }
    out.extend(parked);
    out
}

/// Room the moves may need at `park`: the running areas' span.
pub fn park_size(rt: &Runtime) -> u64 {
    let r = rt.ranges();
    let lo = r.iter().map(|r| r.start).min().unwrap_or(0);
    let hi = r.iter().map(|r| r.end).max().unwrap_or(0);
    hi - lo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(from: u64, len: u64, to: u64) -> VdsoMove {
        VdsoMove {
            from: Range {
                start: from,
                end: from + len,
            },
            to,
            _pad: 0,
        }
    }

    #[test]
    fn detours_only_when_places_overlap() {
        let plain = vec![mv(0x1000, 0x2000, 0x10000), mv(0x3000, 0x1000, 0x20000)];
        assert_eq!(with_detour(plain.clone(), 0x90000), plain);
        // The vDSO goes where the vvar is now.
        let swap = vec![mv(0x1000, 0x2000, 0x3000), mv(0x3000, 0x2000, 0x1000)];
        let d = with_detour(swap, 0x90000);
        assert_eq!(d.len(), 4);
        assert_eq!((d[0].to, d[1].to), (0x90000, 0x92000));
        assert_eq!((d[2].from.start, d[2].to), (0x90000, 0x3000));
        assert_eq!((d[3].from.start, d[3].to), (0x92000, 0x1000));
    }
}
