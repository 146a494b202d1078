//! A container's IPC namespace: its limits (the `kernel.sem`, `msg*`,
//! `shm*` and `fs.mqueue.*` sysctls) as `ipcns-var-<id>.img`, as CRIU
//! writes them. SysV objects and POSIX message queues are not dumped
//! yet: a namespace holding any is refused by name.

use std::path::Path;

use rcriu_images::pb;

fn read(name: &str) -> Result<String, String> {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("reading /proc/sys/{name}: {e}"))
}

fn num<T: std::str::FromStr>(name: &str) -> Result<T, String> {
    let s = read(name)?;
    s.parse()
        .map_err(|_| format!("/proc/sys/{name} holds {s:?}, not a number"))
}

/// The limits of the IPC namespace the calling thread is in, or what it
/// holds that cannot be dumped yet.
pub fn read_here() -> Result<pb::IpcVarEntry, String> {
    for kind in ["shm", "sem", "msg"] {
        let path = format!("/proc/sysvipc/{kind}");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
        let objects = text
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count();
        if objects > 0 {
            return Err(format!(
                "{objects} SysV {kind} object(s) in its IPC namespace (not dumped yet)"
            ));
        }
    }
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
        ..Default::default()
    })
}
