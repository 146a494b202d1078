//! `inventory.img`: what kind of dump this is, and rcriu's own ids (the
//! namespaces and cgroup set a restore compares the tasks' with).

use rcriu_images::pb;

/// CRIU's image version (`CRTOOLS_IMAGES_V1_1`).
pub const IMG_VERSION: u32 = 2;

/// The security module the host runs, as CRIU names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lsm {
    None,
    Selinux,
    Apparmor,
}

impl Lsm {
    /// The host's module, as CRIU's `host_lsm_type` finds it.
    pub fn host() -> Lsm {
        if std::path::Path::new("/sys/kernel/security/apparmor").exists() {
            return Lsm::Apparmor;
        }
        if std::fs::read_to_string("/sys/fs/selinux/enforce").is_ok() {
            return Lsm::Selinux;
        }
        Lsm::None
    }

    fn pb(self) -> pb::Lsmtype {
        match self {
            Lsm::None => pb::Lsmtype::NoLsm,
            Lsm::Selinux => pb::Lsmtype::Selinux,
            Lsm::Apparmor => pb::Lsmtype::Apparmor,
        }
    }
}

/// A fresh id for this run (CRIU's `criu_run_id`, a UUID).
pub fn run_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!(
                "{:08x}-0000-4000-8000-{:012x}",
                std::process::id(),
                t & 0xffff_ffff_ffff
            )
        })
}

/// What the inventory says of the dump's sockets: the network lock's
/// method and this run's id (the name of an nftables lock), and
/// `--tcp-close`.
pub fn sockets(e: &mut pb::InventoryEntry, o: &crate::sockets::Options, run_id: &str) {
    e.network_lock_method = Some(o.network_lock.code());
    e.dump_criu_run_id = Some(run_id.as_bytes().to_vec());
    if o.tcp_close {
        e.tcp_close = Some(true);
    }
}

/// The inventory entry.
pub fn entry(root_ids: pb::TaskKobjIdsEntry, root_cg_set: u32, lsm: Lsm) -> pb::InventoryEntry {
    pb::InventoryEntry {
        img_version: IMG_VERSION,
        fdinfo_per_id: Some(true),
        root_ids: Some(root_ids),
        ns_per_id: Some(true),
        root_cg_set: Some(root_cg_set),
        lsmtype: Some(lsm.pb() as i32),
        dump_uptime: None,
        pre_dump_mode: None,
        tcp_close: None,
        // iptables, criu's default.
        network_lock_method: Some(0),
        plugins_entry: Some(pb::PluginsEntry::default()),
        dump_criu_run_id: Some(run_id().into_bytes()),
        allow_uprobes: None,
    }
}
