//! maps and smaps of a process with 20,000 areas: read+parse against the
//! bare read of the same file (the kernel's part, timed in the same run),
//! and the parse alone. Criterion's throughput is in areas per second; the
//! summary printed at the end gives µs per area.
//!
//! `cargo bench -p rcriu-proc --bench maps`

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use rcriu_proc::{SmapsVma, Task, Vma, parse_smaps_into};

const AREAS: usize = 20_000;

fn per_area(label: &str, n: usize, mut f: impl FnMut()) -> f64 {
    // Warm up, then time a fixed number of rounds.
    f();
    let rounds = 20;
    let t = Instant::now();
    for _ in 0..rounds {
        f();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / (rounds as f64 * n as f64);
    println!("{label:<24} {us:8.3} µs per area");
    us
}

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rcriu-proc-testee"))
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning the testee");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    writeln!(stdin, "vmas {AREAS}").expect("asking for areas");
    let mut reply = String::new();
    out.read_line(&mut reply).expect("the testee's reply");
    assert!(reply.starts_with("ok"), "testee: {reply}");

    let mut task = Task::open(child.id() as i32).expect("the testee's /proc");
    let n = task.maps().expect("maps").len();
    assert!(n >= AREAS, "only {n} areas");
    let smaps_text = task.read_file_vec("smaps").expect("smaps");
    println!(
        "testee has {n} areas; smaps is {} bytes ({} per area)",
        smaps_text.len(),
        smaps_text.len() / n
    );

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut g = c.benchmark_group("20k_areas");
    g.throughput(Throughput::Elements(n as u64));
    let mut vmas: Vec<Vma> = Vec::with_capacity(n);
    let mut svmas: Vec<SmapsVma> = Vec::with_capacity(n);
    g.bench_function("maps_read", |b| {
        b.iter(|| black_box(task.read_file("maps").expect("maps").len()))
    });
    g.bench_function("maps_read_parse", |b| {
        b.iter(|| {
            vmas.clear();
            task.maps_into(&mut vmas).expect("maps");
            black_box(vmas.len())
        })
    });
    g.bench_function("smaps_read", |b| {
        b.iter(|| black_box(task.read_file("smaps").expect("smaps").len()))
    });
    g.bench_function("smaps_read_parse", |b| {
        b.iter(|| {
            svmas.clear();
            task.smaps_into(&mut svmas).expect("smaps");
            black_box(svmas.len())
        })
    });
    g.bench_function("smaps_parse_only", |b| {
        b.iter(|| {
            svmas.clear();
            parse_smaps_into(&smaps_text, &mut svmas).expect("smaps");
            black_box(svmas.len())
        })
    });
    g.finish();

    println!("\nsummary, {n} areas:");
    let mr = per_area("maps read", n, || {
        black_box(task.read_file("maps").expect("maps").len());
    });
    let mp = per_area("maps read+parse", n, || {
        vmas.clear();
        task.maps_into(&mut vmas).expect("maps");
    });
    let sr = per_area("smaps read", n, || {
        black_box(task.read_file("smaps").expect("smaps").len());
    });
    let sp = per_area("smaps read+parse", n, || {
        svmas.clear();
        task.smaps_into(&mut svmas).expect("smaps");
    });
    per_area("smaps parse only", n, || {
        svmas.clear();
        parse_smaps_into(&smaps_text, &mut svmas).expect("smaps");
    });
    println!(
        "read+parse / bare read: maps {:.2}x, smaps {:.2}x",
        mp / mr,
        sp / sr
    );

    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
}
