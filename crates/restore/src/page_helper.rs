//! rcriu's share of a large restore's page reads. The restorer `preadv`s
//! batches of pages from the front while this helper, a thread of rcriu,
//! copies batches from the back into the new process's areas with
//! `process_vm_writev(2)` from a read-only mapping of the pages file: both
//! cores fill memory, and each batch is still one copy. They claim
//! batches with a compare-and-swap on a word of the region both share
//! (`Args::page_claims`) and meet somewhere, each going as fast as it
//! can.
//!
//! `Args::page_state` is the handshake, a futex: the restorer says when
//! the areas are mapped (before that there is nothing to write into) and
//! then waits until the helper says it is done or failed. If the restorer
//! dies first, rcriu calls the helper off ([`abort`]); if the helper
//! cannot start, the restorer reads every batch itself.
//!
//! Only pages files on tmpfs, and enough of them, get the helper: from a
//! disk two readers at different offsets would seek.

use std::os::fd::AsFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rcriu_compel::sys::{Direction, LocalMap};
use rcriu_images::crypt::{CHUNK, Sealed};
use rcriu_parasite_abi::restorer::{
    FAULT_ERRNO, IoVec, PAGES_ABORT, PAGES_DONE, PAGES_FAILED, PAGES_MAPPED, PAGES_WAIT, ReadBatch,
    claim,
};
use rcriu_proc::Pid;

use crate::pages::PagePlan;

/// Below this many bytes of pages the restorer reads alone.
pub const MIN_SHARED: u64 = 64 << 20;

/// The words of the region the restorer and the helper share.
#[derive(Clone, Copy)]
pub struct Words<'r> {
    pub claims: &'r AtomicU64,
    pub state: &'r AtomicU32,
    pub err: &'r AtomicU32,
    pub err_batch: &'r AtomicU32,
}

/// Whether the pages of `plan`, in `files` (its own pages image, then
/// its parents' it reads), are worth a helper.
pub fn wanted(plan: &PagePlan, files: &[std::fs::File]) -> bool {
    plan.batches.len() >= 2
        && plan.bytes() >= MIN_SHARED
        && files.iter().all(rcriu_images::pages::on_tmpfs)
}

/// The pages files mapped for the helper (in the order of
/// `ReadBatch::file`), or `None` (logged): then the restorer is told to
/// read alone.
pub fn map(files: &[std::fs::File], words: Words<'_>) -> Option<Vec<LocalMap>> {
    let mut maps = Vec::with_capacity(files.len());
    for file in files {
        let len = file
            .metadata()
            .ok()
            .and_then(|m| usize::try_from(m.len()).ok());
        match len.map(|len| LocalMap::map_readonly(file.as_fd(), 0, len)) {
            Some(Ok(m)) => maps.push(m),
            other => {
                log::debug!("no page helper: mapping a pages file: {other:?}");
                abort(words);
                return None;
            }
        }
    }
    Some(maps)
}

/// Copies the batches it claims into process `pid` once its areas are
/// mapped, then says it is done (or failed, with the errno and batch).
pub fn run(pid: Pid, words: Words<'_>, pages: &[LocalMap], iovs: &[IoVec], batches: &[ReadBatch]) {
    loop {
        match words.state.load(Ordering::Acquire) {
            PAGES_WAIT => futex_wait(words.state, PAGES_WAIT),
            PAGES_MAPPED => break,
            _ => {
                log::debug!("page helper: called off before the areas were mapped");
                return;
            }
        }
    }
    // However this ends (a panic too), the restorer waiting for the
    // helper hears of it.
    let _end = Ending(words);
    let mut n = 0;
    while let Some(i) = claim(words.claims, false) {
        let b = &batches[i as usize];
        let group = &iovs[b.first as usize..][..b.nr as usize];
        let injected = match n {
            0 => rcriu_compel::fault::page_helper()
                .map_err(|_| std::io::Error::from_raw_os_error(FAULT_ERRNO as i32)),
            _ => Ok(()),
        };
        let map = pages
            .get(b.file as usize)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL));
        if let Err(e) = injected.and_then(|()| map.and_then(|m| write_batch(pid, m, group, b.off)))
        {
            log::debug!("page helper: batch {i} into process {pid}: {e}");
            fail(words, e.raw_os_error().unwrap_or(libc::EIO), i);
            return;
        }
        n += 1;
    }
    log::debug!("page helper: {n} of {} batches", batches.len());
    say(words.state, PAGES_DONE);
}

/// Says the helper failed (EIO) if it ends without having said how.
struct Ending<'r>(Words<'r>);

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        let w = self.0;
        if w.state.load(Ordering::Acquire) == PAGES_MAPPED {
            fail(w, libc::EIO, 0);
        }
    }
}

/// Says the helper failed with `errno` at `batch`, and leaves no more
/// batches to the restorer either.
fn fail(w: Words<'_>, errno: i32, batch: u32) {
    w.claims.store(0, Ordering::Release);
    w.err.store((-errno) as u32, Ordering::Relaxed);
    w.err_batch.store(batch, Ordering::Relaxed);
    say(w.state, PAGES_FAILED);
}

/// Calls the helper off if the areas were never mapped (the restorer
/// failed or died before), or tells the restorer there is no helper.
pub fn abort(words: Words<'_>) {
    if words
        .state
        .compare_exchange(PAGES_WAIT, PAGES_ABORT, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        futex_wake(words.state);
    }
}

/// Copies the pages file's bytes from `off` into `pid`'s memory at
/// `remote`.
fn write_batch(pid: Pid, pages: &LocalMap, remote: &[IoVec], off: u64) -> std::io::Result<()> {
    let at = usize::try_from(off).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    pages.copy_remote(
        pid,
        at,
        remote.iter().map(|v| (v.base, v.len)),
        Direction::Out,
    )
}

fn say(state: &AtomicU32, what: u32) {
    state.store(what, Ordering::Release);
    futex_wake(state);
}

fn futex_wake(w: &AtomicU32) {
    // A shared futex: the word is in memory another process maps too.
    let _ = rustix::thread::futex::wake(w, rustix::thread::futex::Flags::empty(), i32::MAX as u32);
}

/// Sleeps while `w` holds `val`.
fn futex_wait(w: &AtomicU32, val: u32) {
    let _ = rustix::thread::futex::wait(w, rustix::thread::futex::Flags::empty(), val, None);
}

/// As [`run`] for an encrypted dump's pages image (`sealed`), written
/// into process `pid` wholly by rcriu, a worker per CPU (the restorer
/// claims none): each batch's chunks decrypted, their tags checked,
/// before their bytes are written. A chunk that does not decrypt fails
/// the pages as a read would, its error kept in `tampered`.
pub fn run_sealed(
    pid: Pid,
    words: Words<'_>,
    sealed: &Sealed,
    iovs: &[IoVec],
    batches: &[ReadBatch],
    tampered: &Mutex<Option<rcriu_images::Error>>,
) {
    loop {
        match words.state.load(Ordering::Acquire) {
            PAGES_WAIT => futex_wait(words.state, PAGES_WAIT),
            PAGES_MAPPED => break,
            _ => {
                log::debug!("page helper: called off before the areas were mapped");
                return;
            }
        }
    }
    let _end = Ending(words);
    let next = AtomicU32::new(0);
    let worker = || {
        let mut buf = Vec::with_capacity(CHUNK as usize);
        while words.state.load(Ordering::Acquire) == PAGES_MAPPED {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(b) = batches.get(i as usize) else {
                break;
            };
            let r = iovs
                .get(b.first as usize..)
                .and_then(|g| g.get(..b.nr as usize))
                .ok_or(Failed::Io(std::io::Error::from_raw_os_error(libc::EINVAL)))
                .and_then(|group| write_sealed(pid, sealed, group, b.off, &mut buf));
            buf.fill(0);
            if let Err(e) = r {
                log::debug!("page helper: batch {i} into process {pid}: {e:?}");
                let errno = match e {
                    Failed::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
                    Failed::Image(e) => {
                        let mut t = tampered.lock().unwrap_or_else(|p| p.into_inner());
                        t.get_or_insert(e);
                        libc::EBADMSG
                    }
                };
                fail(words, errno, i);
                break;
            }
        }
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(batches.len())
        .max(1);
    std::thread::scope(|s| {
        for _ in 1..workers {
            if let Err(e) = std::thread::Builder::new()
                .name("page helper".into())
                .spawn_scoped(s, worker)
            {
                log::debug!("page helper: one worker fewer: {e}");
            }
        }
        worker();
    });
    if words
        .state
        .compare_exchange(
            PAGES_MAPPED,
            PAGES_DONE,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
    {
        futex_wake(words.state);
    }
}

/// Tells the restorer that the helper it counts on will not come: its
/// pages fail (with EIO), for it has none to read itself.
pub fn refuse(words: Words<'_>) {
    if words.state.load(Ordering::Acquire) == PAGES_WAIT {
        fail(words, libc::EIO, 0);
    }
}

#[derive(Debug)]
enum Failed {
    Io(std::io::Error),
    Image(rcriu_images::Error),
}

/// Decrypts the chunks holding the pages file's bytes from `off` on (its
/// plaintext) into `buf`, one at a time, and writes them into `pid`'s
/// memory at `remote`.
fn write_sealed(
    pid: Pid,
    sealed: &Sealed,
    remote: &[IoVec],
    off: u64,
    buf: &mut Vec<u8>,
) -> Result<(), Failed> {
    let short = || Failed::Io(std::io::Error::from_raw_os_error(libc::EIO));
    let end = off + remote.iter().map(|v| v.len).sum::<u64>();
    let (mut at, mut v, mut in_v) = (off, 0usize, 0u64);
    while at < end {
        let k = at / CHUNK;
        sealed.open_chunk(k, buf).map_err(Failed::Image)?;
        let from = k * CHUNK;
        let to = end.min(from + buf.len() as u64);
        if to <= at {
            return Err(short());
        }
        let src = &buf[(at - from) as usize..(to - from) as usize];
        // The remote ranges taking those bytes, in order.
        let mut ranges = Vec::new();
        let mut need = src.len() as u64;
        while need > 0 {
            let r = remote.get(v).ok_or_else(short)?;
            let n = (r.len - in_v).min(need);
            ranges.push((r.base + in_v, n));
            (in_v, need) = (in_v + n, need - n);
            if in_v == r.len {
                (v, in_v) = (v + 1, 0);
            }
        }
        rcriu_compel::sys::write_remote(pid, src, ranges).map_err(Failed::Io)?;
        at = to;
    }
    Ok(())
}
