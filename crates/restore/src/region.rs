//! The restorer's region: a shared anonymous mapping, at an address free
//! both in rcriu and in the process being restored, holding the restorer
//! blob, its `Args` and their arrays, and its stack. The fork inherits it
//! at the same address; rcriu reads the restorer's report from it.

use rcriu_compel::abi::restorer::{
    AnonName, Args, Child, FdMove, IoVec, LateOpen, PosixTimer, Range, ReadBatch, STACK_SIZE,
    SeccompFilter, THREAD_STACK_SIZE, TakeLock, ThreadArgs, Vma,
};
use rcriu_compel::sys::{LocalMap, Pod, slice_bytes};

use crate::core::{Siginfo, ThreadPlan};
use crate::{Error, Result};

const PAGE: u64 = 4096;
/// Lowest address the region may take.
const LOW: u64 = 0x1000_0000;
/// Highest end the region may take (below the usual stack and mmap area).
const HIGH: u64 = 0x7ff0_0000_0000;

/// The restorer blob, built by `build.rs` from `parasite/restorer`.
#[allow(dead_code)]
mod blob {
    include!(concat!(env!("OUT_DIR"), "/restorer.rs"));
}

/// Where a process's data went in the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub args_off: usize,
    pub threads_off: usize,
    /// The first byte after its data.
    pub end: usize,
}

/// The arrays the restorer reads.
pub struct Arrays<'a> {
    pub vmas: &'a [Vma],
    pub iovs: &'a [IoVec],
    pub batches: &'a [ReadBatch],
    /// The batches into inherited areas, and what of those is dropped.
    pub cow_batches: &'a [ReadBatch],
    pub drops: &'a [Range],
    pub fds: &'a [FdMove],
    /// Bytes the restorer copies into the process (a vDSO proxy).
    pub copy: &'a [u8],
    /// The process's pending signals.
    pub signals: &'a [Siginfo],
    pub timers: &'a [PosixTimer],
    /// The guard regions.
    pub guards: &'a [Range],
    /// The named anonymous areas: `(start, end, name)`.
    pub anon_names: &'a [(u64, u64, Vec<u8>)],
    /// The files the restorer opens itself.
    pub late: &'a [crate::files::Late],
    /// The file locks the process takes itself.
    pub locks: &'a [TakeLock],
    /// Every thread, the leader first: its arrays, and a stack for all
    /// but the leader.
    pub threads: &'a [ThreadPlan],
    /// The children its restorer forks.
    pub children: &'a [Child],
}

/// The mapped region.
pub struct Region {
    map: LocalMap,
    args_off: usize,
    stack_off: usize,
    /// Free room right after the region, for vDSO detours.
    pub park: u64,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("start", &self.start())
            .field("len", &self.map.len())
            .finish()
    }
}

fn array_len<T>(a: &[T]) -> u64 {
    std::mem::size_of_val(a) as u64
}

fn up(v: u64) -> u64 {
    v.next_multiple_of(PAGE)
}

impl Arrays<'_> {
    /// Bytes they take in the region, `Args` and alignment included.
    pub fn len(&self) -> u64 {
        std::mem::size_of::<Args>() as u64
            + array_len(self.vmas)
            + array_len(self.iovs)
            + array_len(self.batches)
            + array_len(self.cow_batches)
            + array_len(self.drops)
            + array_len(self.fds)
            + array_len(self.copy)
            + array_len(self.signals)
            + array_len(self.timers)
            + array_len(self.guards)
            + array_len(self.children)
            + self
                .anon_names
                .iter()
                .map(|(_, _, n)| std::mem::size_of::<AnonName>() as u64 + n.len() as u64 + 17)
                .sum::<u64>()
            + self
                .late
                .iter()
                .map(|l| std::mem::size_of::<LateOpen>() as u64 + l.path.len() as u64 + 17)
                .sum::<u64>()
            + array_len(self.locks)
            + 16 * 17
            + self
                .threads
                .iter()
                .map(|t| {
                    std::mem::size_of::<ThreadArgs>() as u64
                        + array_len(&t.signals)
                        + array_len(&t.groups)
                        + array_len(&t.affinity)
                        + t.filters
                            .iter()
                            .map(|(_, p)| {
                                std::mem::size_of::<SeccompFilter>() as u64 + p.len() as u64 + 16
                            })
                            .sum::<u64>()
                        + 16 * 7
                })
                .sum::<u64>()
            + THREAD_STACK_SIZE as u64 * self.threads.len().saturating_sub(1) as u64
    }
}

impl Region {
    /// Maps a region big enough for `data` bytes of `Args` and arrays, plus
    /// `park` bytes of free room after it, in a hole of both `occupied`
    /// (the restored process's ranges) and rcriu's own address space.
    pub fn map(occupied: &[(u64, u64)], data: u64, park: u64) -> Result<Region> {
        let blob_len = up(blob::IMAGE.len() as u64);
        let args_len = up(data);
        let len = blob_len + args_len + STACK_SIZE as u64;
        let want = len + up(park) + 2 * PAGE;
        for _ in 0..8 {
            let start = find_hole(occupied, want)? + PAGE;
            match LocalMap::anon_shared_at(start, len as usize) {
                Ok(map) => {
                    let mut region = Region {
                        map,
                        args_off: blob_len as usize,
                        stack_off: (blob_len + args_len) as usize,
                        park: start + len,
                    };
                    region.load_blob()?;
                    return Ok(region);
                }
                // Something of rcriu's was mapped there meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(Error::host("mapping the restorer's region")(e)),
            }
        }
        Err(Error::Host {
            what: "finding room for the restorer's region",
            source: std::io::Error::from_raw_os_error(libc::ENOMEM),
        })
    }

    fn load_blob(&mut self) -> Result<()> {
        let base = self.start();
        let mut img = blob::IMAGE.to_vec();
        for &(off, addend) in blob::RELOCS {
            let v = base.wrapping_add_signed(addend);
            img[off..off + 8].copy_from_slice(&v.to_le_bytes());
        }
        self.map.write(0, &img);
        self.map
            .protect(0, blob::DATA_OFF, libc::PROT_READ | libc::PROT_EXEC)
            .map_err(Error::host("protecting the restorer's code"))
    }

    pub fn start(&self) -> u64 {
        self.map.addr()
    }

    pub fn end(&self) -> u64 {
        self.start() + self.map.len() as u64
    }

    /// The restorer's entry point.
    pub fn entry(&self) -> u64 {
        self.start() + blob::RCRIU_RESTORER_HEAD as u64
    }

    /// The stack: its lowest address and size.
    pub fn stack(&self) -> (u64, u64) {
        (self.start() + self.stack_off as u64, STACK_SIZE as u64)
    }

    /// The offset of the first process's `Args`, where [`Region::write`]
    /// puts them; the others follow, each [`Region::write_at`] its end.
    pub fn first_args_off(&self) -> usize {
        self.args_off
    }

    /// The address of the region's byte at `off`.
    pub fn addr_of(&self, off: usize) -> u64 {
        self.start() + off as u64
    }

    /// Writes `bytes` at the bottom of the restorer's stack, free once
    /// the restorer is done, for a syscall rcriu runs in a process at the
    /// end; their address there. At most half the stack.
    pub fn put_scratch(&self, bytes: &[u8]) -> Option<u64> {
        if bytes.len() > STACK_SIZE / 2 {
            return None;
        }
        self.map.write(self.stack_off, bytes);
        Some(self.addr_of(self.stack_off))
    }

    /// What a syscall left at the bottom of the restorer's stack (see
    /// [`put_scratch`](Self::put_scratch)).
    pub fn get_scratch<T: Pod>(&self) -> T {
        self.get(self.stack_off)
    }

    /// Zeroes `len` bytes at `off` (the tree's shared words).
    pub fn zero(&self, off: usize, len: usize) {
        self.map.write(off, &vec![0u8; len]);
    }

    /// Puts `v` at `off`.
    pub fn put_at<T: Pod>(&self, off: usize, v: &T) {
        self.map.put(off, v);
    }

    /// Writes one process's `Args` at `at` with its arrays after them;
    /// returns where its threads' args went and where its data ends.
    pub fn write_at(&self, at: usize, args: &mut Args, arrays: &Arrays<'_>) -> Placed {
        let mut off = at + std::mem::size_of::<Args>();
        // Writes `bytes` (16-byte aligned), then leaves `room` bytes free.
        let mut put_room = |bytes: &[u8], room: usize| -> u64 {
            off = off.next_multiple_of(16);
            let at = self.start() + off as u64;
            self.map.write(off, bytes);
            off += bytes.len() + room;
            at
        };
        args.vmas = put_room(slice_bytes(arrays.vmas), 0);
        args.nr_vmas = arrays.vmas.len() as u64;
        args.iovs = put_room(slice_bytes(arrays.iovs), 0);
        args.nr_iovs = arrays.iovs.len() as u64;
        args.batches = put_room(slice_bytes(arrays.batches), 0);
        args.nr_batches = arrays.batches.len() as u64;
        args.cow_batches = put_room(slice_bytes(arrays.cow_batches), 0);
        args.nr_cow_batches = arrays.cow_batches.len() as u64;
        args.drops = put_room(slice_bytes(arrays.drops), 0);
        args.nr_drops = arrays.drops.len() as u64;
        args.fds = put_room(slice_bytes(arrays.fds), 0);
        args.nr_fds = arrays.fds.len() as u64;
        args.locks = put_room(slice_bytes(arrays.locks), 0);
        args.nr_locks = arrays.locks.len() as u64;
        args.copy_src = put_room(arrays.copy, 0);
        args.signals = put_room(arrays.signals.as_flattened(), 0);
        args.nr_signals = arrays.signals.len() as u64;
        args.timers = put_room(slice_bytes(arrays.timers), 0);
        args.nr_timers = arrays.timers.len() as u64;
        args.guards = put_room(slice_bytes(arrays.guards), 0);
        args.nr_guards = arrays.guards.len() as u64;
        let names: Vec<AnonName> = arrays
            .anon_names
            .iter()
            .map(|(start, end, name)| {
                let mut z = name.clone();
                z.push(0);
                AnonName {
                    start: *start,
                    end: *end,
                    name: put_room(&z, 0),
                }
            })
            .collect();
        args.anon_names = put_room(slice_bytes(&names), 0);
        args.nr_anon_names = names.len() as u64;
        let late: Vec<LateOpen> = arrays
            .late
            .iter()
            .map(|l| {
                let mut z = l.path.clone();
                z.push(0);
                LateOpen {
                    to: l.to,
                    flags: l.flags,
                    pos: l.pos,
                    // No path: a pidfd of the process itself.
                    path: if l.path.is_empty() {
                        0
                    } else {
                        put_room(&z, 0)
                    },
                }
            })
            .collect();
        args.late = put_room(slice_bytes(&late), 0);
        args.nr_late = late.len() as u64;
        // The process's own args (each process of a tree has its own).
        let args_addr = self.addr_of(at);
        let mut threads = Vec::with_capacity(arrays.threads.len());
        for (i, plan) in arrays.threads.iter().enumerate() {
            let mut t = plan.args;
            t.args = args_addr;
            t.signals = put_room(plan.signals.as_flattened(), 0);
            t.nr_signals = plan.signals.len() as u64;
            t.creds.groups = put_room(slice_bytes(&plan.groups), 0);
            t.creds.nr_groups = plan.groups.len() as u64;
            t.affinity = put_room(slice_bytes(&plan.affinity), 0);
            t.nr_affinity = plan.affinity.len() as u64;
            let filters: Vec<SeccompFilter> = plan
                .filters
                .iter()
                .map(|(flags, prog)| SeccompFilter {
                    flags: *flags,
                    len: (prog.len() / 8) as u16,
                    _pad: [0; 3],
                    filter: put_room(prog, 0),
                })
                .collect();
            t.filters = put_room(slice_bytes(&filters), 0);
            t.nr_filters = filters.len() as u64;
            if i > 0 {
                // A stack of its own.
                t.stack_top = put_room(&[], THREAD_STACK_SIZE) + THREAD_STACK_SIZE as u64;
            }
            threads.push(t);
        }
        args.threads = put_room(slice_bytes(&threads), 0);
        args.nr_threads = threads.len() as u64;
        args.children = put_room(slice_bytes(arrays.children), 0);
        args.nr_children = arrays.children.len() as u64;
        let end = off.next_multiple_of(16);
        self.map.put(at, &*args);
        Placed {
            args_off: at,
            threads_off: (args.threads - self.start()) as usize,
            end,
        }
    }

    /// Reads back one process's `Args` at `at` (its restorer's report).
    pub fn read_args_at(&self, at: usize) -> Args {
        self.get(at)
    }

    /// Reads back thread `i`'s report of a process placed at `p`.
    pub fn read_thread_at(&self, p: &Placed, i: usize) -> ThreadArgs {
        self.get(p.threads_off + i * std::mem::size_of::<ThreadArgs>())
    }

    fn get<T: Pod>(&self, off: usize) -> T {
        self.map.get(off)
    }

    /// The words of the mapped `Args` the restorer and rcriu's page
    /// helper share: `page_claims`, `page_state`, `page_err`,
    /// `page_err_batch`.
    pub fn page_words(&self) -> crate::page_helper::Words<'_> {
        use std::mem::offset_of;
        let at = |off| self.args_off + off;
        crate::page_helper::Words {
            claims: self.map.atomic_u64(at(offset_of!(Args, page_claims))),
            state: self.map.atomic_u32(at(offset_of!(Args, page_state))),
            err: self.map.atomic_u32(at(offset_of!(Args, page_err))),
            err_batch: self.map.atomic_u32(at(offset_of!(Args, page_err_batch))),
        }
    }

    /// Updates the inherited rseq registration in the mapped `Args`.
    pub fn set_self_rseq(&self, r: rcriu_compel::abi::restorer::Rseq) {
        let off = self.args_off + std::mem::offset_of!(Args, self_rseq);
        self.map.put(off, &r);
    }
}

/// The highest hole of `len` bytes in [LOW, HIGH) that neither
/// `occupied` nor rcriu's own maps touch.
fn find_hole(occupied: &[(u64, u64)], len: u64) -> Result<u64> {
    let own = rcriu_proc::Task::open_self()
        .and_then(|mut t| t.maps())
        .map_err(|e| Error::Host {
            what: "reading rcriu's own maps",
            source: std::io::Error::other(e),
        })?;
    let mut used: Vec<(u64, u64)> = own.iter().map(|v| (v.start, v.end)).collect();
    used.extend_from_slice(occupied);
    highest_gap(used, len).ok_or(Error::Host {
        what: "finding room for the restorer's region",
        source: std::io::Error::from_raw_os_error(libc::ENOMEM),
    })
}

/// The highest page-aligned start of `len` free bytes in [LOW, HIGH)
/// outside every range of `used`.
fn highest_gap(mut used: Vec<(u64, u64)>, len: u64) -> Option<u64> {
    used.sort_unstable();
    // Merge overlapping ranges, so that gaps between them are free.
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(used.len());
    for (s, e) in used {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut top = HIGH;
    for &(s, e) in merged.iter().rev() {
        if e < top && top - e >= len {
            let at = (top - len) & !(PAGE - 1);
            if at >= e && at >= LOW {
                return Some(at);
            }
        }
        top = top.min(s);
        if top < LOW.saturating_add(len) {
            return None;
        }
    }
    (top >= LOW + len).then_some((top - len) & !(PAGE - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_avoid_what_is_used() {
        let used = vec![
            (0x7fef_0000_0000, HIGH),
            (0x7fe0_0000_0000, 0x7fee_ffff_0000),
            (0x7fe0_0000_1000, 0x7fe0_0000_2000), // nested
        ];
        let at = highest_gap(used.clone(), 0x10_0000).unwrap();
        assert!(at + 0x10_0000 <= 0x7fe0_0000_0000);
        for &(s, e) in &used {
            assert!(
                at + 0x10_0000 <= s || at >= e,
                "{at:#x} overlaps {s:#x}-{e:#x}"
            );
        }
        // The gap between two ranges, when it is big enough.
        let at = highest_gap(
            vec![(0x2000_0000, 0x3000_0000), (0x3010_0000, HIGH)],
            0x10_0000,
        );
        assert_eq!(at, Some(0x3000_0000));
        assert_eq!(highest_gap(vec![(0, HIGH)], 0x1000), None);
    }
}
