//! The dump of a process with 1 GiB of touched anonymous memory into
//! tmpfs, against `dd if=/dev/zero of=/dev/shm/... bs=1M count=1024` timed
//! in the same run (the speed issue's baseline). Needs root.
//!
//! `cargo bench --bench dump_bigmem` (`-- ROUNDS` to change the number of
//! rounds, 5 by default). Reports the medians of dd, of the dump's frozen
//! time (stats-dump's `frozen_time`) and of its wall time, and their
//! ratios to dd; then the same for dumps with `--encrypt`, in the same
//! rounds, and their ratios to the plain dumps.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcriu::Dump;
use rcriu_test_support::{Workload, no_inherited_fds, require_root};

const MIB: u64 = 1024;

fn dd(out: &str) -> Duration {
    let t = Instant::now();
    let st = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={out}"), "bs=1M", "count=1024"])
        .stderr(Stdio::null())
        .status()
        .expect("running dd");
    let d = t.elapsed();
    assert!(st.success());
    let _ = std::fs::remove_file(out);
    d
}

struct Round {
    frozen: Duration,
    /// The manifest's hashing, done after the freeze.
    hash: Duration,
    wall: Duration,
    memdump: Duration,
}

/// The key of the encrypted dumps.
fn key() -> rcriu::images::crypt::Key {
    rcriu::images::crypt::Key::parse(&[0x42; 32], "of the bench").expect("32 bytes")
}

fn dump(pid: i32, dir: &PathBuf) -> Round {
    dump_with(pid, dir, None)
}

fn dump_with(pid: i32, dir: &PathBuf, key: Option<rcriu::images::crypt::Key>) -> Round {
    let t = Instant::now();
    let mut d = Dump::new(pid).images_dir(dir).leave_running(true);
    if let Some(k) = key {
        d = d.encrypt(k);
    }
    let s = d.run().expect("dumping bigmem");
    let wall = t.elapsed();
    assert!(s.pages_written >= MIB * 256, "{} pages", s.pages_written);
    // What the manifest's hashing costs (the dump does it after the
    // freeze): the same hashing again, timed.
    let d = rcriu::images::ImageDir::open(dir).expect("the images");
    let names: Vec<String> = std::fs::read_dir(dir)
        .expect("listing the images")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != rcriu::images::manifest::MANIFEST)
        .collect();
    let t = Instant::now();
    let m = rcriu::images::manifest::Manifest::build(&d, names.iter().map(String::as_str))
        .expect("hashing the images");
    let hash = t.elapsed();
    assert!(m.files().count() == names.len());
    let _ = std::fs::remove_dir_all(dir);
    Round {
        frozen: s.frozen_time,
        wall,
        memdump: s.memdump_time,
        hash,
    }
}

/// Waits until the workload has let go of its readiness pipe (and of the
/// /dev/null it puts in its place).
fn settle(pid: i32) {
    loop {
        let busy = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("listing the workload's fds")
            .filter_map(|e| e.ok())
            .any(|e| {
                let n: i32 = e.file_name().to_string_lossy().parse().unwrap_or(0);
                let l = std::fs::read_link(e.path()).unwrap_or_default();
                n > 2 || l.to_string_lossy().starts_with("pipe:")
            });
        if !busy {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes --bench; a number is the rounds.
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    require_root();
    no_inherited_fds();
    let w = Workload::start("bigmem", &[&MIB.to_string()]);
    settle(w.pid);
    let me = std::process::id();
    let dd_out = format!("/dev/shm/rcriu-bench-dd-{me}");
    let dir = PathBuf::from(format!("/dev/shm/rcriu-bench-dump-{me}"));

    // Warm-up: the first touch of large buffers is slower in this VM.
    dd(&dd_out);
    dump(w.pid, &dir);

    let (mut dds, mut frozen, mut wall, mut memdump, mut hash) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut enc_frozen, mut enc_wall) = (vec![], vec![]);
    for _ in 0..rounds {
        dds.push(dd(&dd_out));
        let r = dump(w.pid, &dir);
        frozen.push(r.frozen);
        wall.push(r.wall);
        memdump.push(r.memdump);
        hash.push(r.hash);
        let e = dump_with(w.pid, &dir, Some(key()));
        enc_frozen.push(e.frozen);
        enc_wall.push(e.wall);
    }
    let (d, f, wl, m) = (median(dds), median(frozen), median(wall), median(memdump));
    println!("1 GiB dump to tmpfs, median of {rounds} rounds:");
    println!("  dd 1 GiB to /dev/shm   {:8.1} ms", ms(d));
    println!(
        "  dump frozen time       {:8.1} ms  = {:.2} x dd",
        ms(f),
        f.as_secs_f64() / d.as_secs_f64()
    );
    println!(
        "  dump wall time         {:8.1} ms  = {:.2} x dd",
        ms(wl),
        wl.as_secs_f64() / d.as_secs_f64()
    );
    println!(
        "  (pages: memdump_time   {:8.1} ms  = {:.2} x dd)",
        ms(m),
        m.as_secs_f64() / d.as_secs_f64()
    );
    let h = median(hash);
    println!(
        "  manifest hashing       {:8.1} ms  = {:.1}% of the frozen time, after the freeze \
         (in the wall time above)",
        ms(h),
        100.0 * h.as_secs_f64() / f.as_secs_f64()
    );
    let (ef, ew) = (median(enc_frozen), median(enc_wall));
    println!(
        "  encrypted: frozen      {:8.1} ms  = {:.2} x the plain dump's",
        ms(ef),
        ef.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "  encrypted: wall time   {:8.1} ms  = {:.2} x the plain dump's",
        ms(ew),
        ew.as_secs_f64() / wl.as_secs_f64()
    );
    w.verdict()
        .expect("bigmem's memory is intact after the dumps");
}
