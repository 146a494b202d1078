//! A dump is a snapshot of one instant: a process that keeps rewriting
//! 1 GiB of memory under a running checksum, dumped with --leave-running
//! (so it runs on right after), restores with every page agreeing with
//! its checksum. The negative control changes one page in the images.
//! Both with the images on disk (one writer of the pages) and on tmpfs
//! (two: the parasite writing into room reserved before the freeze, and a
//! helper's copies into a mapping).

use std::io::{Seek, SeekFrom, Write};

use rcriu::{Dump, Restore};
use rcriu_test_support::{TempDir, Workload, become_subreaper, require_root, signal, trace_lock};

/// start → dump --leave-running → kill the original → (tweak) → restore
/// → verdict.
fn snapshot(mib: u64, corrupt: bool, tmpfs: bool) -> Result<(), String> {
    let mut w = Workload::start("rewriter", &[&mib.to_string()]);
    assert_eq!(w.fact_u64("pages"), mib * 256);
    let images = if tmpfs {
        TempDir::in_shm("consistency")
    } else {
        TempDir::new("consistency")
    };
    let stats = Dump::new(w.pid)
        .images_dir(images.path())
        .leave_running(true)
        .run()
        .map_err(|e| format!("dumping: {e}"))?;
    assert!(stats.pages_written >= mib * 256, "{stats:?}");
    // The original rewrites its pages on: none of that may reach the
    // images.
    signal(w.pid, libc::SIGKILL);
    w.reap();
    if corrupt {
        // Without the manifest, which would refuse the change at once.
        std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST)).unwrap();
        let path = images.path().join("pages-1.img");
        let len = std::fs::metadata(&path).unwrap().len();
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        // 64 pages in the middle of the file, inside the rewritten area:
        // the writer, running on after the restore, may rewrite (and so
        // mend) a few of them before the check, never all.
        for k in 0..64 {
            f.seek(SeekFrom::Start(len / 4 + k * (len / 128) + 100))
                .unwrap();
            f.write_all(&[0x5a; 8]).unwrap();
        }
    }
    Restore::new(images.path())
        .detach(true)
        .run()
        .map_err(|e| format!("restoring: {e}"))?;
    w.verdict()
}

/// On tmpfs the pages go into room reserved before the freeze, which
/// the parasite fills with the process's own writes. Those must stay
/// within its RLIMIT_FSIZE (past it the process would get SIGXFSZ): with
/// a 40 MiB limit on 96 MiB, the first 40 MiB are written so, the rest
/// through the page pipe and the helper. The process lives through the
/// dump (it dies of the test's SIGKILL, not SIGXFSZ) and restores whole.
#[test]
fn a_file_size_limit_holds_for_the_pages_the_process_writes() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let mut w = Workload::start("rewriter", &["96"]);
    let limit = libc::rlimit64 {
        rlim_cur: 40 << 20,
        rlim_max: libc::RLIM64_INFINITY,
    };
    // SAFETY: sets one limit of the workload from a valid struct.
    let r = unsafe { libc::prlimit64(w.pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    let images = TempDir::in_shm("consistency");
    Dump::new(w.pid)
        .images_dir(images.path())
        .leave_running(true)
        .run()
        .expect("dumping");
    signal(w.pid, libc::SIGKILL);
    let status = w.reap();
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "the dumped process ended with status {status:#x}, not by the test's SIGKILL"
    );
    Restore::new(images.path())
        .detach(true)
        .run()
        .expect("restoring");
    w.verdict().expect("the restored process");
}

#[test]
fn a_rewriting_process_is_dumped_as_of_one_instant() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    snapshot(1024, false, false).unwrap();
    let e = snapshot(256, true, false).unwrap_err();
    assert!(e.contains("disagrees with its checksum"), "{e}");
}

#[test]
fn a_rewriting_process_is_dumped_as_of_one_instant_to_tmpfs() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    snapshot(1024, false, true).unwrap();
    let e = snapshot(256, true, true).unwrap_err();
    assert!(e.contains("disagrees with its checksum"), "{e}");
}
