//! A live migration between two "nodes" on one machine: the host's
//! network namespace and a second one (`rcriu-mig-b`), joined by a veth
//! pair (10.77.0.1 here, 10.77.0.2 there). The far node has its own pid
//! namespace (and a mount namespace with its /proc), as another machine
//! has its own pids: the moved process gets its pid back there while
//! its old self is still being torn down here. A process holding 1 GiB that
//! keeps rewriting random pages under checksums (the `rewriter`
//! workload, about 1% of its memory between rounds) is moved across:
//!
//! 1. two pre-dump rounds while it runs (`--track-mem`), each sent over
//!    the veth to a page server on the far side (`rcriu page-server`, one
//!    per round, each given the round before as `--prev-images-dir`);
//! 2. the final dump, frozen only for what was written since, its pages
//!    through the page server; once it has written everything (its
//!    `post-dump` action script), its other images are copied across and
//!    the far node restores while the dump here ends the process (which
//!    takes a while for 1 GiB);
//! 3. the restore on the far side, from the chain of rounds, lazily:
//!    `rcriu lazy-pages` there brings the memory in after the process
//!    runs again (through userfaultfd).
//!
//! It prints each step's figures and the downtime: from the final freeze
//! to the process counting again on the far side. Then the process
//! checks every page against its checksum (PASS), as a control that the
//! moved memory is whole. Two more processes are moved for the
//! comparison: with pre-copy but restored whole, and without pre-copy
//! (one dump through the page server).
//!
//! Run as root, after building rcriu:
//! `cargo build --release && cargo run --release --example migrate`
//! (`-- MIB` for another size than 1024).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcriu_test_support::{Workload, no_inherited_fds, require_root};

const NS: &str = "rcriu-mig-b";
const HERE: &str = "10.77.0.1";
const THERE: &str = "10.77.0.2";
const PORT: u16 = 27_911;
/// The writer's pause after each page, in microseconds (as the precopy
/// bench: about 1% of 1 GiB between two rounds).
const PACE_US: &str = "50";

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn sh(cmd: &mut Command) -> Res<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

fn ip(args: &[&str]) -> Res<()> {
    sh(Command::new("ip").args(args))
}

/// The far node: a network namespace and a veth pair into it, and a pid
/// namespace whose init is `init` (on the host); removed when dropped.
struct Node {
    holder: Option<std::process::Child>,
    init: i32,
}

impl Node {
    fn make() -> Res<Node> {
        let _ = ip(&["netns", "del", NS]);
        let _ = ip(&["link", "del", "rcriu-mig-a"]);
        ip(&["netns", "add", NS])?;
        let mut node = Node {
            holder: None,
            init: 0,
        };
        ip(&[
            "link",
            "add",
            "rcriu-mig-a",
            "type",
            "veth",
            "peer",
            "name",
            "rcriu-mig-b",
            "netns",
            NS,
        ])?;
        ip(&["addr", "add", &format!("{HERE}/24"), "dev", "rcriu-mig-a"])?;
        ip(&["link", "set", "rcriu-mig-a", "up"])?;
        let there = |a: &[&str]| {
            let mut v = vec!["-n", NS];
            v.extend_from_slice(a);
            ip(&v)
        };
        there(&["addr", "add", &format!("{THERE}/24"), "dev", "rcriu-mig-b"])?;
        there(&["link", "set", "rcriu-mig-b", "up"])?;
        there(&["link", "set", "lo", "up"])?;
        // The far node's pid namespace: `unshare` forks its init (a
        // sleeper), whose end ends every process restored there.
        let holder = Command::new("ip")
            .args([
                "netns",
                "exec",
                NS,
                "unshare",
                "--pid",
                "--fork",
                "--kill-child",
            ])
            .args([
                "--mount-proc",
                "--propagation",
                "private",
                "sleep",
                "infinity",
            ])
            .stdin(Stdio::null())
            .spawn()?;
        node.holder = Some(holder);
        node.init = node.find_init()?;
        Ok(node)
    }

    /// The far node's init, on the host: `unshare`'s child.
    fn find_init(&self) -> Res<i32> {
        let unshare = self.holder.as_ref().ok_or("no holder")?.id();
        let start = Instant::now();
        loop {
            let kids = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))?;
            if let Some(k) = kids.split_whitespace().next() {
                let k: i32 = k.parse()?;
                // Its own /proc mounted: the sleeper runs.
                if std::fs::read_to_string(format!("/proc/{k}/comm"))?.trim() == "sleep" {
                    return Ok(k);
                }
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err("the far node's pid namespace did not start".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `prog` run on the far node: its network, pid and mount namespaces.
    fn cmd(&self, prog: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.init.to_string(), "-n", "-p", "-m", "--"])
            .arg(prog);
        c
    }

    /// The host's pid of the far node's process `pid`.
    fn host_pid(&self, pid: i32) -> Res<i32> {
        let ns = std::fs::read_link(format!("/proc/{}/ns/pid", self.init))?;
        for e in std::fs::read_dir("/proc")? {
            let Some(host) = e?.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{host}/ns/pid")).ok() != Some(ns.clone()) {
                continue;
            }
            let status =
                std::fs::read_to_string(format!("/proc/{host}/status")).unwrap_or_default();
            let inner = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|p| p.parse::<i32>().ok());
            if inner == Some(pid) {
                return Ok(host);
            }
        }
        Err(format!("no process {pid} on the far node").into())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut h) = self.holder.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        let _ = ip(&["link", "del", "rcriu-mig-a"]);
        let _ = ip(&["netns", "del", NS]);
    }
}

/// rcriu's binary, beside this example's directory.
fn rcriu() -> Res<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("rcriu"))
        .filter(|b| b.exists())
        .ok_or("no rcriu binary beside the example: run `cargo build --release` first")?;
    Ok(bin)
}

/// `rcriu page-server` on the far node for one round, as a daemon that
/// has its socket listening when this returns.
fn serve(node: &Node, rcriu: &Path, dir: &Path, parent: Option<&str>) -> Res<()> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = node.cmd(rcriu);
    cmd.args(["page-server", "-d", "--address", THERE, "--port"])
        .arg(PORT.to_string())
        .arg("-D")
        .arg(dir);
    if let Some(p) = parent {
        cmd.args(["--prev-images-dir", p]);
    }
    sh(&mut cmd)
}

/// One round on this node: a pre-dump, or the final dump (`last`), its
/// pages sent to the far node's page server; its wall time.
fn round(
    rcriu: &Path,
    pid: i32,
    dir: &Path,
    parent: Option<&str>,
    script: Option<&Path>,
) -> Res<Duration> {
    std::fs::create_dir_all(dir)?;
    let last = script.is_some();
    let mut cmd = Command::new(rcriu);
    cmd.arg(if last { "dump" } else { "pre-dump" })
        .args(["-t", &pid.to_string(), "-D"])
        .arg(dir)
        .args(["--track-mem", "--page-server", "--address", THERE, "--port"])
        .arg(PORT.to_string())
        .args(["-v4", "-o", "dump.log"]);
    if let Some(p) = parent {
        cmd.args(["--prev-images-dir", p]);
    }
    if let Some(s) = script {
        cmd.arg("--action-script").arg(s);
    }
    let t = Instant::now();
    sh(&mut cmd)?;
    Ok(t.elapsed())
}

/// The offset, from the start of the dump, at which the tree was frozen:
/// when its log says it was seized, less the time seizing took.
fn freeze_offset(log: &Path) -> Res<Duration> {
    let text = std::fs::read_to_string(log)?;
    let line = text
        .lines()
        .find(|l| l.contains(" seized in "))
        .ok_or("the dump's log does not say when the tree was seized")?;
    let at: f64 = line
        .trim_start_matches('(')
        .split(')')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .ok_or("a log line without its time")?;
    let took = line
        .split(" seized in ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .map(parse_duration)
        .ok_or("no seizing time in the log")?;
    Ok(Duration::from_secs_f64(at).saturating_sub(took))
}

/// A duration as Rust's `Debug` prints it (`1.2ms`, `850.1µs`, `1.5s`).
fn parse_duration(s: &str) -> Duration {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("µs") {
        (v, 1e-6)
    } else if let Some(v) = s.strip_suffix("ns") {
        (v, 1e-9)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else {
        (s, 0.0)
    };
    Duration::from_secs_f64(num.parse::<f64>().unwrap_or(0.0) * scale)
}

/// The frozen time and pages written of a dump, from its `stats-dump`.
fn stats(dir: &Path) -> Res<(Duration, u64)> {
    let s = rcriu::images::ImageDir::open(dir)?
        .stats_dump()?
        .and_then(|s| s.dump)
        .ok_or("no stats-dump")?;
    Ok((Duration::from_micros(s.frozen_time.into()), s.pages_written))
}

/// Copies the images a dump wrote here (all but the pages, which went to
/// the page server) into the far node's directory.
fn ship(from: &Path, to: &Path) -> Res<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.starts_with("pagemap-") || n.starts_with("pages-") || n == "parent" || n == "dump.log"
        {
            continue;
        }
        std::fs::copy(e.path(), to.join(&name))?;
    }
    Ok(())
}

/// `rcriu lazy-pages` on the far node for the images in `dir`, listening
/// when this returns.
fn lazy_daemon(node: &Node, rcriu: &Path, dir: &Path) -> Res<std::process::Child> {
    use std::io::Read;
    let mut c = node
        .cmd(rcriu)
        .args([
            "lazy-pages",
            "--status-fd",
            "1",
            "-v4",
            "-o",
            "lazy-pages.log",
            "-D",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut b = [0u8; 1];
    c.stdout
        .take()
        .ok_or("the daemon's status pipe")?
        .read_exact(&mut b)?;
    Ok(c)
}

/// Restores on the far node (`lazy`: its memory brought in by `rcriu
/// lazy-pages` after it runs); returns once `counter` moves (the process
/// runs again), with that instant, its host pid and the lazy daemon.
fn restore_there(
    node: &Node,
    rcriu: &Path,
    dir: &Path,
    pid: i32,
    counter: u64,
    lazy: bool,
) -> Res<(Instant, i32, Option<std::process::Child>)> {
    let daemon = if lazy {
        Some(lazy_daemon(node, rcriu, dir)?)
    } else {
        None
    };
    let mut cmd = node.cmd(rcriu);
    cmd.args(["restore", "-d", "-v4", "-o", "restore.log", "-D"])
        .arg(dir);
    if lazy {
        cmd.arg("--lazy-pages");
    }
    sh(&mut cmd)?;
    let host = node.host_pid(pid)?;
    let mem = std::fs::File::open(format!("/proc/{host}/mem"))?;
    let read = || {
        let mut b = [0u8; 8];
        mem.read_exact_at(&mut b, counter)
            .map(|()| u64::from_ne_bytes(b))
    };
    let c0 = read()?;
    let start = Instant::now();
    loop {
        if read()? != c0 {
            return Ok((Instant::now(), host, daemon));
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err("the restored process does not count".into());
        }
        std::hint::spin_loop();
    }
}

/// The verdict of workload `w` moved to the far node as `host` (there,
/// its parent is the node's init, which does not reap it).
fn verdict_there(w: &Workload, host: i32) -> Res<()> {
    // SAFETY: a plain kill(2).
    unsafe { libc::kill(host, libc::SIGUSR1) };
    let start = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{host}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if matches!(state, None | Some("Z" | "X")) {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("moved process {host} does not end").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let v = std::fs::read_to_string(&w.outfile)?;
    if v.trim() == "PASS" {
        Ok(())
    } else {
        Err(v.into())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One migration of `w` (pre-copy rounds first unless `rounds` is 0);
/// the downtime, and the moved process's host pid on the far node.
fn migrate(
    node: &Node,
    rcriu: &Path,
    w: &mut Workload,
    base: &Path,
    rounds: usize,
    lazy: bool,
) -> Res<(Duration, i32)> {
    let (src, dst) = (base.join("src"), base.join("dst"));
    let _ = std::fs::remove_dir_all(base);
    let mut parent: Option<String> = None;
    for r in 1..=rounds {
        let name = r.to_string();
        serve(node, rcriu, &dst.join(&name), parent.as_deref())?;
        let wall = round(rcriu, w.pid, &src.join(&name), parent.as_deref(), None)?;
        let (_, pages) = stats(&src.join(&name))?;
        println!(
            "  pre-dump {r}: {:7.1} ms while it runs, {pages} pages sent",
            ms(wall)
        );
        parent = Some(format!("../{name}"));
    }
    let last = (rounds + 1).to_string();
    serve(node, rcriu, &dst.join(&last), parent.as_deref())?;
    // The final dump says when it has written everything (post-dump)
    // through a FIFO, opened here first so that the script never waits.
    let fifo = base.join("post-dump.fifo");
    sh(Command::new("mkfifo").arg(&fifo))?;
    let script = base.join("post-dump.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = post-dump ] && echo p > '{}'\nexit 0\n",
            fifo.display()
        ),
    )?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let mut told = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)?;
    let t_dump = Instant::now();
    let (pid, src_last) = (w.pid, src.join(&last));
    let dumping = {
        let (rcriu, parent, script, fifo) = (
            rcriu.to_owned(),
            parent.clone(),
            script.clone(),
            fifo.clone(),
        );
        let src_last = src_last.clone();
        std::thread::spawn(move || {
            let r = round(&rcriu, pid, &src_last, parent.as_deref(), Some(&script))
                .map_err(|e| e.to_string());
            if r.is_err() {
                // Wakes the reader up when the dump failed before the end.
                let _ = std::fs::write(&fifo, "x\n");
            }
            r
        })
    };
    let mut b = [0u8; 1];
    std::io::Read::read_exact(&mut told, &mut b)?;
    if b[0] != b'p' {
        let e = dumping.join().map_err(|_| "the dump's thread panicked")?;
        return Err(format!("the final dump failed: {e:?}").into());
    }
    let t = Instant::now();
    ship(&src_last, &dst.join(&last))?;
    let shipped = t.elapsed();
    let (running, host, daemon) = restore_there(
        node,
        rcriu,
        &dst.join(&last),
        w.pid,
        w.fact_u64("counter"),
        lazy,
    )?;
    let wall = dumping
        .join()
        .map_err(|_| "the dump's thread panicked")?
        .map_err(|e| format!("the final dump: {e}"))?;
    let freeze = t_dump + freeze_offset(&src_last.join("dump.log"))?;
    w.reap();
    let ended = Instant::now();
    let (frozen, pages) = stats(&src_last)?;
    let down = running - freeze;
    println!(
        "  final dump: {:7.1} ms frozen ({pages} pages), {:7.1} ms in all (ending the process here)",
        ms(frozen),
        ms(wall)
    );
    println!(
        "  images shipped in {:.1} ms; running there {:.1} ms after the freeze; the old process ended here {:.1} ms after it",
        ms(shipped),
        ms(running - freeze),
        ms(ended - freeze)
    );
    if let Some(mut d) = daemon {
        match d.wait() {
            Ok(st) if st.success() => println!(
                "  every page in, the daemon gone: {:7.1} ms after the freeze",
                ms(freeze.elapsed())
            ),
            st => println!("  the lazy-pages daemon ended: {st:?}"),
        }
    }
    println!(
        "  downtime, freeze to running on the far node: {:7.1} ms",
        ms(down)
    );
    Ok((down, host))
}

fn main() -> Res<()> {
    require_root();
    no_inherited_fds();
    let mib: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1024);
    let rcriu = rcriu()?;
    let node = Node::make()?;
    let base = PathBuf::from("/dev/shm/rcriu-migrate");

    println!("{mib} MiB process, rewriting a page every {PACE_US} µs, moved to {THERE} ({NS}):");
    // A process of its own for each way: once moved, one lives on the far
    // node.
    let mut w = Workload::start("rewriter", &[&mib.to_string(), PACE_US]);
    println!("with pre-copy (2 rounds), restored lazily there:");
    let (lazy, w_there) = migrate(&node, &rcriu, &mut w, &base.join("lazy"), 2, true)?;
    // From now on the workload is the moved process (its old pid may
    // be anyone's).
    w.pid = w_there;
    let _ = std::fs::remove_dir_all(base.join("lazy"));
    let mut full = Workload::start("rewriter", &[&mib.to_string(), PACE_US]);
    println!("with pre-copy (2 rounds), restored whole there:");
    let (pre, full_there) = migrate(&node, &rcriu, &mut full, &base.join("pre"), 2, false)?;
    full.pid = full_there;
    let _ = std::fs::remove_dir_all(base.join("pre"));
    let mut once = Workload::start("rewriter", &[&mib.to_string(), PACE_US]);
    println!("without pre-copy (one dump through the page server), restored whole:");
    let (one, once_there) = migrate(&node, &rcriu, &mut once, &base.join("one"), 0, false)?;
    once.pid = once_there;
    println!(
        "downtime: pre-copy and lazy restore {:.1} ms = {:.3} x without either; pre-copy alone {:.1} ms = {:.3} x",
        ms(lazy),
        lazy.as_secs_f64() / one.as_secs_f64(),
        ms(pre),
        pre.as_secs_f64() / one.as_secs_f64()
    );
    let verdicts = [
        verdict_there(&w, w_there),
        verdict_there(&full, full_there),
        verdict_there(&once, once_there),
    ];
    let _ = std::fs::remove_dir_all(&base);
    for v in verdicts {
        v.map_err(|e| format!("a moved process's memory is not whole: {e}"))?;
    }
    println!("every page of the three matches its checksum: PASS");
    Ok(())
}
