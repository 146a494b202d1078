//! `pstree.img`: the process tree, here one process and its threads.

use rcriu_images::pb;
use rcriu_proc::Pid;

/// The entry of process `pid` with its `threads`, the leader first.
pub fn entry(pid: Pid, pgid: Pid, sid: Pid, threads: Vec<u32>) -> pb::PstreeEntry {
    pb::PstreeEntry {
        pid: pid as u32,
        ppid: 0,
        pgid: pgid as u32,
        sid: sid as u32,
        threads,
        ..Default::default()
    }
}
