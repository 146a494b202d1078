//! Process trees (issue 14), side by side with CRIU when one is given.
//!
//! - 100 processes: a parent that touched 64 MiB and forked 99 workers,
//!   each of which rewrote 1 MiB of it (the `cow` workload): dump and
//!   restore times, and the Pss summed over the tree before the dump and
//!   after the restore.
//! - Trees of 100, 300 and 1000 small processes (1 MiB each, shared): dump
//!   and restore time per process, which stays flat when both grow
//!   linearly.
//!
//! `cargo bench --bench trees [-- CRIU]`, as root; CRIU (or
//! `RCRIU_BENCH_CRIU`) is the path of a criu binary, run the same way on
//! the same trees in the same run. Images go to /dev/shm.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcriu::{Dump, Restore};
use rcriu_test_support::{
    HANG_GUARD, Workload, become_subreaper, pss_kib, require_root, tree_pids,
};

/// The tree's Pss, in KiB.
fn tree_pss(root: i32) -> u64 {
    tree_pids(root).into_iter().map(pss_kib).sum()
}

/// Waits until none of `pids` exists (this process, a subreaper, reaps
/// what comes to it).
fn gone(pids: &[i32]) {
    let start = Instant::now();
    while pids
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        // SAFETY: waitpid with no status pointer, on any child.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG | libc::__WALL) } > 0 {
        }
        assert!(start.elapsed() < HANG_GUARD * 4, "the tree does not go");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn kill_all(pids: &[i32]) {
    for &p in pids {
        // SAFETY: a plain kill of a process of the tree we made.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    gone(pids);
}

/// One engine's run on a fresh tree: dump time, restore time, and the
/// Pss before and after.
struct Run {
    dump: Duration,
    restore: Duration,
    pss_before: u64,
    pss_after: u64,
}

enum Engine<'a> {
    Rcriu,
    Criu(&'a Path),
}

impl Engine<'_> {
    fn name(&self) -> &'static str {
        match self {
            Engine::Rcriu => "rcriu",
            Engine::Criu(_) => "CRIU",
        }
    }

    fn dump(&self, pid: i32, dir: &Path) -> Result<(), String> {
        match self {
            Engine::Rcriu => {
                Dump::new(pid).images_dir(dir).run().expect("rcriu dump");
                Ok(())
            }
            Engine::Criu(bin) => {
                let st = Command::new(bin)
                    .args(["dump", "-t", &pid.to_string(), "-D"])
                    .arg(dir)
                    .args(["-o", "dump.log", "-v1"])
                    .status()
                    .expect("running criu");
                failed(st.success(), &dir.join("dump.log"))
            }
        }
    }

    fn restore(&self, dir: &Path) -> Result<(), String> {
        match self {
            Engine::Rcriu => {
                Restore::new(dir).detach(true).run().expect("rcriu restore");
                Ok(())
            }
            Engine::Criu(bin) => {
                let st = Command::new(bin)
                    .args(["restore", "-d", "-D"])
                    .arg(dir)
                    .args(["-o", "restore.log", "-v1"])
                    .status()
                    .expect("running criu");
                failed(st.success(), &dir.join("restore.log"))
            }
        }
    }

    /// Starts `cow` with `args`, dumps its tree, restores it, checks it.
    fn run(&self, args: &[&str], dir: &Path) -> Result<Run, String> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("creating the images directory");
        let mut w = Workload::start("cow", args);
        w.wait_in("sigsuspend");
        let pids = tree_pids(w.pid);
        let pss_before = tree_pss(w.pid);
        let t = Instant::now();
        if let Err(e) = self.dump(w.pid, dir) {
            kill_all(&pids);
            gone(&pids);
            return Err(e);
        }
        let dump = t.elapsed();
        w.reap();
        gone(&pids);
        let t = Instant::now();
        self.restore(dir)?;
        let restore = t.elapsed();
        assert_eq!(tree_pids(w.pid).len(), pids.len(), "the whole tree is back");
        let pss_after = tree_pss(w.pid);
        // Each process checks its memory.
        w.verdict()
            .unwrap_or_else(|e| panic!("{} restored a broken tree: {e}", self.name()));
        kill_all(&pids);
        let _ = std::fs::remove_dir_all(dir);
        Ok(Run {
            dump,
            restore,
            pss_before,
            pss_after,
        })
    }
}

/// `Ok` when criu succeeded, else its log's last error.
fn failed(ok: bool, log: &Path) -> Result<(), String> {
    if ok {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("Error"))
        .unwrap_or("no error logged");
    Err(format!("failed ({}): {last}", log.display()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    require_root();
    become_subreaper();
    let criu: Option<PathBuf> = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("RCRIU_BENCH_CRIU").ok())
        .map(PathBuf::from);
    let mut engines = vec![Engine::Rcriu];
    if let Some(c) = &criu {
        engines.push(Engine::Criu(c));
    }
    let dir = Path::new("/dev/shm/rcriu-bench-trees");

    println!("100 processes: 64 MiB touched by the parent, 1 MiB rewritten by each of 99 children");
    let mut big = Vec::new();
    for e in &engines {
        let r = match e.run(&["99", "64", "1024"], dir) {
            Ok(r) => r,
            Err(err) => {
                println!("  {:5}: {err}", e.name());
                continue;
            }
        };
        println!(
            "  {:5}: dump {:8.1} ms, restore {:8.1} ms; Pss {} MiB -> {} MiB ({:.2}x)",
            e.name(),
            ms(r.dump),
            ms(r.restore),
            r.pss_before >> 10,
            r.pss_after >> 10,
            r.pss_after as f64 / r.pss_before as f64
        );
        big.push(r);
    }
    if let [a, b] = &big[..] {
        println!(
            "  rcriu/CRIU: dump {:.2}x, restore {:.2}x",
            a.dump.as_secs_f64() / b.dump.as_secs_f64(),
            a.restore.as_secs_f64() / b.restore.as_secs_f64()
        );
    }

    println!("small processes (1 MiB shared, 4 KiB rewritten each): time per process");
    for n in [100usize, 300, 1000] {
        let kids = (n - 1).to_string();
        for e in &engines {
            let r = match e.run(&[&kids, "1", "4"], dir) {
                Ok(r) => r,
                Err(err) => {
                    println!("  {n:5} {:5}: {err}", e.name());
                    continue;
                }
            };
            println!(
                "  {n:5} {:5}: dump {:7.1} ms ({:6.3} ms each), restore {:7.1} ms ({:6.3} ms each)",
                e.name(),
                ms(r.dump),
                ms(r.dump) / n as f64,
                ms(r.restore),
                ms(r.restore) / n as f64
            );
        }
    }
}
