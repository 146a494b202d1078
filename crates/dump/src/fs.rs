//! `fs-PID.img`: the task's cwd and root (as file ids) and umask.

use rcriu_images::pb;

pub fn entry(cwd_id: u32, root_id: u32, umask: u32) -> pb::FsEntry {
    pb::FsEntry {
        cwd_id,
        root_id,
        umask: Some(umask),
    }
}
