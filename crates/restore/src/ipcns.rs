//! A container's IPC namespace made again: its limits
//! (`ipcns-var-<id>.img`), written to the sysctls of the namespace the
//! calling thread is in, as CRIU does.

use rcriu_images::pb;

use crate::{Error, Result};

fn write(name: &str, value: String) -> Result<()> {
    let path = format!("/proc/sys/{name}");
    std::fs::write(&path, value).map_err(Error::file("writing", path))
}

/// Sets the limits of the calling thread's IPC namespace.
pub fn set_here(e: &pb::IpcVarEntry) -> Result<()> {
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
