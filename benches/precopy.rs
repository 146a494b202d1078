//! Pre-copy against a single-shot dump, in the same run: a process holding
//! 1 GiB that rewrites random pages at a steady pace is pre-dumped twice
//! and then, once it has rewritten 1% of its pages (read from its
//! counter, so that the machine's load does not change it), dumped with
//! `--track-mem` (images in /dev/shm); the final dump's frozen time is
//! compared with a single-shot dump's of the same process. Then a
//! process rewriting pages as fast as it can measures its own throughput
//! (pages rewritten per second, read from its counter) while it runs
//! alone and while it is being pre-dumped. Needs root.
//!
//! `cargo bench --bench precopy` (`-- ROUNDS`, 3 by default). On a busy
//! machine, `chrt -f 50` on the bench's binary keeps others' work out of
//! the frozen times.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcriu::Dump;
use rcriu::dump::predump;
use rcriu_test_support::{Workload, no_inherited_fds, require_root};

const MIB: u64 = 1024;
const PAGES: u64 = MIB * 256;
/// The writer's pause after each page, in microseconds.
const PACE_US: &str = "50";
/// What the process rewrites between the second pre-dump and the dump:
/// 1% of its pages (with replacement: about 0.99% of them distinct).
const GAP_PAGES: u64 = PAGES / 100;

fn pre_dump(pid: i32, dir: &Path, parent: Option<&str>) -> rcriu::DumpStats {
    predump::run(&predump::Options {
        pid,
        dir: dir.to_owned(),
        parent: parent.map(PathBuf::from),
        mode: 1,
        stats_dir: None,
        page_server: None,
        auto_dedup: false,
    })
    .expect("pre-dumping")
}

/// The workload's count of pages rewritten.
fn counter(w: &Workload, mem: &std::fs::File) -> u64 {
    let mut b = [0u8; 8];
    mem.read_exact_at(&mut b, w.fact_u64("counter"))
        .expect("reading the workload's counter");
    u64::from_ne_bytes(b)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    require_root();
    no_inherited_fds();
    let me = std::process::id();
    let base = PathBuf::from(format!("/dev/shm/rcriu-bench-precopy-{me}"));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("making the bench's directory");

    let w = Workload::start("rewriter", &[&MIB.to_string(), PACE_US]);
    let paced_mem =
        std::fs::File::open(format!("/proc/{}/mem", w.pid)).expect("opening its memory");
    let (mut single, mut last, mut written) = (vec![], vec![], vec![]);
    for r in 0..=rounds {
        let dir = base.join(format!("r{r}"));
        std::fs::create_dir_all(&dir).expect("making a round's directory");
        let full = Dump::new(w.pid)
            .images_dir(dir.join("full"))
            .leave_running(true)
            .run()
            .expect("the single-shot dump");
        pre_dump(w.pid, &dir.join("1"), None);
        pre_dump(w.pid, &dir.join("2"), Some("../1"));
        // The gap is the pages rewritten, whatever the machine's load.
        let c2 = counter(&w, &paced_mem);
        while counter(&w, &paced_mem) < c2 + GAP_PAGES {
            std::thread::sleep(Duration::from_millis(1));
        }
        let fin = Dump::new(w.pid)
            .images_dir(dir.join("3"))
            .prev_images_dir("../2")
            .track_mem(true)
            .leave_running(true)
            .run()
            .expect("the final dump");
        let _ = std::fs::remove_dir_all(&dir);
        if r == 0 {
            continue; // warm-up
        }
        single.push(full.frozen_time);
        last.push(fin.frozen_time);
        written.push(fin.pages_written);
    }
    w.verdict().expect("the paced writer's memory is intact");
    let (s, f) = (median(single), median(last));
    written.sort_unstable();
    let pages = written[written.len() / 2];
    println!("1 GiB process, images in /dev/shm, median of {rounds} rounds:");
    println!("  single-shot dump frozen      {:8.1} ms", ms(s));
    println!(
        "  final dump after 2 pre-dumps {:8.1} ms  = {:.3} x single-shot ({} pages written, {:.2}% of its memory)",
        ms(f),
        f.as_secs_f64() / s.as_secs_f64(),
        pages,
        100.0 * pages as f64 / PAGES as f64
    );

    // Throughput of a writer going flat out, alone and while pre-dumped.
    let w = Workload::start("rewriter", &[&MIB.to_string()]);
    let mem = std::fs::File::open(format!("/proc/{}/mem", w.pid)).expect("opening its memory");
    let (mut alone, mut during) = (vec![], vec![]);
    for r in 0..=rounds {
        let c0 = counter(&w, &mem);
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let a = (counter(&w, &mem) - c0) as f64 / t.elapsed().as_secs_f64();
        let dir = base.join(format!("t{r}"));
        std::fs::create_dir_all(&dir).expect("making a round's directory");
        let c0 = counter(&w, &mem);
        let t = Instant::now();
        pre_dump(w.pid, &dir.join("1"), None);
        pre_dump(w.pid, &dir.join("2"), Some("../1"));
        let d = (counter(&w, &mem) - c0) as f64 / t.elapsed().as_secs_f64();
        // The tracking ends with a dump, as a migration's would.
        Dump::new(w.pid)
            .images_dir(dir.join("3"))
            .prev_images_dir("../2")
            .track_mem(true)
            .leave_running(true)
            .run()
            .expect("the final dump");
        let _ = std::fs::remove_dir_all(&dir);
        if r > 0 {
            alone.push(a);
            during.push(d);
        }
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, d) = (med(alone), med(during));
    println!("  writer alone                 {:8.0} pages/s", a);
    println!(
        "  writer while pre-dumped      {:8.0} pages/s  = {:.2} x alone",
        d,
        d / a
    );
    w.verdict().expect("the fast writer's memory is intact");
    let _ = std::fs::remove_dir_all(&base);
}
