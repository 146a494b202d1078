//! A container's IPC namespace, as CRIU 4.2 writes it: its limits (the
//! `kernel.sem`, `msg*`, `shm*`, `*_next_id` and `fs.mqueue.*` sysctls)
//! as `ipcns-var-<id>.img`, and its SysV objects:
//!
//! - `ipcns-shm-<id>.img`: one `ipc_shm_entry` per segment (`in_pagemaps`:
//!   no payload), its memory in `pagemap-shmem-<segment id>.img` and a
//!   `pages-<n>.img` of its own, as a memfd's (the pages `SEEK_DATA`
//!   finds). A process's attach of a segment is an area of its own
//!   (`VMA_AREA_SYSVIPC`, `shmid` the segment's id, which is its inode's
//!   number); the restore attaches the segment there again.
//! - `ipcns-sem-<id>.img`: one `ipc_sem_entry` per set, followed by its
//!   `nsems` values (u16), padded with zeros to 8 bytes.
//! - `ipcns-msg-<id>.img`: one `ipc_msg_entry` per queue, followed by its
//!   `qnum` messages, each an `ipc_msg` (type, size) and its text padded
//!   with zeros to 8 bytes, in queue order.
//!
//! Each object keeps its key, id, owner, mode (and a queue its
//! `qbytes`); times, creators and the last pids are the kernel's again
//! (as with CRIU). A segment removed (`IPC_RMID`) while still attached
//! keeps `SHM_DEST` in its mode (its key is then IPC_PRIVATE), as CRIU
//! writes it; rcriu's restore removes it again once the processes are
//! attached. Not dumped yet, refused by name: a segment of huge pages.
//! POSIX message queues are refused by [`crate::namespaces`], as CRIU
//! 4.2 refuses a mqueue file system that is not empty.

use std::fs::File;
use std::path::Path;

use rcriu_images::pb;

use crate::ipcns_sys as sys;

/// `statfs`' `f_type` of hugetlbfs.
const HUGETLBFS_MAGIC: u64 = 0x9584_58f6;

/// What an IPC namespace holds.
#[derive(Debug, Default)]
pub struct IpcNs {
    pub var: pb::IpcVarEntry,
    pub shm: Vec<Shm>,
    pub sem: Vec<Sem>,
    pub msg: Vec<Queue>,
}

/// A shared memory segment, and its memory open as a file.
#[derive(Debug)]
pub struct Shm {
    pub entry: pb::IpcShmEntry,
    pub file: File,
}

/// A semaphore set and its values.
#[derive(Debug)]
pub struct Sem {
    pub entry: pb::IpcSemEntry,
    pub values: Vec<u16>,
}

/// A message queue and its messages, in order.
#[derive(Debug)]
pub struct Queue {
    pub entry: pb::IpcMsgEntry,
    pub messages: Vec<(pb::IpcMsg, Vec<u8>)>,
}

/// A sysctl's value, read in one `read`: the kernel gives a vector of
/// numbers (`kernel.sem`) whole to the first read and nothing to one at
/// an offset, so a reader going in small steps would lose its end.
fn read(name: &str) -> Result<String, String> {
    let path = Path::new("/proc/sys").join(name);
    let err = |e: std::io::Error| format!("reading /proc/sys/{name}: {e}");
    let mut f = File::open(&path).map_err(err)?;
    let mut buf = [0u8; 1024];
    let n = std::io::Read::read(&mut f, &mut buf).map_err(err)?;
    let text = std::str::from_utf8(&buf[..n])
        .map_err(|_| format!("/proc/sys/{name} holds bytes that are not text"))?;
    Ok(text.trim().to_owned())
}

fn num<T: std::str::FromStr>(name: &str) -> Result<T, String> {
    let s = read(name)?;
    s.parse()
        .map_err(|_| format!("/proc/sys/{name} holds {s:?}, not a number"))
}

/// A `*_next_id` sysctl, unless it holds -1 (the kernel's "none", which
/// cannot be written back).
fn next_id(name: &str) -> Result<Option<u32>, String> {
    let v: i64 = num(name)?;
    Ok(u32::try_from(v).ok())
}

/// The ids of the objects of `kind` (`shm`, `sem`, `msg`) of the calling
/// thread's IPC namespace, from `/proc/sysvipc/<kind>`.
fn ids(kind: &str) -> Result<Vec<i32>, String> {
    let path = format!("/proc/sysvipc/{kind}");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|id| id.parse().ok())
                .ok_or_else(|| format!("{path}: a line without an id: {l:?}"))
        })
        .collect()
}

fn desc(id: i32, p: &libc::ipc_perm) -> pb::IpcDescEntry {
    pb::IpcDescEntry {
        key: p.__key as u32,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: u32::from(p.mode),
        id: id as u32,
    }
}

/// The limits of the IPC namespace the calling thread is in.
fn var() -> Result<pb::IpcVarEntry, String> {
    let sem: Vec<u32> = read("kernel/sem")?
        .split_whitespace()
        .map(|v| v.parse().map_err(|_| format!("kernel.sem holds {v:?}")))
        .collect::<Result<_, _>>()?;
    Ok(pb::IpcVarEntry {
        sem_ctls: sem,
        msg_ctlmax: num("kernel/msgmax")?,
        msg_ctlmnb: num("kernel/msgmnb")?,
        msg_ctlmni: num("kernel/msgmni")?,
        auto_msgmni: num("kernel/auto_msgmni").unwrap_or(0),
        shm_ctlmax: num("kernel/shmmax")?,
        shm_ctlall: num("kernel/shmall")?,
        shm_ctlmni: num("kernel/shmmni")?,
        shm_rmid_forced: num("kernel/shm_rmid_forced")?,
        mq_queues_max: num("fs/mqueue/queues_max")?,
        mq_msg_max: num("fs/mqueue/msg_max")?,
        mq_msgsize_max: num("fs/mqueue/msgsize_max")?,
        mq_msg_default: Some(num("fs/mqueue/msg_default")?),
        mq_msgsize_default: Some(num("fs/mqueue/msgsize_default")?),
        msg_next_id: next_id("kernel/msg_next_id")?,
        sem_next_id: next_id("kernel/sem_next_id")?,
        shm_next_id: next_id("kernel/shm_next_id")?,
    })
}

fn shm(id: i32) -> Result<Shm, String> {
    let ds = sys::shm_stat(id).map_err(|e| format!("reading SysV shm segment {id}: {e}"))?;
    let d = desc(id, &ds.shm_perm);
    let size = ds.shm_segsz as u64;
    let file = sys::shm_file(id, size)
        .map_err(|e| format!("reading the memory of SysV shm segment {id}: {e}"))?;
    let fs = rustix::fs::fstatfs(&file)
        .map_err(|e| format!("reading the file system of SysV shm segment {id}: {e}"))?;
    if fs.f_type as u64 == HUGETLBFS_MAGIC {
        return Err(format!(
            "SysV shm segment {id} of huge pages (SHM_HUGETLB, not dumped yet)"
        ));
    }
    Ok(Shm {
        entry: pb::IpcShmEntry {
            desc: d,
            size,
            in_pagemaps: Some(true),
            hugetlb_flag: None,
        },
        file,
    })
}

fn sem(id: i32) -> Result<Sem, String> {
    let ds = sys::sem_stat(id).map_err(|e| format!("reading SysV semaphore set {id}: {e}"))?;
    let nsems = ds.sem_nsems as usize;
    let values = sys::sem_values(id, nsems)
        .map_err(|e| format!("reading the values of SysV semaphore set {id}: {e}"))?;
    Ok(Sem {
        entry: pb::IpcSemEntry {
            desc: desc(id, &ds.sem_perm),
            nsems: nsems as u32,
        },
        values,
    })
}

fn queue(id: i32, msgmax: usize) -> Result<Queue, String> {
    let ds = sys::msg_stat(id).map_err(|e| format!("reading SysV message queue {id}: {e}"))?;
    let qnum = ds.msg_qnum as usize;
    let mut messages = Vec::with_capacity(qnum.min(1024));
    for i in 0..qnum {
        let (mtype, text) = sys::msg_copy(id, i, msgmax)
            .map_err(|e| format!("copying message {i} of SysV message queue {id}: {e}"))?;
        let m = pb::IpcMsg {
            mtype: mtype as u64,
            msize: text.len() as u32,
        };
        messages.push((m, text));
    }
    Ok(Queue {
        entry: pb::IpcMsgEntry {
            desc: desc(id, &ds.msg_perm),
            qbytes: ds.msg_qbytes as u32,
            qnum: qnum as u32,
        },
        messages,
    })
}

/// What the IPC namespace the calling thread is in holds, or what of it
/// cannot be dumped.
pub fn read_here() -> Result<IpcNs, String> {
    let var = var()?;
    let shm = ids("shm")?.into_iter().map(shm).collect::<Result<_, _>>()?;
    let sem = ids("sem")?.into_iter().map(sem).collect::<Result<_, _>>()?;
    let msgmax = var.msg_ctlmax as usize;
    let msg = ids("msg")?
        .into_iter()
        .map(|id| queue(id, msgmax))
        .collect::<Result<_, _>>()?;
    Ok(IpcNs { var, shm, sem, msg })
}

/// Zeros that pad `len` bytes to a multiple of `to`.
fn pad(len: usize, to: usize) -> Vec<u8> {
    vec![0u8; len.next_multiple_of(to) - len]
}

impl IpcNs {
    /// The segment of id `shmid`, if the namespace has it.
    pub fn segment(&self, shmid: u64) -> Option<&Shm> {
        self.shm
            .iter()
            .find(|s| u64::from(s.entry.desc.id) == shmid)
    }

    /// Checks a process's attaches of the namespace's segments (its SysV
    /// areas, in address order): each attach whole, in areas side by side
    /// (a restore attaches a segment whole, then protects its areas).
    pub fn check_attaches<'a>(
        &self,
        areas: impl IntoIterator<Item = &'a pb::VmaEntry>,
    ) -> Result<(), String> {
        // The attach being followed: (segment id, start, end so far, end
        // of the whole attach).
        let mut open: Option<(u64, u64, u64, u64)> = None;
        let close = |o: Option<(u64, u64, u64, u64)>| match o {
            Some((id, start, at, end)) if at != end => Err(format!(
                "a partial attach of SysV shm segment {id} at {start:#x} (mapped to {at:#x} of {end:#x}, not restored)"
            )),
            _ => Ok(()),
        };
        for v in areas {
            let Some(seg) = self.segment(v.shmid) else {
                return Err(format!(
                    "an attach at {:#x} of SysV shm segment {}, which its IPC namespace does not hold",
                    v.start, v.shmid
                ));
            };
            match &mut open {
                Some((id, start, at, _))
                    if *id == v.shmid && v.start == *at && v.pgoff == *at - *start =>
                {
                    *at = v.end;
                }
                _ => {
                    close(open.take())?;
                    if v.pgoff != 0 {
                        return Err(format!(
                            "a partial attach of SysV shm segment {} at {:#x} (from offset {:#x}, not restored)",
                            v.shmid, v.start, v.pgoff
                        ));
                    }
                    let len = seg.entry.size.div_ceil(4096) * 4096;
                    open = Some((v.shmid, v.start, v.end, v.start + len));
                }
            }
        }
        close(open)
    }

    /// `ipcns-sem-<id>.img`'s bytes after each entry: the values.
    pub fn sem_payload(s: &Sem) -> Vec<u8> {
        let mut b: Vec<u8> = s.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        b.extend(pad(b.len(), 8));
        b
    }

    /// `ipcns-msg-<id>.img`'s text of a message, padded.
    pub fn msg_payload(text: &[u8]) -> Vec<u8> {
        let mut b = text.to_vec();
        b.extend(pad(b.len(), 8));
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(start: u64, end: u64, shmid: u64, pgoff: u64) -> pb::VmaEntry {
        pb::VmaEntry {
            start,
            end,
            shmid,
            pgoff,
            ..Default::default()
        }
    }

    #[test]
    fn attaches_must_be_whole() {
        let file = File::open("/dev/null").unwrap();
        let seg = |id: u32, size: u64, file: File| Shm {
            entry: pb::IpcShmEntry {
                desc: pb::IpcDescEntry {
                    id,
                    ..Default::default()
                },
                size,
                ..Default::default()
            },
            file,
        };
        let ns = IpcNs {
            shm: vec![
                seg(3, 3 * 4096 + 100, file.try_clone().unwrap()),
                seg(5, 4096, file),
            ],
            ..Default::default()
        };
        // Whole, in one area or two (protected apart), twice.
        let ok = [
            area(0x10000, 0x14000, 3, 0),
            area(0x20000, 0x21000, 3, 0),
            area(0x21000, 0x24000, 3, 0x1000),
            area(0x24000, 0x25000, 5, 0),
        ];
        ns.check_attaches(&ok).unwrap();
        for (bad, what) in [
            (vec![area(0x10000, 0x13000, 3, 0)], "partial attach"),
            (vec![area(0x11000, 0x14000, 3, 0x1000)], "from offset"),
            (
                vec![
                    area(0x10000, 0x11000, 3, 0),
                    area(0x12000, 0x15000, 3, 0x1000),
                ],
                "partial attach",
            ),
            (vec![area(0x10000, 0x11000, 9, 0)], "does not hold"),
        ] {
            let e = ns.check_attaches(&bad).unwrap_err();
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn payloads_pad_to_eight_bytes() {
        let s = Sem {
            entry: pb::IpcSemEntry::default(),
            values: vec![7, 0, 3, 32767, 1],
        };
        assert_eq!(
            IpcNs::sem_payload(&s),
            [7, 0, 0, 0, 3, 0, 0xff, 0x7f, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(IpcNs::msg_payload(b"first"), b"first\0\0\0");
        assert!(IpcNs::msg_payload(b"").is_empty());
        assert_eq!(IpcNs::msg_payload(b"12345678").len(), 8);
    }
}
