//! criu's commands, run from the typed options: the same whether the
//! options came from the command line or the RPC.
//!
//! - [`dump`]: the engine's dump, with criu's action points (pre-dump,
//!   post-dump), `stats-dump` in the work directory, `--display-stats`.
//! - [`restore`]: the engine's restore, with criu's action points
//!   (pre-restore, post-restore, pre-resume, post-resume), the pid file
//!   written as criu writes it (`O_EXCL`, before the process runs: if it
//!   cannot be written, the process is killed before it ran), then
//!   `--exec-cmd`.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use rcriu_dump::tcp_stream::LockMethod;
use rcriu_dump::{Dump, DumpStats};
use rcriu_images::{ImageDir, ImageFile, pb};
use rcriu_opts::Options;
use rcriu_opts::options::{FileValidation, FinalState, NetworkLock};
use rcriu_opts::support::{self, Command, Face};
use rcriu_restore::{Restore, Restored};

use crate::scripts::{Actions, stage};
use crate::{Error, Result};

/// The checks criu makes before a command, then rcriu's: options that ask
/// for what it does not do yet are refused by name.
pub fn admit(o: &Options, cmd: Command, face: Face) -> Result<()> {
    support::validate(o, cmd)?;
    support::check(o, cmd, face)?;
    refuse_auto_dedup(o, cmd)?;
    Ok(())
}

/// `--auto-dedup` where rcriu cannot do what CRIU does with it, refused
/// by name.
fn refuse_auto_dedup(o: &Options, cmd: Command) -> Result<()> {
    if !o.auto_dedup {
        return Ok(());
    }
    let why = match cmd {
        // CRIU's page server deduplicates the parent images as it writes.
        Command::PageServer => "on a page server (its parent images punched as pages come)",
        // CRIU's daemon punches the pages as it serves them.
        Command::LazyPages => "with lazy-pages (pages punched as the daemon serves them)",
        Command::Restore if o.lazy_pages => "with a lazy restore (--lazy-pages)",
        Command::Dump | Command::PreDump if o.page_server => {
            "with --page-server (the pages are written, and their parents punched, by the server)"
        }
        _ if o.encrypt || o.encrypt_key_file.is_some() || o.encrypt_key_fd.is_some() => {
            "with --encrypt (a hole punched in an encrypted pages image breaks its authentication)"
        }
        _ => return Ok(()),
    };
    Err(Error::Refused(format!(
        "--auto-dedup {why} is not supported yet"
    )))
}

/// criu's `dedup -D DIR`: the pages the dump in the images directory
/// holds itself punched out of its parents' pages images
/// ([`rcriu_images::dedup`]).
pub fn dedup(o: &Options, face: Face) -> Result<Vec<rcriu_images::dedup::Punched>> {
    admit(o, Command::Dedup, face)?;
    let done = rcriu_images::dedup::dedup(&o.images_dir())?;
    log::info!("Deduplicated");
    Ok(done)
}

/// The key of `--encrypt-key-file` or `--encrypt-key-fd` (read to its
/// end, then closed), if one is given. A dump with `--encrypt` needs
/// one, and a key without `--encrypt` is refused (no dump is left
/// unencrypted by a forgotten option); a restore takes the key alone.
fn key(o: &Options, cmd: Command) -> Result<Option<rcriu_images::crypt::Key>> {
    use rcriu_images::crypt::Key;
    let key = match (&o.encrypt_key_file, o.encrypt_key_fd) {
        (Some(_), Some(_)) => {
            return Err(Error::Refused(
                "--encrypt-key-file and --encrypt-key-fd cannot be given together".into(),
            ));
        }
        (Some(p), None) => Some(Key::read_file(&o.in_work_dir(p))?),
        (None, Some(fd)) => {
            use std::io::Read;
            let f = crate::sys::adopt_fd(fd).ok_or_else(|| {
                Error::Refused(format!("--encrypt-key-fd {fd}: no such descriptor"))
            })?;
            let mut bytes = Vec::new();
            std::fs::File::from(f)
                .take(4096)
                .read_to_end(&mut bytes)
                .map_err(|source| Error::Io {
                    what: format!("reading the key from descriptor {fd}"),
                    source,
                })?;
            let k = Key::parse(&bytes, &format!("from descriptor {fd}"));
            bytes.fill(0);
            Some(k?)
        }
        (None, None) => None,
    };
    if o.encrypt && (cmd == Command::PreDump || o.track_mem || o.prev_images_dir.is_some()) {
        return Err(Error::Refused(
            "--encrypt with pre-copy (pre-dump, --track-mem, --prev-images-dir) is not supported yet"
                .into(),
        ));
    }
    match (cmd, o.encrypt, &key) {
        (Command::Dump, true, None) | (Command::Restore, true, None) => Err(Error::Refused(
            "--encrypt needs a key: --encrypt-key-file PATH or --encrypt-key-fd FD".into(),
        )),
        (Command::Dump, false, Some(_)) => Err(Error::Refused(
            "a key was given without --encrypt: refusing to dump unencrypted".into(),
        )),
        _ => Ok(key),
    }
}

/// Dumps `-t PID` into the images directory.
pub fn dump(o: &Options, face: Face, actions: &Actions) -> Result<DumpStats> {
    admit(o, Command::Dump, face)?;
    let pid = o
        .tree
        .ok_or_else(|| Error::Refused("pid not specified".into()))?;
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(Error::NoProcess(pid));
    }
    let key = key(o, Command::Dump)?;
    let images = o.images_dir();
    let work = o.work_dir();
    let hook_actions = actions.clone();
    let hook: rcriu_dump::Hook = Arc::new(move |s| match s {
        rcriu_dump::Stage::PreDump => {
            hook_actions.run(stage::PRE_DUMP, Some(pid), false)?;
            let ext = hook_actions.query_ext_files()?;
            if !ext.is_empty() {
                return Err(format!(
                    "the caller names external resources ({}), which are not supported yet",
                    ext.join(", ")
                ));
            }
            Ok(())
        }
        rcriu_dump::Stage::PostDump => hook_actions.run(stage::POST_DUMP, Some(pid), false),
    });
    log::info!("========================================");
    log::info!("Dumping processes (pid: {pid})");
    log::info!("========================================");
    let mut d = Dump::new(pid)
        .images_dir(&images)
        .leave_running(o.final_state == FinalState::Alive)
        .leave_stopped(o.final_state == FinalState::Stopped)
        .shell_job(o.shell_job)
        .orphan_pts_master(o.orphan_pts_master)
        .ghost_limit(o.ghost_limit)
        .file_locks(o.file_locks)
        .link_remap(o.link_remap)
        .ext_unix_sk(o.ext_unix_sk)
        .ext_unix_sk_inodes(o.unix_sk_ids.iter().copied())
        .tcp_established(o.tcp_established)
        .tcp_close(o.tcp_close)
        .skip_in_flight(o.tcp_skip_in_flight)
        .network_lock(match o.network_lock {
            NetworkLock::Iptables => LockMethod::Iptables,
            NetworkLock::Nftables => LockMethod::Nftables,
            NetworkLock::Skip => LockMethod::Skip,
        })
        .stats_dir(&work)
        .track_mem(o.track_mem)
        .auto_dedup(o.auto_dedup);
    if let Some(p) = &o.prev_images_dir {
        d = d.prev_images_dir(p);
    }
    if actions.any() {
        d = d.hook(hook);
    }
    d = d.cgroup_dirs(o.manage_cgroups != rcriu_opts::options::CgroupMode::Ignore);
    for c in &o.cgroup_roots {
        d = d.cgroup_root(c.controller.clone(), &c.path);
    }
    if let Some(cg) = &o.freeze_cgroup {
        d = d.freeze_cgroup(cg);
    }
    if let Some(k) = key {
        d = d.encrypt(k);
    }
    if o.page_server {
        d = d.page_server(page_server_target(o)?);
    }
    if o.lazy_pages {
        d = d.lazy_pages(lazy_serve(o)?);
    }
    if let Some(root) = &o.root {
        d = d.root(root);
    }
    d = d.empty_ns(o.empty_ns);
    for (mount_point, key) in &o.ext_mount_map {
        d = d.ext_mount(mount_point, key);
    }
    if let Some(me) = crate::require_privilege(o, Command::Dump)? {
        d = d.unprivileged(me);
    }
    for (inode, key) in o.external_nets() {
        d = d.ext_net(inode, key);
    }
    let stats = d.run()?;
    log::info!("Dumping finished successfully");
    if o.display_stats {
        display_stats(&work, ImageFile::StatsDump);
    }
    Ok(stats)
}

/// criu's `dump --lazy-pages`: the socket its page server listens on
/// (`--address`, any when not given, and `--port`), made before the
/// process is touched so that a port in use is refused with the process
/// left running; its TLS (`--tls`); its status-ready step.
fn lazy_serve(o: &Options) -> Result<rcriu_dump::lazy::Serve> {
    if o.ps_socket.is_some() {
        return Err(Error::Refused(
            "--ps-socket with --lazy-pages: a lazy dump serves its pages on a socket of its own (--address, --port)".into(),
        ));
    }
    if o.port == 0 {
        return Err(Error::Refused("--lazy-pages needs --port".into()));
    }
    let tls = tls_options(o)
        .map(|t| rcriu_page_server::tls::ServerTls::new(&t, o.address.as_deref()))
        .transpose()
        .map_err(|e| Error::Refused(crate::report(&e)))?;
    let (listener, port) = crate::page_server::listen(o.address.as_deref(), o.port)?;
    log::info!("Starting lazy pages server on port {port}");
    let ready = o.clone();
    Ok(rcriu_dump::lazy::Serve {
        listener,
        tls,
        ready: Box::new(move || crate::listen::status_ready(&ready).map_err(|e| crate::report(&e))),
    })
}

/// Where `--page-server` sends the pages: the socket of `--ps-socket`,
/// or `--address` and `--port` (through TLS with `--tls`).
fn page_server_target(o: &Options) -> Result<rcriu_page_server::Target> {
    if let Some(fd) = o.ps_socket {
        if o.tls {
            // criu's dump makes no TLS session on a given socket, yet
            // would send through one: refused, not sent in the clear.
            return Err(Error::Refused(
                "--tls with --ps-socket: the dump makes its TLS session only on a connection of its own (--address, --port)".into(),
            ));
        }
        return Ok(rcriu_page_server::Target::Fd(fd));
    }
    let address = o
        .address
        .clone()
        .ok_or_else(|| Error::Refused("--page-server needs --address".into()))?;
    if o.port == 0 {
        return Err(Error::Refused("--page-server needs --port".into()));
    }
    Ok(rcriu_page_server::Target::Tcp {
        address,
        port: o.port,
        tls: tls_options(o),
    })
}

/// criu's `--tls` options, their paths in the work directory as criu
/// reads them (after its chdir there); `None` without `--tls`.
pub fn tls_options(o: &Options) -> Option<rcriu_page_server::TlsOptions> {
    o.tls.then(|| rcriu_page_server::TlsOptions {
        cacert: o.tls_cacert.as_deref().map(|p| o.in_work_dir(p)),
        cacrl: o.tls_cacrl.as_deref().map(|p| o.in_work_dir(p)),
        cert: o.tls_cert.as_deref().map(|p| o.in_work_dir(p)),
        key: o.tls_key.as_deref().map(|p| o.in_work_dir(p)),
        no_cn_verify: o.tls_no_cn_verify,
    })
}

/// Pre-dumps `-t PID` into the images directory: its memory, while it
/// runs ([`rcriu_dump::predump`]). As criu's pre-dump, it runs no action
/// script.
pub fn pre_dump(o: &Options, face: Face) -> Result<DumpStats> {
    admit(o, Command::PreDump, face)?;
    key(o, Command::PreDump)?;
    let pid = o
        .tree
        .ok_or_else(|| Error::Refused("pid not specified".into()))?;
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(Error::NoProcess(pid));
    }
    log::info!("Pre-dumping processes (pid: {pid})");
    let work = o.work_dir();
    let stats = rcriu_dump::predump::run(&rcriu_dump::predump::Options {
        pid,
        dir: o.images_dir(),
        parent: o.prev_images_dir.clone(),
        mode: match o.pre_dump_mode {
            rcriu_opts::options::PreDumpMode::Splice => 1,
            rcriu_opts::options::PreDumpMode::Read => 2,
        },
        stats_dir: Some(work.clone()),
        page_server: o.page_server.then(|| page_server_target(o)).transpose()?,
        auto_dedup: o.auto_dedup,
    })?;
    log::info!("Pre-dumping finished successfully");
    if o.display_stats {
        display_stats(&work, ImageFile::StatsDump);
    }
    Ok(stats)
}

/// Writes the pid file as criu does: created anew (`O_EXCL`, so never
/// through a symbolic link or over a file), mode 0600, the pid without a
/// newline.
pub fn write_pidfile(path: &Path, pid: i32) -> std::result::Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("pidfile: Can't open {}: {e}", path.display()))?;
    write!(f, "{pid}")
        .map_err(|e| format!("pidfile: Can't write pid {pid} to {}: {e}", path.display()))?;
    log::debug!("pidfile: Wrote pid {pid} to {}", path.display());
    Ok(())
}

/// Restores from the images directory. With `detach` the restore returns
/// once the process runs (criu's `-d`; the RPC always detaches),
/// otherwise it waits for the process to end.
pub fn restore(o: &Options, face: Face, actions: &Actions, detach: bool) -> Result<Restored> {
    admit(o, Command::Restore, face)?;
    if o.tree.is_some() && face == Face::Cli {
        log::warn!("Using -t with criu restore is obsoleted");
    }
    let key = key(o, Command::Restore)?;
    let images = o.images_dir();
    let work = o.work_dir();
    let pidfile = o.pidfile.as_ref().map(|p| o.in_work_dir(p));
    let consume = o.auto_dedup.then(|| images.clone());
    let hook_actions = actions.clone();
    let hook: rcriu_restore::Hook = Arc::new(move |s| {
        use rcriu_restore::Stage;
        match s {
            Stage::PreRestore => hook_actions.run(stage::PRE_RESTORE, None, false),
            Stage::PostRestore(pid) => {
                hook_actions.run(stage::POST_RESTORE, Some(pid), true)?;
                match &pidfile {
                    Some(p) => write_pidfile(p, pid),
                    None => Ok(()),
                }
            }
            Stage::PreResume(pid) => hook_actions.run(stage::PRE_RESUME, Some(pid), false),
            Stage::PostResume(pid) => {
                hook_actions.run(stage::POST_RESUME, Some(pid), false)?;
                // criu's --auto-dedup: the pages read punched out of the
                // images (CRIU punches as it reads; rcriu once the tree
                // runs, so that a failed restore leaves them whole).
                match &consume {
                    Some(dir) => rcriu_images::dedup::consume(dir)
                        .map(drop)
                        .map_err(|e| format!("--auto-dedup: {}", crate::report(&e))),
                    None => Ok(()),
                }
            }
        }
    });
    let mut r = Restore::new(&images)
        .detach(detach || !o.exec_command.is_empty())
        .sibling(o.restore_sibling)
        .shell_job(o.shell_job)
        .file_locks(o.file_locks)
        .leave_stopped(o.final_state == FinalState::Stopped)
        .ext_unix_sk(o.ext_unix_sk)
        .tcp_established(o.tcp_established)
        .tcp_close(o.tcp_close)
        .stats_dir(&work)
        .hook(hook);
    if let Some(root) = &o.root {
        r = r.root(root);
    }
    if o.lazy_pages {
        r = r.lazy_pages(&work);
    }
    if o.orphan_pts_master {
        let a = actions.clone();
        r = r.orphan_pts_master(Arc::new(move |fd| a.send_fd(stage::ORPHAN_PTS_MASTER, fd)));
    }
    for (key, path) in &o.ext_mount_map {
        r = r.ext_mount(key, path);
    }
    for i in &o.inherit_fds {
        r = r.inherit_fd(i.fd, &i.key);
    }
    for (inside, outside) in o.external_veths() {
        r = r.external_veth(inside, outside);
    }
    for j in o.join_ns.iter().filter(|j| j.ns == "net") {
        r = r.join_net(&j.file);
    }
    r = r.manage_cgroups(cgroup_mode(o.manage_cgroups));
    for c in &o.cgroup_roots {
        r = r.cgroup_root(c.controller.clone(), &c.path);
    }
    match o.file_validation {
        FileValidation::Default => {}
        FileValidation::FileSize => r = r.file_validation(rcriu_restore::FileValidation::FileSize),
        FileValidation::BuildId => r = r.file_validation(rcriu_restore::FileValidation::BuildId),
    }
    if let Some(k) = key {
        r = r.key(k);
    }
    if let Some(me) = crate::require_privilege(o, Command::Restore)? {
        r = r.unprivileged(me);
    }
    let restored = r.run()?;
    log::info!("Restore finished successfully. Tasks resumed.");
    if o.display_stats {
        display_stats(&work, ImageFile::StatsRestore);
    }
    Ok(restored)
}

/// Execs the command of `--exec-cmd` (criu's `execvp`), which becomes the
/// restored process's parent. Returns only on failure.
pub fn exec_command(cmd: &[OsString]) -> Error {
    use std::os::unix::process::CommandExt;
    let Some((prog, args)) = cmd.split_first() else {
        return Error::Refused("--exec-cmd requires a command".into());
    };
    let e = std::process::Command::new(prog).args(args).exec();
    Error::Io {
        what: format!("Failed to exec command {}", prog.to_string_lossy()),
        source: e,
    }
}

/// Prints the statistics just written, as criu's `--display-stats`.
fn display_stats(work: &Path, file: ImageFile) {
    let entry = ImageDir::open(work).and_then(|d| d.read_one_if_exists::<pb::StatsEntry>(file));
    match entry {
        Ok(Some(e)) => crate::log::msg(&stats_text(&e)),
        Ok(None) => log::warn!("no {} to display", file.name()),
        Err(e) => log::warn!("cannot read {} to display it: {e}", file.name()),
    }
}

/// criu's `display_stats` text.
pub fn stats_text(e: &pb::StatsEntry) -> String {
    let mut s = String::new();
    let n = |v: u64| format!("{v} ({v:#x})");
    if let Some(d) = &e.dump {
        s.push_str("Displaying dump stats:\n");
        s.push_str(&format!("Freezing time: {} us\n", d.freezing_time));
        s.push_str(&format!("Frozen time: {} us\n", d.frozen_time));
        s.push_str(&format!("Memory dump time: {} us\n", d.memdump_time));
        s.push_str(&format!("Memory write time: {} us\n", d.memwrite_time));
        if let Some(t) = d.irmap_resolve {
            s.push_str(&format!("IRMAP resolve time: {t} us\n"));
        }
        s.push_str(&format!("Memory pages scanned: {}\n", n(d.pages_scanned)));
        s.push_str(&format!(
            "Memory pages skipped from parent: {}\n",
            n(d.pages_skipped_parent)
        ));
        s.push_str(&format!("Memory pages written: {}\n", n(d.pages_written)));
        s.push_str(&format!("Lazy memory pages: {}\n", n(d.pages_lazy)));
    } else if let Some(r) = &e.restore {
        s.push_str("Displaying restore stats:\n");
        s.push_str(&format!("Pages compared: {}\n", n(r.pages_compared)));
        s.push_str(&format!("Pages skipped COW: {}\n", n(r.pages_skipped_cow)));
        if let Some(p) = r.pages_restored {
            s.push_str(&format!("Pages restored: {}\n", n(p)));
        }
        s.push_str(&format!("Restore time: {} us\n", r.restore_time));
        s.push_str(&format!("Forking time: {} us\n", r.forking_time));
    }
    s
}

/// criu's `--manage-cgroups` mode as the restore takes it.
fn cgroup_mode(m: rcriu_opts::options::CgroupMode) -> rcriu_restore::CgroupMode {
    use rcriu_opts::options::CgroupMode as O;
    use rcriu_restore::CgroupMode as R;
    match m {
        O::Default | O::Soft => R::Soft,
        O::None => R::None,
        O::Props => R::Props,
        O::Full => R::Full,
        O::Strict => R::Strict,
        O::Ignore => R::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfiles_are_made_anew() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pid");
        write_pidfile(&p, 42).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "42");
        // Never over a file, nor through a symbolic link.
        assert!(write_pidfile(&p, 43).is_err());
        let target = d.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write_pidfile(&link, 44).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn stats_text_as_criu() {
        let e = pb::StatsEntry {
            dump: Some(pb::DumpStatsEntry {
                freezing_time: 1,
                frozen_time: 2,
                memdump_time: 3,
                memwrite_time: 4,
                pages_scanned: 16,
                pages_skipped_parent: 0,
                pages_written: 10,
                irmap_resolve: Some(0),
                pages_lazy: 0,
                page_pipes: None,
                page_pipe_bufs: None,
                shpages_scanned: None,
                shpages_skipped_parent: None,
                shpages_written: None,
            }),
            restore: None,
        };
        let t = stats_text(&e);
        assert!(
            t.starts_with("Displaying dump stats:\nFreezing time: 1 us\n"),
            "{t}"
        );
        assert!(t.contains("Memory pages scanned: 16 (0x10)\n"), "{t}");
    }
}
