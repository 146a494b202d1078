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

/// The medians of the checkpoints and of the restores.
type Medians = Result<(Duration, Duration), String>;

/// ROUNDS checkpoints and restores with `criu`: their medians.
fn measure(criu: &str, rounds: usize) -> Medians {
    let t = TempDir::new("bench-runc");
    let dir = t.path();
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
            dumps.push(run(runc()
                .args(["--criu", criu, "checkpoint", "--image-path"])
                .arg(&images)
                .arg("--work-path")
                .arg(&work)
                .arg(&id))?);
            let n = count(&root);
            let restored = run(runc()
                .args(["--criu", criu, "restore", "-d", "--image-path"])
                .arg(&images)
                .arg("--work-path")
                .arg(&work)
                .arg("--bundle")
                .arg(&bundle)
                .arg(&id));
            restores.push(restored.map_err(|e| {
                let log = std::fs::read_to_string(work.join("restore.log")).unwrap_or_default();
                let errors: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
                format!("round {r}: {e}\n{}", errors.join("\n"))
            })?);
            counts_past(&root, n + 1)?;
        }
        Ok((median(dumps), median(restores)))
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
    std::fs::create_dir(&bin).map_err(|e| format!("making {}: {e}", bin.display()))?;
    std::os::unix::fs::symlink(criu, bin.join("criu")).map_err(|e| format!("linking criu: {e}"))?;
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
            dumps.push(run(podman(&bin).args(["container", "checkpoint", &name]))?);
            let n = count(&upper()?);
            restores.push(run(podman(&bin).args(["container", "restore", &name]))?);
            counts_past(&upper()?, n + 1)?;
        }
        Ok((median(dumps), median(restores)))
    })();
    let _ = run(podman(&bin).args(["rm", "-f", "-t", "0", &name]));
    result
}

/// Prints each tool's medians, and rcriu's as a ratio of CRIU's.
fn compare(what: &str, tools: &[(&str, String)], rounds: usize, f: fn(&str, usize) -> Medians) {
    println!("median of {rounds} rounds, wall time of {what}");
    let mut results = Vec::new();
    for (name, tool) in tools {
        match f(tool, rounds) {
            Ok((d, r)) => {
                println!("{name:6} checkpoint {d:>10.2?}  restore {r:>10.2?}");
                results.push((d, r));
            }
            Err(e) => println!("{name:6} failed: {e}"),
        }
    }
    if let [(d, r), (cd, cr)] = results.as_slice() {
        println!(
            "rcriu / criu: checkpoint {:.2}, restore {:.2}",
            d.as_secs_f64() / cd.as_secs_f64(),
            r.as_secs_f64() / cr.as_secs_f64()
        );
    }
}

fn main() {
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
