//! What an idle io_uring adds to `rcriu dump` and `rcriu restore -d`: the
//! `uring` workload with its ring (counters at 74, registered file and
//! buffers), with a ring gone round far (counters at 100074: 12510
//! batches of no-op requests at the restore), and without any ring (the
//! same process otherwise), timed in the same run; the medians and their
//! ratios to the baseline's. Needs root.
//!
//! `cargo bench --bench io_uring` (`-- ROUNDS`, 5 by default).

use std::process::Command;
use std::time::Duration;

use rcriu_test_support::bench::{median, run, wait_gone};
use rcriu_test_support::{TempDir, Workload};

/// The median dump and restore times of the workload in `mode`.
fn time(mode: &str, rounds: usize) -> (Duration, Duration) {
    let rcriu = env!("CARGO_BIN_EXE_rcriu");
    let (mut dumps, mut restores) = (Vec::new(), Vec::new());
    // A warm-up round, not counted.
    for round in 0..=rounds {
        let mut w = Workload::start("uring", &[mode]);
        w.wait_in("sigsuspend");
        let images = TempDir::new("bench-uring-img");
        let d = run(Command::new(rcriu)
            .args(["dump", "-t", &w.pid.to_string(), "-D"])
            .arg(images.path()));
        w.reap();
        wait_gone(w.pid);
        let r = run(Command::new(rcriu)
            .args(["restore", "-d", "-D"])
            .arg(images.path()));
        w.verdict()
            .unwrap_or_else(|e| panic!("mode {mode:?} after its restore: {e}"));
        if round > 0 {
            dumps.push(d);
            restores.push(r);
        }
    }
    (median(dumps), median(restores))
}

fn main() {
    let rounds = rcriu_test_support::bench::start(5);
    let (bd, br) = time("noring", rounds);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("uring workload, median of {rounds} rounds (dump, restore -d):");
    println!("  no ring            {:>8.2} ms {:>8.2} ms", ms(bd), ms(br));
    for (name, mode) in [("idle ring", ""), ("ring gone far", "far")] {
        let (d, r) = time(mode, rounds);
        println!(
            "  {name:<18} {:>8.2} ms {:>8.2} ms   ({:.2}x, {:.2}x the baseline)",
            ms(d),
            ms(r),
            d.as_secs_f64() / bd.as_secs_f64(),
            r.as_secs_f64() / br.as_secs_f64()
        );
    }
}
