//! `criu check`, answered for rcriu: a kernel feature counts only when
//! rcriu uses it. A feature rcriu does not implement is missing, however
//! the kernel stands; one it implements is looked for in the running
//! kernel (`mem_dirty_track`: what rcriu tracks writes with, not
//! soft-dirty bits).
//!
//! - `check`: what rcriu cannot work without; "Looks good." or why not.
//! - `check --extra` / `--all`: also every feature of criu's list,
//!   missing ones warned about.
//! - `check --feature NAME`: "NAME is supported", or a warning and exit
//!   status 1.

use std::path::Path;

/// Why a feature is missing, or `Ok` when rcriu has it here.
pub type Answer = Result<(), String>;

fn not_in_rcriu(what: &str) -> Answer {
    Err(format!("rcriu does not implement {what} yet"))
}

fn path_exists(p: &str, what: &str) -> Answer {
    if Path::new(p).exists() {
        Ok(())
    } else {
        Err(format!("the kernel has no {what} ({p} is missing)"))
    }
}

/// The running kernel's version, as (major, minor).
fn kernel() -> (u32, u32) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = rel
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn kernel_at_least(major: u32, minor: u32, what: &str) -> Answer {
    let k = kernel();
    if k >= (major, minor) {
        Ok(())
    } else {
        Err(format!(
            "the kernel ({}.{}) is older than {major}.{minor}, which brought {what}",
            k.0, k.1
        ))
    }
}

fn status_has(field: &str) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with(field)))
}

/// What `PAGEMAP_SCAN` reports here, read from rcriu's own pagemap.
fn pagemap_scan(guards: bool) -> Answer {
    let me = std::process::id() as i32;
    let support = rcriu_proc::Task::open(me)
        .and_then(|t| t.pagemap())
        .and_then(|mut p| p.scan_support())
        .map_err(|e| format!("cannot probe PAGEMAP_SCAN: {e}"))?;
    match support {
        None => Err("the kernel has no PAGEMAP_SCAN".into()),
        Some(c) if guards && !c.contains(rcriu_proc::PageCategories::GUARD) => {
            Err("the kernel's PAGEMAP_SCAN does not report guard regions".into())
        }
        Some(_) => Ok(()),
    }
}

/// Whether `cmd arg` runs and succeeds (the network lock runs `nft` or
/// `iptables-restore`).
fn command_runs(cmd: &str, arg: &str) -> Answer {
    match std::process::Command::new(cmd)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{cmd} {arg} failed: {s}")),
        Err(e) => Err(format!("cannot run {cmd}: {e}")),
    }
}

/// A half-closed TCP connection can be put in repair mode (how rcriu
/// dumps one): a loopback connection, its sending side shut, then
/// TCP_REPAIR.
fn tcp_half_closed() -> Answer {
    use std::os::fd::AsFd;
    let probe = || -> std::io::Result<()> {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let c = std::net::TcpStream::connect(l.local_addr()?)?;
        let (_s, _) = l.accept()?;
        c.shutdown(std::net::Shutdown::Write)?;
        crate::sys::set_tcp_repair(c.as_fd())
    };
    probe().map_err(|e| format!("a half-closed TCP connection cannot be repaired: {e}"))
}

/// The answer for feature `name` (one of [`rcriu_opts::FEATURES`]).
pub fn feature(name: &str) -> Answer {
    match name {
        "mnt_id" => std::fs::read_to_string("/proc/self/fdinfo/0")
            .ok()
            .filter(|t| t.contains("mnt_id:"))
            .map(drop)
            .ok_or_else(|| "the kernel shows no mnt_id in fdinfo".into()),
        "seccomp_suspend" => path_exists(
            "/proc/sys/kernel/ns_last_pid",
            "checkpoint/restore support (PTRACE_O_SUSPEND_SECCOMP)",
        ),
        "seccomp_filters" => {
            path_exists(
                "/proc/sys/kernel/ns_last_pid",
                "checkpoint/restore support (PTRACE_SECCOMP_GET_FILTER)",
            )?;
            if status_has("Seccomp_filters:") {
                Ok(())
            } else {
                Err("the kernel has no seccomp filters".into())
            }
        }
        "loginuid" => path_exists("/proc/self/loginuid", "login uids"),
        "timens" => path_exists("/proc/self/ns/time", "time namespaces"),
        "clone3_set_tid" => kernel_at_least(5, 5, "clone3 with set_tid"),
        "get_rseq_conf" => kernel_at_least(5, 13, "PTRACE_GET_RSEQ_CONFIGURATION"),
        "memfd_hugetlb" => rustix::fs::memfd_create(
            "rcriu-check",
            rustix::fs::MemfdFlags::HUGETLB | rustix::fs::MemfdFlags::CLOEXEC,
        )
        .map(drop)
        .map_err(|e| format!("the kernel cannot make hugetlb memfds: {e}")),
        "pagemap_scan" => pagemap_scan(false),
        "pagemap_scan_guard_pages" => pagemap_scan(true),
        // Without soft-dirty bits: PAGEMAP_SCAN's written pages under a
        // userfaultfd's asynchronous write-protection.
        "mem_dirty_track" => pagemap_scan(false).and_then(|()| {
            rcriu_dump::track::available().map_err(|e| {
                format!("the kernel has no asynchronous userfaultfd write-protection: {e}")
            })
        }),
        "aio_remap" => not_in_rcriu("AIO rings"),
        // A timerfd's unread expirations are set with TFD_IOC_SET_TICKS
        // (Linux 3.17, with checkpoint/restore support).
        "timerfd" => {
            path_exists(
                "/proc/sys/kernel/ns_last_pid",
                "checkpoint/restore support (TFD_IOC_SET_TICKS)",
            )?;
            kernel_at_least(3, 17, "TFD_IOC_SET_TICKS")
        }
        "tun" | "tun_ns" => not_in_rcriu("tun devices"),
        // A tree in a user namespace of its own: /proc/PID/ns/user, and
        // the ioctls the dump asks who owns a namespace with
        // (NS_GET_USERNS, NS_GET_PARENT: Linux 4.9).
        "userns" => path_exists("/proc/self/ns/user", "user namespaces")
            .and_then(|()| kernel_at_least(4, 9, "NS_GET_USERNS and NS_GET_PARENT")),
        // Locks are read from fdinfo's lock lines (Linux 4.1).
        "fdinfo_lock" => kernel_at_least(4, 1, "lock lines in fdinfo"),
        "cgroupns" => not_in_rcriu("cgroup namespaces"),
        "autofs" => not_in_rcriu("autofs mounts"),
        "tcp_half_closed" => tcp_half_closed(),
        "compat_cr" => not_in_rcriu("32-bit tasks"),
        "uffd" | "uffd-noncoop" => rcriu_restore::uffd::available(),
        "can_map_vdso" => not_in_rcriu("mapping a vDSO (it moves the running one)"),
        "sk_ns" | "sk_unix_file" | "net_diag_raw" | "ipv6_freebind" | "sockopt_buf_lock" => {
            not_in_rcriu("sockets")
        }
        "nsid" | "link_nsid" | "newifindex" | "external_net_ns" => {
            not_in_rcriu("network namespaces")
        }
        // An epoll target is found among the fds with kcmp's
        // KCMP_EPOLL_TFD (Linux 4.13, with checkpoint/restore support).
        "kcmp_epoll" => {
            path_exists(
                "/proc/sys/kernel/ns_last_pid",
                "checkpoint/restore support (kcmp)",
            )?;
            kernel_at_least(4, 13, "KCMP_EPOLL_TFD")
        }
        "nftables" | "network_lock_nftables" => command_runs("nft", "--version"),
        "has_ipt_legacy" => command_runs("iptables-legacy", "--version"),
        "pidfd_store" => not_in_rcriu("a pidfd store"),
        "ns_pid" => not_in_rcriu("pid namespaces"),
        "apparmor_stacking" => not_in_rcriu("AppArmor namespaces"),
        "move_mount_set_group" => not_in_rcriu("mount namespaces"),
        "openat2" => not_in_rcriu("path resolution with openat2"),
        "timer_cr_ids" => not_in_rcriu("POSIX timer ids by PR_TIMER_CREATE_RESTORE_IDS"),
        "overlayfs_maps" => not_in_rcriu("mappings of overlayfs files"),
        "breakpoints" => not_in_rcriu("hardware breakpoints"),
        _ => Err(format!("unknown feature {name}")),
    }
}

/// What rcriu cannot work without: `(name, answer)`.
fn required() -> Vec<(&'static str, Answer)> {
    vec![
        (
            "map_files",
            path_exists("/proc/self/map_files", "/proc/PID/map_files"),
        ),
        ("clone3_set_tid", feature("clone3_set_tid")),
        (
            "ptrace_seize",
            kernel_at_least(3, 4, "PTRACE_SEIZE and PTRACE_INTERRUPT"),
        ),
    ]
}

/// `check` with its options: the exit status criu would give (0 good,
/// 1 not), having said so on standard output and in the log.
pub fn run(feature_name: Option<&str>, extra: bool, experimental: bool) -> i32 {
    if let Some(name) = feature_name {
        return match feature(name) {
            Ok(()) => {
                crate::log::msg(&format!("{name} is supported\n"));
                0
            }
            Err(why) => {
                log::warn!("{name}: {why}");
                1
            }
        };
    }
    for (name, answer) in required() {
        if let Err(why) = answer {
            log::error!("{name}: {why}");
            log::warn!("Does not look good.");
            return 1;
        }
    }
    let mut missing = false;
    if extra || experimental {
        for name in rcriu_opts::FEATURES {
            if let Err(why) = feature(name) {
                log::warn!("{name}: {why}");
                missing = true;
            }
        }
    }
    if missing {
        crate::log::msg(
            "Looks good but some kernel features are missing\n\
             which, depending on your process tree, may cause\n\
             dump or restore failure.\n",
        );
        1
    } else {
        crate::log::msg("Looks good.\n");
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_has_an_answer() {
        for name in rcriu_opts::FEATURES {
            if let Err(why) = feature(name) {
                assert!(!why.starts_with("unknown feature"), "{name}");
            }
        }
        assert!(feature("nope").is_err());
    }

    /// Pre-dump's tracking is there on this kernel (Linux 6.7 or later,
    /// which the suite runs on), and `check` says so, as zdtm asks
    /// before its pre-dump runs.
    #[test]
    fn memory_tracking_is_reported_where_the_kernel_has_it() {
        assert_eq!(feature("mem_dirty_track"), Ok(()));
    }

    #[test]
    fn what_rcriu_lacks_is_missing() {
        for name in ["sk_unix_file", "pidfd_store"] {
            let why = feature(name).unwrap_err();
            assert!(why.starts_with("rcriu does not implement"), "{name}: {why}");
        }
    }
}
