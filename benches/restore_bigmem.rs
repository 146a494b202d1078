//! The restore of a process with 1 GiB of touched anonymous memory from
//! tmpfs, until it runs again, against a `preadv` of its pages image into
//! a fresh 1 GiB anonymous mapping timed in the same run (the speed
//! issue's baseline). Needs root.
//!
//! `cargo bench --bench restore_bigmem` (`-- ROUNDS`, 5 by default).
//! Reports the medians of the preadv, of the restore and their ratio; then
//! of the restore of the same process dumped with `--encrypt`, in the
//! same rounds, and its ratio to the plain restore.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rcriu::{Dump, Restore};
use rcriu_test_support::{Workload, become_subreaper, require_root, wait_exit};

const MIB: usize = 1024;

/// Reads `path` into a fresh anonymous mapping of its size with preadv.
fn preadv_baseline(path: &Path) -> Duration {
    let f = File::open(path).expect("opening the pages image");
    let len = f.metadata().expect("its size").len() as usize;
    let t = Instant::now();
    // SAFETY: a fresh private anonymous mapping, ours alone; unmapped
    // below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    let mut off = 0usize;
    while off < len {
        let chunk = (len - off).min(1 << 30);
        let iov = libc::iovec {
            // SAFETY: inside the mapping (off < len).
            iov_base: unsafe { p.cast::<u8>().add(off) }.cast(),
            iov_len: chunk,
        };
        // SAFETY: the iovec covers our own writable mapping.
        let r = unsafe { libc::preadv(f.as_raw_fd(), &iov, 1, off as i64) };
        assert!(r > 0, "preadv: {}", std::io::Error::last_os_error());
        off += r as usize;
    }
    let d = t.elapsed();
    // SAFETY: unmapping exactly what was mapped above.
    unsafe { libc::munmap(p, len) };
    d
}

/// What the issue asks of the restored area, from /proc/PID/smaps: its
/// VmFlags line, and its resident and anonymous kilobytes.
#[derive(Debug, PartialEq, Eq)]
struct Area {
    vmflags: String,
    rss_kb: u64,
    anon_kb: u64,
}

fn area(pid: i32, addr: u64) -> Area {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("reading smaps");
    let head = format!("{addr:x}-");
    // The area's lines, from its head through its VmFlags line (the last).
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
    let mut block = Vec::new();
    for l in lines.by_ref() {
        block.push(l);
        if l.starts_with("VmFlags:") {
            break;
        }
    }
    let kb = |key: &str| {
        block
            .iter()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or_else(|| panic!("no {key} for the area at {addr:#x}"))
    };
    Area {
        vmflags: block.last().map_or(String::new(), |l| l.to_string()),
        rss_kb: kb("Rss:"),
        anon_kb: kb("Anonymous:"),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    require_root();
    become_subreaper();
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let dir = Path::new("/dev/shm/rcriu-bench-restore");
    let enc = Path::new("/dev/shm/rcriu-bench-restore-encrypted");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(enc);
    let key = rcriu::images::crypt::Key::parse(&[0x42; 32], "of the bench").expect("32 bytes");
    let mut w = Workload::start("bigmem", &[&MIB.to_string()]);
    let pid = w.pid;
    let addr = u64::from_str_radix(w.fact("addr").trim_start_matches("0x"), 16).expect("addr");
    let before = area(pid, addr);
    assert_eq!(before.rss_kb, (MIB as u64) << 10, "{before:?}");
    Dump::new(pid)
        .images_dir(enc)
        .leave_running(true)
        .encrypt(key.clone())
        .run()
        .expect("dumping bigmem encrypted");
    Dump::new(pid)
        .images_dir(dir)
        .run()
        .expect("dumping bigmem");
    w.reap();
    let pages = dir.join("pages-1.img");

    // Warm-up: the first touch of a large buffer is slower here.
    preadv_baseline(&pages);
    let (mut base, mut restore, mut encrypted) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        base.push(preadv_baseline(&pages));
        for (from, times) in [(dir, &mut restore), (enc, &mut encrypted)] {
            let t = Instant::now();
            let mut r = Restore::new(from).detach(true);
            if from == enc {
                r = r.key(key.clone());
            }
            let r = r.run().expect("restoring bigmem");
            times.push(t.elapsed());
            assert_eq!(r.pid, pid);
            // Every page resident and anonymous, the same VmFlags: nothing
            // left to fault in lazily.
            assert_eq!(area(pid, addr), before, "the restored area");
            // SAFETY: a plain kill of the process we restored.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_exit(pid).expect("the restored process ends");
        }
    }
    let (b, r, e) = (median(base), median(restore), median(encrypted));
    println!(
        "1 GiB restore from tmpfs, median of {rounds}: preadv {:.1} ms, restore {:.1} ms ({:.2}x)",
        b.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        r.as_secs_f64() / b.as_secs_f64()
    );
    println!(
        "encrypted: restore {:.1} ms ({:.2}x the plain restore)",
        e.as_secs_f64() * 1e3,
        e.as_secs_f64() / r.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(enc);
    drop(w);
}
