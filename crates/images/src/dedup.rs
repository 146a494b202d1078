//! `dedup`: the pages a dump holds itself punched out of its parents'
//! pages images (`fallocate(PUNCH_HOLE | KEEP_SIZE)`), as CRIU 4.2's
//! `criu dedup` and `--auto-dedup` do. The chain still restores to the
//! same memory: a parent's page at an address the dump holds again is
//! never read (the dump's own copy shadows it).
//!
//! Which ranges, as CRIU walks them (`cr-dedup.c`, `dedup_one_iovec`):
//! for each pagemap of the dump, the addresses of its entries not kept
//! in the parent (`PE_PARENT`) are looked up in the parent's pagemap of
//! the same name; of what the parent's entries cover, the pages the
//! parent holds itself are punched, and what they cover (held or kept
//! further up) is looked up again one level further up, and so on up
//! the chain of `parent` links.
//!
//! Beyond CRIU:
//! - a directory with rcriu's manifest has it checked first (the
//!   pagemaps read, and each pages image before it is punched), then
//!   rewritten with the punched images' new digests (written beside,
//!   then renamed over it), so that a later restore still checks every
//!   file; encrypted images are refused (a hole breaks their
//!   authenticated chunks);
//! - rcriu's own `parent/` of pages shared since fork ([`KEPT_MARK`]) is
//!   never punched: its pages images are the processes' own, linked.
//!
//! [`KEPT_MARK`]: crate::KEPT_MARK

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::manifest::Manifest;
use crate::pages::{PE_PARENT, PE_PRESENT, PageRun};
use crate::{Error, ImageDir, ImageFile, Problem, Result};

/// `[start, end)`: addresses, or bytes of a pages image.
pub type Span = (u64, u64);

/// The deepest chain of parents followed (as a restore follows it).
const MAX_PARENTS: usize = 64;

/// What one parent level gives up: the byte ranges of its pages image
/// to punch, and the addresses its entries cover (to look up one level
/// further up). `want` and `runs` are in address order.
pub fn plan_level(want: &[Span], runs: &[PageRun]) -> (Vec<Span>, Vec<Span>) {
    walk(want, runs, true)
}

/// The runs of `runs` over `want`: the byte ranges of the pages they
/// hold themselves (to punch), and the addresses passed up a level, all
/// of them (`pass_all`) or only those kept in the parent (`PE_PARENT`).
fn walk(want: &[Span], runs: &[PageRun], pass_all: bool) -> (Vec<Span>, Vec<Span>) {
    let mut punch = Vec::new();
    let mut pass = Vec::new();
    for &(ws, we) in want {
        let mut i = runs.partition_point(|r| r.end() <= ws);
        while let Some(r) = runs.get(i).filter(|r| r.vaddr < we) {
            let (a, b) = (ws.max(r.vaddr), we.min(r.end()));
            if a < b {
                let parent = r.flags & PE_PARENT != 0;
                if !parent
                    && r.flags & PE_PRESENT != 0
                    && let Some(off) = r.pages_offset
                {
                    merge(&mut punch, off + (a - r.vaddr), off + (b - r.vaddr));
                }
                if pass_all || parent {
                    merge(&mut pass, a, b);
                }
            }
            i += 1;
        }
    }
    (punch, pass)
}

/// Appends `[a, b)`, joined to the last span when they touch.
fn merge(v: &mut Vec<Span>, a: u64, b: u64) {
    match v.last_mut() {
        Some((_, e)) if *e == a => *e = b,
        _ => v.push((a, b)),
    }
}

/// What one level gives up to a restore that consumes the images
/// (`restore --auto-dedup`): the byte ranges of its pages image read for
/// `want`, and the addresses of `want` kept further up.
pub fn plan_read_level(want: &[Span], runs: &[PageRun]) -> (Vec<Span>, Vec<Span>) {
    walk(want, runs, false)
}

/// The addresses a dump's pagemap holds itself (every entry not kept in
/// the parent), in order.
pub fn held(runs: &[PageRun]) -> Vec<Span> {
    let mut v = Vec::new();
    for r in runs.iter().filter(|r| r.flags & PE_PARENT == 0) {
        merge(&mut v, r.vaddr, r.end());
    }
    v
}

/// One pages image punched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Punched {
    /// The pages image.
    pub path: PathBuf,
    /// The byte ranges punched, in order.
    pub ranges: Vec<Span>,
}

impl Punched {
    /// The bytes punched.
    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| b - a).sum()
    }
}

/// The runs of a pagemap image, checked to be in address order.
fn runs_of(dir: &ImageDir, file: ImageFile) -> Result<(Vec<PageRun>, u32)> {
    let mut r = crate::pages::PagemapReader::new(dir.reader(file)?)?;
    let mut runs: Vec<PageRun> = Vec::new();
    while let Some(run) = r.next_run()? {
        if run.is_empty() {
            continue;
        }
        if runs.last().is_some_and(|l| l.end() > run.vaddr) {
            return Err(Error::Corrupt {
                file: dir.file_path(file).display().to_string(),
                offset: 0,
                problem: Problem::Other(format!(
                    "pagemap entry at {:#x} overlaps or precedes the one before",
                    run.vaddr
                )),
            });
        }
        runs.push(run);
    }
    Ok((runs, r.pages_id()))
}

/// The pagemaps of `dir` (of processes and of shared memory), by name.
fn pagemaps(dir: &ImageDir) -> Result<Vec<ImageFile>> {
    let path = dir.path();
    let mut out = Vec::new();
    let entries = std::fs::read_dir(path).map_err(|e| Error::io("listing", path, e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io("listing", path, e))?;
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some(f @ (ImageFile::Pagemap(_) | ImageFile::ShmemPagemap(_))) =
            ImageFile::parse(&name)
        {
            out.push(f);
        }
    }
    out.sort_by_key(|f| f.name());
    Ok(out)
}

/// Whether `dir` is rcriu's `parent/` of pages shared since fork.
fn is_kept(dir: &ImageDir) -> bool {
    std::fs::symlink_metadata(dir.path().join(crate::KEPT_MARK)).is_ok_and(|m| m.is_file())
}

/// Refuses encrypted images by name: a hole punched in one breaks the
/// authentication of its chunks.
fn refuse_encrypted(dir: &ImageDir) -> Result<()> {
    let dir = &ImageDir::open(dir.path())?;
    let enc = Manifest::read(dir)?.is_some_and(|m| m.dump_id().is_some()) || {
        dir.open_raw(ImageFile::Inventory)
            .is_ok_and(|f| crate::crypt::is_encrypted(&f))
    };
    if enc {
        return Err(Error::Encryption(format!(
            "the images in {} are encrypted: deduplicating them is not supported \
             (a hole punched in an encrypted pages image breaks its authentication)",
            dir.path().display()
        )));
    }
    Ok(())
}

/// Refuses images a restore consumed, by name.
pub fn refuse_consumed(dir: &ImageDir) -> Result<()> {
    if is_consumed(dir) {
        return Err(Error::Consumed {
            path: dir.path().to_owned(),
        });
    }
    Ok(())
}

/// Punches the pages the dump in `top` holds itself out of its parents'
/// pages images (criu's `dedup -D top`); the images punched.
pub fn dedup(top: &Path) -> Result<Vec<Punched>> {
    let plain = ImageDir::open(top)?;
    refuse_encrypted(&plain)?;
    refuse_consumed(&plain)?;
    let parent = plain.path().join(crate::dir::PARENT_LINK);
    if std::fs::symlink_metadata(&parent).is_err() {
        return Err(Error::io(
            "entering the previous images (no parent link)",
            parent,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    // The pagemaps are read as their manifest says they were written
    // (large pages images are checked here, before they are punched).
    let dir = ImageDir::open_checked_deferring(top)?;
    let mut levels = vec![dir.clone()];
    while levels.len() <= MAX_PARENTS {
        let below = levels.last().expect("the dump itself is level 0");
        let Some(up) = below.parent()? else { break };
        if is_kept(&up) {
            log::info!(
                "{} holds pages shared with parent processes (rcriu's own), not a pre-dump's: \
                 not deduplicated",
                up.path().display()
            );
            break;
        }
        refuse_encrypted(&up)?;
        levels.push(up);
    }
    // The ranges of each parent's pages images, by level and pages id.
    let mut plan: BTreeMap<(usize, u32), Vec<Span>> = BTreeMap::new();
    for file in pagemaps(&dir)? {
        let (runs, _) = runs_of(&dir, file)?;
        let mut want = held(&runs);
        log::debug!("dedup {}: {} ranges held", file.name(), want.len());
        for (k, level) in levels.iter().enumerate().skip(1) {
            if want.is_empty() || !level.exists(file) {
                break;
            }
            let (runs, pages_id) = runs_of(level, file)?;
            let (punch, pass) = plan_level(&want, &runs);
            if !punch.is_empty() {
                plan.entry((k, pages_id)).or_default().extend(punch);
            }
            want = pass;
        }
    }
    let mut done = Vec::new();
    for (k, files) in by_level(plan) {
        done.extend(punch_level(&levels[k], &files, false)?);
    }
    log::info!(
        "deduplicated {}: {} bytes punched in {} pages images",
        top.display(),
        done.iter().map(Punched::bytes).sum::<u64>(),
        done.len()
    );
    Ok(done)
}

/// The file that marks images a restore consumed (`restore
/// --auto-dedup`: the pages it read punched out); named in the
/// manifest, so that it cannot be taken away unseen.
pub const CONSUMED_MARK: &str = "rcriu-consumed";

/// Whether a restore consumed the images of `dir` (its pages punched
/// out as read): they cannot be restored again.
pub fn is_consumed(dir: &ImageDir) -> bool {
    std::fs::symlink_metadata(dir.path().join(CONSUMED_MARK)).is_ok()
}

/// After a restore with criu's `--auto-dedup`: every page the restore of
/// `top` read (each pagemap's own pages, and those it keeps in parents,
/// where they lie up the chain) punched out of its pages image, as
/// CRIU's restore punches them as it reads them. Each directory punched
/// is marked consumed ([`CONSUMED_MARK`]) and a later restore refuses it
/// by name instead of restoring zeroes.
pub fn consume(top: &Path) -> Result<Vec<Punched>> {
    let plain = ImageDir::open(top)?;
    refuse_encrypted(&plain)?;
    let dir = ImageDir::open_checked_deferring(top)?;
    let mut levels = vec![dir.clone()];
    let mut plan: BTreeMap<(usize, u32), Vec<Span>> = BTreeMap::new();
    for file in pagemaps(&dir)? {
        let (runs, id) = runs_of(&dir, file)?;
        let everything: Vec<Span> = runs.iter().map(|r| (r.vaddr, r.end())).collect();
        let (punch, mut want) = plan_read_level(&everything, &runs);
        if !punch.is_empty() {
            plan.entry((0, id)).or_default().extend(punch);
        }
        let mut k = 1;
        while !want.is_empty() && k <= MAX_PARENTS {
            if levels.len() <= k {
                let below = levels.last().expect("the dump itself is level 0");
                let Some(up) = below.parent()? else { break };
                refuse_encrypted(&up)?;
                levels.push(up);
            }
            if !levels[k].exists(file) {
                break;
            }
            let (runs, id) = runs_of(&levels[k], file)?;
            let (punch, pass) = plan_read_level(&want, &runs);
            if !punch.is_empty() {
                plan.entry((k, id)).or_default().extend(punch);
            }
            want = pass;
            k += 1;
        }
    }
    let mut done = Vec::new();
    for (k, files) in by_level(plan) {
        // rcriu's parent/ of pages shared since fork holds the processes'
        // own pages images, punched as theirs.
        if k > 0 && is_kept(&levels[k]) {
            continue;
        }
        mark_consumed(&levels[k])?;
        done.extend(punch_level(&levels[k], &files, true)?);
    }
    log::info!(
        "the pages read from {} punched out of its images: {} bytes in {} pages images",
        top.display(),
        done.iter().map(Punched::bytes).sum::<u64>(),
        done.len()
    );
    Ok(done)
}

/// What [`CONSUMED_MARK`] says.
const CONSUMED_TEXT: &[u8] = b"a restore with --auto-dedup read these images and punched \
    their pages out: they cannot be restored again\n";

/// Writes [`CONSUMED_MARK`] into `dir`.
fn mark_consumed(dir: &ImageDir) -> Result<()> {
    use std::io::Write;
    let path = dir.path().join(CONSUMED_MARK);
    let mut f = dir.create_on_disk(CONSUMED_MARK)?;
    f.write_all(CONSUMED_TEXT)
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::io("writing", &path, e))
}

/// The ranges of each level's pages images, sorted and merged, by level.
fn by_level(plan: BTreeMap<(usize, u32), Vec<Span>>) -> BTreeMap<usize, Vec<(u32, Vec<Span>)>> {
    let mut out: BTreeMap<usize, Vec<(u32, Vec<Span>)>> = BTreeMap::new();
    for ((k, id), mut ranges) in plan {
        ranges.sort_unstable();
        let mut merged: Vec<Span> = Vec::new();
        for (a, b) in ranges {
            match merged.last_mut() {
                Some((_, e)) if *e >= a => *e = (*e).max(b),
                _ => merged.push((a, b)),
            }
        }
        out.entry(k).or_default().push((id, merged));
    }
    out
}

/// Punches `files` (pages ids and their byte ranges) of `dir`, each
/// checked against `dir`'s manifest first; the manifest is then
/// rewritten with their new digests (and, when `consumed`, naming
/// [`CONSUMED_MARK`]).
fn punch_level(dir: &ImageDir, files: &[(u32, Vec<Span>)], consumed: bool) -> Result<Vec<Punched>> {
    // The manifest as it is on disk (a checked directory reads only the
    // files its manifest names).
    let mut manifest = Manifest::read(&ImageDir::open(dir.path())?)?;
    // First every file checked, and its digest once punched found...
    let mut ready = Vec::new();
    for (id, ranges) in files {
        let file = ImageFile::Pages((*id).into());
        let name = file.name();
        let path = dir.file_path(file);
        let f = dir.open_for_punching(file)?;
        let want = match &manifest {
            Some(m) => Some(*m.get(&name).ok_or_else(|| Error::Tampered {
                file: path.display().to_string(),
                what: "is not in the manifest".into(),
            })?),
            None => None,
        };
        let (old, new) = crate::manifest::digest_punched(&f, &path, ranges)?;
        if let Some(want) = want
            && want != old
        {
            return Err(Error::Tampered {
                file: path.display().to_string(),
                what: "is not what the dump wrote (its hash differs): not deduplicated".into(),
            });
        }
        if let Some(&(_, end)) = ranges.last()
            && end > old.size
        {
            return Err(Error::Corrupt {
                file: path.display().to_string(),
                offset: old.size,
                problem: Problem::Other(format!(
                    "holds {} bytes, but its pagemap has pages up to {end}",
                    old.size
                )),
            });
        }
        ready.push((f, name, path, ranges, new));
    }
    // ...then punched. A file the system fails to punch whole is hashed
    // as it is left (every page punched is one the chain never reads),
    // and the manifest names what is there either way.
    let mut done = Vec::new();
    let mut failed = None;
    for (f, name, path, ranges, new) in ready {
        let punched = ranges.iter().try_for_each(|&(a, b)| {
            rustix::fs::fallocate(
                &f,
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                a,
                b - a,
            )
            .map_err(|e| Error::io("punching a hole in", &path, e.into()))
        });
        let digest = match punched {
            Ok(()) => new,
            Err(e) => {
                let left = std::io::Seek::seek(&mut &f, std::io::SeekFrom::Start(0))
                    .map_err(|e| Error::io("hashing", &path, e))
                    .and_then(|_| crate::manifest::digest(&f, &path));
                failed = Some(e);
                left?
            }
        };
        log::debug!("punched {} ranges of {}", ranges.len(), path.display());
        if let Some(m) = manifest.take() {
            manifest = Some(m.with(&name, digest));
        }
        if failed.is_some() {
            break;
        }
        done.push(Punched {
            path,
            ranges: ranges.clone(),
        });
    }
    if let Some(mut m) = manifest {
        if consumed {
            let d = crate::manifest::Digest {
                size: CONSUMED_TEXT.len() as u64,
                hash: *blake3::hash(CONSUMED_TEXT).as_bytes(),
            };
            m = m.with(CONSUMED_MARK, d);
        }
        m.replace(dir)?;
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(vaddr: u64, pages: u64, flags: u32, off: Option<u64>) -> PageRun {
        PageRun {
            vaddr,
            nr_pages: pages,
            flags,
            pages_offset: off,
        }
    }

    const P: u64 = 4096;

    #[test]
    fn a_level_punches_what_it_holds_and_passes_what_it_covers() {
        // The parent: 0x10000-0x14000 held (offset 0), 0x14000-0x16000
        // kept further up, 0x20000-0x21000 held (offset 4 pages).
        let runs = [
            run(0x10000, 4, PE_PRESENT, Some(0)),
            run(0x14000, 2, PE_PARENT, None),
            run(0x20000, 1, PE_PRESENT, Some(4 * P)),
        ];
        // The dump holds 0x11000-0x15000 and 0x30000-0x31000.
        let want = [(0x11000, 0x15000), (0x30000, 0x31000)];
        let (punch, pass) = plan_level(&want, &runs);
        assert_eq!(punch, vec![(P, 4 * P)]);
        assert_eq!(pass, vec![(0x11000, 0x15000)]);
        // Nothing held, nothing punched.
        let (punch, pass) = plan_level(&[(0x40000, 0x41000)], &runs);
        assert!(punch.is_empty() && pass.is_empty());
    }

    #[test]
    fn held_leaves_out_what_is_kept_in_the_parent() {
        let runs = [
            run(0x1000, 1, PE_PRESENT, Some(0)),
            run(0x2000, 1, PE_PRESENT, Some(P)),
            run(0x3000, 1, PE_PARENT, None),
            run(0x4000, 1, PE_PRESENT, Some(2 * P)),
        ];
        assert_eq!(held(&runs), vec![(0x1000, 0x3000), (0x4000, 0x5000)]);
    }
}
