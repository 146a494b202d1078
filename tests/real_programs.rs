//! Real programs of the kinds issue 16 names, dumped, killed and
//! restored: `tail -f` (inotify, and a poll that must go on), node
//! running a timer (epoll over eventfds and pipes, threads) and sqlite3's
//! shell in the middle of a transaction (its POSIX locks, with
//! `--file-locks`). Each is
//! driven by its own output (handshakes), with a negative control that
//! shows the test sees what it claims.

mod common;

use common::setup;
use rcriu::images::{ImageDir, ImageFile};
use rcriu::{Dump, Restore};
use rcriu_test_support::{Program, TempDir, wait_exit};

/// Waits until `pid` sleeps in a kernel function whose name contains
/// `wchan`.
fn wait_in(pid: i32, wchan: &str) {
    let path = format!("/proc/{pid}/wchan");
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&path)
        .unwrap_or_default()
        .contains(wchan)
    {
        assert!(
            start.elapsed() < rcriu_test_support::HANG_GUARD,
            "process {pid} never waited in {wchan}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Dumps `p` (killing it), lets `tweak` change the images (then without
/// their manifest) and restores it.
fn dump_and_restore(p: &mut Program, tag: &str, tweak: Option<fn(&ImageDir, i32)>) {
    let images = TempDir::new(tag);
    Dump::new(p.pid)
        .images_dir(images.path())
        .run()
        .unwrap_or_else(|e| panic!("dumping {tag}: {e}"));
    p.reap();
    if let Some(t) = tweak {
        t(&ImageDir::open(images.path()).unwrap(), p.pid);
        std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST)).unwrap();
    }
    let r = Restore::new(images.path())
        .detach(true)
        .run()
        .unwrap_or_else(|e| panic!("restoring {tag}: {e}"));
    assert_eq!(r.pid, p.pid);
}

fn start_tail(dir: &TempDir) -> Program {
    std::fs::write(dir.path().join("log"), "line1\n").unwrap();
    let p = Program::start(dir.path(), &["tail", "-f", "log"]);
    p.wait_for("out", "printed the first line", |t| t == "line1\n");
    wait_in(p.pid, "poll");
    p
}

fn append(dir: &TempDir, line: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("log"))
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
}

#[test]
fn tail_follows_a_growing_file() {
    let _g = setup();
    let dir = TempDir::new("tail");
    let mut p = start_tail(&dir);
    dump_and_restore(&mut p, "tail", None);
    append(&dir, "line2\n");
    p.wait_for("out", "printed the line written after the restore", |t| {
        t == "line1\nline2\n"
    });
}

/// What CRIU 4.2 writes for a thread stopped in a poll with a restart
/// block: the poll returns -EINTR.
fn interrupt_the_poll(dir: &ImageDir, pid: i32) {
    common::edit_leader(dir, pid, |c| {
        let regs = &mut c.thread_info.as_mut().expect("x86 registers").gpregs;
        assert_eq!(regs.orig_ax, libc::SYS_poll as u64, "tail waits in poll");
        regs.ax = (-(libc::EINTR as i64)) as u64;
        regs.ip += 2;
    });
}

#[test]
fn tail_fails_when_its_poll_is_interrupted() {
    let _g = setup();
    let dir = TempDir::new("tail-eintr");
    let mut p = start_tail(&dir);
    dump_and_restore(&mut p, "tail-eintr", Some(interrupt_the_poll));
    let status = wait_exit(p.pid).unwrap();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0);
    let err = std::fs::read_to_string(dir.path().join("err")).unwrap();
    assert!(err.contains("Interrupted system call"), "{err}");
}

/// node counting in a timer (every 20 ms) into `count`, and writing
/// `signalled` when SIGUSR2 comes: libuv takes signals through a pipe its
/// epoll watches.
const NODE_SCRIPT: &str = r#"
const fs = require("fs");
let n = 0;
setInterval(() => { n++; fs.writeFileSync("count", String(n)); }, 20);
process.on("SIGUSR2", () => fs.writeFileSync("signalled", String(n)));
"#;

fn count(t: &str) -> Option<u64> {
    t.trim().parse().ok()
}

/// Starts node, dumps and restores it; the count at the dump.
fn node_cycle(dir: &TempDir, tweak: Option<fn(&ImageDir, i32)>) -> (Program, u64) {
    let mut p = Program::start(dir.path(), &["node", "-e", NODE_SCRIPT]);
    p.wait_for("count", "counted to 5", |t| {
        count(t).is_some_and(|n| n >= 5)
    });
    dump_and_restore(&mut p, "node", tweak);
    // A dump between writeFileSync's truncation and its write leaves the
    // file empty until the restored node writes it.
    let at = p.wait_for("count", "wrote its count", |t| count(t).is_some());
    (p, count(&at).unwrap_or_default())
}

#[test]
fn node_keeps_its_timer_and_its_signals() {
    let _g = setup();
    let dir = TempDir::new("node");
    let (p, at) = node_cycle(&dir, None);
    p.wait_for("count", "counted on after the restore", |t| {
        count(t).is_some_and(|n| n >= at + 5)
    });
    rcriu_test_support::signal(p.pid, libc::SIGUSR2);
    p.wait_for("signalled", "took SIGUSR2", |t| count(t).is_some());
}

/// Every epoll target dropped: node's loop runs on its timers, deaf to
/// its signal pipe.
fn drop_epoll_targets(dir: &ImageDir, _pid: i32) {
    let mut files = dir.files().unwrap();
    for f in &mut files {
        if let Some(e) = f.epfd.as_deref_mut() {
            e.tfd.clear();
        }
    }
    dir.write_all(ImageFile::Files, &files).unwrap();
}

#[test]
fn node_without_its_epoll_targets_misses_signals() {
    let _g = setup();
    let dir = TempDir::new("node-deaf");
    let (p, at) = node_cycle(&dir, Some(drop_epoll_targets));
    rcriu_test_support::signal(p.pid, libc::SIGUSR2);
    // Fifty turns of the loop later, the signal was never taken.
    p.wait_for("count", "counted on after the restore", |t| {
        count(t).is_some_and(|n| n >= at + 50)
    });
    assert!(
        !dir.path().join("signalled").exists(),
        "node took the signal without its epoll targets"
    );
}

// -- sqlite3 in the middle of a transaction.

/// sqlite3's shell reading its commands from a FIFO (the returned end),
/// in a transaction that has written a row and holds the database's
/// POSIX locks (RESERVED: no other writer), waiting for the next command.
fn start_sqlite(dir: &TempDir) -> (Program, std::fs::File) {
    let db = |sql: &str| {
        std::process::Command::new("sqlite3")
            .current_dir(dir.path())
            .args(["db", sql])
            .status()
            .expect("running sqlite3 (Debian's sqlite3)")
    };
    assert!(db("CREATE TABLE t(x); INSERT INTO t VALUES(1);").success());
    let fifo = dir.path().join("in");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Read-write: opening it does not wait for a reader.
    let commands = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let stdin = commands.try_clone().unwrap();
    let p = Program::start_with_stdin(dir.path(), &["sqlite3", "db"], stdin);
    send(&commands, "BEGIN; INSERT INTO t VALUES(2); SELECT 'mid';\n");
    p.wait_for("out", "wrote a row in a transaction", |t| t == "mid\n");
    wait_in(p.pid, "pipe_read");
    (p, commands)
}

fn send(mut commands: &std::fs::File, text: &str) {
    use std::io::Write;
    commands.write_all(text.as_bytes()).unwrap();
}

/// Another sqlite3 writing a row: whether it could (no busy timeout: a
/// locked database fails at once).
fn another_writer_writes(dir: &TempDir) -> bool {
    let out = std::process::Command::new("sqlite3")
        .current_dir(dir.path())
        .args(["db", "INSERT INTO t VALUES(3);"])
        .output()
        .unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("database is locked"), "{err}");
    }
    out.status.success()
}

/// Dumps and restores the shell with `--file-locks` at the dump, and at
/// the restore when `restore_locks`.
fn dump_and_restore_locks(p: &mut Program, tag: &str, restore_locks: bool) {
    let images = TempDir::new(tag);
    Dump::new(p.pid)
        .images_dir(images.path())
        .file_locks(true)
        .run()
        .unwrap_or_else(|e| panic!("dumping {tag}: {e}"));
    p.reap();
    let r = Restore::new(images.path())
        .detach(true)
        .file_locks(restore_locks)
        .run()
        .unwrap_or_else(|e| panic!("restoring {tag}: {e}"));
    assert_eq!(r.pid, p.pid);
}

#[test]
fn sqlite_keeps_its_transaction_and_its_locks() {
    let _g = setup();
    let dir = TempDir::new("sqlite");
    let (mut p, commands) = start_sqlite(&dir);
    assert!(!another_writer_writes(&dir), "locked before the dump");
    dump_and_restore_locks(&mut p, "sqlite", true);
    assert!(
        !another_writer_writes(&dir),
        "still locked after the restore"
    );
    send(&commands, "COMMIT; SELECT count(*) FROM t;\n");
    p.wait_for("out", "committed its transaction", |t| t == "mid\n2\n");
    assert!(another_writer_writes(&dir), "unlocked by the commit");
    send(&commands, "SELECT count(*) FROM t;\n");
    p.wait_for("out", "read the other writer's row", |t| t == "mid\n2\n3\n");
}

/// The negative control: restored without --file-locks, the shell holds
/// no lock, and another writer writes in the middle of its transaction.
#[test]
fn sqlite_restored_without_file_locks_is_not_locked() {
    let _g = setup();
    let dir = TempDir::new("sqlite-unlocked");
    let (mut p, _commands) = start_sqlite(&dir);
    dump_and_restore_locks(&mut p, "sqlite-unlocked", false);
    assert!(another_writer_writes(&dir), "nothing locks the database");
}
