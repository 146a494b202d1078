//! A live migration between two "nodes" on one machine: the host's
//! network namespace and a second one (`rcriu-mig-b`), joined by a veth
//! pair (10.77.0.1 here, 10.77.0.2 there). A process holding 1 GiB that
//! keeps rewriting random pages under checksums (the `rewriter`
//! workload, about 1% of its memory between rounds) is moved across:
//!
//! 1. two pre-dump rounds while it runs (`--track-mem`), each sent over
//!    the veth to a page server on the far side (`rcriu page-server`, one
//!    per round, each given the round before as `--prev-images-dir`);
//! 2. the final dump, frozen only for what was written since, its pages
//!    through the page server and its other images copied across;
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

/// The far node: a network namespace and a veth pair into it, removed
/// when dropped.
struct Node;

impl Node {
    fn make() -> Res<Node> {
        let _ = ip(&["netns", "del", NS]);
        let _ = ip(&["link", "del", "rcriu-mig-a"]);
        ip(&["netns", "add", NS])?;
        let node = Node;
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
        Ok(node)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
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
fn serve(rcriu: &Path, dir: &Path, parent: Option<&str>) -> Res<()> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", NS])
        .arg(rcriu)
        .args(["page-server", "-d", "--address", THERE, "--port"])
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
fn round(rcriu: &Path, pid: i32, dir: &Path, parent: Option<&str>, last: bool) -> Res<Duration> {
    std::fs::create_dir_all(dir)?;
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
fn lazy_daemon(rcriu: &Path, dir: &Path) -> Res<std::process::Child> {
    use std::io::Read;
    let mut c = Command::new("ip")
        .args(["netns", "exec", NS])
        .arg(rcriu)
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
/// lazy-pages` after it runs); returns when `counter` moves (the process
/// runs again), with that instant.
fn restore_there(rcriu: &Path, dir: &Path, pid: i32, counter: u64, lazy: bool) -> Res<Instant> {
    let daemon = if lazy {
        Some(lazy_daemon(rcriu, dir)?)
    } else {
        None
    };
    let t = Instant::now();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", NS])
        .arg(rcriu)
        .args(["restore", "-d", "-v4", "-o", "restore.log", "-D"])
        .arg(dir);
    if lazy {
        cmd.arg("--lazy-pages");
    }
    sh(&mut cmd)?;
    println!("  restore there: {:7.1} ms", ms(t.elapsed()));
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let read = || {
        let mut b = [0u8; 8];
        mem.read_exact_at(&mut b, counter)
            .map(|()| u64::from_ne_bytes(b))
    };
    let c0 = read()?;
    let start = Instant::now();
    let counting = || -> Res<Instant> {
        loop {
            if read()? != c0 {
                return Ok(Instant::now());
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err("the restored process does not count".into());
            }
            std::hint::spin_loop();
        }
    };
    let running = counting()?;
    if let Some(mut d) = daemon {
        match d.wait() {
            Ok(st) if st.success() => println!(
                "  every page in, the daemon gone: {:7.1} ms after the restore began",
                ms(t.elapsed())
            ),
            st => println!("  the lazy-pages daemon ended: {st:?}"),
        }
    }
    Ok(running)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One migration of `w` (pre-copy rounds first unless `rounds` is 0);
/// the downtime.
fn migrate(
    rcriu: &Path,
    w: &mut Workload,
    base: &Path,
    rounds: usize,
    lazy: bool,
) -> Res<Duration> {
    let (src, dst) = (base.join("src"), base.join("dst"));
    let _ = std::fs::remove_dir_all(base);
    let mut parent: Option<String> = None;
    for r in 1..=rounds {
        let name = r.to_string();
        serve(rcriu, &dst.join(&name), parent.as_deref())?;
        let wall = round(rcriu, w.pid, &src.join(&name), parent.as_deref(), false)?;
        let (_, pages) = stats(&src.join(&name))?;
        println!(
            "  pre-dump {r}: {:7.1} ms while it runs, {pages} pages sent",
            ms(wall)
        );
        parent = Some(format!("../{name}"));
    }
    let last = (rounds + 1).to_string();
    serve(rcriu, &dst.join(&last), parent.as_deref())?;
    let t_dump = Instant::now();
    let wall = round(rcriu, w.pid, &src.join(&last), parent.as_deref(), true)?;
    let freeze = t_dump + freeze_offset(&src.join(&last).join("dump.log"))?;
    let (frozen, pages) = stats(&src.join(&last))?;
    let t = Instant::now();
    ship(&src.join(&last), &dst.join(&last))?;
    let shipped = t.elapsed();
    w.reap();
    println!(
        "  images shipped in {:.1} ms, the process ended here {:.1} ms after its freeze",
        ms(shipped),
        ms(Instant::now() - freeze)
    );
    let running = restore_there(rcriu, &dst.join(&last), w.pid, w.fact_u64("counter"), lazy)?;
    let down = running - freeze;
    println!(
        "  final dump: {:7.1} ms frozen ({pages} pages), {:7.1} ms in all",
        ms(frozen),
        ms(wall)
    );
    println!(
        "  downtime, freeze to running on the far node: {:7.1} ms",
        ms(down)
    );
    Ok(down)
}

fn main() -> Res<()> {
    require_root();
    no_inherited_fds();
    // The restored process is rcriu's child, which leaves it: it comes to
    // us, to be reaped when the next migration's dump ends it.
    // SAFETY: a plain prctl on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mib: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1024);
    let rcriu = rcriu()?;
    let _node = Node::make()?;
    let base = PathBuf::from("/dev/shm/rcriu-migrate");

    println!("{mib} MiB process, rewriting a page every {PACE_US} µs, moved to {THERE} ({NS}):");
    // A process of its own for each way: once moved, one lives in the
    // far node's network namespace.
    let mut w = Workload::start("rewriter", &[&mib.to_string(), PACE_US]);
    println!("with pre-copy (2 rounds), restored lazily there:");
    let lazy = migrate(&rcriu, &mut w, &base.join("lazy"), 2, true)?;
    let _ = std::fs::remove_dir_all(base.join("lazy"));
    let mut full = Workload::start("rewriter", &[&mib.to_string(), PACE_US]);
    println!("with pre-copy (2 rounds), restored whole there:");
    let pre = migrate(&rcriu, &mut full, &base.join("pre"), 2, false)?;
    let _ = std::fs::remove_dir_all(base.join("pre"));
    let mut once = Workload::start("rewriter", &[&mib.to_string(), PACE_US]);
    println!("without pre-copy (one dump through the page server), restored whole:");
    let one = migrate(&rcriu, &mut once, &base.join("one"), 0, false)?;
    println!(
        "downtime: pre-copy and lazy restore {:.1} ms = {:.3} x without either; pre-copy alone {:.1} ms = {:.3} x",
        ms(lazy),
        lazy.as_secs_f64() / one.as_secs_f64(),
        ms(pre),
        pre.as_secs_f64() / one.as_secs_f64()
    );
    let verdicts = [w.verdict(), full.verdict(), once.verdict()];
    let _ = std::fs::remove_dir_all(&base);
    for v in verdicts {
        v.map_err(|e| format!("a moved process's memory is not whole: {e}"))?;
    }
    println!("every page of the three matches its checksum: PASS");
    Ok(())
}
