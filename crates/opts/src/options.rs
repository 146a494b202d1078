//! The typed options: everything criu 4.2's `struct cr_options` holds
//! that a caller can set, with criu's defaults. The command line
//! ([`crate::cli`]), the configuration files ([`crate::config`]) and the
//! RPC's `criu_opts` ([`crate::rpc`]) all fill this one struct; which of
//! its settings rcriu honours is [`crate::support`]'s table.

use std::path::PathBuf;

/// criu's default verbosity (`-v2`: errors and warnings).
pub const DEFAULT_LOG_LEVEL: i32 = 2;
/// criu's default `--ghost-limit`: 1 MiB.
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;
/// criu's default `--timeout`, in seconds.
pub const DEFAULT_TIMEOUT: u32 = 10;
/// `CLONE_NEWNET`, the only namespace `--empty-ns` takes.
pub const CLONE_NEWNET: u32 = 0x4000_0000;

/// criu's `--cpu-cap` bits (`criu/include/cpu.h`).
pub mod cpu_cap {
    pub const NONE: u32 = 0;
    pub const FPU: u32 = 1 << 0;
    pub const CPU: u32 = 1 << 1;
    pub const INS: u32 = 1 << 2;
    pub const IMAGE: u32 = 1 << 3;
    pub const ALL: u32 = FPU | CPU | INS;
    /// What criu checks unless told: FPU and instructions.
    pub const DEFAULT: u32 = FPU | INS;
}

/// What becomes of the tasks after a dump (or of the restored ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FinalState {
    /// Killed once dumped (criu's default).
    #[default]
    Dead,
    /// Left running (`-R`, `--leave-running`).
    Alive,
    /// Left stopped (`-s`, `--leave-stopped`).
    Stopped,
}

/// `--manage-cgroups[=MODE]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupMode {
    /// Not given: criu's default, which is "soft".
    #[default]
    Default,
    None,
    Props,
    Soft,
    Full,
    Strict,
    Ignore,
}

/// `--network-lock METHOD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkLock {
    #[default]
    Iptables,
    Nftables,
    Skip,
}

/// `--pre-dump-mode MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreDumpMode {
    #[default]
    Splice,
    Read,
}

/// `--file-validation METHOD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileValidation {
    /// Not given: criu's default, which is by build-id.
    #[default]
    Default,
    FileSize,
    BuildId,
}

/// `--inherit-fd fd[N]:KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InheritFd {
    pub fd: i32,
    pub key: String,
}

/// `--join-ns NS:FILE[,EXTRA]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinNs {
    pub ns: String,
    pub file: String,
    pub extra: Option<String>,
}

/// `--cgroup-root [CONTROLLER:]PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoot {
    pub controller: Option<String>,
    pub path: String,
}

/// Every option of criu 4.2, typed, with criu's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    // What, where, how loud.
    /// `-t PID`.
    pub tree: Option<i32>,
    pub final_state: FinalState,
    /// `-D DIR` (`.` when absent).
    pub images_dir: Option<PathBuf>,
    /// `-W DIR` (the images directory when absent).
    pub work_dir: Option<PathBuf>,
    /// `-o FILE`, relative to the work directory; `-` is standard output.
    pub log_file: Option<PathBuf>,
    /// `-v`: 0 messages only, 1 errors, 2 warnings, 3 information (and
    /// time stamps), 4 and above debug.
    pub log_level: i32,
    pub log_pid: bool,
    pub display_stats: bool,
    pub pidfile: Option<PathBuf>,
    /// rcriu's `--encrypt`: a dump's images encrypted (and authenticated)
    /// with the key of `--encrypt-key-file` or `--encrypt-key-fd`; a
    /// restore of encrypted images needs one of those.
    pub encrypt: bool,
    /// `--encrypt-key-file PATH`: 32 raw bytes or 64 hex digits.
    pub encrypt_key_file: Option<PathBuf>,
    /// `--encrypt-key-fd FD`: the key read from descriptor FD.
    pub encrypt_key_fd: Option<i32>,
    /// `--status-fd FD`.
    pub status_fd: Option<i32>,
    /// `--action-script FILE`, in the order given.
    pub action_scripts: Vec<PathBuf>,
    /// `--close FD`, which criu closes as it reads the option.
    pub close_fds: Vec<i32>,

    // Restore.
    pub restore_detached: bool,
    pub restore_sibling: bool,
    pub shell_job: bool,
    /// `--exec-cmd`: the operands after the command are a command to
    /// exec once restored.
    pub exec_cmd: bool,
    /// The command to exec once restored (the operands after `--exec-cmd`,
    /// or the RPC's `exec_cmd`).
    pub exec_command: Vec<std::ffi::OsString>,
    pub root: Option<PathBuf>,
    pub inherit_fds: Vec<InheritFd>,
    pub join_ns: Vec<JoinNs>,
    /// `--empty-ns net`: namespace flags.
    pub empty_ns: u32,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
    pub weak_sysctls: bool,
    pub file_validation: FileValidation,
    pub skip_file_rwx_check: bool,
    /// `--[no-]mntns-compat-mode`, when given.
    pub mntns_compat_mode: Option<bool>,

    // Resources.
    /// `-x`, `--ext-unix-sk[=INO,...]`.
    pub ext_unix_sk: bool,
    pub unix_sk_ids: Vec<u32>,
    pub tcp_established: bool,
    pub tcp_skip_in_flight: bool,
    pub tcp_close: bool,
    pub evasive_devices: bool,
    pub link_remap: bool,
    pub file_locks: bool,
    pub ghost_limit: u64,
    /// `--[no-]ghost-fiemap`, when given.
    pub ghost_fiemap: Option<bool>,
    pub force_irmap: bool,
    pub irmap_scan_paths: Vec<String>,
    pub external: Vec<String>,
    pub veth_pairs: Vec<(String, String)>,
    /// `-M KEY:VAL`.
    pub ext_mount_map: Vec<(String, String)>,
    /// `-M auto`.
    pub auto_ext_mnt: bool,
    pub enable_external_sharing: bool,
    pub enable_external_masters: bool,
    pub skip_mnt: Vec<String>,
    pub enable_fs: Vec<String>,
    pub allow_uprobes: bool,
    /// RPC only: the pty masters of orphaned slaves go to the caller.
    pub orphan_pts_master: bool,
    /// RPC only: `pidfd_store_sk`, a socket keeping pidfds between
    /// pre-dumps.
    pub pidfd_store: bool,

    // Cgroups.
    pub manage_cgroups: CgroupMode,
    pub cgroup_roots: Vec<CgroupRoot>,
    pub cgroup_props: Option<String>,
    pub cgroup_props_file: Option<String>,
    pub cgroup_dump_controllers: Vec<String>,
    pub cgroup_yard: Option<String>,
    pub freeze_cgroup: Option<PathBuf>,

    // Collecting.
    pub timeout: u32,
    pub network_lock: NetworkLock,
    /// `--network-lock` was given (criu warns that restore ignores it).
    pub network_lock_given: bool,
    pub cpu_cap: u32,
    /// `-L DIR`: criu's plugins.
    pub libdir: Option<PathBuf>,
    pub unprivileged: bool,
    pub deprecated: bool,

    // Memory.
    pub track_mem: bool,
    pub prev_images_dir: Option<PathBuf>,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
    pub page_server: bool,
    pub address: Option<String>,
    pub port: u16,
    pub ps_socket: Option<i32>,
    pub pre_dump_mode: PreDumpMode,
    pub stream: bool,
    pub tls: bool,
    pub tls_no_cn_verify: bool,
    pub tls_cacert: Option<PathBuf>,
    pub tls_cacrl: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,

    // check.
    pub check_extra: bool,
    pub check_experimental: bool,
    /// `--feature NAME`.
    pub feature: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            tree: None,
            final_state: FinalState::Dead,
            images_dir: None,
            work_dir: None,
            log_file: None,
            log_level: DEFAULT_LOG_LEVEL,
            log_pid: false,
            display_stats: false,
            pidfile: None,
            encrypt: false,
            encrypt_key_file: None,
            encrypt_key_fd: None,
            status_fd: None,
            action_scripts: Vec::new(),
            close_fds: Vec::new(),
            restore_detached: false,
            restore_sibling: false,
            shell_job: false,
            exec_cmd: false,
            exec_command: Vec::new(),
            root: None,
            inherit_fds: Vec::new(),
            join_ns: Vec::new(),
            empty_ns: 0,
            lsm_profile: None,
            lsm_mount_context: None,
            weak_sysctls: false,
            file_validation: FileValidation::Default,
            skip_file_rwx_check: false,
            mntns_compat_mode: None,
            ext_unix_sk: false,
            unix_sk_ids: Vec::new(),
            tcp_established: false,
            tcp_skip_in_flight: false,
            tcp_close: false,
            evasive_devices: false,
            link_remap: false,
            file_locks: false,
            ghost_limit: DEFAULT_GHOST_LIMIT,
            ghost_fiemap: None,
            force_irmap: false,
            irmap_scan_paths: Vec::new(),
            external: Vec::new(),
            veth_pairs: Vec::new(),
            ext_mount_map: Vec::new(),
            auto_ext_mnt: false,
            enable_external_sharing: false,
            enable_external_masters: false,
            skip_mnt: Vec::new(),
            enable_fs: Vec::new(),
            allow_uprobes: false,
            orphan_pts_master: false,
            pidfd_store: false,
            manage_cgroups: CgroupMode::Default,
            cgroup_roots: Vec::new(),
            cgroup_props: None,
            cgroup_props_file: None,
            cgroup_dump_controllers: Vec::new(),
            cgroup_yard: None,
            freeze_cgroup: None,
            timeout: DEFAULT_TIMEOUT,
            network_lock: NetworkLock::Iptables,
            network_lock_given: false,
            cpu_cap: cpu_cap::DEFAULT,
            libdir: None,
            unprivileged: false,
            deprecated: false,
            track_mem: false,
            prev_images_dir: None,
            auto_dedup: false,
            lazy_pages: false,
            page_server: false,
            address: None,
            port: 0,
            ps_socket: None,
            pre_dump_mode: PreDumpMode::Splice,
            stream: false,
            tls: false,
            tls_no_cn_verify: false,
            tls_cacert: None,
            tls_cacrl: None,
            tls_cert: None,
            tls_key: None,
            check_extra: false,
            check_experimental: false,
            feature: None,
        }
    }
}

/// An `--external net[INODE]:KEY`: the network namespace of that inode
/// is the caller's; the restore joins the one given as `KEY`.
pub fn external_net(e: &str) -> Option<(u64, &str)> {
    let rest = e.strip_prefix("net[")?;
    let (ino, key) = rest.split_once("]:")?;
    let ino = ino.parse().ok()?;
    (!key.is_empty()).then_some((ino, key))
}

/// An `--external veth[IN]:OUT[@BRIDGE]`: the veth `IN` of a network
/// namespace restored has its peer `OUT` outside (put in `BRIDGE`).
pub fn external_veth(e: &str) -> Option<(&str, &str)> {
    let rest = e.strip_prefix("veth[")?;
    let (inside, out) = rest.split_once("]:")?;
    (!inside.is_empty() && !out.is_empty()).then_some((inside, out))
}

impl Options {
    /// The outside ends of veths (`veth[IN]:OUT[@BRIDGE]`, and the older
    /// `--veth-pair IN=OUT`), by their inside name.
    pub fn external_veths(&self) -> Vec<(String, String)> {
        self.external
            .iter()
            .filter_map(|e| external_veth(e))
            .map(|(i, o)| (i.to_string(), o.to_string()))
            .chain(self.veth_pairs.iter().cloned())
            .collect()
    }

    /// The network namespaces named external (`net[INODE]:KEY`).
    pub fn external_nets(&self) -> Vec<(u64, String)> {
        self.external
            .iter()
            .filter_map(|e| external_net(e))
            .map(|(i, k)| (i, k.to_string()))
            .collect()
    }

    /// The images directory: `-D`, or the current directory.
    pub fn images_dir(&self) -> PathBuf {
        self.images_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// The work directory (`-W`), where the log, the statistics and
    /// relative pid files go: the images directory unless told.
    pub fn work_dir(&self) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(|| self.images_dir())
    }

    /// `path` as criu opens it once it has changed into the work
    /// directory: relative paths are the work directory's.
    pub fn in_work_dir(&self, path: &std::path::Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.work_dir().join(path)
        }
    }
}

/// C's `atoi`, as criu reads numbers: leading blanks, a sign, digits up
/// to the first non-digit (none: 0), clamped as `strtol` does then cut to
/// 32 bits.
pub fn atoi(s: &str) -> i32 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    let v = if neg { v.saturating_neg() } else { v };
    v as i32
}

/// criu's `parse_size`: `atol` of the text, times 1024, 1024² or 1024³
/// when the text holds a K, M or G anywhere (the first of K, M, G
/// checked in that order).
pub fn parse_size(s: &str) -> u64 {
    let n = {
        let t = s.trim_start();
        let (neg, digits) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let mut v: i64 = 0;
        for b in digits.bytes().take_while(u8::is_ascii_digit) {
            v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
        }
        if neg { v.saturating_neg() } else { v }
    };
    let mult: i64 = if s.contains('K') {
        1 << 10
    } else if s.contains('M') {
        1 << 20
    } else if s.contains('G') {
        1 << 30
    } else {
        1
    };
    // size_t of a (long) product: wraps as C's cast does.
    n.wrapping_mul(mult) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_network_namespaces() {
        assert_eq!(
            external_net("net[4026532451]:extRootNetNS"),
            Some((4026532451, "extRootNetNS"))
        );
        for e in ["mnt[/a]:b", "net[x]:k", "net[1]:", "net[1]k"] {
            assert_eq!(external_net(e), None, "{e}");
        }
    }

    #[test]
    fn atoi_as_c() {
        assert_eq!(atoi("42"), 42);
        assert_eq!(atoi("  -7x"), -7);
        assert_eq!(atoi("erbosity=0"), 0);
        assert_eq!(atoi(""), 0);
        assert_eq!(atoi("99999999999"), 99999999999i64 as i32);
    }

    #[test]
    fn sizes_as_criu() {
        assert_eq!(parse_size("4096"), 4096);
        assert_eq!(parse_size("64K"), 64 << 10);
        assert_eq!(parse_size("8M"), 8 << 20);
        assert_eq!(parse_size("1G"), 1 << 30);
        assert_eq!(parse_size("M"), 0);
        assert_eq!(parse_size("1T"), 1);
    }

    #[test]
    fn work_dir_defaults_to_images_dir() {
        let mut o = Options::default();
        assert_eq!(o.work_dir(), PathBuf::from("."));
        o.images_dir = Some("/d".into());
        assert_eq!(o.work_dir(), PathBuf::from("/d"));
        assert_eq!(o.in_work_dir("log".as_ref()), PathBuf::from("/d/log"));
        o.work_dir = Some("/w".into());
        assert_eq!(o.in_work_dir("/abs".as_ref()), PathBuf::from("/abs"));
    }
}
