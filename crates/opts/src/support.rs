//! Which of criu's options rcriu honours: one table, one line per option,
//! to flip as the engine grows.
//!
//! - [`Status::Honoured`]: rcriu does what criu does with it.
//! - [`Status::NoOp`]: accepted; by design it changes nothing in rcriu
//!   (the entry says why).
//! - [`Status::NotYet`]: what it asks for is not done yet; a dump or
//!   restore that asks for it is refused, naming the option (never
//!   accepted and ignored).
//!
//! An option "asks" when it differs from criu's default in a way criu
//! acts on (`--no-tcp-established` asks for nothing). The options only
//! matter to the commands that dump or restore: `check`, say, takes any.

use crate::Error;
use crate::options::*;

/// What rcriu does with an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Honoured,
    /// Accepted, changing nothing in rcriu by design: why.
    NoOp(&'static str),
    /// Refused when asked for: what rcriu cannot do yet.
    NotYet(&'static str),
}

/// The commands that take options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Dump,
    PreDump,
    Restore,
    Check,
    PageServer,
    LazyPages,
    Service,
    Dedup,
    CpuinfoDump,
    CpuinfoCheck,
}

impl Command {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Command::Dump => "dump",
            Command::PreDump => "pre-dump",
            Command::Restore => "restore",
            Command::Check => "check",
            Command::PageServer => "page-server",
            Command::LazyPages => "lazy-pages",
            Command::Service => "service",
            Command::Dedup => "dedup",
            Command::CpuinfoDump => "cpuinfo dump",
            Command::CpuinfoCheck => "cpuinfo check",
        }
    }

    fn dumps(self) -> bool {
        matches!(self, Command::Dump | Command::PreDump)
    }
}

/// How the options came: the command line (and configuration files) or
/// the RPC, to name them as the caller wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Cli,
    Rpc,
}

/// One option.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The command line's spelling (and the short one).
    pub cli: &'static str,
    /// The RPC's field, or "" when it has none.
    pub rpc: &'static str,
    pub status: Status,
    /// Whether the options ask for it, in `cmd`.
    pub asked: fn(&Options, Command) -> bool,
}

use Status::*;

const fn e(
    cli: &'static str,
    rpc: &'static str,
    status: Status,
    asked: fn(&Options, Command) -> bool,
) -> Entry {
    Entry {
        cli,
        rpc,
        status,
        asked,
    }
}

fn never(_: &Options, _: Command) -> bool {
    false
}

/// Every option of criu 4.2 (and the RPC's own fields).
pub static TABLE: &[Entry] = &[
    // What, where, how loud.
    e("-t, --tree", "pid", Honoured, never),
    e("-R, --leave-running", "leave_running", Honoured, never),
    e("-s, --leave-stopped", "leave_stopped", Honoured, never),
    e(
        "-D, --images-dir",
        "images_dir_fd, images_dir",
        Honoured,
        never,
    ),
    e("-W, --work-dir", "work_dir_fd", Honoured, never),
    e("-o, --log-file", "log_file, log_to_stderr", Honoured, never),
    e("-v, --verbosity", "log_level", Honoured, never),
    e("--display-stats", "display_stats", Honoured, never),
    e("--pidfile", "", Honoured, never),
    e("--status-fd", "status_fd", Honoured, never),
    // rcriu's own: encrypted images (criu has none).
    e("--encrypt", "", Honoured, never),
    e("--encrypt-key-file", "", Honoured, never),
    e("--encrypt-key-fd", "", Honoured, never),
    e("--action-script", "notify_scripts", Honoured, never),
    e("--config", "config_file", Honoured, never),
    e("--no-default-config", "", Honoured, never),
    e("--close", "", Honoured, never),
    e("-h, --help", "", Honoured, never),
    e("-V, --version", "", Honoured, never),
    e("--extra", "", Honoured, never),
    e("--experimental", "", Honoured, never),
    e("--all", "", Honoured, never),
    e("--feature", "", Honoured, never),
    e(
        "--log-pid",
        "",
        NoOp("rcriu logs from one process: there is no per-task log to split"),
        never,
    ),
    // Restore.
    e("-d, --restore-detached, --daemon", "", Honoured, never),
    e("-j, --shell-job", "shell_job", Honoured, never),
    e("--exec-cmd", "exec_cmd", Honoured, never),
    e("--file-validation", "", Honoured, never),
    e("-S, --restore-sibling", "rst_sibling", Honoured, never),
    e("-r, --root", "root", Honoured, never),
    e("--inherit-fd", "inherit_fd", Honoured, never),
    e(
        "-J, --join-ns",
        "join_ns",
        NotYet("joining a namespace other than net (net:PATH)"),
        |o, _| o.join_ns.iter().any(|j| j.ns != "net" || j.extra.is_some()),
    ),
    e(
        "--empty-ns",
        "empty_ns",
        NotYet("empty namespaces other than net"),
        |o, _| o.empty_ns & !CLONE_NEWNET != 0,
    ),
    e(
        "--lsm-profile",
        "lsm_profile",
        NotYet("a security profile other than the dumped one"),
        |o, _| o.lsm_profile.is_some(),
    ),
    e(
        "--lsm-mount-context",
        "lsm_mount_context",
        NotYet("mounts"),
        |o, _| o.lsm_mount_context.is_some(),
    ),
    e(
        "--weak-sysctls",
        "weak_sysctls",
        NoOp(
            "sysctls are written strictly: a network namespace's conf the dump read and this kernel lacks fails the restore, naming it",
        ),
        never,
    ),
    e(
        "--skip-file-rwx-check",
        "skip_file_rwx_check",
        NoOp("rcriu does not compare the permission bits of restored files with the dumped ones"),
        never,
    ),
    e(
        "--mntns-compat-mode",
        "mntns_compat_mode",
        NoOp("it chooses between criu's two ways of restoring mount namespaces; rcriu has one"),
        never,
    ),
    // Resources.
    e(
        "-x, --ext-unix-sk",
        "ext_unix_sk, unix_sk_ino",
        Honoured,
        |o, _| o.ext_unix_sk,
    ),
    e("--tcp-established", "tcp_established", Honoured, |o, _| {
        o.tcp_established
    }),
    e(
        "--skip-in-flight",
        "tcp_skip_in_flight",
        Honoured,
        |o, _| o.tcp_skip_in_flight,
    ),
    e("--tcp-close", "tcp_close", Honoured, |o, _| o.tcp_close),
    e(
        "--evasive-devices",
        "evasive_devices",
        NoOp(
            "rcriu opens a device file by its path only: where that path is gone, the restore fails naming it rather than looking for the device elsewhere",
        ),
        |o, _| o.evasive_devices,
    ),
    e("--link-remap", "link_remap", Honoured, never),
    e("-l, --file-locks", "file_locks", Honoured, never),
    e("--ghost-limit", "ghost_limit", Honoured, never),
    e(
        "--ghost-fiemap",
        "",
        NoOp(
            "it chooses how criu finds the holes of a deleted file; the image holds the same data",
        ),
        never,
    ),
    e(
        "--force-irmap",
        "force_irmap",
        NoOp(
            "rcriu writes the path of every watched file, found through its file handle, which is what it asks criu for (a file with no link left: its handle alone, the dump holding it as a ghost, as criu writes it)",
        ),
        |o, _| o.force_irmap,
    ),
    e(
        "--irmap-scan-path",
        "irmap_scan_paths",
        NoOp(
            "rcriu scans no directory for a watched file: it finds each through its file handle, and refuses a watch whose handle no longer opens",
        ),
        |o, _| !o.irmap_scan_paths.is_empty(),
    ),
    e(
        "--external",
        "external",
        NotYet(
            "external resources other than a network namespace (net[INODE]:KEY), a veth's peer (veth[IN]:OUT) or a mount (mnt[A]:B)",
        ),
        |o, _| {
            o.external
                .iter()
                .any(|e| external_net(e).is_none() && external_veth(e).is_none())
        },
    ),
    e("--veth-pair", "veths", Honoured, never),
    e(
        "-M, --ext-mount-map",
        "ext_mnt, auto_ext_mnt",
        NotYet("external mounts found by rcriu (-M auto)"),
        |o, _| o.auto_ext_mnt,
    ),
    e(
        "--enable-external-sharing",
        "ext_sharing",
        NotYet("mounts"),
        |o, _| o.enable_external_sharing,
    ),
    e(
        "--enable-external-masters",
        "ext_masters",
        NotYet("mounts"),
        |o, _| o.enable_external_masters,
    ),
    e("--skip-mnt", "skip_mnt", NotYet("mounts"), |o, _| {
        !o.skip_mnt.is_empty()
    }),
    e("--enable-fs", "enable_fs", NotYet("mounts"), |o, _| {
        !o.enable_fs.is_empty()
    }),
    e(
        "--allow-uprobes",
        "",
        NotYet("areas with uprobes"),
        |o, _| o.allow_uprobes,
    ),
    e("", "orphan_pts_master", Honoured, never),
    // Cgroups.
    e("--freeze-cgroup", "freeze_cgroup", Honoured, never),
    e(
        "--manage-cgroups",
        "manage_cgroups, manage_cgroups_mode",
        Honoured,
        never,
    ),
    e("--cgroup-root", "cg_root", Honoured, never),
    e(
        "--cgroup-props",
        "cgroup_props",
        NotYet("choosing the cgroup properties dumped"),
        |o, _| o.cgroup_props.is_some(),
    ),
    e(
        "--cgroup-props-file",
        "cgroup_props_file",
        NotYet("choosing the cgroup properties dumped"),
        |o, _| o.cgroup_props_file.is_some(),
    ),
    e(
        "--cgroup-dump-controller",
        "cgroup_dump_controller",
        NotYet("choosing the cgroup controllers dumped"),
        |o, _| !o.cgroup_dump_controllers.is_empty(),
    ),
    e(
        "--cgroup-yard",
        "cgroup_yard",
        NoOp(
            "rcriu mounts no cgroup hierarchy of its own: it reaches each where it is mounted already (a yard's mounts among them)",
        ),
        never,
    ),
    // Collecting.
    e(
        "--timeout",
        "timeout",
        NotYet("a collection timeout other than criu's default of 10 seconds"),
        |o, c| o.timeout != DEFAULT_TIMEOUT && c.dumps(),
    ),
    e("--network-lock", "network_lock", Honoured, never),
    e(
        "--cpu-cap",
        "cpu_cap",
        NotYet("CPU capability images and checks"),
        |o, _| o.cpu_cap != cpu_cap::DEFAULT,
    ),
    e("-L, --libdir", "", NotYet("plugins"), |o, _| {
        o.libdir.is_some()
    }),
    e("--unprivileged", "unprivileged", Honoured, never),
    e(
        "--deprecated",
        "",
        NoOp("rcriu implements no deprecated feature for it to allow"),
        never,
    ),
    e("", "pidfd_store_sk", NotYet("a pidfd store"), |o, _| {
        o.pidfd_store
    }),
    // Memory.
    e("--track-mem", "track_mem", Honoured, never),
    e("--prev-images-dir", "parent_img", Honoured, never),
    e("--auto-dedup", "auto_dedup", Honoured, never),
    e(
        "--lazy-pages",
        "lazy_pages",
        NotYet(
            "a lazy dump that leaves its processes running or stopped (--leave-running, --leave-stopped); a lazy dump (`dump --lazy-pages --port P`, its pages served to `rcriu lazy-pages --page-server`) and a lazy restore (`restore --lazy-pages` with `rcriu lazy-pages`) are honoured",
        ),
        |o, cmd| o.lazy_pages && cmd == Command::Dump && o.final_state != FinalState::Dead,
    ),
    e("--page-server", "ps", Honoured, never),
    e("--ps-socket", "ps.fd", Honoured, never),
    e("--address", "", Honoured, never),
    e("--port", "ps.port", Honoured, never),
    e(
        "--pre-dump-mode",
        "pre_dump_mode",
        NoOp(
            "recorded in the inventory; rcriu's pre-dump reads pages with process_vm_readv in either mode",
        ),
        never,
    ),
    e("--stream", "", NotYet("the image streamer"), |o, _| {
        o.stream
    }),
    e("--tls", "tls", Honoured, never),
    e(
        "--tls-cacert, --tls-cacrl, --tls-cert, --tls-key, --tls-no-cn-verify",
        "tls_cacert, tls_cacrl, tls_cert, tls_key, tls_no_cn_verify",
        Honoured,
        never,
    ),
];

impl Entry {
    /// The entry's row in `docs/options.md`.
    pub fn doc_row(&self) -> String {
        let names = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.split(", ")
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let status = match self.status {
            Honoured => "honoured".to_owned(),
            NoOp(why) => format!("no-op: {why}"),
            NotYet(what) => format!("refused, not supported yet: {what}"),
        };
        format!("| {} | {} | {status} |", names(self.cli), names(self.rpc))
    }

    /// The option's name as the caller spelt it: its long command-line
    /// name, or its RPC field.
    pub fn name(&self, face: Face) -> String {
        let long = self
            .cli
            .split(", ")
            .find(|n| n.starts_with("--"))
            .unwrap_or(self.cli);
        let field = self.rpc.split(", ").next().unwrap_or(self.rpc);
        match (face, long.is_empty(), field.is_empty()) {
            (Face::Rpc, _, false) if long.is_empty() => field.to_owned(),
            (Face::Rpc, _, false) => format!("{field} ({long})"),
            (_, false, _) => long.to_owned(),
            _ => field.to_owned(),
        }
    }
}

/// Refuses options that ask for what rcriu cannot do yet, naming the
/// first one.
pub fn check(o: &Options, cmd: Command, face: Face) -> Result<(), Error> {
    if matches!(cmd, Command::Check) {
        return Ok(());
    }
    for entry in TABLE {
        if let NotYet(what) = entry.status
            && (entry.asked)(o, cmd)
        {
            return Err(Error::NotYet {
                option: entry.name(face),
                what,
            });
        }
    }
    Ok(())
}

/// The rules criu checks once its options are read (`check_options` and
/// `main` in `criu/crtools.c`), for `cmd`.
pub fn validate(o: &Options, cmd: Command) -> Result<(), Error> {
    let invalid = |m: &str| Err(Error::Invalid(m.to_owned()));
    if !o.restore_detached && o.restore_sibling && cmd == Command::Restore {
        return invalid("--restore-sibling only makes sense with --restore-detached");
    }
    if o.mntns_compat_mode == Some(true) && cmd != Command::Restore {
        return invalid("Option --mntns-compat-mode is only valid on restore");
    }
    if !o.inherit_fds.is_empty() && cmd != Command::Restore {
        return invalid("--inherit-fd is restore-only option");
    }
    if o.exec_cmd && cmd != Command::Restore {
        return invalid("--exec-cmd is available for the restore command only");
    }
    if o.exec_cmd && o.restore_detached {
        return invalid("--restore-detached and --exec-cmd cannot be used together");
    }
    if cmd == Command::PreDump && o.lazy_pages {
        return invalid("Cannot pre-dump with --lazy-pages");
    }
    if o.stream && !matches!(cmd, Command::Dump | Command::PreDump | Command::Restore) {
        return Err(Error::Invalid(format!(
            "--stream cannot be used with the {} command",
            cmd.name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::LONGS;

    #[test]
    fn every_option_of_criu_has_a_line() {
        let names: Vec<&str> = TABLE.iter().flat_map(|e| e.cli.split(", ")).collect();
        for l in LONGS {
            let name = format!("--{}", l.name);
            let positive = name.replacen("--no-", "--", 1);
            if ["--no-default-config", "--ms"].contains(&name.as_str()) {
                continue;
            }
            assert!(
                names.contains(&name.as_str()) || names.contains(&positive.as_str()),
                "{name} has no line in the support table"
            );
        }
    }

    #[test]
    fn the_options_page_lists_every_line() {
        let page = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/options.md"
        ))
        .expect("docs/options.md");
        let missing: Vec<String> = TABLE
            .iter()
            .map(Entry::doc_row)
            .filter(|row| !page.contains(row.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/options.md lacks (or has stale) rows; the table's rows are:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn refusals_name_the_option() {
        let o = Options {
            timeout: 3,
            ..Options::default()
        };
        let e = check(&o, Command::Dump, Face::Cli).unwrap_err();
        assert_eq!(
            e.to_string(),
            "option --timeout is not supported yet (a collection timeout other than criu's default of 10 seconds)"
        );
        let e = check(&o, Command::Dump, Face::Rpc).unwrap_err();
        assert_eq!(
            e.to_string(),
            "option timeout (--timeout) is not supported yet (a collection timeout other than criu's default of 10 seconds)"
        );
        // check takes anything.
        assert!(check(&o, Command::Check, Face::Cli).is_ok());
        // The defaults and their explicit forms ask for nothing.
        assert!(check(&Options::default(), Command::Dump, Face::Cli).is_ok());
        let o = Options {
            manage_cgroups: CgroupMode::Soft,
            timeout: 10,
            ..Options::default()
        };
        assert!(check(&o, Command::Restore, Face::Cli).is_ok());
        let o = Options {
            manage_cgroups: CgroupMode::Full,
            ..Options::default()
        };
        assert!(check(&o, Command::Restore, Face::Cli).is_ok());
        let o = Options {
            cgroup_props: Some("cpu: []".into()),
            ..Options::default()
        };
        assert!(check(&o, Command::Restore, Face::Cli).is_err());
        // runc always sends it: a container's terminal, whose new master
        // goes to the caller.
        let mut o = Options {
            orphan_pts_master: true,
            ..Options::default()
        };
        assert!(check(&o, Command::Restore, Face::Rpc).is_ok());
        o.shell_job = true;
        assert!(check(&o, Command::Restore, Face::Rpc).is_ok());
    }

    #[test]
    fn socket_options_are_honoured() {
        let o = Options {
            ext_unix_sk: true,
            unix_sk_ids: vec![12],
            tcp_established: true,
            tcp_skip_in_flight: true,
            tcp_close: true,
            network_lock: NetworkLock::Nftables,
            network_lock_given: true,
            ..Options::default()
        };
        for cmd in [Command::Dump, Command::Restore] {
            for face in [Face::Cli, Face::Rpc] {
                assert!(check(&o, cmd, face).is_ok(), "{cmd:?} {face:?}");
            }
        }
    }

    #[test]
    fn criu_rules() {
        let o = Options {
            restore_sibling: true,
            ..Options::default()
        };
        assert!(validate(&o, Command::Restore).is_err());
        let o = Options {
            mntns_compat_mode: Some(true),
            ..Options::default()
        };
        assert!(validate(&o, Command::Dump).is_err());
        assert!(validate(&o, Command::Restore).is_ok());
    }
}
