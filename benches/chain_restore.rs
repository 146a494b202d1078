//! The restore of a pre-dump chain against the restore of one dump, in
//! the same run: a process holding 1 GiB that rewrites random pages at a
//! steady pace is pre-dumped twice and dumped with `--track-mem` (images
//! in /dev/shm: three levels, most pages in the first pre-dump's image),
//! restored from the chain, then dumped whole (one level) and restored
//! from that; each restore until the process runs again, its images
//! checked against their manifests as always. Needs root.
//!
//! `cargo bench --bench chain_restore` (`-- ROUNDS`, 3 by default).
//! Reports the medians and the ratio of the chain's restore to the
//! single dump's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcriu::dump::predump;
use rcriu::{Dump, Restore};
use rcriu_test_support::{Workload, become_subreaper, no_inherited_fds, require_root, wait_exit};

fn pre_dump(pid: i32, dir: &Path, parent: Option<&str>) {
    predump::run(&predump::Options {
        pid,
        dir: dir.to_owned(),
        parent: parent.map(PathBuf::from),
        mode: 1,
        stats_dir: None,
        page_server: None,
        auto_dedup: false,
    })
    .expect("pre-dumping");
}

/// Restores from `dir` until the process runs; the time it took.
fn restore(dir: &Path) -> (Duration, i32) {
    let t = Instant::now();
    let r = Restore::new(dir).detach(true).run().expect("restoring");
    (t.elapsed(), r.pid)
}

fn kill(pid: i32) {
    // SAFETY: kill(2) of the process this bench restored (our child).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = wait_exit(pid);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    require_root();
    no_inherited_fds();
    become_subreaper();
    let base = PathBuf::from(format!("/dev/shm/rcriu-bench-chain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("making the bench's directory");
    let d = |n: &str| base.join(n);

    let mut w = Workload::start("rewriter", &["1024", "5"]);
    pre_dump(w.pid, &d("1"), None);
    std::thread::sleep(Duration::from_millis(500));
    pre_dump(w.pid, &d("2"), Some("../1"));
    std::thread::sleep(Duration::from_millis(500));
    Dump::new(w.pid)
        .images_dir(d("3"))
        .prev_images_dir("../2")
        .track_mem(true)
        .run()
        .expect("the final dump");
    w.reap();
    // The same memory as one dump.
    let (_, pid) = restore(&d("3"));
    Dump::new(pid)
        .images_dir(d("full"))
        .run()
        .expect("the single dump");
    let _ = wait_exit(pid);

    let (mut chain, mut single) = (vec![], vec![]);
    let mut w = Some(w);
    for r in 0..=rounds {
        let (c, pid) = restore(&d("3"));
        kill(pid);
        let (s, pid) = restore(&d("full"));
        match w.take() {
            // The last one is checked from inside (the workload's pid).
            Some(w) if r == rounds => w
                .verdict()
                .expect("the restored process's memory is intact"),
            other => {
                w = other;
                kill(pid);
            }
        }
        if r > 0 {
            chain.push(c);
            single.push(s);
        }
    }
    let (c, s) = (median(chain), median(single));
    println!("1 GiB process, images in /dev/shm, median of {rounds} rounds:");
    println!(
        "  restore of one dump              {:8.1} ms",
        s.as_secs_f64() * 1e3
    );
    println!(
        "  restore of 2 pre-dumps + a dump  {:8.1} ms  = {:.2} x one dump",
        c.as_secs_f64() * 1e3,
        c.as_secs_f64() / s.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&base);
}
