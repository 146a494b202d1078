//! The vDSO: when the dumped one has the same size and symbols as the
//! running kernel's (as CRIU compares them), the running `[vdso]`,
//! `[vvar]` and `[vvar_vclock]` move to where the process had them.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;

use rcriu_compel::abi::restorer::{Range, VdsoMove};
use rcriu_images::ImageFile;

use crate::load::Images;
use crate::mm::MemPlan;
use crate::pages::PagePlan;
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

/// The moves that put the running vDSO and vvar where the process had
/// them, `park` being free room for a detour when the places overlap.
pub fn plan(
    img: &Images,
    mem: &MemPlan,
    pages: &PagePlan,
    rt: &Runtime,
    park: u64,
) -> Result<Vec<VdsoMove>> {
    let Some((start, end)) = mem.vdso else {
        return Ok(Vec::new());
    };
    let pid = img.task.pid;
    let rt_vdso = rt.vdso.ok_or_else(|| {
        Error::unsupported(format!(
            "restoring process {pid}, which had a vDSO, on a kernel without one"
        ))
    })?;
    let len = end - start;
    let mismatch = |why: String| {
        Error::unsupported(format!(
            "restoring process {pid} whose vDSO differs from this kernel's ({why}): a vDSO proxy"
        ))
    };
    if len != rt_vdso.end - rt_vdso.start {
        return Err(mismatch(format!(
            "{len} bytes against {}",
            rt_vdso.end - rt_vdso.start
        )));
    }
    // The dumped vDSO's code, from the pages file.
    let (_, off) = pages
        .vdso
        .ok_or_else(|| mismatch("its pages are not in the dump".into()))?;
    let pages_file = img.dir.pages(pages.pages_id)?;
    let mut dumped = vec![0u8; len as usize];
    pages_file.read_pages_at(&mut dumped, off)?;
    let mut running = vec![0u8; len as usize];
    std::fs::File::open("/proc/self/mem")
        .and_then(|m| m.read_exact_at(&mut running, rt_vdso.start))
        .map_err(Error::host("reading rcriu's own vDSO"))?;
    let (a, b) = (symbols(&dumped), symbols(&running));
    match (a, b) {
        (Some(a), Some(b)) if a == b => {}
        (None, _) => {
            return Err(Error::invalid(
                ImageFile::Pages(pages.pages_id.into()).name(),
                format!("the vDSO at {start:#x} is not an ELF image"),
            ));
        }
        _ => return Err(mismatch("other symbols".into())),
    }

    let mut moves = vec![VdsoMove {
        from: rt_vdso,
        to: start,
        _pad: 0,
    }];
    if let Some((vstart, vend)) = mem.vvar {
        if vend - vstart != rt.vvar_len() {
            return Err(mismatch(format!(
                "a vvar of {} bytes against {}",
                vend - vstart,
                rt.vvar_len()
            )));
        }
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

/// When a destination overlaps a mapping still to be moved, everything
/// goes to `park` first.
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

/// Room `with_detour` may need at `park`.
pub fn park_size(rt: &Runtime) -> u64 {
    rt.ranges().iter().map(|r| r.end - r.start).sum()
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
