//! `seccomp.img`: the seccomp filters of every thread, as CRIU 4.2 writes
//! them, and each thread's `seccomp_mode` / `seccomp_filter` in its core.
//!
//! The image holds one entry whose filters are chains: a thread's
//! `seccomp_filter` is the index of its oldest filter, and each filter's
//! `prev` the index of the next one installed after it (so a restore
//! installs them oldest first, following `prev`). Chains are written
//! thread by thread in tid order, newest filter first.
//!
//! As CRIU, when every thread of the process has the same chain (as
//! `SECCOMP_FILTER_FLAG_TSYNC` leaves them, and nothing else can tell), the
//! chain is written for the leader alone with the TSYNC flag, and the other
//! threads are written without filters: the restore then synchronises
//! them, which keeps a later TSYNC of the process working. (A process of
//! one thread gets the flag too.)

use rcriu_images::pb;

/// `SECCOMP_FILTER_FLAG_TSYNC`.
const FLAG_TSYNC: u64 = 1;
/// `SECCOMP_MODE_FILTER`.
const MODE_FILTER: u32 = 2;

/// One thread's seccomp state.
#[derive(Debug, Clone)]
pub struct ThreadSeccomp {
    pub tid: u32,
    pub mode: u32,
    /// Filters, oldest first, with their flags.
    pub filters: Vec<(Vec<u8>, u64)>,
}

/// What goes into each thread's core: `seccomp_mode` and `seccomp_filter`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreFields {
    pub mode: Option<u32>,
    pub filter: Option<u32>,
}

/// The image entry and, for each thread of `threads` (in the same
/// order), its core fields. `threads[0]` is the leader.
pub fn plan(threads: &[ThreadSeccomp]) -> (pb::SeccompEntry, Vec<CoreFields>) {
    let mut entry = pb::SeccompEntry::default();
    let fields = add(&mut entry, threads);
    (entry, fields)
}

/// Adds the filters of one process's `threads` to `entry` (the image
/// of a whole tree), returning each thread's core fields.
pub fn add(entry: &mut pb::SeccompEntry, threads: &[ThreadSeccomp]) -> Vec<CoreFields> {
    let mut chains = threads.to_vec();
    if let Some((first, rest)) = chains.split_first_mut()
        && first.mode == MODE_FILTER
        && rest
            .iter()
            .all(|t| t.mode == first.mode && same_programs(&t.filters, &first.filters))
    {
        for f in &mut first.filters {
            f.1 |= FLAG_TSYNC;
        }
        for t in rest {
            t.mode = 0;
            t.filters.clear();
        }
    }

    let mut order: Vec<usize> = (0..chains.len()).collect();
    order.sort_by_key(|&i| chains[i].tid);
    let mut fields = vec![CoreFields::default(); chains.len()];
    for i in order {
        let ThreadSeccomp { mode, filters, .. } = &chains[i];
        let mode = *mode;
        if mode == 0 {
            continue;
        }
        fields[i].mode = Some(mode);
        if mode != MODE_FILTER || filters.is_empty() {
            continue;
        }
        // Newest first; each points (prev) at the one written before it,
        // installed after it.
        let first = entry.seccomp_filters.len() as u32;
        for (k, (prog, flags)) in filters.iter().rev().enumerate() {
            entry.seccomp_filters.push(pb::SeccompFilter {
                filter: prog.clone(),
                prev: (k > 0).then(|| first + k as u32 - 1),
                flags: Some(*flags as u32),
            });
        }
        fields[i].filter = Some(entry.seccomp_filters.len() as u32 - 1);
    }
    fields
}

fn same_programs(a: &[(Vec<u8>, u64)], b: &[(Vec<u8>, u64)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(n: u8) -> Vec<u8> {
        vec![n; 8]
    }

    #[test]
    fn chains_oldest_last_and_linked_by_prev() {
        let t = [
            ThreadSeccomp {
                tid: 20,
                mode: 2,
                filters: vec![(prog(1), 0), (prog(2), 4)],
            },
            ThreadSeccomp {
                tid: 10,
                mode: 2,
                filters: vec![(prog(3), 0)],
            },
            ThreadSeccomp {
                tid: 30,
                mode: 0,
                filters: vec![],
            },
        ];
        let (e, f) = plan(&t);
        // Thread 10 first (tid order): its one filter at 0.
        assert_eq!(f[1].filter, Some(0));
        assert_eq!(e.seccomp_filters[0].filter, prog(3));
        assert_eq!(e.seccomp_filters[0].prev, None);
        // Thread 20: newest (2) at 1, oldest (1) at 2 pointing back at 1.
        assert_eq!(e.seccomp_filters[1].filter, prog(2));
        assert_eq!(e.seccomp_filters[1].flags, Some(4));
        assert_eq!(e.seccomp_filters[2].filter, prog(1));
        assert_eq!(e.seccomp_filters[2].prev, Some(1));
        assert_eq!(
            f[0],
            CoreFields {
                mode: Some(2),
                filter: Some(2)
            }
        );
        assert_eq!(f[2], CoreFields::default());
    }

    #[test]
    fn identical_chains_go_to_the_leader_with_tsync() {
        let chain = vec![(prog(1), 0), (prog(2), 0)];
        let t = [
            ThreadSeccomp {
                tid: 5,
                mode: 2,
                filters: chain.clone(),
            },
            ThreadSeccomp {
                tid: 6,
                mode: 2,
                filters: chain,
            },
        ];
        let (e, f) = plan(&t);
        assert_eq!(e.seccomp_filters.len(), 2);
        assert!(e.seccomp_filters.iter().all(|s| s.flags == Some(1)));
        assert_eq!(f[0].filter, Some(1));
        assert_eq!(f[1], CoreFields::default());
    }

    #[test]
    fn strict_mode_has_no_filter() {
        let (e, f) = plan(&[ThreadSeccomp {
            tid: 1,
            mode: 1,
            filters: vec![],
        }]);
        assert!(e.seccomp_filters.is_empty());
        assert_eq!(
            f[0],
            CoreFields {
                mode: Some(1),
                filter: None
            }
        );
    }
}
