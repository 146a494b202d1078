//! The RPC's `criu_opts` into [`Options`], as criu's service reads them
//! (`setup_opts_from_req` in `criu/cr-service.c`): a field the request
//! carries overrides what the configuration files said.
//!
//! What depends on the connection is left to the service: the fds of the
//! caller (`images_dir_fd`, `work_dir_fd`, `status_fd`) become
//! `/proc/<caller>/fd/N` paths here, and the service opens them; the log
//! (`log_file`, `log_level`, `log_to_stderr`), `notify_scripts` and
//! `config_file` are its own business.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use rcriu_images::rpc::{CriuCgMode, CriuNetworkLockMethod, CriuOpts, CriuPreDumpMode};

use crate::Error;
use crate::options::*;

/// The caller of the RPC.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// Its pid (from SO_PEERCRED).
    pub pid: i32,
    /// Whether this is `swrk`, the caller's own worker (`rst_sibling` and
    /// `inherit_fd` are refused by a standalone service).
    pub swrk: bool,
}

impl Peer {
    /// The path of the caller's fd `fd`, as seen from here.
    pub fn fd_path(&self, fd: i32) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{fd}", self.pid))
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn path(b: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(b.to_vec()))
}

fn bad(what: impl Into<String>) -> Error {
    Error::Rpc(what.into())
}

/// Applies a request's options to `o`. The images directory is the
/// caller's `images_dir_fd` (or `images_dir` when that is -1); a dump
/// without `pid` dumps the caller.
pub fn apply(r: &CriuOpts, peer: Peer, o: &mut Options) -> Result<(), Error> {
    if r.leave_running == Some(true) {
        o.final_state = FinalState::Alive;
    }
    if r.leave_stopped == Some(true) {
        o.final_state = FinalState::Stopped;
    }
    o.tree = Some(r.pid.unwrap_or(peer.pid));
    if let Some(v) = r.ext_unix_sk {
        o.ext_unix_sk = v;
        o.unix_sk_ids.extend(r.unix_sk_ino.iter().map(|u| u.inode));
    }
    if let Some(root) = &r.root {
        o.root = Some(path(root));
    }
    if let Some(v) = r.rst_sibling {
        if !peer.swrk {
            return Err(bad("rst_sibling is not allowed in standalone service"));
        }
        o.restore_sibling = v;
    }
    let flags: [(Option<bool>, &mut bool); 14] = [
        (r.tcp_established, &mut o.tcp_established),
        (r.tcp_skip_in_flight, &mut o.tcp_skip_in_flight),
        (r.tcp_close, &mut o.tcp_close),
        (r.weak_sysctls, &mut o.weak_sysctls),
        (r.evasive_devices, &mut o.evasive_devices),
        (r.shell_job, &mut o.shell_job),
        (r.skip_file_rwx_check, &mut o.skip_file_rwx_check),
        (r.file_locks, &mut o.file_locks),
        (r.track_mem, &mut o.track_mem),
        (r.link_remap, &mut o.link_remap),
        (r.auto_dedup, &mut o.auto_dedup),
        (r.force_irmap, &mut o.force_irmap),
        (r.lazy_pages, &mut o.lazy_pages),
        (r.unprivileged, &mut o.unprivileged),
    ];
    for (v, field) in flags {
        if let Some(v) = v {
            *field = v;
        }
    }
    if !r.exec_cmd.is_empty() {
        o.exec_command = r
            .exec_cmd
            .iter()
            .map(|a| OsString::from_vec(a.clone()))
            .collect();
    }
    if let Some(m) = r.pre_dump_mode {
        o.pre_dump_mode = match CriuPreDumpMode::try_from(m) {
            Ok(CriuPreDumpMode::Splice) => PreDumpMode::Splice,
            Ok(CriuPreDumpMode::VmRead) => PreDumpMode::Read,
            Err(_) => return Err(bad(format!("unknown pre_dump_mode {m}"))),
        };
    }
    if let Some(m) = r.network_lock {
        o.network_lock = match CriuNetworkLockMethod::try_from(m) {
            Ok(CriuNetworkLockMethod::Iptables) => NetworkLock::Iptables,
            Ok(CriuNetworkLockMethod::Nftables) => NetworkLock::Nftables,
            Ok(CriuNetworkLockMethod::Skip) => NetworkLock::Skip,
            Err(_) => return Err(bad(format!("unknown network_lock {m}"))),
        };
    }
    if let Some(ps) = &r.ps {
        o.port = ps.port.unwrap_or(0) as u16;
        if !o.lazy_pages {
            o.page_server = true;
            o.address = ps.address.as_deref().map(text);
            if let Some(fd) = ps.fd {
                if !peer.swrk {
                    return Err(bad("a page server fd is not allowed in standalone service"));
                }
                o.ps_socket = Some(fd);
            }
        }
    }
    for v in &r.veths {
        o.veth_pairs.push((text(&v.if_in), text(&v.if_out)));
    }
    for m in &r.ext_mnt {
        o.ext_mount_map.push((text(&m.key), text(&m.val)));
    }
    for j in &r.join_ns {
        o.join_ns.push(JoinNs {
            ns: text(&j.ns),
            file: text(&j.ns_file),
            extra: j.extra_opt.as_deref().map(text),
        });
    }
    if !r.inherit_fd.is_empty() && !peer.swrk {
        return Err(bad("inherit_fd is not allowed in standalone service"));
    }
    for i in &r.inherit_fd {
        o.inherit_fds.push(InheritFd {
            fd: i.fd,
            key: text(&i.key),
        });
    }
    o.external.extend(r.external.iter().map(|e| text(e)));
    for c in &r.cg_root {
        o.cgroup_roots.push(CgroupRoot {
            controller: c.ctrl.as_deref().map(text),
            path: text(&c.path),
        });
    }
    o.enable_fs.extend(r.enable_fs.iter().map(|e| text(e)));
    o.skip_mnt.extend(r.skip_mnt.iter().map(|e| text(e)));
    if let Some(cap) = r.cpu_cap {
        o.cpu_cap = cap | cpu_cap::IMAGE;
    }
    if let Some(m) = r.manage_cgroups {
        o.manage_cgroups = if m {
            CgroupMode::Soft
        } else {
            CgroupMode::Ignore
        };
    }
    if let Some(m) = r.manage_cgroups_mode {
        o.manage_cgroups = match CriuCgMode::try_from(m) {
            Ok(CriuCgMode::Ignore) => CgroupMode::Ignore,
            Ok(CriuCgMode::CgNone) => CgroupMode::None,
            Ok(CriuCgMode::Props) => CgroupMode::Props,
            Ok(CriuCgMode::Soft) => CgroupMode::Soft,
            Ok(CriuCgMode::Full) => CgroupMode::Full,
            Ok(CriuCgMode::Strict) => CgroupMode::Strict,
            Ok(CriuCgMode::Default) => CgroupMode::Default,
            Err(_) => return Err(bad(format!("unknown manage_cgroups_mode {m}"))),
        };
    }
    if let Some(f) = &r.freeze_cgroup {
        o.freeze_cgroup = Some(path(f));
    }
    if let Some(p) = &r.lsm_profile {
        o.lsm_profile = Some(text(p));
    }
    if let Some(c) = &r.lsm_mount_context {
        o.lsm_mount_context = Some(text(c));
    }
    if let Some(t) = r.timeout {
        o.timeout = t;
    }
    if let Some(p) = &r.cgroup_props {
        o.cgroup_props = Some(text(p));
    }
    if let Some(p) = &r.cgroup_props_file {
        o.cgroup_props_file = Some(text(p));
    }
    o.cgroup_dump_controllers
        .extend(r.cgroup_dump_controller.iter().map(|c| text(c)));
    if let Some(y) = &r.cgroup_yard {
        o.cgroup_yard = Some(text(y));
    }
    for (v, field) in [
        (&r.tls_cacert, &mut o.tls_cacert),
        (&r.tls_cacrl, &mut o.tls_cacrl),
        (&r.tls_cert, &mut o.tls_cert),
        (&r.tls_key, &mut o.tls_key),
    ] {
        if let Some(v) = v {
            *field = Some(path(v));
        }
    }
    if r.tls == Some(true) {
        o.tls = true;
    }
    if r.tls_no_cn_verify == Some(true) {
        o.tls_no_cn_verify = true;
    }
    if let Some(v) = r.auto_ext_mnt {
        o.auto_ext_mnt = v;
    }
    if let Some(v) = r.ext_sharing {
        o.enable_external_sharing = v;
    }
    if let Some(v) = r.ext_masters {
        o.enable_external_masters = v;
    }
    if let Some(g) = r.ghost_limit {
        o.ghost_limit = u64::from(g);
    }
    if let Some(ns) = r.empty_ns {
        if ns & !CLONE_NEWNET != 0 {
            return Err(bad(format!(
                "empty_ns {ns:#x}: only the network namespace may be empty"
            )));
        }
        o.empty_ns = ns;
    }
    if r.orphan_pts_master == Some(true) {
        o.orphan_pts_master = true;
    }
    if let Some(v) = r.display_stats {
        o.display_stats = v;
    }
    if let Some(p) = &r.parent_img {
        o.prev_images_dir = Some(path(p));
    }
    o.irmap_scan_paths
        .extend(r.irmap_scan_paths.iter().map(|p| text(p)));
    if r.pidfd_store_sk.is_some() {
        o.pidfd_store = true;
    }
    if r.mntns_compat_mode == Some(true) {
        o.mntns_compat_mode = Some(true);
    }
    Ok(())
}

/// The images directory a request names: the caller's `images_dir_fd`,
/// else `images_dir`; `None` when it names neither.
pub fn images_dir(r: &CriuOpts, peer: Peer) -> Option<PathBuf> {
    if r.images_dir_fd != -1 {
        Some(peer.fd_path(r.images_dir_fd))
    } else {
        r.images_dir.as_deref().map(path)
    }
}

/// The work directory a request names (its `work_dir_fd`).
pub fn work_dir(r: &CriuOpts, peer: Peer) -> Option<PathBuf> {
    r.work_dir_fd.map(|fd| peer.fd_path(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer {
            pid: 77,
            swrk: true,
        }
    }

    #[test]
    fn fields_land_where_the_command_line_puts_them() {
        let r = CriuOpts {
            images_dir_fd: 5,
            leave_running: Some(true),
            shell_job: Some(true),
            tcp_established: Some(true),
            ghost_limit: Some(4096),
            manage_cgroups: Some(true),
            external: vec![b"mnt[/a]:b".to_vec()],
            empty_ns: Some(CLONE_NEWNET),
            freeze_cgroup: Some(b"/sys/fs/cgroup/x".to_vec()),
            ..Default::default()
        };
        let mut o = Options::default();
        apply(&r, peer(), &mut o).unwrap();
        assert_eq!(o.final_state, FinalState::Alive);
        assert!(o.shell_job && o.tcp_established);
        assert_eq!(o.ghost_limit, 4096);
        assert_eq!(o.manage_cgroups, CgroupMode::Soft);
        assert_eq!(o.external, ["mnt[/a]:b"]);
        assert_eq!(o.empty_ns, CLONE_NEWNET);
        // No pid: the caller dumps itself.
        assert_eq!(o.tree, Some(77));
        assert_eq!(images_dir(&r, peer()), Some(PathBuf::from("/proc/77/fd/5")));
    }

    #[test]
    fn unset_fields_keep_what_the_files_said() {
        let mut o = Options {
            shell_job: true,
            ghost_limit: 7,
            ..Options::default()
        };
        apply(&CriuOpts::default(), peer(), &mut o).unwrap();
        assert!(o.shell_job);
        assert_eq!(o.ghost_limit, 7);
    }

    #[test]
    fn refusals_as_criu() {
        let standalone = Peer {
            pid: 1,
            swrk: false,
        };
        let r = CriuOpts {
            rst_sibling: Some(true),
            ..Default::default()
        };
        assert!(apply(&r, standalone, &mut Options::default()).is_err());
        assert!(apply(&r, peer(), &mut Options::default()).is_ok());
        let r = CriuOpts {
            empty_ns: Some(0x2000_0000),
            ..Default::default()
        };
        assert!(apply(&r, peer(), &mut Options::default()).is_err());
    }
}
