//! `pstree.img`: the process tree, here one process and its one thread.

use rcriu_images::pb;
use rcriu_proc::Pid;

pub fn entry(pid: Pid, pgid: Pid, sid: Pid) -> pb::PstreeEntry {
    pb::PstreeEntry {
        pid: pid as u32,
        ppid: 0,
        pgid: pgid as u32,
        sid: sid as u32,
        threads: vec![pid as u32],
    }
}
