//! rcriu's command line as criu's callers write it: zdtm's lines, the
//! forms getopt_long takes, configuration files, the log, `check`, the
//! version, action scripts, pid files, statistics, the options refused by
//! name, and a set-user-ID copy refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcriu_test_support::TempDir;

fn rcriu() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rcriu"));
    // No configuration file of the machine's or the user's gets in.
    c.env("HOME", "/nonexistent").env_remove("CRIU_CONFIG_FILE");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running rcriu")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "rcriu failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn failed(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "rcriu should fail with 1: stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// zdtm's dump line (test/zdtm.py), with `extra` options.
fn zdtm_dump(pid: i32, dir: &Path, extra: &[&str]) -> Command {
    let mut c = rcriu();
    c.args([
        "dump",
        "--no-default-config",
        "--log-file",
        "dump.log",
        "--images-dir",
    ])
    .arg(dir)
    .args(["--verbosity=4", "--tree", &pid.to_string(), "--pidfile"])
    .arg(dir.join("test.pid"))
    .args(["--timeout", "10", "--pre-dump-mode", "splice"])
    .args(extra);
    c
}

/// zdtm's restore line.
fn zdtm_restore(dir: &Path, pidfile: &Path, extra: &[&str]) -> Command {
    let mut c = rcriu();
    c.args([
        "restore",
        "--no-default-config",
        "--log-file",
        "restore.log",
        "--images-dir",
    ])
    .arg(dir)
    .args(["--verbosity=4", "--pidfile"])
    .arg(pidfile)
    .args(extra)
    .arg("--restore-detached");
    c
}

fn images(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".img"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn zdtms_lines_dump_and_restore() {
    let _g = common::setup();
    let mut w = common::start("dump_state", &[]);
    let t = TempDir::new("cli-zdtm");
    let dir = t.path().join("1");
    std::fs::create_dir(&dir).unwrap();
    ok(&run(&mut zdtm_dump(w.pid, &dir, &[])));
    w.reap();
    let log = std::fs::read_to_string(dir.join("dump.log")).unwrap();
    // criu's time stamps from -v3 on, criu's version line.
    assert!(log.starts_with("(00.0"), "{log}");
    assert!(log.contains("Version: 4.2"), "{log}");
    assert!(!log.contains("Error"), "{log}");
    assert!(dir.join("stats-dump").exists());
    // zdtm hands dump its own pid file: criu does not touch it on dump.
    assert!(!dir.join("test.pid").exists());
    let pidfile = t.path().join("restored.pid");
    ok(&run(&mut zdtm_restore(&dir, &pidfile, &[])));
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        w.pid.to_string(),
        "criu's pid file: the pid, no newline"
    );
    assert!(dir.join("stats-restore").exists());
    w.verdict().expect("the restored process is intact");
}

#[test]
fn check_answers_for_rcriu() {
    // zdtm's feature probe: criu's accidental "-verbosity=0" is -v with
    // "erbosity=0", level 0: nothing but the answer.
    let probe = |feature: &str| {
        run(rcriu().args([
            "check",
            "--no-default-config",
            "-verbosity=0",
            "--feature",
            feature,
        ]))
    };
    let out = probe("mnt_id");
    assert_eq!(ok(&out), "mnt_id is supported\n");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    // The kernel has user namespaces, and rcriu dumps and restores a
    // tree in one of its own.
    assert!(Path::new("/proc/self/ns/user").exists());
    assert_eq!(ok(&probe("userns")), "userns is supported\n");
    // What rcriu lacks: missing, silently at this verbosity.
    let out = probe("pidfd_store");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    // Memory tracking is rcriu's own (a userfaultfd), not soft-dirty.
    assert_eq!(
        ok(&probe("mem_dirty_track")),
        "mem_dirty_track is supported\n"
    );
    // Lazy pages: a userfaultfd with the events they follow.
    let out = probe("uffd-noncoop");
    assert_eq!(ok(&out), "uffd-noncoop is supported\n");
    // Said why at a higher level.
    let out = run(rcriu().args(["check", "--feature", "aio_remap"]));
    assert!(failed(&out).contains("rcriu does not implement AIO rings"));
    // An unknown name, as criu.
    let out = run(rcriu().args(["check", "--feature", "nope"]));
    assert!(failed(&out).contains("Unknown feature nope"));
    let out = run(rcriu().arg("check"));
    assert_eq!(ok(&out), "Looks good.\n");
    // --all: every feature of criu's list, and rcriu lacks some.
    let out = run(rcriu().args(["check", "--all"]));
    assert!(text(&out.stdout).starts_with("Looks good but some kernel features are missing"));
    assert!(
        text(&out.stderr).contains("Warn  ("),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn version_in_criu_format() {
    for flag in ["--version", "-V"] {
        let out = ok(&run(rcriu().arg(flag)));
        assert!(out.starts_with("Version: 4.2\n"), "{out}");
        assert!(out.contains("rcriu"), "{out}");
    }
    // As getopt reads it: the version before a bad option is printed...
    assert!(ok(&run(rcriu().args(["-V", "--bogus"]))).starts_with("Version: 4.2"));
    // ...a bad option before it is an error.
    failed(&run(rcriu().args(["--bogus", "-V"])));
}

#[test]
fn getopt_rules() {
    let out = run(rcriu().args(["dump", "--bogus"]));
    let err = failed(&out);
    assert!(err.contains("unrecognized option '--bogus'"), "{err}");
    assert!(text(&out.stdout).contains("Usage:"));
    let err = failed(&run(rcriu().args(["dump", "--log-file"])));
    assert!(
        err.contains("option '--log-file' requires an argument"),
        "{err}"
    );
    let err = failed(&run(rcriu().args(["dump", "--leave-running=yes"])));
    assert!(err.contains("doesn't allow an argument"), "{err}");
    // An ambiguous abbreviation.
    let err = failed(&run(rcriu().args(["dump", "--tcp"])));
    assert!(err.contains("is ambiguous"), "{err}");
    // Help anywhere, exit status 0.
    let out = run(rcriu().args(["dump", "--bogus", "--help"]));
    assert!(ok(&out).contains("--tcp-established"));
    // Criu's messages for the command.
    let out = run(rcriu().arg("-v4"));
    assert!(failed(&out).contains("command is required"));
    let out = run(rcriu().arg("frobnicate"));
    assert!(failed(&out).contains("unknown command: frobnicate"));
    let out = run(rcriu().args(["check", "extra"]));
    assert!(failed(&out).contains("excessive parameter for command check"));
    let err = failed(&run(rcriu().args(["dump", "-t", "0"])));
    assert!(err.contains("invalid argument for -t: 0"), "{err}");
    let err = failed(&run(rcriu().args(["restore", "--inherit-fd", "bad"])));
    assert!(err.contains("Invalid inherit fd argument: bad"), "{err}");
}

#[test]
fn options_rcriu_cannot_honour_are_refused_by_name() {
    let _g = common::setup();
    let w = common::start("dump_state", &[]);
    let t = TempDir::new("cli-refused-opts");
    for (opts, name) in [
        (&["--external", "unix[12345]"][..], "--external"),
        (&["--cgroup-props", "cpu: []"], "--cgroup-props"),
        (&["--timeout", "3"], "--timeout"),
        (&["--stream"], "--stream"),
        (&["--skip-mnt", "/x"], "--skip-mnt"),
        (&["--libdir", "/tmp"], "--libdir"),
        (&["--leave-running", "--lazy-pages"], "--lazy-pages"),
    ] {
        let dir = t.path().join(name.trim_start_matches('-'));
        let out = run(&mut zdtm_dump(w.pid, &dir, opts));
        let err = failed(&out);
        assert!(
            err.contains(&format!("option {name} is not supported yet")),
            "{opts:?}: {err}"
        );
        // In the log too, as an error zdtm's grep finds.
        let log = std::fs::read_to_string(dir.join("dump.log")).unwrap();
        assert!(log.contains("Error ("), "{log}");
        assert!(images(&dir).is_empty(), "{opts:?}: {:?}", images(&dir));
    }
    // The page server (tests/page_server.rs) needs its address.
    let dir = t.path().join("page-server");
    let err = failed(&run(&mut zdtm_dump(
        w.pid,
        &dir,
        &["--page-server", "--port", "1"],
    )));
    assert!(err.contains("--page-server needs --address"), "{err}");
    assert!(images(&dir).is_empty(), "{:?}", images(&dir));
    // Their negative forms ask for nothing, nor does criu's default
    // timeout or cgroup mode: the dump goes through.
    let dir = t.path().join("plain");
    ok(&run(&mut zdtm_dump(
        w.pid,
        &dir,
        &[
            "--no-link-remap",
            "--no-file-locks",
            "--manage-cgroups",
            "--leave-running",
        ],
    )));
    assert!(images(&dir).contains(&"inventory.img".to_string()));
    w.verdict().expect("the process ran on through it all");
}

#[test]
fn socket_options_are_honoured() {
    let _g = common::setup();
    let mut w = common::start("sk_tcp", &["pair"]);
    let t = TempDir::new("cli-sockets");
    // Without --tcp-established a connection is refused by name.
    let dir = t.path().join("refused");
    let err = failed(&run(&mut zdtm_dump(w.pid, &dir, &[])));
    assert!(err.contains("--tcp-established"), "{err}");
    assert!(images(&dir).is_empty(), "{:?}", images(&dir));
    // With it (and a lock method named), the connections are dumped and
    // come back connected.
    let dir = t.path().join("1");
    let opts = [
        "--tcp-established",
        "--network-lock",
        "nftables",
        "--skip-in-flight",
    ];
    ok(&run(&mut zdtm_dump(w.pid, &dir, &opts)));
    w.reap();
    assert!(images(&dir).iter().any(|n| n.starts_with("tcp-stream-")));
    let pidfile = t.path().join("restored.pid");
    ok(&run(&mut zdtm_restore(
        &dir,
        &pidfile,
        &["--tcp-established"],
    )));
    w.verdict().expect("the restored connections carry on");
}

#[test]
fn the_log_is_criu_s() {
    let _g = common::setup();
    let w = common::start("dump_state", &[]);
    let t = TempDir::new("cli-log");
    // Relative to the work directory, truncated when opened.
    let work = t.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("my.log"), "stale line\n".repeat(100)).unwrap();
    let dir = t.path().join("img");
    let out = run(rcriu()
        .args([
            "dump",
            "-t",
            &w.pid.to_string(),
            "-R",
            "-v2",
            "-o",
            "my.log",
            "-W",
        ])
        .arg(&work)
        .arg("-D")
        .arg(&dir)
        .arg("--stream"));
    failed(&out);
    let log = std::fs::read_to_string(work.join("my.log")).unwrap();
    assert!(!log.contains("stale"), "{log}");
    // -v2: no time stamps, errors as criu's.
    let line = log.lines().find(|l| l.contains("--stream")).unwrap();
    assert!(line.starts_with("Error ("), "{line}");
    assert!(
        line.contains(".rs:") && line.contains("): "),
        "Error (FILE:LINE): {line}"
    );
    // -v4: every line stamped.
    let out = run(rcriu()
        .args([
            "dump",
            "-t",
            &w.pid.to_string(),
            "-R",
            "-v4",
            "-o",
            "v4.log",
            "-W",
        ])
        .arg(&work)
        .arg("-D")
        .arg(&dir));
    ok(&out);
    let log = std::fs::read_to_string(work.join("v4.log")).unwrap();
    for l in log.lines() {
        assert!(
            l.len() > 12 && l.starts_with('(') && &l[10..12] == ") ",
            "a line without criu's stamp: {l}"
        );
    }
    // The statistics go to the work directory, not beside the images.
    assert!(work.join("stats-dump").exists());
    assert!(!dir.join("stats-dump").exists());
    // --display-stats: criu's text on standard output.
    let out = run(rcriu()
        .args([
            "dump",
            "-t",
            &w.pid.to_string(),
            "-R",
            "--display-stats",
            "-D",
        ])
        .arg(t.path().join("img2")));
    let stdout = ok(&out);
    assert!(stdout.starts_with("Displaying dump stats:\n"), "{stdout}");
    assert!(stdout.contains("Memory pages written: "), "{stdout}");
    assert!(t.path().join("img2/stats-dump").exists());
    w.verdict().unwrap();
}

#[test]
fn configuration_files_as_criu_reads_them() {
    let _g = common::setup();
    let w = common::start("dump_state", &[]);
    let t = TempDir::new("cli-config");
    let home = t.path().join("home");
    std::fs::create_dir_all(home.join(".criu")).unwrap();
    std::fs::write(home.join(".criu/default.conf"), "# the user's\nstream\n").unwrap();
    let dump = |dir: &str, extra: &[&str], env_file: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rcriu"));
        c.env("HOME", &home).env_remove("CRIU_CONFIG_FILE");
        if let Some(f) = env_file {
            c.env("CRIU_CONFIG_FILE", f);
        }
        c.args(["dump", "-R", "-t", &w.pid.to_string(), "-D"])
            .arg(t.path().join(dir))
            .args(extra);
        run(&mut c)
    };
    // $HOME/.criu/default.conf is read...
    let err = failed(&dump("a", &[], None));
    assert!(err.contains("--stream"), "{err}");
    // ...but not with --no-default-config.
    ok(&dump("b", &["--no-default-config"], None));
    // The command line comes after the files.
    ok(&dump("c", &["--no-stream"], None));
    // CRIU_CONFIG_FILE and --config FILE (which leaves out the default
    // files), in criu's syntax.
    let env_conf = t.path().join("env.conf");
    std::fs::write(&env_conf, "log-file \"from env.log\"\nverbosity 4\n").unwrap();
    ok(&dump("d", &["--no-default-config"], Some(&env_conf)));
    assert!(t.path().join("d/from env.log").exists());
    let given = t.path().join("given.conf");
    std::fs::write(&given, "log-file=given.log # a comment\n").unwrap();
    ok(&dump("e", &["--config", given.to_str().unwrap()], None));
    assert!(t.path().join("e/given.log").exists());
    // A line criu cannot read is an error, naming the file.
    std::fs::write(&given, "log-file \"unterminated\n").unwrap();
    let err = failed(&dump("f", &["--config", given.to_str().unwrap()], None));
    assert!(err.contains("given.conf"), "{err}");
    w.verdict().unwrap();
}

/// An action script that records each call: "ACTION PID IMAGEDIR-OK".
fn recording_script(dir: &Path, fail_at: Option<&str>) -> (PathBuf, PathBuf) {
    let record = dir.join("calls");
    let script = dir.join("script.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ -e \"$CRTOOLS_IMAGE_DIR/inventory.img\" ]; then img=inventory; else img=-; fi\n\
             echo \"$CRTOOLS_SCRIPT_ACTION ${{CRTOOLS_INIT_PID:--}} $img\" >> {}\n\
             [ \"$CRTOOLS_SCRIPT_ACTION\" = \"{}\" ] && exit 3\n\
             exit 0\n",
            record.display(),
            fail_at.unwrap_or("none")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, record)
}

#[test]
fn action_scripts_at_criu_s_points() {
    let _g = common::setup();
    let mut w = common::start("dump_state", &[]);
    let t = TempDir::new("cli-scripts");
    let (script, record) = recording_script(t.path(), None);
    let dir = t.path().join("img");
    let script_opt = ["--action-script", script.to_str().unwrap()];
    ok(&run(&mut zdtm_dump(w.pid, &dir, &script_opt)));
    w.reap();
    let pidfile = t.path().join("pid");
    ok(&run(&mut zdtm_restore(&dir, &pidfile, &script_opt)));
    let calls = std::fs::read_to_string(&record).unwrap();
    let pid = w.pid;
    assert_eq!(
        calls,
        format!(
            "pre-dump {pid} -\npost-dump {pid} inventory\npre-restore - inventory\n\
             post-restore {pid} inventory\npre-resume {pid} inventory\npost-resume {pid} inventory\n"
        )
    );
    w.verdict().unwrap();
}

#[test]
fn a_failing_pre_dump_script_stops_the_dump() {
    let _g = common::setup();
    let w = common::start("dump_state", &[]);
    let t = TempDir::new("cli-script-fail");
    let (script, record) = recording_script(t.path(), Some("pre-dump"));
    let dir = t.path().join("img");
    let out = run(&mut zdtm_dump(
        w.pid,
        &dir,
        &["--action-script", script.to_str().unwrap()],
    ));
    failed(&out);
    let log = std::fs::read_to_string(dir.join("dump.log")).unwrap();
    assert!(log.contains("exited with 3"), "{log}");
    assert_eq!(std::fs::read_to_string(&record).unwrap().lines().count(), 1);
    assert!(images(&dir).is_empty());
    w.verdict().expect("untouched");
}

#[test]
fn a_failing_post_restore_script_leaves_nothing_running() {
    let _g = common::setup();
    let mut w = common::start("dump_state", &[]);
    let t = TempDir::new("cli-post-restore-fail");
    let (script, _) = recording_script(t.path(), Some("post-restore"));
    let dir = t.path().join("img");
    ok(&run(&mut zdtm_dump(w.pid, &dir, &[])));
    w.reap();
    let pidfile = t.path().join("pid");
    let out = run(&mut zdtm_restore(
        &dir,
        &pidfile,
        &["--action-script", script.to_str().unwrap()],
    ));
    failed(&out);
    assert!(gone(w.pid), "the process was killed before it ran");
    assert!(!pidfile.exists());
    // Negative control: without the script, the same images restore.
    ok(&run(&mut zdtm_restore(&dir, &pidfile, &[])));
    w.verdict().unwrap();
}

#[test]
fn the_pid_file_is_never_written_through_a_link() {
    let _g = common::setup();
    let mut w = common::start("dump_state", &[]);
    let t = TempDir::new("cli-pidfile");
    let dir = t.path().join("img");
    ok(&run(&mut zdtm_dump(w.pid, &dir, &[])));
    w.reap();
    // A pid file path that is a link to someone's file: criu opens it
    // O_EXCL and fails; the restored process must not be left running.
    let victim = t.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let link = t.path().join("pid");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let out = run(&mut zdtm_restore(&dir, &link, &[]));
    let err = failed(&out);
    assert!(err.contains("pidfile"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(gone(w.pid), "nothing of the failed restore runs");
    // An existing plain file: the same.
    std::fs::remove_file(&link).unwrap();
    std::fs::write(&link, "").unwrap();
    failed(&run(&mut zdtm_restore(&dir, &link, &[])));
    assert!(gone(w.pid));
    // Negative control: a fresh path.
    std::fs::remove_file(&link).unwrap();
    ok(&run(&mut zdtm_restore(&dir, &link, &[])));
    assert_eq!(std::fs::read_to_string(&link).unwrap(), w.pid.to_string());
    w.verdict().unwrap();
}

#[test]
fn exec_cmd_becomes_the_parent() {
    let _g = common::setup();
    let mut w = common::start("dump_state", &[]);
    let t = TempDir::new("cli-exec-cmd");
    let dir = t.path().join("img");
    ok(&run(&mut zdtm_dump(w.pid, &dir, &[])));
    w.reap();
    // The command, exec'd by rcriu once the process runs, is its parent:
    // it tells it to check itself and waits until it is gone (the shell
    // reaps it, being its parent).
    let out_file = t.path().join("parent");
    let mut child = rcriu()
        .args(["restore", "-D"])
        .arg(&dir)
        .args([
            "--exec-cmd",
            "--",
            "/bin/sh",
            "-c",
            &format!(
                "awk '{{print $4}}' /proc/{pid}/stat > {out}; echo $$ >> {out}; kill -USR1 {pid}; \
                 while [ -e /proc/{pid} ]; do sleep 0.01; done",
                out = out_file.display(),
                pid = w.pid
            ),
        ])
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let ids = std::fs::read_to_string(&out_file).unwrap();
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(
        ids[0], ids[1],
        "the restored process's parent is the command"
    );
    let text = std::fs::read_to_string(&w.outfile).unwrap_or_default();
    assert_eq!(text.trim(), "PASS");
}

#[test]
fn named_criu_it_is_criu() {
    let t = TempDir::new("cli-as-criu");
    let criu = t.path().join("criu");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rcriu"), &criu).unwrap();
    let out = run(Command::new(&criu).arg("--version"));
    assert!(ok(&out).starts_with("Version: 4.2\n"));
    // criu has no decode (nor its -i), and its show is gone.
    let out = run(Command::new(&criu).arg("decode"));
    assert!(failed(&out).contains("unknown command: decode"));
    let out = run(Command::new(&criu).args(["decode", "-i", "x"]));
    assert!(failed(&out).contains("invalid option -- 'i'"));
    let out = run(Command::new(&criu).arg("show"));
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("deprecated by the CRIT utility"));
    // Under its own name, rcriu has crit's commands.
    let out = run(rcriu().args(["decode", "-i", "/nonexistent"]));
    assert!(!text(&out.stderr).contains("unknown command"));
}

/// A copy of rcriu, mode 0755, in a directory of its own that anyone may
/// enter.
fn copy_of_rcriu(tag: &str) -> (TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new(tag);
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = t.path().join("rcriu");
    std::fs::copy(env!("CARGO_BIN_EXE_rcriu"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    (t, copy)
}

/// `bin` run as nobody (uid and gid 65534, no groups).
fn nobody_runs(bin: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin);
    c
}

/// Gives `bin` CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE as file
/// capabilities.
fn give_capabilities(bin: &Path) {
    let st = Command::new("setcap")
        .arg("cap_sys_ptrace,cap_checkpoint_restore=ep")
        .arg(bin)
        .status()
        .expect("running setcap");
    assert!(st.success(), "setcap");
}

#[test]
fn a_set_user_id_copy_refuses_to_run() {
    let _g = common::setup();
    let (t, copy) = copy_of_rcriu("cli-setuid");
    use std::os::unix::fs::PermissionsExt;
    // As nobody, a plain copy runs (the negative control)...
    let as_nobody = |args: &[&str]| run(nobody_runs(&copy).args(args).env("RCRIU_FAULT", "1:1"));
    assert!(ok(&as_nobody(&["--version"])).starts_with("Version: 4.2"));
    // ...a set-user-ID root one does not, whatever it is asked.
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let never = t.path().join("never");
    let never = never.to_str().unwrap();
    for args in [&["--version"][..], &["dump", "-t", "1", "-D", never]] {
        let out = as_nobody(args);
        let err = failed(&out);
        assert!(err.contains("refusing to run set-user-ID"), "{err}");
        assert!(out.stdout.is_empty());
    }
    assert!(!Path::new(never).exists());
    // Nor set-group-ID.
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o2755)).unwrap();
    let err = failed(&as_nobody(&["--version"]));
    assert!(err.contains("refusing to run set-group-ID"), "{err}");
    // Nor with file capabilities (the real and effective ids alike, the
    // exec marked secure).
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    give_capabilities(&copy);
    let err = failed(&as_nobody(&["dump", "-t", "1", "-D", never]));
    assert!(err.contains("privileges its caller lacks"), "{err}");
    assert!(!Path::new(never).exists());
}

#[test]
fn a_failing_post_dump_script_leaves_the_process_running() {
    let _g = common::setup();
    let w = common::start("dump_state", &[]);
    let t = TempDir::new("cli-post-dump-fail");
    let (script, _) = recording_script(t.path(), Some("post-dump"));
    let dir = t.path().join("img");
    let out = run(&mut zdtm_dump(
        w.pid,
        &dir,
        &["--action-script", script.to_str().unwrap()],
    ));
    failed(&out);
    // As criu: the images are whole, the process was not killed.
    assert!(images(&dir).contains(&"inventory.img".to_string()));
    assert!(!gone(w.pid));
    w.verdict().expect("left running, intact");
}

fn state(pid: i32) -> char {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s.rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().chars().next())
        .unwrap_or('?')
}

#[test]
fn leave_stopped_as_criu() {
    let _g = common::setup();
    let mut w = common::start("dump_state", &[]);
    let t = TempDir::new("cli-leave-stopped");
    let dir = t.path().join("img");
    // -s: dumped, then left stopped rather than killed.
    ok(&run(&mut zdtm_dump(w.pid, &dir, &["--leave-stopped"])));
    assert_eq!(state(w.pid), 'T');
    rcriu_test_support::signal(w.pid, libc::SIGKILL);
    w.reap();
    // Restored stopped too, until continued.
    let pidfile = t.path().join("pid");
    ok(&run(&mut zdtm_restore(
        &dir,
        &pidfile,
        &["--leave-stopped"],
    )));
    assert_eq!(state(w.pid), 'T');
    rcriu_test_support::signal(w.pid, libc::SIGCONT);
    w.wait_in("sigsuspend");
    w.verdict().expect("continued, intact");
}

/// `--restore-sibling`: the restored process is the caller's child, not
/// rcriu's (runc asks it through the RPC). A post-resume script, run while
/// rcriu still lives, reads the restored process's parent; without the
/// option (the negative control) it is rcriu.
#[test]
fn restore_sibling_makes_the_caller_the_parent() {
    let _g = common::setup();
    let t = TempDir::new("cli-sibling");
    for sibling in [true, false] {
        let mut w = common::start("dump_state", &[]);
        let dir = t.path().join(format!("img-{sibling}"));
        ok(&run(&mut zdtm_dump(w.pid, &dir, &[])));
        w.reap();
        let record = t.path().join(format!("parents-{sibling}"));
        let script = t.path().join(format!("parents-{sibling}.sh"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 [ \"$CRTOOLS_SCRIPT_ACTION\" = post-resume ] || exit 0\n\
                 awk '{{print $4}}' /proc/$CRTOOLS_INIT_PID/stat > {rec}\n\
                 echo $PPID >> {rec}\n",
                rec = record.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pidfile = t.path().join(format!("pid-{sibling}"));
        let mut extra = vec!["--action-script", script.to_str().unwrap()];
        if sibling {
            extra.push("--restore-sibling");
        }
        ok(&run(&mut zdtm_restore(&dir, &pidfile, &extra)));
        let parents = std::fs::read_to_string(&record).unwrap();
        let parents: Vec<i32> = parents.lines().map(|l| l.parse().unwrap()).collect();
        let (parent, rcriu) = (parents[0], parents[1]);
        if sibling {
            assert_eq!(
                parent,
                std::process::id() as i32,
                "the caller is the parent"
            );
        } else {
            assert_eq!(parent, rcriu, "rcriu is the parent");
        }
        w.verdict().expect("the restored process is intact");
    }
}

/// Encryption is not taken with pre-copy: a pre-dump or a dump onto a
/// parent with --encrypt is refused by name, the process left running.
#[test]
fn encryption_with_pre_copy_is_refused_by_name() {
    let _g = common::setup();
    let w = common::start("dump_state", &[]);
    let t = TempDir::new("cli-encrypt-precopy");
    let key = t.path().join("key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let pid = w.pid.to_string();
    for extra in [
        &["pre-dump"][..],
        &["dump", "--track-mem", "--prev-images-dir", "../1"][..],
    ] {
        let (cmd, rest) = extra.split_first().unwrap();
        let out = run(rcriu()
            .arg(cmd)
            .args(["-t", &pid, "-D"])
            .arg(t.path().join("2"))
            .args(rest)
            .arg("--encrypt")
            .arg("--encrypt-key-file")
            .arg(&key));
        assert!(!out.status.success(), "{extra:?}");
        let err = text(&out.stderr);
        assert!(err.contains("--encrypt with pre-copy"), "{extra:?}: {err}");
    }
    w.verdict().expect("the process runs on untouched");
}

/// The lines of `/proc/PID/status` that say who a process is and what it
/// may do.
fn creds_of(pid: i32) -> Vec<String> {
    rcriu_test_support::status_lines(pid, &["Uid:", "Gid:", "Groups:", "CapPrm:", "CapEff:"])
}

/// criu's `--unprivileged`: a user runs a copy of rcriu given
/// CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE as file capabilities and
/// dumps and restores a process of its own, which comes back with the
/// user's ids and no capability (rcriu's are not passed on). Another
/// user's process is refused before it is seized and runs on untouched;
/// images whose credentials are not the user's (edited to root's, or a
/// root process's dump) are refused before anything starts; without
/// `--unprivileged`, or without the capabilities, nothing runs.
#[test]
fn unprivileged_dumps_and_restores_only_its_own() {
    use rcriu::images::{ImageDir, ImageFile, pb};
    use rcriu_test_support::Workload;
    use std::os::unix::fs::{PermissionsExt, chown};
    const NOBODY: u32 = 65534;
    let _g = common::setup();
    let (t, copy) = copy_of_rcriu("cli-unprivileged");
    let mine = |name: &str| {
        let p = t.path().join(name);
        std::fs::create_dir(&p).unwrap();
        chown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        p
    };
    let as_nobody = |args: &[&str], dir: &Path| {
        run(nobody_runs(&copy)
            .args(args)
            .arg("-D")
            .arg(dir)
            .env("HOME", "/nonexistent")
            .env("RCRIU_FAULT", "1:target"))
    };
    let mut w = Workload::start_as("trust", &["8", "1", "restored"], NOBODY);
    w.wait_in("sigsuspend");
    let pid = w.pid.to_string();
    let images = mine("images");
    let dump = ["dump", "--unprivileged", "-t", &pid];

    // Without the capabilities, and without --unprivileged, nothing runs.
    let err = failed(&as_nobody(&dump, &images));
    assert!(
        err.contains("needs CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE"),
        "{err}"
    );
    give_capabilities(&copy);
    let err = failed(&as_nobody(&["dump", "-t", &pid], &images));
    assert!(err.contains("privileges its caller lacks"), "{err}");
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    // What only root brings back is refused before anything is seized.
    let err = failed(&as_nobody(
        &[&dump[..], &["--tcp-established"]].concat(),
        &images,
    ));
    assert!(
        err.contains("--tcp-established (TCP_REPAIR takes CAP_NET_ADMIN) with --unprivileged"),
        "{err}"
    );
    assert_eq!(status_of(w.pid, "TracerPid:"), "0");

    // Another user's (root's) process: refused by name, left as it was.
    let root_w = Workload::start("trust", &["8", "1", "restored"]);
    root_w.wait_in("sigsuspend");
    let rpid = root_w.pid.to_string();
    let before = creds_of(root_w.pid);
    let out = as_nobody(&["dump", "--unprivileged", "-t", &rpid], &images);
    let err = failed(&out);
    assert!(
        err.contains(&format!("process {rpid} is not the caller's"))
            && err.contains("its real uid is 0"),
        "{err}"
    );
    assert_eq!(status_of(root_w.pid, "TracerPid:"), "0");
    assert_eq!(creds_of(root_w.pid), before);
    assert!(std::fs::read_dir(&images).unwrap().next().is_none());
    root_w.verdict().expect("root's process runs on untouched");

    // Its own: dumped, then restored with its ids and no capability.
    let before = creds_of(w.pid);
    assert!(before[3].ends_with("0000000000000000"), "{before:?}");
    ok(&as_nobody(&dump, &images));
    w.reap();
    // The negative controls first, on copies: a core whose credentials
    // were edited to root's (without the manifest, which would refuse the
    // change itself), and a root process's own dump handed to the user.
    let edited = mine("edited");
    for f in std::fs::read_dir(&images).unwrap().flatten() {
        let to = edited.join(f.file_name());
        std::fs::copy(f.path(), &to).unwrap();
        chown(&to, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    std::fs::remove_file(edited.join(rcriu::images::manifest::MANIFEST)).unwrap();
    chown(&edited, Some(0), Some(0)).unwrap();
    let d = ImageDir::open(&edited).unwrap();
    let mut core = d.core(w.pid as u32).unwrap();
    let creds: &mut pb::CredsEntry = core.thread_core.as_mut().unwrap().creds.as_mut().unwrap();
    (creds.uid, creds.euid, creds.suid, creds.fsuid) = (0, 0, 0, 0);
    d.write_one(ImageFile::Core(w.pid as u64), &core).unwrap();
    chown(
        edited.join(format!("core-{pid}.img")),
        Some(NOBODY),
        Some(NOBODY),
    )
    .unwrap();
    chown(&edited, Some(NOBODY), Some(NOBODY)).unwrap();
    let restore = ["restore", "--unprivileged", "-d"];
    let err = failed(&as_nobody(&restore, &edited));
    assert!(
        err.contains(&format!(
            "restoring thread {pid} (core-{pid}.img) with --unprivileged"
        )) && err.contains("its real uid is 0"),
        "{err}"
    );
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    let mut root_w = Workload::start("trust", &["8", "1", "restored"]);
    root_w.wait_in("sigsuspend");
    let roots = t.path().join("roots");
    let rpid = root_w.pid;
    let out = Command::new(env!("CARGO_BIN_EXE_rcriu"))
        .args(["dump", "-t", &rpid.to_string(), "-D"])
        .arg(&roots)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    root_w.reap();
    for f in std::fs::read_dir(&roots).unwrap().flatten() {
        chown(f.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    chown(&roots, Some(NOBODY), Some(NOBODY)).unwrap();
    let err = failed(&as_nobody(&restore, &roots));
    assert!(
        err.contains("with --unprivileged: its real uid is 0"),
        "{err}"
    );
    assert!(!Path::new(&format!("/proc/{rpid}")).exists());

    // The pristine images restore, as the user, without capabilities.
    ok(&as_nobody(&restore, &images));
    assert_eq!(creds_of(w.pid), before);
    w.verdict().expect("the restored process checks out");
}

/// The value of `field` in `/proc/PID/status`.
fn status_of(pid: i32, field: &str) -> String {
    rcriu_test_support::status_lines(pid, &[field])
        .first()
        .and_then(|l| l.strip_prefix(field))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// `--unprivileged --link-remap`: without CAP_DAC_READ_SEARCH the links
/// are made through each fd's /proc link; the images restore (as root
/// here) into the same inodes. Without --link-remap the same dump is
/// refused by name and the process runs on.
#[test]
fn an_unprivileged_dump_makes_its_link_remaps() {
    use rcriu_test_support::Workload;
    use std::os::unix::fs::{PermissionsExt, chown};
    const NOBODY: u32 = 65534;
    let _g = common::setup();
    let (t, copy) = copy_of_rcriu("cli-unprivileged-links");
    give_capabilities(&copy);
    let images = t.path().join("images");
    std::fs::create_dir(&images).unwrap();
    chown(&images, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&images, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut w = Workload::start_as("files_linked", &[], NOBODY);
    w.wait_in("sigsuspend");
    let pid = w.pid.to_string();
    let dump = |extra: &[&str]| {
        run(nobody_runs(&copy)
            .args([
                "dump",
                "--unprivileged",
                "-t",
                &pid,
                "-v4",
                "-o",
                "dump.log",
            ])
            .args(extra)
            .arg("-D")
            .arg(&images)
            .env("HOME", "/nonexistent"))
    };
    let err = failed(&dump(&[]));
    assert!(err.contains("dump with --link-remap"), "{err}");
    assert_eq!(status_of(w.pid, "TracerPid:"), "0");
    ok(&dump(&["--link-remap"]));
    let log = std::fs::read_to_string(images.join("dump.log")).unwrap();
    assert_eq!(log.matches("(a link remap)").count(), 4, "{log}");
    w.reap();
    rcriu::Restore::new(&images).detach(true).run().unwrap();
    w.verdict().unwrap();
}
