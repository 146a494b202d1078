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
//! both tools' wall times alike. Last, the floor: checkpoints of fresh
//! containers with a `criu` that does nothing but answer the RPC (the
//! version and feature checks as CRIU 4.2, a dump by killing the tree),
//! which is runc's and podman's own time, the least any tool can take.

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

/// `criu.real` naming no tool: the wrapper is [`null_criu`].
const NULL: &str = "null";

/// A criu that does nothing but answer: `swrk FD` answers VERSION (4.2)
/// and FEATURE_CHECK (nothing) as CRIU 4.2 would, and a DUMP by killing
/// the tree's root (the container's pid namespace goes with it), writing
/// no image. The time of a checkpoint with it is runc's and podman's own:
/// the least any tool can take.
fn null_criu(args: &[String]) -> i32 {
    use prost::Message;
    use rcriu_images::rpc::{CriuFeatures, CriuReq, CriuReqType, CriuResp, CriuVersion};
    use std::os::fd::FromRawFd;
    if args.first().map(String::as_str) != Some("swrk") {
        if args.iter().any(|a| a == "--version" || a == "-V") {
            println!("Version: 4.2");
        }
        return 0;
    }
    let Some(fd) = args.get(1).and_then(|a| a.parse::<i32>().ok()) else {
        return 1;
    };
    // SAFETY: `swrk FD` hands this process the RPC socket at FD, which
    // nothing else in it owns or closes.
    let sk = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let got = match rustix::net::recv(&sk, &mut buf[..], rustix::net::RecvFlags::empty()) {
            Ok((0, _)) | Err(_) => return 0,
            Ok((n, _)) => n,
        };
        let Ok(req) = CriuReq::decode(&buf[..got]) else {
            return 1;
        };
        let mut resp = CriuResp {
            r#type: req.r#type,
            success: true,
            ..Default::default()
        };
        match CriuReqType::try_from(req.r#type) {
            Ok(CriuReqType::Version) => {
                resp.version = Some(CriuVersion {
                    major_number: 4,
                    minor_number: 2,
                    ..Default::default()
                });
            }
            Ok(CriuReqType::FeatureCheck) => {
                resp.features = Some(CriuFeatures {
                    mem_track: Some(false),
                    lazy_pages: Some(false),
                    pidfd_store: Some(false),
                });
            }
            Ok(CriuReqType::Dump) => {
                let pid = req.opts.and_then(|o| o.pid).unwrap_or(0);
                match rustix::process::Pid::from_raw(pid) {
                    Some(p) => {
                        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    }
                    None => resp.success = false,
                }
            }
            _ => resp.success = false,
        }
        let sent = rustix::net::send(&sk, &resp.encode_to_vec(), rustix::net::SendFlags::NOSIGNAL);
        if sent.is_err() {
            return 1;
        }
    }
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
    let code = if real.trim() == NULL {
        null_criu(&args)
    } else {
        match Command::new(real.trim()).args(&args).status() {
            Ok(s) => s.code().unwrap_or(1),
            Err(e) => {
                eprintln!("running {}: {e}", real.trim());
                1
            }
        }
    };
    let took = t.elapsed();
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
    start_runc(runc(), &bundle, &id)?;
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

/// `runc run -d` of `bundle` as container `id`.
fn start_runc(mut runc: Command, bundle: &Path, id: &str) -> Result<(), String> {
    // Detached, the container keeps runc's stdio: no pipe of ours, which
    // would never end.
    let started = runc
        .args(["run", "-d", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("runc run: {e}"))?;
    if !started.success() {
        return Err(format!("runc run: {started}"));
    }
    Ok(())
}

/// ROUNDS `runc checkpoint`s, each of a fresh container, with the criu
/// that does nothing ([`null_criu`]): their median.
fn null_runc(rounds: usize) -> Result<Timed, String> {
    let t = TempDir::new("bench-runc-null");
    let dir = t.path();
    let bin = dir.join("bin");
    let criu = wrap(NULL, &bin)?;
    let criu = criu.to_str().ok_or("a path that is not UTF-8")?;
    let bundle = bundle(dir);
    let root = bundle.join("rootfs");
    let runc = || {
        let mut c = Command::new("runc");
        c.arg("--root").arg(dir.join("state"));
        c
    };
    let mut dumps = Vec::new();
    for r in 0..rounds {
        let id = format!("rcriu-bench-null-{}-{r}", std::process::id());
        start_runc(runc(), &bundle, &id)?;
        let done = counts_past(&root, count(&root) + 1).and_then(|()| {
            run_timed(
                runc()
                    .args(["--criu", criu, "checkpoint", "--image-path"])
                    .arg(dir.join(format!("images-{r}")))
                    .arg("--work-path")
                    .arg(dir.join(format!("work-{r}")))
                    .arg(&id),
                &bin,
            )
        });
        let _ = run(runc().args(["delete", "-f", &id]));
        dumps.push(done?);
    }
    Ok(medians(&dumps))
}

/// ROUNDS `podman container checkpoint`s, each of a fresh container,
/// with the criu that does nothing ([`null_criu`]): their median.
fn null_podman(rounds: usize) -> Result<Timed, String> {
    let t = TempDir::new("bench-podman-null");
    let dir = t.path();
    let bin = dir.join("bin");
    wrap(NULL, &bin)?;
    let image = import_image(dir, &bin)?;
    let mut dumps = Vec::new();
    for r in 0..rounds {
        let name = format!("rcriu-bench-null-{}-{r}", std::process::id());
        let done = run(podman(&bin)
            .args(rcriu_test_support::PODMAN_RUN)
            .args(["--name", &name, &image, "/bin/sh", "-c", COUNTER]))
        .and_then(|_| {
            let upper = upper_dir(&bin, &name)?;
            counts_past(&upper, 2)?;
            run_timed(podman(&bin).args(["container", "checkpoint", &name]), &bin)
        });
        let _ = run(podman(&bin).args(["rm", "-f", "-t", "0", &name]));
        dumps.push(done?);
    }
    Ok(medians(&dumps))
}

/// The busybox image podman runs, imported from a bundle made in `dir`.
fn import_image(dir: &Path, bin: &Path) -> Result<String, String> {
    let image = "localhost/rcriu-bench-busybox:latest";
    let rootfs = bundle(dir).join("rootfs");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf"])
        .arg(dir.join("rootfs.tar"))
        .arg("."))?;
    run(podman(bin)
        .arg("import")
        .arg(dir.join("rootfs.tar"))
        .arg(image))?;
    Ok(image.to_owned())
}

/// The upper directory of container `name`'s overlay root.
fn upper_dir(bin: &Path, name: &str) -> Result<PathBuf, String> {
    let out = podman(bin)
        .args([
            "inspect",
            "--format",
            "{{.GraphDriver.Data.UpperDir}}",
            name,
        ])
        .output()
        .map_err(|e| format!("podman inspect: {e}"))?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
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
    let image = import_image(dir, &bin)?;
    let name = format!("rcriu-bench-{}", std::process::id());
    run(podman(&bin)
        .args(rcriu_test_support::PODMAN_RUN)
        .args(["--name", &name, &image, "/bin/sh", "-c", COUNTER]))?;
    let result = (|| {
        let upper = || upper_dir(&bin, &name);
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
fn compare(
    what: &str,
    tools: &[(&str, String)],
    rounds: usize,
    f: fn(&str, usize) -> Medians,
    null: fn(usize) -> Result<Timed, String>,
) {
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
    // The least a checkpoint can take, whatever the tool: runc's and
    // podman's own work around a criu that does nothing.
    match null(rounds) {
        Ok(n) => {
            print!(
                "a criu that does nothing (answers, kills the tree): checkpoint {:.2?} (its calls {:.2?})",
                n.wall, n.tool
            );
            if let Some((cd, _)) = results.get(1) {
                print!(
                    ", {:.2} of CRIU's checkpoint",
                    n.wall.as_secs_f64() / cd.wall.as_secs_f64()
                );
            }
            println!();
        }
        Err(e) => println!("a criu that does nothing: failed: {e}"),
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
    compare(
        "runc checkpoint / restore -d",
        &tools,
        rounds,
        measure,
        null_runc,
    );
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
            null_podman,
        );
    } else {
        println!("podman is not installed: no podman figures");
    }
}
