//! rcriu's main job on a small example: start a program, checkpoint it,
//! restore it, and watch it carry on from where it stopped.
//!
//! The program is `counter` (tests/fixtures/bin/counter, built from
//! tests/fixtures/src/counter.c): every 50 ms it appends the next number
//! to a file, after checking a 4 MiB buffer it filled at start.
//!
//! Run as root: `cargo run --release --example demo`

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DIR: &str = "/tmp/rcriu-demo";

fn lines(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Waits until `out` has at least `n` lines.
fn wait_lines(out: &Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let l = lines(out);
        if l.len() >= n {
            return l;
        }
        if start.elapsed() > Duration::from_secs(30) {
            panic!("the counter wrote only {} lines", l.len());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The counter must hold no fd but its standard ones (what the first
/// slice dumps): fds this process inherited stay out of it.
fn keep_inherited_fds_to_ourselves() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for fd in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        if fd > 2 {
            // SAFETY: F_SETFD only changes a flag of the descriptor.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// Kills a process when dropped (the demo leaves nothing running, even
/// when a step fails).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: a plain kill(2); the pid is ours (our child).
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    keep_inherited_fds_to_ourselves();
    let dir = Path::new(DIR);
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let counter = dir.join("counter");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("tests/fixtures/bin/counter"), &counter)?;
    let out = dir.join("counter.out");
    let images = dir.join("images");

    // 1. A program at work, in a session of its own (as criu wants it).
    let mut child = Command::new("setsid")
        .arg(&counter)
        .arg(&out)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id() as i32;
    let guard = KillOnDrop(pid);
    let before = wait_lines(&out, 10);
    println!(
        "counter (pid {pid}) is counting: ... {}",
        before[before.len() - 3..].join(" ")
    );

    // 2. Checkpoint: its whole state goes to image files, and it is gone.
    let started = Instant::now();
    let stats = rcriu::Dump::new(pid).images_dir(&images).run()?;
    let dump_us = started.elapsed().as_micros();
    child.wait()?;
    std::mem::forget(guard);
    let last = lines(&out).last().cloned().unwrap_or_default();
    println!(
        "dumped to {} in {dump_us} us (frozen {} us, {} pages); the process is gone, its last number was {last}",
        images.display(),
        stats.frozen_time.as_micros(),
        stats.pages_written
    );

    // 3. Restore: the same process, same pid, same memory, carries on.
    let restored = rcriu::Restore::new(&images).detach(true).run()?;
    let _guard = KillOnDrop(restored.pid);
    let n = lines(&out).len();
    let after = wait_lines(&out, n + 5);
    println!(
        "restored as pid {} in {} us; it carries on: {} ...",
        restored.pid,
        restored.restore_time_us,
        after[n - 1..n + 5].join(" ")
    );
    let corrupt = after.iter().any(|l| l.starts_with("CORRUPT"));
    println!(
        "its 4 MiB buffer is {}",
        if corrupt { "CORRUPT" } else { "intact" }
    );

    // The restored process (ours: clone3 from here) ends with the guard.
    let _ = std::fs::remove_dir_all(dir);
    if corrupt {
        return Err("the restored counter found its memory corrupt".into());
    }
    Ok(())
}
