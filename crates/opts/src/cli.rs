//! criu's command line: its option table (`criu/config.c`), read with
//! getopt_long's rules ([`crate::getopt`]) over the configuration files
//! and then the command line, into [`Options`]; what each option does to
//! them is criu's (`parse_options`), numbers read with C's `atoi`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::getopt::{self, Found, HasArg, Long, Short};
use crate::options::*;
use crate::{Error, config};

/// The boolean options, each with a `--no-` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    RestoreDetached,
    RestoreSibling,
    TcpEstablished,
    LogPid,
    EvasiveDevices,
    LinkRemap,
    ShellJob,
    FileLocks,
    PageServer,
    TrackMem,
    AutoDedup,
    ForceIrmap,
    Extra,
    Experimental,
    SkipInFlight,
    Deprecated,
    DisplayStats,
    WeakSysctls,
    TcpClose,
    Stream,
    Tls,
    SkipFileRwxCheck,
    MntnsCompatMode,
    Unprivileged,
    GhostFiemap,
    AllowUprobes,
}

/// What an option does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Set(Flag, bool),
    /// Options that only ever set a flag (no `--no-` form).
    EnableExternalSharing,
    EnableExternalMasters,
    TlsNoCnVerify,
    Tree,
    LeaveStopped,
    LeaveRunning,
    ImagesDir,
    WorkDir,
    LogFile,
    JoinNs,
    Root,
    ExtUnixSk,
    Help,
    Close,
    Version,
    Pidfile,
    VethPair,
    ActionScript,
    Address,
    Port,
    PrevImagesDir,
    Ms,
    Libdir,
    CpuCap,
    ExtMountMap,
    ExecCmd,
    ManageCgroups,
    CgroupRoot,
    InheritFd,
    Feature,
    SkipMnt,
    EnableFs,
    FreezeCgroup,
    GhostLimit,
    IrmapScanPath,
    LsmProfile,
    Timeout,
    External,
    EmptyNs,
    LazyPages,
    All,
    CgroupProps,
    CgroupPropsFile,
    CgroupDumpController,
    StatusFd,
    Verbosity,
    PsSocket,
    Config,
    NoDefaultConfig,
    TlsCacert,
    TlsCacrl,
    TlsCert,
    TlsKey,
    CgroupYard,
    PreDumpMode,
    FileValidation,
    LsmMountContext,
    NetworkLock,
    Encrypt,
    EncryptKeyFile,
    EncryptKeyFd,
}

const fn short(letter: u8, has_arg: HasArg, key: Key) -> Short<Key> {
    Short {
        letter,
        has_arg,
        key,
    }
}

/// criu's short options: `dSsRt:hD:o:v::x::Vr:jJ:lW:L:M:`.
pub const SHORTS: &[Short<Key>] = &[
    short(b'd', HasArg::No, Key::Set(Flag::RestoreDetached, true)),
    short(b'S', HasArg::No, Key::Set(Flag::RestoreSibling, true)),
    short(b's', HasArg::No, Key::LeaveStopped),
    short(b'R', HasArg::No, Key::LeaveRunning),
    short(b't', HasArg::Required, Key::Tree),
    short(b'h', HasArg::No, Key::Help),
    short(b'D', HasArg::Required, Key::ImagesDir),
    short(b'o', HasArg::Required, Key::LogFile),
    short(b'v', HasArg::Optional, Key::Verbosity),
    short(b'x', HasArg::Optional, Key::ExtUnixSk),
    short(b'V', HasArg::No, Key::Version),
    short(b'r', HasArg::Required, Key::Root),
    short(b'j', HasArg::No, Key::Set(Flag::ShellJob, true)),
    short(b'J', HasArg::Required, Key::JoinNs),
    short(b'l', HasArg::No, Key::Set(Flag::FileLocks, true)),
    short(b'W', HasArg::Required, Key::WorkDir),
    short(b'L', HasArg::Required, Key::Libdir),
    short(b'M', HasArg::Required, Key::ExtMountMap),
];

const fn long(name: &'static str, has_arg: HasArg, key: Key) -> Long<Key> {
    Long { name, has_arg, key }
}

/// A boolean option and its `--no-` form.
macro_rules! bool_opt {
    ($name:literal, $flag:expr) => {
        [
            long($name, HasArg::No, Key::Set($flag, true)),
            long(concat!("no-", $name), HasArg::No, Key::Set($flag, false)),
        ]
    };
}

/// criu's long options, in its table's order (which getopt's
/// "possibilities" list follows).
pub static LONGS: &[Long<Key>] = &{
    use HasArg::*;
    let a = [
        long("tree", Required, Key::Tree),
        long("leave-stopped", No, Key::LeaveStopped),
        long("leave-running", No, Key::LeaveRunning),
    ];
    let b = bool_opt!("restore-detached", Flag::RestoreDetached);
    let c = bool_opt!("restore-sibling", Flag::RestoreSibling);
    let d = bool_opt!("daemon", Flag::RestoreDetached);
    let e = [
        long("images-dir", Required, Key::ImagesDir),
        long("work-dir", Required, Key::WorkDir),
        long("log-file", Required, Key::LogFile),
        long("join-ns", Required, Key::JoinNs),
        long("root", Required, Key::Root),
        long("ext-unix-sk", Optional, Key::ExtUnixSk),
        long("help", No, Key::Help),
    ];
    let f = bool_opt!("tcp-established", Flag::TcpEstablished);
    let g = [long("close", Required, Key::Close)];
    let h = bool_opt!("log-pid", Flag::LogPid);
    let i = [long("version", No, Key::Version)];
    let j = bool_opt!("evasive-devices", Flag::EvasiveDevices);
    let k = [
        long("pidfile", Required, Key::Pidfile),
        long("veth-pair", Required, Key::VethPair),
        long("action-script", Required, Key::ActionScript),
    ];
    let l = bool_opt!("link-remap", Flag::LinkRemap);
    let m = bool_opt!("shell-job", Flag::ShellJob);
    let n = bool_opt!("file-locks", Flag::FileLocks);
    let o = bool_opt!("page-server", Flag::PageServer);
    let p = [
        long("address", Required, Key::Address),
        long("port", Required, Key::Port),
        long("prev-images-dir", Required, Key::PrevImagesDir),
        long("ms", No, Key::Ms),
    ];
    let q = bool_opt!("track-mem", Flag::TrackMem);
    let r = bool_opt!("auto-dedup", Flag::AutoDedup);
    let s = [
        long("libdir", Required, Key::Libdir),
        long("cpu-cap", Optional, Key::CpuCap),
    ];
    let t = bool_opt!("force-irmap", Flag::ForceIrmap);
    let u = [
        long("ext-mount-map", Required, Key::ExtMountMap),
        long("exec-cmd", No, Key::ExecCmd),
        long("manage-cgroups", Optional, Key::ManageCgroups),
        long("cgroup-root", Required, Key::CgroupRoot),
        long("inherit-fd", Required, Key::InheritFd),
        long("feature", Required, Key::Feature),
        long("skip-mnt", Required, Key::SkipMnt),
        long("enable-fs", Required, Key::EnableFs),
        long("enable-external-sharing", No, Key::EnableExternalSharing),
        long("enable-external-masters", No, Key::EnableExternalMasters),
        long("freeze-cgroup", Required, Key::FreezeCgroup),
        long("ghost-limit", Required, Key::GhostLimit),
        long("irmap-scan-path", Required, Key::IrmapScanPath),
        long("lsm-profile", Required, Key::LsmProfile),
        long("timeout", Required, Key::Timeout),
        long("external", Required, Key::External),
        long("empty-ns", Required, Key::EmptyNs),
        long("lazy-pages", No, Key::LazyPages),
    ];
    let v = bool_opt!("extra", Flag::Extra);
    let w = bool_opt!("experimental", Flag::Experimental);
    let x = [
        long("all", No, Key::All),
        long("cgroup-props", Required, Key::CgroupProps),
        long("cgroup-props-file", Required, Key::CgroupPropsFile),
        long(
            "cgroup-dump-controller",
            Required,
            Key::CgroupDumpController,
        ),
    ];
    let y = bool_opt!("skip-in-flight", Flag::SkipInFlight);
    let z = bool_opt!("deprecated", Flag::Deprecated);
    let a2 = bool_opt!("display-stats", Flag::DisplayStats);
    let b2 = bool_opt!("weak-sysctls", Flag::WeakSysctls);
    let c2 = [long("status-fd", Required, Key::StatusFd)];
    let d2 = bool_opt!("tcp-close", Flag::TcpClose);
    let e2 = [
        long("verbosity", Optional, Key::Verbosity),
        long("ps-socket", Required, Key::PsSocket),
    ];
    let f2 = bool_opt!("stream", Flag::Stream);
    let g2 = [
        long("config", Required, Key::Config),
        long("no-default-config", No, Key::NoDefaultConfig),
        long("tls-cacert", Required, Key::TlsCacert),
        long("tls-cacrl", Required, Key::TlsCacrl),
        long("tls-cert", Required, Key::TlsCert),
        long("tls-key", Required, Key::TlsKey),
    ];
    let h2 = bool_opt!("tls", Flag::Tls);
    let i2 = [
        long("tls-no-cn-verify", No, Key::TlsNoCnVerify),
        long("cgroup-yard", Required, Key::CgroupYard),
        long("pre-dump-mode", Required, Key::PreDumpMode),
        long("file-validation", Required, Key::FileValidation),
    ];
    let j2 = bool_opt!("skip-file-rwx-check", Flag::SkipFileRwxCheck);
    let k2 = [
        long("lsm-mount-context", Required, Key::LsmMountContext),
        long("network-lock", Required, Key::NetworkLock),
    ];
    let l2 = bool_opt!("mntns-compat-mode", Flag::MntnsCompatMode);
    let m2 = bool_opt!("unprivileged", Flag::Unprivileged);
    let n2 = bool_opt!("ghost-fiemap", Flag::GhostFiemap);
    let o2 = bool_opt!("allow-uprobes", Flag::AllowUprobes);
    // rcriu's own, after criu's.
    let rcriu = [
        long("encrypt", No, Key::Encrypt),
        long("encrypt-key-file", Required, Key::EncryptKeyFile),
        long("encrypt-key-fd", Required, Key::EncryptKeyFd),
    ];
    concat_longs([
        &a, &b, &c, &d, &e, &f, &g, &h, &i, &j, &k, &l, &m, &n, &o, &p, &q, &r, &s, &t, &u, &v, &w,
        &x, &y, &z, &a2, &b2, &c2, &d2, &e2, &f2, &g2, &h2, &i2, &j2, &k2, &l2, &m2, &n2, &o2,
        &rcriu,
    ])
};

/// The number of long options criu 4.2 has (with the `--no-` forms),
/// and rcriu's own three (`--encrypt`, `--encrypt-key-file`,
/// `--encrypt-key-fd`).
const NLONGS: usize = 112 + 3;

const fn concat_longs<const N: usize>(parts: [&[Long<Key>]; N]) -> [Long<Key>; NLONGS] {
    let mut out = [long("", HasArg::No, Key::Help); NLONGS];
    let mut n = 0;
    let mut p = 0;
    while p < N {
        let mut i = 0;
        while i < parts[p].len() {
            out[n] = parts[p][i];
            n += 1;
            i += 1;
        }
        p += 1;
    }
    assert!(n == NLONGS, "NLONGS is the number of long options");
    out
}

/// What reading criu's command line ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Options, and the words that are not options (the command first).
    Run(Box<Invocation>),
    /// `-h`, `--help`: the usage text, exit status 0.
    Help,
    /// `-V`, `--version`.
    Version,
}

/// A command line read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub options: Options,
    /// The command and what follows it.
    pub operands: Vec<OsString>,
    /// The configuration files read, in order.
    pub configs: Vec<PathBuf>,
}

/// What the environment says to the parser.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub home: Option<PathBuf>,
    /// `CRIU_CONFIG_FILE`.
    pub config_file: Option<PathBuf>,
    pub posixly_correct: bool,
}

impl Env {
    /// The process's own environment.
    pub fn from_process() -> Env {
        Env {
            home: std::env::var_os("HOME").map(PathBuf::from),
            config_file: std::env::var_os(config::ENV).map(PathBuf::from),
            posixly_correct: std::env::var_os("POSIXLY_CORRECT").is_some(),
        }
    }
}

/// Reads criu's command line `args` (without the program name) over the
/// configuration files, as criu 4.2 does.
pub fn parse(args: &[OsString], env: &Env) -> Result<Outcome, Error> {
    // Before anything (criu's pre_parse): help anywhere, and which
    // configuration files to read.
    let mut no_default = false;
    let mut cmdline_config = None;
    for (i, a) in args.iter().enumerate() {
        let b = a.as_encoded_bytes();
        if b == b"--help" || b == b"-h" {
            return Ok(Outcome::Help);
        } else if b == b"--no-default-config" {
            no_default = true;
        } else if b == b"--config" {
            cmdline_config = args.get(i + 1).map(PathBuf::from);
            no_default = true;
        } else if let Some(at) = find(b, b"--config=") {
            // SAFETY-free: splitting after an ASCII '=' keeps a valid
            // encoding.
            let rest = &b[at + b"--config=".len()..];
            cmdline_config = Some(PathBuf::from(os(rest)));
            no_default = true;
        }
    }
    let mut options = Options::default();
    let mut configs = Vec::new();
    for path in config::sources(
        no_default,
        env.home.as_deref(),
        env.config_file.as_deref(),
        cmdline_config.as_deref(),
    ) {
        if let Some(words) = config::read(&path)? {
            if let Some(outcome) = pass(&words, &mut options, env, Some(&path))? {
                return Ok(outcome);
            }
            configs.push(path);
        }
    }
    let p = getopt::parse(args, SHORTS, LONGS, env.posixly_correct);
    if let Some(outcome) = apply_all(&p.options, &mut options, None)? {
        return Ok(outcome);
    }
    if let Some(e) = p.error {
        return Err(Error::Usage(e.0));
    }
    Ok(Outcome::Run(Box::new(Invocation {
        options,
        operands: p.operands,
        configs,
    })))
}

/// Applies one more configuration file to `options` (criu's RPC
/// `config_file`, read after the RPC's own options).
pub fn apply_config(path: &Path, options: &mut Options) -> Result<bool, Error> {
    let Some(words) = config::read(path)? else {
        return Ok(false);
    };
    match pass(&words, options, &Env::default(), Some(path))? {
        // A configuration file asking for help or the version is a
        // command line's business; in RPC mode it is refused.
        Some(_) => Err(Error::Invalid(format!(
            "{}: --help and --version have no place in an RPC configuration file",
            path.display()
        ))),
        None => Ok(true),
    }
}

/// One getopt pass over a configuration file's words.
fn pass(
    words: &[OsString],
    options: &mut Options,
    env: &Env,
    file: Option<&Path>,
) -> Result<Option<Outcome>, Error> {
    let p = getopt::parse(words, SHORTS, LONGS, env.posixly_correct);
    if let Some(outcome) = apply_all(&p.options, options, file)? {
        return Ok(Some(outcome));
    }
    match p.error {
        Some(e) => Err(Error::Usage(match file {
            Some(f) => format!("{}: {}", f.display(), e.0),
            None => e.0,
        })),
        None => Ok(None),
    }
}

fn apply_all(
    found: &[Found<Key>],
    options: &mut Options,
    file: Option<&Path>,
) -> Result<Option<Outcome>, Error> {
    for f in found {
        match f.key {
            Key::Help => return Ok(Some(Outcome::Help)),
            Key::Version => return Ok(Some(Outcome::Version)),
            _ => apply(f, options).map_err(|e| match (e, file) {
                (Error::Invalid(m), Some(path)) => {
                    Error::Invalid(format!("{}: {m}", path.display()))
                }
                (e, _) => e,
            })?,
        }
    }
    Ok(None)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn os(b: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(b.to_vec())
}

/// What one option does to the options (criu's `parse_options` switch).
pub fn apply(f: &Found<Key>, o: &mut Options) -> Result<(), Error> {
    let raw: Option<&OsStr> = f.arg.as_deref();
    // getopt guarantees an argument to options that require one.
    let text = || {
        raw.map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let path = || PathBuf::from(raw.unwrap_or_default());
    let bad = |value: String| Error::BadArg {
        option: f.name.clone(),
        value,
    };
    match f.key {
        Key::Set(flag, v) => set_flag(o, flag, v),
        Key::EnableExternalSharing => o.enable_external_sharing = true,
        Key::EnableExternalMasters => o.enable_external_masters = true,
        Key::TlsNoCnVerify => o.tls_no_cn_verify = true,
        Key::LeaveStopped => o.final_state = FinalState::Stopped,
        Key::LeaveRunning => o.final_state = FinalState::Alive,
        Key::ExtUnixSk => {
            if let Some(a) = raw {
                o.unix_sk_ids.extend(unix_sk_ids(&a.to_string_lossy())?);
            }
            o.ext_unix_sk = true;
        }
        Key::Tree => {
            let t = atoi(&text());
            if t <= 0 {
                return Err(bad(text()));
            }
            o.tree = Some(t);
        }
        Key::Root => o.root = Some(path()),
        Key::ImagesDir => o.images_dir = Some(path()),
        Key::WorkDir => o.work_dir = Some(path()),
        Key::LogFile => o.log_file = Some(path()),
        Key::JoinNs => o.join_ns.push(join_ns(&text()).ok_or_else(|| bad(text()))?),
        Key::Verbosity => match raw.map(|a| a.to_string_lossy().into_owned()) {
            Some(a) if a.starts_with('v') => {
                o.log_level = o.log_level.wrapping_add(a.len() as i32 + 1)
            }
            Some(a) => o.log_level = atoi(&a),
            None => o.log_level = o.log_level.wrapping_add(1),
        },
        Key::Close => o.close_fds.push(atoi(&text())),
        Key::Pidfile => o.pidfile = Some(path()),
        Key::Encrypt => o.encrypt = true,
        Key::EncryptKeyFile => o.encrypt_key_file = Some(path()),
        Key::EncryptKeyFd => {
            let t = text();
            let n = sscanf_int(&t).filter(|n| *n >= 0).ok_or_else(|| {
                Error::Invalid("Unable to parse a value of --encrypt-key-fd".into())
            })?;
            o.encrypt_key_fd = Some(n);
        }
        Key::VethPair => {
            let t = text();
            let (a, b) = t.split_once('=').ok_or_else(|| bad(t.clone()))?;
            o.veth_pairs.push((a.to_owned(), b.to_owned()));
        }
        Key::ActionScript => o.action_scripts.push(path()),
        Key::Address => o.address = Some(text()),
        Key::Port => {
            let p = atoi(&text());
            if p == 0 {
                return Err(bad(text()));
            }
            // criu keeps it in an unsigned short.
            o.port = p as u16;
        }
        Key::PrevImagesDir => o.prev_images_dir = Some(path()),
        Key::Ms => {
            return Err(Error::Invalid(
                "--ms is deprecated; see \"Check options\" of criu --help".into(),
            ));
        }
        Key::Libdir => o.libdir = Some(path()),
        Key::CpuCap => o.cpu_cap = cpu_cap(o.cpu_cap, raw.map(|a| a.to_string_lossy()).as_deref())?,
        Key::ExtMountMap => {
            let t = text();
            if t == "auto" {
                o.auto_ext_mnt = true;
            } else {
                let (k, v) = t.split_once(':').ok_or_else(|| bad(t.clone()))?;
                o.ext_mount_map.push((k.to_owned(), v.to_owned()));
            }
        }
        Key::ExecCmd => o.exec_cmd = true,
        Key::ManageCgroups => {
            o.manage_cgroups = match raw.map(|a| a.to_string_lossy().into_owned()).as_deref() {
                None | Some("soft") => CgroupMode::Soft,
                Some("none") => CgroupMode::None,
                Some("props") => CgroupMode::Props,
                Some("full") => CgroupMode::Full,
                Some("strict") => CgroupMode::Strict,
                Some("ignore") => CgroupMode::Ignore,
                Some(m) => {
                    return Err(Error::Usage(format!("Unknown cgroups mode `{m}' selected")));
                }
            }
        }
        Key::CgroupRoot => {
            let t = text();
            o.cgroup_roots.push(match t.split_once(':') {
                Some((c, p)) => CgroupRoot {
                    controller: Some(c.to_owned()),
                    path: p.to_owned(),
                },
                None => CgroupRoot {
                    controller: None,
                    path: t,
                },
            });
        }
        Key::InheritFd => o.inherit_fds.push(inherit_fd(&text())?),
        Key::Feature => {
            let name = text();
            if !crate::FEATURES.contains(&name.as_str()) {
                return Err(Error::Invalid(format!("Unknown feature {name}")));
            }
            o.feature = Some(name);
        }
        Key::SkipMnt => o.skip_mnt.push(text()),
        Key::EnableFs => o.enable_fs.push(text()),
        Key::FreezeCgroup => o.freeze_cgroup = Some(path()),
        Key::GhostLimit => o.ghost_limit = parse_size(&text()),
        Key::IrmapScanPath => o.irmap_scan_paths.push(text()),
        Key::LsmProfile => o.lsm_profile = Some(text()),
        Key::Timeout => o.timeout = atoi(&text()) as u32,
        Key::External => {
            // `mnt[A]:B` names an external mount as `-M A:B` does (a
            // mount point and its key at dump, a key and its path at
            // restore); the others stay as criu lists them.
            let t = text();
            match t
                .strip_prefix("mnt[")
                .and_then(|r| r.split_once("]:"))
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            {
                Some((k, v)) => o.ext_mount_map.push((k.to_owned(), v.to_owned())),
                None => o.external.push(t),
            }
        }
        Key::EmptyNs => {
            if text() != "net" {
                return Err(Error::Invalid(format!(
                    "Unsupported empty namespace: {}",
                    text()
                )));
            }
            o.empty_ns |= CLONE_NEWNET;
        }
        Key::LazyPages => o.lazy_pages = true,
        Key::All => {
            o.check_extra = true;
            o.check_experimental = true;
        }
        Key::CgroupProps => o.cgroup_props = Some(text()),
        Key::CgroupPropsFile => o.cgroup_props_file = Some(text()),
        Key::CgroupDumpController => o.cgroup_dump_controllers.push(text()),
        Key::StatusFd => {
            let t = text();
            let n = sscanf_int(&t)
                .ok_or_else(|| Error::Invalid("Unable to parse a value of --status-fd".into()))?;
            o.status_fd = Some(n);
        }
        Key::PsSocket => o.ps_socket = Some(atoi(&text())),
        // Read before the passes (criu's pre_parse).
        Key::Config | Key::NoDefaultConfig => {}
        Key::TlsCacert => o.tls_cacert = Some(path()),
        Key::TlsCacrl => o.tls_cacrl = Some(path()),
        Key::TlsCert => o.tls_cert = Some(path()),
        Key::TlsKey => o.tls_key = Some(path()),
        Key::CgroupYard => o.cgroup_yard = Some(text()),
        Key::PreDumpMode => match text().as_str() {
            "read" => o.pre_dump_mode = PreDumpMode::Read,
            "splice" => {}
            _ => {
                return Err(Error::Invalid(
                    "Unable to parse value of --pre-dump-mode".into(),
                ));
            }
        },
        Key::FileValidation => {
            o.file_validation = match text().as_str() {
                "filesize" => FileValidation::FileSize,
                "buildid" => FileValidation::BuildId,
                m => {
                    return Err(Error::Usage(format!(
                        "Unknown file validation method `{m}' selected"
                    )));
                }
            }
        }
        Key::LsmMountContext => o.lsm_mount_context = Some(text()),
        Key::NetworkLock => {
            o.network_lock_given = true;
            o.network_lock = match text().as_str() {
                "iptables" => NetworkLock::Iptables,
                "nftables" => NetworkLock::Nftables,
                "skip" | "none" => NetworkLock::Skip,
                m => {
                    return Err(Error::Invalid(format!(
                        "Invalid value for --network-lock: {m}"
                    )));
                }
            }
        }
        Key::Help | Key::Version => {}
    }
    Ok(())
}

fn set_flag(o: &mut Options, flag: Flag, v: bool) {
    match flag {
        Flag::RestoreDetached => o.restore_detached = v,
        Flag::RestoreSibling => o.restore_sibling = v,
        Flag::TcpEstablished => o.tcp_established = v,
        Flag::LogPid => o.log_pid = v,
        Flag::EvasiveDevices => o.evasive_devices = v,
        Flag::LinkRemap => o.link_remap = v,
        Flag::ShellJob => o.shell_job = v,
        Flag::FileLocks => o.file_locks = v,
        Flag::PageServer => o.page_server = v,
        Flag::TrackMem => o.track_mem = v,
        Flag::AutoDedup => o.auto_dedup = v,
        Flag::ForceIrmap => o.force_irmap = v,
        Flag::Extra => o.check_extra = v,
        Flag::Experimental => o.check_experimental = v,
        Flag::SkipInFlight => o.tcp_skip_in_flight = v,
        Flag::Deprecated => o.deprecated = v,
        Flag::DisplayStats => o.display_stats = v,
        Flag::WeakSysctls => o.weak_sysctls = v,
        Flag::TcpClose => o.tcp_close = v,
        Flag::Stream => o.stream = v,
        Flag::Tls => o.tls = v,
        Flag::SkipFileRwxCheck => o.skip_file_rwx_check = v,
        Flag::MntnsCompatMode => o.mntns_compat_mode = Some(v),
        Flag::Unprivileged => o.unprivileged = v,
        Flag::GhostFiemap => o.ghost_fiemap = Some(v),
        Flag::AllowUprobes => o.allow_uprobes = v,
    }
}

/// `sscanf("%d")`: blanks, then a number; nothing → none.
fn sscanf_int(s: &str) -> Option<i32> {
    let t = s.trim_start();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    digits
        .bytes()
        .next()
        .filter(u8::is_ascii_digit)
        .map(|_| atoi(t))
}

/// `--ext-unix-sk=INO,INO...` (criu's `unix_sk_ids_parse`).
fn unix_sk_ids(s: &str) -> Result<Vec<u32>, Error> {
    let mut ids = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse::<u32>() {
            Ok(ino) if ino != 0 && digits.len() == part.len() => ids.push(ino),
            _ => {
                return Err(Error::Invalid(format!(
                    "Failed to parse unix socket inode from optarg: {s}"
                )));
            }
        }
    }
    Ok(ids)
}

/// `--join-ns NS:FILE[,EXTRA]`.
fn join_ns(s: &str) -> Option<JoinNs> {
    let (ns, rest) = s.split_once(':')?;
    let (file, extra) = match rest.split_once(',') {
        Some((f, e)) => (f, Some(e.to_owned())),
        None => (rest, None),
    };
    Some(JoinNs {
        ns: ns.to_owned(),
        file: file.to_owned(),
        extra,
    })
}

/// `--inherit-fd fd[N]:KEY` (criu's `inherit_fd_parse`).
fn inherit_fd(s: &str) -> Result<InheritFd, Error> {
    let invalid = || Error::Invalid(format!("Invalid inherit fd argument: {s}"));
    if s.starts_with("debug") {
        // criu writes the message to the fd at once: a debugging aid
        // rcriu does not carry.
        return Err(Error::Invalid(format!(
            "--inherit-fd {s}: the debug[N]: form is not supported yet"
        )));
    }
    let rest = s.strip_prefix("fd[").ok_or_else(invalid)?;
    let (num, key) = rest.split_once("]:").ok_or_else(invalid)?;
    let fd = sscanf_int(num).filter(|&fd| fd >= 0).ok_or_else(invalid)?;
    if key.is_empty() {
        return Err(invalid());
    }
    Ok(InheritFd {
        fd,
        key: key.to_owned(),
    })
}

/// `--cpu-cap[=CAPS]` (criu's `parse_cpu_cap`).
fn cpu_cap(mut cap: u32, arg: Option<&str>) -> Result<u32, Error> {
    let Some(mut s) = arg else {
        return Ok(cap | cpu_cap::ALL | cpu_cap::IMAGE);
    };
    let whole = s;
    let mut inverse = false;
    let set = |cap: &mut u32, bits: u32, inverse: bool| {
        if inverse {
            *cap &= !bits;
        } else {
            *cap |= bits;
        }
    };
    while !s.is_empty() {
        if let Some(r) = s.strip_prefix('^') {
            inverse = !inverse;
            s = r;
        } else if let Some(r) = s.strip_prefix(',') {
            inverse = false;
            s = r;
        } else if let Some(r) = s.strip_prefix("fpu") {
            set(&mut cap, cpu_cap::FPU, inverse);
            s = r;
        } else if let Some(r) = s.strip_prefix("all") {
            set(&mut cap, cpu_cap::ALL, inverse);
            s = r;
        } else if let Some(r) = s.strip_prefix("none") {
            cap = if inverse { cpu_cap::ALL } else { cpu_cap::NONE };
            s = r;
        } else if let Some(r) = s.strip_prefix("cpu") {
            set(&mut cap, cpu_cap::CPU, inverse);
            s = r;
        } else if let Some(r) = s.strip_prefix("ins") {
            set(&mut cap, cpu_cap::INS, inverse);
            s = r;
        } else {
            return Err(Error::Usage(format!("Unknown FPU mode `{whole}' selected")));
        }
    }
    if cap != cpu_cap::NONE {
        cap |= cpu_cap::IMAGE;
    }
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<OsString> {
        w.iter().map(OsString::from).collect()
    }

    fn run(w: &[&str]) -> Invocation {
        match parse(&words(w), &Env::default()).unwrap() {
            Outcome::Run(i) => *i,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn the_table_is_criu_4_2s() {
        // Every name once; each boolean with its --no- form.
        let mut names: Vec<&str> = LONGS.iter().map(|l| l.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), LONGS.len());
        for n in [
            "tree",
            "no-display-stats",
            "verbosity",
            "allow-uprobes",
            "daemon",
        ] {
            assert!(names.contains(&n), "{n}");
        }
    }

    #[test]
    fn zdtms_lines() {
        let i = run(&[
            "dump",
            "--no-default-config",
            "--log-file",
            "dump.log",
            "--images-dir",
            "/d",
            "--verbosity=4",
            "--tree",
            "42",
            "--pidfile",
            "/p",
            "--timeout",
            "10",
        ]);
        assert_eq!(i.operands, words(&["dump"]));
        let o = &i.options;
        assert_eq!(o.tree, Some(42));
        assert_eq!(o.log_level, 4);
        assert_eq!(o.images_dir.as_deref(), Some(Path::new("/d")));
        assert_eq!(o.log_file.as_deref(), Some(Path::new("dump.log")));
        assert_eq!(o.pidfile.as_deref(), Some(Path::new("/p")));
        assert_eq!(o.timeout, 10);
        let i = run(&[
            "check",
            "--no-default-config",
            "-verbosity=0",
            "--feature",
            "mnt_id",
        ]);
        assert_eq!(i.options.log_level, 0);
        assert_eq!(i.options.feature.as_deref(), Some("mnt_id"));
    }

    #[test]
    fn verbosity_forms() {
        let level = |w: &[&str]| run(w).options.log_level;
        assert_eq!(level(&["dump"]), 2);
        assert_eq!(level(&["-v"]), 3);
        assert_eq!(level(&["-vv"]), 4);
        assert_eq!(level(&["-vvvv"]), 6);
        assert_eq!(level(&["-v4"]), 4);
        assert_eq!(level(&["-v0"]), 0);
        assert_eq!(level(&["--verbosity"]), 3);
        assert_eq!(level(&["--verbosity=1"]), 1);
        assert_eq!(level(&["-vx"]), 0);
        // "-v 4": 4 is an operand.
        assert_eq!(run(&["-v", "4"]).operands, words(&["4"]));
    }

    #[test]
    fn booleans_and_their_negations() {
        let o = run(&["-R", "--shell-job", "--no-shell-job", "-j", "--daemon"]).options;
        assert_eq!(o.final_state, FinalState::Alive);
        assert!(o.shell_job);
        assert!(o.restore_detached);
        assert!(
            !run(&["-d", "--no-restore-detached"])
                .options
                .restore_detached
        );
        assert_eq!(
            run(&["--leave-stopped"]).options.final_state,
            FinalState::Stopped
        );
    }

    #[test]
    fn arguments_read_as_criu() {
        let o = run(&[
            "--ghost-limit",
            "8M",
            "--manage-cgroups",
            "--inherit-fd",
            "fd[5]:pipe:[1234]",
            "--external",
            "mnt[/a]:b",
            "-x12,34",
            "--cgroup-root",
            "cpu:/new",
            "--status-fd",
            "7",
            "--cpu-cap=^fpu",
            "--empty-ns",
            "net",
            "--join-ns",
            "net:/run/netns/x,extra",
        ])
        .options;
        assert_eq!(o.ghost_limit, 8 << 20);
        assert_eq!(o.manage_cgroups, CgroupMode::Soft);
        assert_eq!(
            o.inherit_fds,
            [InheritFd {
                fd: 5,
                key: "pipe:[1234]".into()
            }]
        );
        // An external mount is -M's.
        assert!(o.external.is_empty());
        assert_eq!(o.ext_mount_map, [("/a".to_string(), "b".to_string())]);
        assert!(o.ext_unix_sk);
        assert_eq!(o.unix_sk_ids, [12, 34]);
        assert_eq!(o.cgroup_roots[0].controller.as_deref(), Some("cpu"));
        assert_eq!(o.status_fd, Some(7));
        assert_eq!(o.cpu_cap, cpu_cap::INS | cpu_cap::IMAGE);
        assert_eq!(o.empty_ns, CLONE_NEWNET);
        assert_eq!(o.join_ns[0].extra.as_deref(), Some("extra"));
        assert_eq!(
            run(&["--manage-cgroups=full"]).options.manage_cgroups,
            CgroupMode::Full
        );
    }

    #[test]
    fn errors() {
        let err = |w: &[&str]| parse(&words(w), &Env::default()).unwrap_err();
        assert!(matches!(err(&["-t", "0"]), Error::BadArg { .. }));
        assert_eq!(err(&["-t", "x"]).to_string(), "invalid argument for -t: x");
        assert_eq!(
            err(&["--tree=-3"]).to_string(),
            "invalid argument for --tree: -3"
        );
        assert!(matches!(err(&["--bogus"]), Error::Usage(_)));
        assert!(matches!(err(&["--ms"]), Error::Invalid(_)));
        assert_eq!(
            err(&["--feature", "nope"]).to_string(),
            "Unknown feature nope"
        );
        assert!(matches!(err(&["--manage-cgroups=x"]), Error::Usage(_)));
        assert!(matches!(
            err(&["--inherit-fd", "fd[x]:a"]),
            Error::Invalid(_)
        ));
    }

    #[test]
    fn help_and_version_as_criu_finds_them() {
        let p = |w: &[&str]| parse(&words(w), &Env::default());
        // Help is looked for first, anywhere.
        assert_eq!(p(&["--bogus", "-h"]).unwrap(), Outcome::Help);
        // The version when its option comes before a bad one.
        assert_eq!(p(&["-V", "--bogus"]).unwrap(), Outcome::Version);
        assert!(p(&["--bogus", "-V"]).is_err());
    }

    #[test]
    fn configuration_files_come_first() {
        let dir = std::env::temp_dir().join(format!("rcriu-opts-cfg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".criu")).unwrap();
        std::fs::write(dir.join(".criu/default.conf"), "shell-job\nverbosity 4\n").unwrap();
        std::fs::write(dir.join("env.conf"), "ghost-limit 2M\n").unwrap();
        std::fs::write(dir.join("given.conf"), "tcp-close\nlog-file \"a b\"\n").unwrap();
        let env = Env {
            home: Some(dir.clone()),
            config_file: Some(dir.join("env.conf")),
            posixly_correct: false,
        };
        let run = |w: &[&str]| match parse(&words(w), &env).unwrap() {
            Outcome::Run(i) => *i,
            o => panic!("{o:?}"),
        };
        let i = run(&["dump", "-v1"]);
        assert!(i.options.shell_job);
        // The command line last.
        assert_eq!(i.options.log_level, 1);
        assert_eq!(i.options.ghost_limit, 2 << 20);
        assert!(!i.options.tcp_close);
        // --no-default-config: the user's file goes, the environment's
        // stays.
        let i = run(&["dump", "--no-default-config"]);
        assert!(!i.options.shell_job);
        assert_eq!(i.options.ghost_limit, 2 << 20);
        // --config FILE also leaves out the default files.
        let given = dir.join("given.conf");
        let i = run(&["dump", "--config", given.to_str().unwrap()]);
        assert!(i.options.tcp_close && !i.options.shell_job);
        assert_eq!(i.options.log_file.as_deref(), Some(Path::new("a b")));
        let i = run(&["dump", &format!("--config={}", given.display())]);
        assert!(i.options.tcp_close);
        std::fs::write(dir.join("bad.conf"), "verbosity 4 5\n").unwrap();
        let bad = dir.join("bad.conf");
        assert!(matches!(
            parse(&words(&["--config", bad.to_str().unwrap()]), &env),
            Err(Error::Config { line: 1, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
