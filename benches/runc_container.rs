//! Containers' speed, side by side with CRIU 4.2: the wall time of `runc
//! checkpoint` and `runc restore -d` (runc 1.1.5 with `--criu PATH`, its
//! own work included) of a busybox container whose shell counts, as
//! `tests/containers.rs` runs it; then, when podman is installed, of
//! `podman container checkpoint` and `restore` (podman 4.3.1, `--runtime
//! runc`, the tool as `criu` first on its PATH). Needs root, runc and
//! busybox-static.
//!
//! `cargo bench --bench runc_container` (`-- ROUNDS`, 5 by default): each
//! tool checkpoints and restores the same container ROUNDS times; the
//! counter must have gone on after each restore. The medians are printed,
//! with rcriu's as a ratio of CRIU's when `RCRIU_BENCH_CRIU` names its
//! binary.
//!
//! Beside each command's wall time, the part of it the tool itself takes:
//! runc and podman run the tool through a copy of this bench named
//! `criu` (its directory holds `criu.real`, the tool's path), which runs
//! the tool, waits for it and logs how long each call took (`swrk` for
//! the version and feature checks, then the dump or the restore,
//! runc's notify callbacks included, as they run inside that call). The
//! rest of the wall time is runc's and podman's own, the same whatever
//! the tool; the copy's start (about a millisecond a call) counts in
//! both tools' wall times alike.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcriu_test_support::{TempDir, require_root};

const COUNTER: &str =
    "i=0; while :; do i=$((i+1)); echo $i >> /tmp/count; read -t 0.02 x <> /tmp/tick; done";

fn run(cmd: &mut Command) -> Result<Duration, String> {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running {cmd:?}: {e}"))?;
    let d = t.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(d)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A bundle running the counter, in `dir`.
fn bundle(dir: &Path) -> PathBuf {
    let rootfs = dir.join("bundle/rootfs");
    for d in ["bin", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("making the rootfs");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("copying /bin/busybox (apt-get install -y busybox-static)");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).expect("linking sh");
    let made = Command::new("mkfifo")
        .arg(rootfs.join("tmp/tick"))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let bundle = dir.join("bundle");
    let spec = Command::new("runc")
        .arg("spec")
        .current_dir(&bundle)
        .status()
        .expect("runc spec (apt-get install -y runc)");
    assert!(spec.success());
    let cfg = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).expect("config.json"))
            .expect("runc's config.json");
    spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", COUNTER]);
    spec["process"]["terminal"] = false.into();
    spec["root"]["readonly"] = false.into();
    std::fs::write(&cfg, spec.to_string()).expect("writing config.json");
    bundle
}

/// The counter's numbers so far, in the root file system at `root`.
fn count(root: &Path) -> usize {
    std::fs::read_to_string(root.join("tmp/count"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Waits until the counter wrote more than `n` numbers.
fn counts_past(root: &Path, n: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(root) <= n {
        if Instant::now() > deadline {
            return Err(format!("the counter stopped at {n}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// A command's wall time and the time of the tool's calls inside it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timed {
    wall: Duration,
    tool: Duration,
    /// The wall time but the tool's calls: runc's and podman's own.
    rest: Duration,
}

/// The medians of the checkpoints and of the restores.
type Medians = Result<(Timed, Timed), String>;

/// The medians of the wall times and of the tool's times, apart.
fn medians(v: &[Timed]) -> Timed {
    Timed {
        wall: median(v.iter().map(|t| t.wall).collect()),
        tool: median(v.iter().map(|t| t.tool).collect()),
        rest: median(v.iter().map(|t| t.rest).collect()),
    }
}

/// The file a wrapper in `bin` logs each call's time to.
fn times_file(bin: &Path) -> PathBuf {
    bin.join("criu.times")
}

/// `bin/criu`: a copy of this bench that runs `real` and logs each
/// call's time. Returns the copy's path.
fn wrap(real: &str, bin: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(bin).map_err(|e| format!("making {}: {e}", bin.display()))?;
    let me = std::env::current_exe().map_err(|e| format!("this bench's path: {e}"))?;
    let criu = bin.join("criu");
    std::fs::copy(&me, &criu).map_err(|e| format!("copying {}: {e}", me.display()))?;
    std::fs::write(bin.join("criu.real"), real).map_err(|e| format!("criu.real: {e}"))?;
    Ok(criu)
}

/// The wall time of `cmd`, and the time of the tool's calls the wrapper
/// in `bin` logged meanwhile.
fn run_timed(cmd: &mut Command, bin: &Path) -> Result<Timed, String> {
    let _ = std::fs::remove_file(times_file(bin));
    let wall = run(cmd)?;
    let tool = std::fs::read_to_string(times_file(bin))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .sum();
    Ok(Timed {
        wall,
        tool,
        rest: wall.saturating_sub(tool),
    })
}

/// The wrapper's job, when this bench runs as `criu` beside a
/// `criu.real`: runs the tool with the same arguments (and the fds it
/// was given), logs the call's time, exits as the tool did.
fn as_wrapper() -> Option<i32> {
    let me = std::env::current_exe().ok()?;
    if me.file_name()? != "criu" {
        return None;
    }
    let bin = me.parent()?;
    let real = std::fs::read_to_string(bin.join("criu.real")).ok()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let t = Instant::now();
    let status = Command::new(real.trim()).args(&args).status();
    let took = t.elapsed();
    let code = match status {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("running {}: {e}", real.trim());
            1
        }
    };
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(times_file(bin))
    {
        let _ = writeln!(f, "{} {}", took.as_nanos(), args.join(" "));
    }
    Some(code)
}

/// ROUNDS checkpoints and restores with `criu`: their medians.
fn measure(criu: &str, rounds: usize) -> Medians {
    let t = TempDir::new("bench-runc");
    let dir = t.path();
    let bin = dir.join("bin");
    let criu = wrap(criu, &bin)?;
    let criu = criu.to_str().ok_or("a path that is not UTF-8")?;
    let bundle = bundle(dir);
    let id = format!("rcriu-bench-{}", std::process::id());
    let runc = || {
        let mut c = Command::new("runc");
        c.arg("--root").arg(dir.join("state"));
        c
    };
    let _ = run(runc().args(["delete", "-f", &id]));
    // Detached, the container keeps runc's stdio: no pipe of ours, which
    // would never end.
    let started = runc()
        .args(["run", "-d", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("runc run: {e}"))?;
    if !started.success() {
        return Err(format!("runc run: {started}"));
    }
    let result = (|| {
        let root = bundle.join("rootfs");
        counts_past(&root, 2)?;
        let (mut dumps, mut restores) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            let images = dir.join(format!("images-{r}"));
            let work = dir.join(format!("work-{r}"));
            dumps.push(run_timed(
                runc()
                    .args(["--criu", criu, "checkpoint", "--image-path"])
                    .arg(&images)
                    .arg("--work-path")
                    .arg(&work)
                    .arg(&id),
                &bin,
            )?);
            let n = count(&root);
            let restored = run_timed(
                runc()
                    .args(["--criu", criu, "restore", "-d", "--image-path"])
                    .arg(&images)
                    .arg("--work-path")
                    .arg(&work)
                    .arg("--bundle")
                    .arg(&bundle)
                    .arg(&id),
                &bin,
            );
            restores.push(restored.map_err(|e| {
                let log = std::fs::read_to_string(work.join("restore.log")).unwrap_or_default();
                let errors: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
                format!("round {r}: {e}\n{}", errors.join("\n"))
            })?);
            counts_past(&root, n + 1)?;
        }
        Ok((medians(&dumps), medians(&restores)))
    })();
    let _ = run(runc().args(["delete", "-f", &id]));
    result
}

/// podman, with `criu` (a link in `bin`) first on its PATH.
fn podman(bin: &Path) -> Command {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut c = Command::new("podman");
    c.env("PATH", format!("{}:{path}", bin.display()));
    c
}

/// ROUNDS `podman container checkpoint` and `restore` with `criu`:
/// their medians.
fn measure_podman(criu: &str, rounds: usize) -> Medians {
    let t = TempDir::new("bench-podman");
    let dir = t.path();
    let bin = dir.join("bin");
    wrap(criu, &bin)?;
    let image = "localhost/rcriu-bench-busybox:latest";
    let rootfs = bundle(dir).join("rootfs");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf"])
        .arg(dir.join("rootfs.tar"))
        .arg("."))?;
    run(podman(&bin)
        .arg("import")
        .arg(dir.join("rootfs.tar"))
        .arg(image))?;
    let name = format!("rcriu-bench-{}", std::process::id());
    run(podman(&bin)
        .args(rcriu_test_support::PODMAN_RUN)
        .args(["--name", &name, image, "/bin/sh", "-c", COUNTER]))?;
    let result = (|| {
        let upper = || -> Result<PathBuf, String> {
            let out = podman(&bin)
                .args([
                    "inspect",
                    "--format",
                    "{{.GraphDriver.Data.UpperDir}}",
                    &name,
                ])
                .output()
                .map_err(|e| format!("podman inspect: {e}"))?;
            Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        };
        counts_past(&upper()?, 2)?;
        let (mut dumps, mut restores) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            dumps.push(run_timed(
                podman(&bin).args(["container", "checkpoint", &name]),
                &bin,
            )?);
            let n = count(&upper()?);
            restores.push(run_timed(
                podman(&bin).args(["container", "restore", &name]),
                &bin,
            )?);
            counts_past(&upper()?, n + 1)?;
        }
        Ok((medians(&dumps), medians(&restores)))
    })();
    let _ = run(podman(&bin).args(["rm", "-f", "-t", "0", &name]));
    result
}

/// Prints each tool's medians, and rcriu's as a ratio of CRIU's.
fn compare(what: &str, tools: &[(&str, String)], rounds: usize, f: fn(&str, usize) -> Medians) {
    println!("median of {rounds} rounds, wall time of {what} (in it, the tool's own calls)");
    let mut results = Vec::new();
    for (name, tool) in tools {
        match f(tool, rounds) {
            Ok((d, r)) => {
                println!(
                    "{name:6} checkpoint {:>10.2?} ({:>9.2?})  restore {:>10.2?} ({:>9.2?})",
                    d.wall, d.tool, r.wall, r.tool
                );
                results.push((d, r));
            }
            Err(e) => println!("{name:6} failed: {e}"),
        }
    }
    if let [(d, r), (cd, cr)] = results.as_slice() {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "rcriu / criu: checkpoint {:.2}, restore {:.2} (wall time); the tool's own calls: checkpoint {:.2}, restore {:.2}",
            ratio(d.wall, cd.wall),
            ratio(r.wall, cr.wall),
            ratio(d.tool, cd.tool),
            ratio(r.tool, cr.tool)
        );
        println!(
            "the rest (runc's, podman's own): rcriu's run checkpoint {:.2?}, restore {:.2?}; CRIU's run checkpoint {:.2?}, restore {:.2?}",
            d.rest, r.rest, cd.rest, cr.rest
        );
    }
}

fn main() {
    if let Some(code) = as_wrapper() {
        std::process::exit(code);
    }
    require_root();
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5)
        .max(1);
    let mut tools = vec![("rcriu", env!("CARGO_BIN_EXE_rcriu").to_owned())];
    if let Ok(c) = std::env::var("RCRIU_BENCH_CRIU") {
        tools.push(("criu", c));
    }
    compare("runc checkpoint / restore -d", &tools, rounds, measure);
    if Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        compare(
            "podman container checkpoint / restore",
            &tools,
            rounds,
            measure_podman,
        );
    } else {
        println!("podman is not installed: no podman figures");
    }
}
