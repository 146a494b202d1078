//! A container's IPC namespace made again, in the namespace the calling
//! thread is in (the holder's, new), as CRIU 4.2 does: its limits
//! (`ipcns-var-<id>.img`, written to the sysctls), then its SysV shared
//! memory segments (`ipcns-shm`, their memory from
//! `pagemap-shmem-<segment id>.img`), message queues (`ipcns-msg`) and
//! semaphore sets (`ipcns-sem`). Each object is made with its key, mode
//! and the id it had (`kernel.{shm,msg,sem}_next_id` set just before it
//! is made), then given its owner, and its values, messages (in order)
//! or memory. The processes' attaches of the segments are made again by
//! the restorer (`shmat` at their place, [`crate::mm`]). A segment that
//! was removed while attached (`SHM_DEST` in its mode) is made alive,
//! then removed again once every process is attached ([`removed`],
//! [`remove_in`]); CRIU 4.2 leaves it alive.

use std::os::unix::fs::FileExt;

use rcriu_images::{ImageDir, ImageFile, pb};

use crate::ipcns_sys as sys;
use crate::{Error, Result};

/// A segment locked in memory (`SHM_LOCK`), in its mode.
const SHM_LOCKED: u32 = 0o2000;
/// A segment removed (`IPC_RMID`) while still attached, in its mode.
const SHM_DEST: u32 = 0o1000;
/// The most semaphores a set may have (the kernel's SEMMSL cap).
const MAX_NSEMS: u32 = 32000;
/// The longest message read from an image (the kernel's `msgmax` cap is
/// higher; no queue of a real dump comes close).
const MAX_MSG: u32 = 16 << 20;

fn write(name: &str, value: String) -> Result<()> {
    let path = format!("/proc/sys/{name}");
    std::fs::write(&path, value).map_err(Error::file("writing", path))
}

/// Sets the limits of the calling thread's IPC namespace.
fn set_var(e: &pb::IpcVarEntry) -> Result<()> {
    if !e.sem_ctls.is_empty() {
        let sem: Vec<String> = e.sem_ctls.iter().map(u32::to_string).collect();
        write("kernel/sem", sem.join(" "))?;
    }
    write("kernel/msgmax", e.msg_ctlmax.to_string())?;
    write("kernel/msgmnb", e.msg_ctlmnb.to_string())?;
    write("kernel/msgmni", e.msg_ctlmni.to_string())?;
    write("kernel/shmmax", e.shm_ctlmax.to_string())?;
    write("kernel/shmall", e.shm_ctlall.to_string())?;
    write("kernel/shmmni", e.shm_ctlmni.to_string())?;
    write("kernel/shm_rmid_forced", e.shm_rmid_forced.to_string())?;
    write("fs/mqueue/queues_max", e.mq_queues_max.to_string())?;
    write("fs/mqueue/msg_max", e.mq_msg_max.to_string())?;
    write("fs/mqueue/msgsize_max", e.mq_msgsize_max.to_string())?;
    if let Some(v) = e.mq_msg_default {
        write("fs/mqueue/msg_default", v.to_string())?;
    }
    if let Some(v) = e.mq_msgsize_default {
        write("fs/mqueue/msgsize_default", v.to_string())?;
    }
    Ok(())
}

/// Sets the `*_next_id` sysctls of the calling thread's IPC namespace
/// (the kernel lets whoever may checkpoint and restore in its user
/// namespace write them: rcriu, not the namespace's root without its
/// capabilities).
fn set_next_ids(e: &pb::IpcVarEntry) -> Result<()> {
    for (name, v) in [
        ("msg", e.msg_next_id),
        ("sem", e.sem_next_id),
        ("shm", e.shm_next_id),
    ] {
        if let Some(v) = v {
            write(&format!("kernel/{name}_next_id"), v.to_string())?;
        }
    }
    Ok(())
}

/// Makes the next object of `kind` get id `id`.
fn want_id(kind: &str, id: u32) -> Result<()> {
    write(&format!("kernel/{kind}_next_id"), id.to_string())
}

/// Checks that an object of `kind` got the id it had.
fn got_id(file: &ImageFile, kind: &str, want: u32, got: i32) -> Result<()> {
    if u32::try_from(got) != Ok(want) {
        return Err(Error::invalid(
            file.name(),
            format!("the SysV {kind} of id {want} was made again with id {got}"),
        ));
    }
    Ok(())
}

/// Makes the calling thread's IPC namespace, new, what the images of
/// namespace `ns` say.
///
/// In a user namespace of the tree's own (`user`), the limits are
/// written, and the objects made (each `*_next_id` then its object), as
/// its root (the kernel lets only the namespace's owner write them; the
/// objects' creator is then its root, as CRIU's, made from inside); their
/// owners, numbered as the tree sees them, are given as rcriu sees them.
pub fn set_here(
    var: &pb::IpcVarEntry,
    dir: &ImageDir,
    ns: u32,
    user: Option<&crate::userns::UserNs>,
) -> Result<()> {
    {
        let _root = user.map(crate::userns::AsRoot::enter).transpose()?;
        set_var(var)?;
    }
    set_next_ids(var)?;
    let m = Maker { user };
    shm(dir, ns, &m)?;
    msg(dir, ns, &m)?;
    sem(dir, ns, &m)
}

/// How the objects are made and owned ([`set_here`]).
struct Maker<'a> {
    user: Option<&'a crate::userns::UserNs>,
}

impl Maker<'_> {
    /// Makes an object of `kind` (`make`) with id `id`: the id is
    /// wanted (as rcriu), then the object made, as the namespace's root
    /// when there is a user namespace of the tree's own.
    fn make<T>(&self, kind: &str, id: u32, make: impl FnOnce() -> Result<T>) -> Result<T> {
        want_id(kind, id)?;
        let _root = self.user.map(crate::userns::AsRoot::enter).transpose()?;
        make()
    }

    /// The owner `uid`, `gid` of object `what` of `file` as rcriu gives it.
    fn owner(&self, file: &ImageFile, what: &str, uid: u32, gid: u32) -> Result<(u32, u32)> {
        let Some(u) = self.user else {
            return Ok((uid, gid));
        };
        match (u.host_uid(uid), u.host_gid(gid)) {
            (Some(h), Some(g)) => Ok((h, g)),
            _ => Err(Error::invalid(
                file.name(),
                format!("{what} owned by {uid}:{gid}, which its user namespace does not map"),
            )),
        }
    }
}

fn shm(dir: &ImageDir, ns: u32, m: &Maker<'_>) -> Result<()> {
    let file = ImageFile::IpcShm(ns.into());
    let Some(mut r) = dir.reader_if_exists(file)? else {
        return Ok(());
    };
    while let Some(e) = r.read_next::<pb::IpcShmEntry>()? {
        let d = &e.desc;
        if e.hugetlb_flag.is_some_and(|f| f != 0) {
            return Err(Error::unsupported(format!(
                "restoring SysV shm segment {} of huge pages ({})",
                d.id,
                file.name()
            )));
        }
        // Old images carry the memory after the entry.
        let raw = if e.in_pagemaps == Some(true) {
            None
        } else {
            Some(r.read_payload(e.size.next_multiple_of(4))?)
        };
        let id = m.make("shm", d.id, || {
            sys::shm_create(d.key as i32, e.size, d.mode & 0o777).map_err(Error::io(format!(
                "making SysV shm segment {} of {} bytes",
                d.id, e.size
            )))
        })?;
        got_id(&file, "shm segment", d.id, id)?;
        let (uid, gid) = m.owner(&file, &format!("shm segment {}", d.id), d.uid, d.gid)?;
        sys::shm_set_owner(id, uid, gid).map_err(Error::io(format!(
            "setting the owner of SysV shm segment {id}"
        )))?;
        if d.mode & SHM_LOCKED != 0 {
            sys::shm_lock(id).map_err(Error::io(format!("locking SysV shm segment {id}")))?;
        }
        let f = sys::shm_file(id, e.size).map_err(Error::io(format!(
            "opening the memory of SysV shm segment {id}"
        )))?;
        match raw {
            Some(bytes) => {
                let n = (e.size as usize).min(bytes.len());
                f.write_all_at(&bytes[..n], 0)
                    .map_err(Error::io(format!("filling SysV shm segment {id}")))?;
            }
            None => crate::memfd::fill_shmem(dir, d.id, e.size, &f, false, || {
                format!("pages past the end of SysV shm segment {id}")
            })?,
        }
    }
    Ok(())
}

/// The segments of namespace `ns` that were removed while attached: made
/// again alive (the processes attach them), they are removed again once
/// every process is ([`remove_in`]).
pub fn removed(dir: &ImageDir, ns: u32) -> Result<Vec<i32>> {
    let file = ImageFile::IpcShm(ns.into());
    let Some(mut r) = dir.reader_if_exists(file)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    while let Some(e) = r.read_next::<pb::IpcShmEntry>()? {
        if e.in_pagemaps != Some(true) {
            r.read_payload(e.size.next_multiple_of(4))?;
        }
        if e.desc.mode & SHM_DEST != 0 {
            out.push(e.desc.id as i32);
        }
    }
    Ok(out)
}

/// Removes segments `ids` (`IPC_RMID`) of the IPC namespace open as
/// `ns`, from a thread that joins it.
pub fn remove_in(ns: &std::fs::File, ids: &[i32]) -> Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(ns),
                Some(rustix::thread::LinkNameSpaceType::InterProcessCommunication),
            )
            .map_err(|e| Error::host("joining the container's IPC namespace")(e.into()))?;
            for &id in ids {
                sys::shm_remove(id).map_err(Error::io(format!(
                    "removing SysV shm segment {id} again (IPC_RMID)"
                )))?;
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::unsupported(
                "the thread removing SysV segments panicked",
            ))
        })
    })
}

fn sem(dir: &ImageDir, ns: u32, m: &Maker<'_>) -> Result<()> {
    let file = ImageFile::IpcSem(ns.into());
    let Some(mut r) = dir.reader_if_exists(file)? else {
        return Ok(());
    };
    while let Some(e) = r.read_next::<pb::IpcSemEntry>()? {
        let d = &e.desc;
        if e.nsems == 0 || e.nsems > MAX_NSEMS {
            return Err(Error::invalid(
                file.name(),
                format!("semaphore set {} of {} semaphores", d.id, e.nsems),
            ));
        }
        let bytes = r.read_payload((u64::from(e.nsems) * 2).next_multiple_of(8))?;
        let values: Vec<u16> = bytes
            .chunks_exact(2)
            .take(e.nsems as usize)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        let id = m.make("sem", d.id, || {
            sys::sem_create(d.key as i32, e.nsems, d.mode & 0o777).map_err(Error::io(format!(
                "making SysV semaphore set {} of {}",
                d.id, e.nsems
            )))
        })?;
        got_id(&file, "semaphore set", d.id, id)?;
        let (uid, gid) = m.owner(&file, &format!("semaphore set {}", d.id), d.uid, d.gid)?;
        sys::sem_set_owner(id, uid, gid).map_err(Error::io(format!(
            "setting the owner of SysV semaphore set {id}"
        )))?;
        sys::sem_set_values(id, &values).map_err(Error::io(format!(
            "setting the values of SysV semaphore set {id}"
        )))?;
    }
    Ok(())
}

fn msg(dir: &ImageDir, ns: u32, m: &Maker<'_>) -> Result<()> {
    let file = ImageFile::IpcMsg(ns.into());
    let Some(mut r) = dir.reader_if_exists(file)? else {
        return Ok(());
    };
    while let Some(e) = r.read_next::<pb::IpcMsgEntry>()? {
        let d = &e.desc;
        let id = m.make("msg", d.id, || {
            sys::msg_create(d.key as i32, d.mode & 0o777)
                .map_err(Error::io(format!("making SysV message queue {}", d.id)))
        })?;
        got_id(&file, "message queue", d.id, id)?;
        let qbytes = if e.qbytes == 0 { None } else { Some(e.qbytes) };
        let (uid, gid) = m.owner(&file, &format!("message queue {}", d.id), d.uid, d.gid)?;
        sys::msg_set(id, uid, gid, qbytes)
            .map_err(Error::io(format!("setting up SysV message queue {id}")))?;
        for i in 0..e.qnum {
            let m: pb::IpcMsg = r.expect_next()?;
            if m.msize > MAX_MSG {
                return Err(Error::invalid(
                    file.name(),
                    format!("message {i} of queue {id} of {} bytes", m.msize),
                ));
            }
            let text = r.read_payload(u64::from(m.msize).next_multiple_of(8))?;
            sys::msg_send(id, m.mtype as i64, &text[..m.msize as usize]).map_err(Error::io(
                format!("sending message {i} to SysV message queue {id}"),
            ))?;
        }
    }
    Ok(())
}
