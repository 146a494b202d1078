//! The wall time of `rcriu dump` and `rcriu restore -d` of a small process
//! (the fixture's 4 MiB `counter`), as a user runs them: the CLI binary,
//! exec included. The speed issue's goal: a median of at most 10 ms each.
//! Needs root.
//!
//! `cargo bench --bench small_process` (`-- ROUNDS`, 5 by default): the
//! counter is dumped (and killed), restored detached, dumped again..., and
//! the medians of both wall times are printed with `/bin/true`'s (the cost
//! of starting any process, timed in the same run) for scale.

use std::process::Command;

use rcriu_test_support::bench::{median, run, wait_gone};
use rcriu_test_support::{Counter, TempDir, wait_exit};

fn main() {
    let rounds = rcriu_test_support::bench::start(5);
    let rcriu = env!("CARGO_BIN_EXE_rcriu");
    let home = TempDir::new("bench-small");
    let mut c = Counter::start(home.path());
    c.lines_past(2);
    let pid = c.pid;
    let (mut dumps, mut restores, mut trues) = (Vec::new(), Vec::new(), Vec::new());
    // A warm-up round, not counted.
    for round in 0..=rounds {
        let images = TempDir::new("bench-small-img");
        let d = run(Command::new(rcriu)
            .args(["dump", "-t", &pid.to_string(), "-D"])
            .arg(images.path()));
        if round == 0 {
            c.reap();
        } else {
            wait_exit(pid).expect("the dumped counter ends");
        }
        wait_gone(pid);
        let r = run(Command::new(rcriu)
            .args(["restore", "-d", "-D"])
            .arg(images.path()));
        let t = run(&mut Command::new("/bin/true"));
        if round > 0 {
            dumps.push(d);
            restores.push(r);
            trues.push(t);
        }
    }
    let lines = c.lines_past(0);
    assert!(
        lines.iter().all(|l| !l.starts_with("CORRUPT")),
        "the counter survived every round intact"
    );
    let (d, r, t) = (median(dumps), median(restores), median(trues));
    println!("small process (4 MiB counter), median of {rounds} rounds:");
    println!("  rcriu dump       {:>8.2} ms", d.as_secs_f64() * 1e3);
    println!("  rcriu restore -d {:>8.2} ms", r.as_secs_f64() * 1e3);
    println!(
        "  /bin/true        {:>8.2} ms (starting a process, for scale)",
        t.as_secs_f64() * 1e3
    );
}
