//! What each memory area costs a dump and a restore: a process with
//! 20,000 one-page anonymous areas against the same 20,000 pages in one
//! area, dumped (killed) and restored in the same run. The speed issue's
//! goal: at most 20 µs per area on top of its pages. Needs root.
//!
//! `cargo bench --bench many_vmas` (`-- ROUNDS`, 3 by default; `-- N`
//! areas with a second number). Prints the medians of both shapes and the
//! difference per area.

use std::time::{Duration, Instant};

use rcriu::{Dump, Restore};
use rcriu_test_support::{TempDir, Workload, become_subreaper, no_inherited_fds, require_root};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One dump and restore of `manyvmas N shape`; the restored process
/// checks its pages.
fn round(n: u64, shape: &str) -> (Duration, Duration) {
    let mut w = Workload::start("manyvmas", &[&n.to_string(), shape]);
    w.wait_in("sigsuspend");
    let images = TempDir::new("bench-vmas");
    let t = Instant::now();
    Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect("dumping manyvmas");
    let dump = t.elapsed();
    w.reap();
    let t = Instant::now();
    Restore::new(images.path())
        .detach(true)
        .run()
        .expect("restoring manyvmas");
    let restore = t.elapsed();
    w.verdict().expect("the restored process is intact");
    (dump, restore)
}

fn main() {
    require_root();
    no_inherited_fds();
    become_subreaper();
    let nums: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = nums.first().copied().unwrap_or(3) as usize;
    let n = nums.get(1).copied().unwrap_or(20_000);
    // Warm-up.
    round(n, "split");
    let mut res = Vec::new();
    for shape in ["whole", "split"] {
        let (mut d, mut r) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (a, b) = round(n, shape);
            d.push(a);
            r.push(b);
        }
        let (d, r) = (median(d), median(r));
        println!(
            "{n} pages, {shape:>5}: dump {:>8.2} ms, restore {:>8.2} ms",
            d.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3
        );
        res.push((d, r));
    }
    let per = |a: Duration, b: Duration| (b.as_secs_f64() - a.as_secs_f64()) * 1e6 / n as f64;
    println!(
        "per area: dump {:.2} µs, restore {:.2} µs (goal: at most 20 µs)",
        per(res[0].0, res[1].0),
        per(res[0].1, res[1].1)
    );
}
