//! Event and notification fds end to end: eventfds, epoll instances,
//! signalfds and timerfds, in a workload built like an event loop with
//! events pending at the dump (`eventfds`). It is dumped, killed and
//! restored (and dumped with --leave-running), then checks every fd's
//! fdinfo, the events each epoll reports, the values read, the timers'
//! time left, and that EPOLL_CTL_MOD/DEL find each registration by the
//! number it was made with. Negative controls change one field of the
//! images and must make the workload fail, naming what it saw.

mod common;

use common::{cycle, leave_running, setup, start};
use rcriu::images::{ImageDir, ImageFile, pb};
use rcriu::{Dump, Restore};
use rcriu_test_support::TempDir;

/// Rewrites files.img through `f`.
fn edit_files(dir: &ImageDir, f: impl Fn(&mut pb::FileEntry)) {
    let mut files = dir.files().unwrap();
    files.iter_mut().for_each(f);
    dir.write_all(ImageFile::Files, &files).unwrap();
}

/// Runs `f` on every epoll target of the dump.
fn edit_targets(dir: &ImageDir, f: impl Fn(&mut pb::EventpollTfdEntry)) {
    edit_files(dir, |e| {
        if let Some(ep) = e.epfd.as_deref_mut() {
            ep.tfd.iter_mut().for_each(&f);
        }
    });
}

/// The low 16 bits of the workload's epoll data: the fd it names.
fn tag(t: &pb::EventpollTfdEntry) -> u64 {
    t.data & 0xffff
}

#[test]
fn event_fds_carry_on() {
    let _g = setup();
    cycle("eventfds", &[], None).unwrap();
    leave_running("eventfds", &[]);
}

#[test]
fn the_images_say_what_the_process_held() {
    let _g = setup();
    let w = start("eventfds", &[]);
    let images = TempDir::new("eventfds-images");
    Dump::new(w.pid)
        .images_dir(images.path())
        .leave_running(true)
        .run()
        .unwrap();
    let files = ImageDir::open(images.path()).unwrap().files().unwrap();
    let efds: Vec<&pb::EventfdFileEntry> = files.iter().filter_map(|f| f.efd.as_deref()).collect();
    assert!(
        efds.iter()
            .any(|e| e.counter == 5 && e.flags & libc::O_NONBLOCK as u32 != 0),
        "{efds:?}"
    );
    assert!(
        efds.iter()
            .any(|e| e.counter == 3 && e.rcriu_semaphore == Some(true)),
        "{efds:?}"
    );
    let a = files
        .iter()
        .filter_map(|f| f.epfd.as_deref())
        .find(|e| e.tfd.len() == 8)
        .expect("epoll A and its eight targets");
    let e = a.tfd.iter().find(|t| tag(t) == 0x2727).unwrap();
    assert_eq!(
        (e.tfd, e.rcriu_registered_fd),
        (28, Some(27)),
        "E registered as 27, held at 28"
    );
    let one_shot = a.tfd.iter().find(|t| tag(t) == 0x1111).unwrap();
    assert_ne!(one_shot.events & libc::EPOLLONESHOT as u32, 0);
    let t = files
        .iter()
        .filter_map(|f| f.tfd.as_deref())
        .find(|t| t.ticks == 1)
        .expect("the expired timerfd");
    assert_eq!((t.vsec, t.vnsec), (0, 0));
    let s = files
        .iter()
        .filter_map(|f| f.sgfd.as_deref())
        .find(|s| s.sigmask & (1 << (libc::SIGUSR2 - 1)) != 0)
        .expect("signalfd 18");
    assert_ne!(s.sigmask & (1 << (libc::SIGRTMIN() + 1 - 1)), 0);

    // CRIU's own reader takes them (Debian's crit), with the same values.
    let path = images.path().join("files.img");
    let out = std::process::Command::new("crit")
        .args(["decode", "-i"])
        .arg(&path)
        .output()
        .expect("running crit (Debian's criu package)");
    assert!(out.status.success(), "crit decode files.img: {out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = json["entries"].as_array().unwrap();
    let count = |t: &str| entries.iter().filter(|e| e["type"] == t).count();
    assert_eq!(
        [
            count("EVENTFD"),
            count("EVENTPOLL"),
            count("SIGNALFD"),
            count("TIMERFD")
        ],
        [efds.len(), 3, 2, 4]
    );
    let crit_a = entries
        .iter()
        .find(|e| e["epfd"]["tfd"].as_array().is_some_and(|t| t.len() == 8))
        .expect("crit shows epoll A");
    let crit_e = crit_a["epfd"]["tfd"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["data"].as_u64().is_some_and(|d| d & 0xffff == 0x2727))
        .unwrap();
    assert_eq!(crit_e["tfd"], 28, "crit reads the fd that holds E");
    w.verdict().unwrap();
}

// -- Negative controls.

fn bump_a_counter(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(f) = e.efd.as_deref_mut()
            && f.counter == 5
        {
            f.counter = 6;
        }
    });
}

fn drop_the_semaphore(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(f) = e.efd.as_deref_mut() {
            f.rcriu_semaphore = None;
        }
    });
}

fn drop_non_blocking(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(f) = e.efd.as_deref_mut()
            && f.counter == 5
        {
            f.flags &= !(libc::O_NONBLOCK as u32);
        }
    });
}

fn change_a_target_data(dir: &ImageDir, _pid: i32) {
    edit_targets(dir, |t| {
        if tag(t) == 0x1818 {
            t.data ^= 1 << 40;
        }
    });
}

fn drop_a_target(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(ep) = e.epfd.as_deref_mut() {
            ep.tfd.retain(|t| tag(t) != 0x1515);
        }
    });
}

/// E registered as 28, where it is now: the number differs.
fn drop_the_registered_number(dir: &ImageDir, _pid: i32) {
    edit_targets(dir, |t| t.rcriu_registered_fd = None);
}

/// The file at 27 (F) registered as 27 in E's place: the numbers agree,
/// the file does not.
fn register_the_file_at_the_old_number(dir: &ImageDir, _pid: i32) {
    edit_targets(dir, |t| {
        if tag(t) == 0x2727
            && let Some(n) = t.rcriu_registered_fd.take()
        {
            t.tfd = n;
        }
    });
}

fn drop_a_signal(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(s) = e.sgfd.as_deref_mut() {
            s.sigmask &= !(1 << (libc::SIGRTMIN() + 1 - 1));
        }
    });
}

fn add_a_tick(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(t) = e.tfd.as_deref_mut()
            && t.ticks == 1
        {
            t.ticks = 2;
        }
    });
}

fn take_time_off(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(t) = e.tfd.as_deref_mut()
            && t.isec == 500
        {
            t.vsec -= 300;
        }
    });
}

fn change_an_interval(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(t) = e.tfd.as_deref_mut()
            && t.isec == 7
        {
            t.isec = 8;
        }
    });
}

#[test]
fn corrupted_event_fds_are_noticed() {
    let _g = setup();
    let cases: [(common::Tweak, &str); 11] = [
        (bump_a_counter, "FAIL: fd 10 fdinfo"),
        (drop_the_semaphore, "FAIL: fd 11 fdinfo"),
        (drop_non_blocking, "FAIL: fd 10 fdinfo"),
        (change_a_target_data, "FAIL: fd 20 fdinfo"),
        (drop_a_target, "FAIL: fd 20 fdinfo"),
        (drop_the_registered_number, "FAIL: fd 20 fdinfo"),
        (
            register_the_file_at_the_old_number,
            "FAIL: epoll A after a write to E reports",
        ),
        (drop_a_signal, "FAIL: fd 18 fdinfo"),
        (add_a_tick, "FAIL: fd 15 fdinfo"),
        (take_time_off, "FAIL: timerfd 14 has"),
        (change_an_interval, "FAIL: fd 17 fdinfo"),
    ];
    for (tweak, want) in cases {
        let e = cycle("eventfds", &[], Some(tweak)).unwrap_err();
        assert!(e.contains(want), "want {want:?}, got: {e}");
    }
}

/// An epoll target that is no fd of the process: the restore refuses
/// the images by name before any process exists.
#[test]
fn an_epoll_target_the_process_does_not_hold_is_refused() {
    let _g = setup();
    let mut w = start("eventfds", &[]);
    let images = TempDir::new("eventfds-missing-target");
    Dump::new(w.pid).images_dir(images.path()).run().unwrap();
    w.reap();
    let dir = ImageDir::open(images.path()).unwrap();
    edit_targets(&dir, |t| {
        if tag(t) == 0x1010 {
            t.tfd = 99;
        }
    });
    std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST)).unwrap();
    let e = rcriu::restore::check(images.path())
        .expect_err("the check refuses it")
        .to_string();
    assert!(e.contains("target fd 99"), "{e}");
    let e = Restore::new(images.path())
        .detach(true)
        .run()
        .expect_err("the restore refuses it")
        .to_string();
    assert!(e.contains("target fd 99"), "{e}");
    assert!(
        std::fs::metadata(format!("/proc/{}", w.pid)).is_err(),
        "no process is left"
    );
}

// -- inotify.

#[test]
fn inotify_watches_carry_on() {
    let _g = setup();
    cycle("notify", &[], None).unwrap();
    leave_running("notify", &[]);
}

/// Runs `f` on every inotify watch of the dump.
fn edit_watches(dir: &ImageDir, f: impl Fn(&mut pb::InotifyWdEntry)) {
    edit_files(dir, |e| {
        if let Some(i) = e.ify.as_deref_mut() {
            i.wd.iter_mut().for_each(&f);
        }
    });
}

/// Without paths, each watched file is found by its handle.
fn drop_the_paths(dir: &ImageDir, _pid: i32) {
    edit_watches(dir, |w| w.f_handle.path = None);
}

#[test]
fn watched_files_are_found_by_handle_without_a_path() {
    let _g = setup();
    cycle("notify", &[], Some(drop_the_paths)).unwrap();
}

fn drop_one_shot(dir: &ImageDir, _pid: i32) {
    edit_watches(dir, |w| w.mask &= !libc::IN_ONESHOT);
}

fn renumber_a_watch(dir: &ImageDir, _pid: i32) {
    edit_watches(dir, |w| {
        if w.wd == 5 {
            w.wd = 6;
        }
    });
}

/// wd 2 (a.txt) put on c.txt, a file no watch is on.
fn watch_another_file(dir: &ImageDir, _pid: i32) {
    let files = dir.files().unwrap();
    let mut c_path = files
        .iter()
        .filter_map(|f| f.ify.as_deref())
        .flat_map(|i| i.wd.iter())
        .find(|w| w.wd == 5)
        .and_then(|w| w.f_handle.path.clone())
        .expect("wd 5 has a path");
    assert!(c_path.ends_with(b"/d.txt"), "wd 5 is on d.txt");
    c_path.truncate(c_path.len() - "d.txt".len());
    c_path.extend_from_slice(b"c.txt");
    edit_watches(dir, |w| {
        if w.wd == 2 {
            w.f_handle.path = Some(c_path.clone());
        }
    });
}

fn drop_a_watch(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(i) = e.ify.as_deref_mut() {
            i.wd.retain(|w| w.wd != 1);
        }
    });
}

#[test]
fn corrupted_watches_are_noticed() {
    let _g = setup();
    let cases: [(common::Tweak, &str); 4] = [
        (drop_one_shot, "FAIL: fd 10 fdinfo"),
        (renumber_a_watch, "FAIL: fd 10 fdinfo"),
        (watch_another_file, "FAIL: fd 10 fdinfo"),
        (drop_a_watch, "FAIL: fd 10 fdinfo"),
    ];
    for (tweak, want) in cases {
        let e = cycle("notify", &[], Some(tweak)).unwrap_err();
        assert!(e.contains(want), "want {want:?}, got: {e}");
    }
}

// -- fanotify (fd 12 of `notify`).

fn edit_marks(dir: &ImageDir, f: impl Fn(&mut Vec<pb::FanotifyMarkEntry>)) {
    edit_files(dir, |e| {
        if let Some(fa) = e.ffy.as_deref_mut() {
            f(&mut fa.mark);
        }
    });
}

fn drop_an_inode_mark(dir: &ImageDir, _pid: i32) {
    edit_marks(dir, |m| m.retain(|m| m.ie.is_none()));
}

fn drop_a_mark_flag(dir: &ImageDir, _pid: i32) {
    edit_marks(dir, |m| m.iter_mut().for_each(|m| m.mflags = 0));
}

fn widen_a_mask(dir: &ImageDir, _pid: i32) {
    edit_marks(dir, |m| {
        m.iter_mut()
            .filter(|m| m.ie.is_some())
            .for_each(|m| m.mask |= libc::FAN_OPEN as u32)
    });
}

#[test]
fn corrupted_fanotify_marks_are_noticed() {
    let _g = setup();
    let cases: [(common::Tweak, &str); 3] = [
        (drop_an_inode_mark, "FAIL: fd 12 fdinfo"),
        (drop_a_mark_flag, "FAIL: fd 12 fdinfo"),
        (widen_a_mask, "FAIL: fd 12 fdinfo"),
    ];
    for (tweak, want) in cases {
        let e = cycle("notify", &[], Some(tweak)).unwrap_err();
        assert!(e.contains(want), "want {want:?}, got: {e}");
    }
}

#[test]
fn a_fanotify_mark_on_a_filesystem_is_refused_by_name() {
    let _g = setup();
    let w = start("notify", &["filesystem"]);
    let images = TempDir::new("notify-filesystem");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect_err("a filesystem mark is refused")
        .to_string();
    assert!(
        e.contains("fd 12: a fanotify mark on the whole filesystem"),
        "{e}"
    );
    w.verdict().expect("the process runs on as it was");
}

/// A watch on a removed file that fd 13 holds: the restore puts it on
/// the ghost it makes again for fd 13 (as CRIU finds it, by device and
/// inode), so that a chmod through fd 13 brings its event.
#[test]
fn a_watch_on_a_removed_file_carries_on() {
    let _g = setup();
    cycle("notify", &["deleted"], None).unwrap();
    leave_running("notify", &["deleted"]);
}

/// A watch on a removed file that only the test holds: no ghost of the
/// dump can stand for it, and the dump refuses it by name.
#[test]
fn a_watch_on_a_removed_file_held_outside_is_refused_by_name() {
    let _g = setup();
    let w = start("notify", &["outside"]);
    let c = w.outfile.parent().unwrap().join("c.txt");
    let hold = std::fs::File::open(&c).unwrap();
    std::fs::remove_file(&c).unwrap();
    let images = TempDir::new("notify-outside");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect_err("a watch on a file the dump cannot hold is refused")
        .to_string();
    assert!(
        e.contains("fd 10: an inotify watch (6)")
            && e.contains("that no fd or mapping of the dump holds"),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(images.path()).unwrap().collect();
    assert!(left.is_empty(), "a refused dump leaves no image: {left:?}");
    w.verdict().expect("the process runs on as it was");
    drop(hold);
}

/// wd 6 (on the removed c.txt) no longer matching its ghost, and named
/// f.txt (which fd 10 does not watch): the restore watches f.txt.
fn move_the_ghost_watch(dir: &ImageDir, _pid: i32) {
    let files = dir.files().unwrap();
    let mut f_path = files
        .iter()
        .filter_map(|f| f.ify.as_deref())
        .flat_map(|i| i.wd.iter())
        .find(|w| w.wd == 5)
        .and_then(|w| w.f_handle.path.clone())
        .expect("wd 5 has a path");
    assert!(f_path.ends_with(b"/d.txt"), "wd 5 is on d.txt");
    let at = f_path.len() - "d.txt".len();
    f_path[at] = b'f';
    edit_watches(dir, |w| {
        if w.wd == 6 {
            assert!(
                w.f_handle.path.is_none(),
                "a watch on a removed file has no path"
            );
            w.i_ino ^= 1;
            w.f_handle.path = Some(f_path.clone());
        }
    });
}

#[test]
fn a_watch_moved_off_its_ghost_is_noticed() {
    let _g = setup();
    let e = cycle("notify", &["deleted"], Some(move_the_ghost_watch)).unwrap_err();
    // The ghost, made later for fd 13 and no longer before the watches,
    // shows up as an event on fd 10, or the chmod brings none.
    assert!(
        e.contains("FAIL: fd 10 had") || e.contains("chmod of the removed c.txt"),
        "{e}"
    );
}

// -- pidfds.

#[test]
fn pidfds_carry_on() {
    let _g = setup();
    cycle("pidfds", &[], None).unwrap();
    leave_running("pidfds", &[]);
}

/// The pidfd entries of a dump: `(self, dead)`.
fn pidfds(files: &[pb::FileEntry]) -> (Vec<&pb::PidfdEntry>, Vec<&pb::PidfdEntry>) {
    files
        .iter()
        .filter_map(|f| f.pidfd.as_deref())
        .partition(|p| p.nspid != -1)
}

#[test]
fn the_images_say_which_processes_the_pidfds_named() {
    let _g = setup();
    let w = start("pidfds", &[]);
    let images = TempDir::new("pidfds-images");
    Dump::new(w.pid)
        .images_dir(images.path())
        .leave_running(true)
        .run()
        .unwrap();
    let files = ImageDir::open(images.path()).unwrap().files().unwrap();
    let (own, dead) = pidfds(&files);
    assert_eq!((own.len(), dead.len()), (2, 3), "{files:?}");
    assert!(own.iter().all(|p| p.nspid == w.pid), "{own:?}");
    assert_eq!(own[0].ino, own[1].ino, "one process: {own:?}");
    let non_blocking = |p: &&&pb::PidfdEntry| p.flags == libc::O_NONBLOCK as u32;
    assert_eq!(own.iter().filter(non_blocking).count(), 1, "{own:?}");
    let mut inos: Vec<u32> = dead.iter().map(|p| p.ino).collect();
    inos.sort();
    inos.dedup();
    assert_eq!(inos.len(), 2, "children A (twice) and B: {dead:?}");

    // Debian's crit (CRIU 3.17, older than pidfds) reads the file through
    // them: five entries of a type it does not know, with their ids.
    let out = std::process::Command::new("crit")
        .args(["decode", "-i"])
        .arg(images.path().join("files.img"))
        .output()
        .expect("running crit (Debian's criu package)");
    assert!(out.status.success(), "crit decode files.img: {out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = json["entries"].as_array().unwrap();
    let ids: Vec<u64> = entries
        .iter()
        .filter(|e| e.get("type").is_none())
        .filter_map(|e| e["id"].as_u64())
        .collect();
    let mut want: Vec<u64> = own.iter().chain(&dead).map(|p| u64::from(p.id)).collect();
    want.sort();
    assert_eq!(ids, want, "{entries:?}");
    w.verdict().unwrap();
}

fn edit_pidfds(dir: &ImageDir, f: impl Fn(&mut pb::PidfdEntry)) {
    edit_files(dir, |e| {
        if let Some(p) = e.pidfd.as_deref_mut() {
            f(p)
        }
    });
}

/// fd 11 (its own, non-blocking) made a pidfd of an ended process.
fn end_the_process_of_fd_11(dir: &ImageDir, _pid: i32) {
    edit_pidfds(dir, |p| {
        if p.flags != 0 && p.nspid != -1 {
            p.nspid = -1;
        }
    });
}

fn drop_non_blocking_of_fd_11(dir: &ImageDir, _pid: i32) {
    edit_pidfds(dir, |p| p.flags = 0);
}

/// The ended process that two pidfds named (A): one of them given an
/// inode of its own.
fn split_child_a(dir: &ImageDir, _pid: i32) {
    let files = dir.files().unwrap();
    let (_, dead) = pidfds(&files);
    let a = dead
        .iter()
        .find(|p| dead.iter().filter(|q| q.ino == p.ino).count() == 2)
        .map(|p| p.id)
        .unwrap();
    edit_pidfds(dir, |p| {
        if p.id == a {
            p.ino ^= 0x5555;
        }
    });
}

/// Child B's pidfd given child A's inode.
fn merge_b_into_a(dir: &ImageDir, _pid: i32) {
    let files = dir.files().unwrap();
    let (_, dead) = pidfds(&files);
    let count = |ino: u32| dead.iter().filter(|q| q.ino == ino).count();
    let a = dead.iter().find(|p| count(p.ino) == 2).unwrap().ino;
    let b = dead.iter().find(|p| count(p.ino) == 1).unwrap().id;
    edit_pidfds(dir, |p| {
        if p.id == b {
            p.ino = a;
        }
    });
}

#[test]
fn corrupted_pidfds_are_noticed() {
    let _g = setup();
    let cases: [(common::Tweak, &str); 4] = [
        (end_the_process_of_fd_11, "FAIL: fd 11 fdinfo"),
        (drop_non_blocking_of_fd_11, "FAIL: fd 11 fdinfo"),
        (
            split_child_a,
            "FAIL: fds 12 and 14 are pidfds of two processes",
        ),
        (
            merge_b_into_a,
            "FAIL: fd 12 and fd 15 or 10 are pidfds of one process",
        ),
    ];
    for (tweak, want) in cases {
        let e = cycle("pidfds", &[], Some(tweak)).unwrap_err();
        assert!(e.contains(want), "want {want:?}, got: {e}");
    }
}

#[test]
fn a_pidfd_of_a_process_outside_the_dump_is_refused_by_name() {
    let _g = setup();
    let w = start("pidfds", &["parent"]);
    let images = TempDir::new("pidfds-parent");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect_err("a pidfd of the parent is refused")
        .to_string();
    let me = std::process::id();
    assert!(
        e.contains(&format!(
            "fd 16: a pidfd of process {me}, which is not in the dump"
        )),
        "{e}"
    );
    w.verdict().expect("the process runs on as it was");
}

#[test]
fn a_pidfd_of_a_thread_is_refused_by_name() {
    let _g = setup();
    let w = start("pidfds", &["thread"]);
    let images = TempDir::new("pidfds-thread");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect_err("a PIDFD_THREAD pidfd is refused")
        .to_string();
    assert!(
        e.contains("fd 16: a pidfd of a thread (PIDFD_THREAD)"),
        "{e}"
    );
    w.verdict().expect("the process runs on as it was");
}

/// A pidfd of a live process that is not one of the images': the restore
/// refuses it by name before any process exists.
#[test]
fn a_pidfd_of_another_live_process_is_refused_at_restore() {
    let _g = setup();
    let mut w = start("pidfds", &[]);
    let images = TempDir::new("pidfds-other");
    Dump::new(w.pid).images_dir(images.path()).run().unwrap();
    w.reap();
    let dir = ImageDir::open(images.path()).unwrap();
    edit_pidfds(&dir, |p| {
        if p.nspid == -1 {
            p.nspid = 1;
        }
    });
    std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST)).unwrap();
    let e = Restore::new(images.path())
        .detach(true)
        .run()
        .expect_err("the restore refuses it")
        .to_string();
    assert!(
        e.contains("a pidfd of a live process outside the images (1)"),
        "{e}"
    );
    assert!(
        std::fs::metadata(format!("/proc/{}", w.pid)).is_err(),
        "no process is left"
    );
}

/// pidfds of a child that waits and of a zombie child, both in the tree:
/// opened by the restorer once every process exists.
#[test]
fn pidfds_of_children_carry_on() {
    let _g = setup();
    cycle("pidfds", &["children"], None).unwrap();
    leave_running("pidfds", &["children"]);
}

/// The pidfds of the two children swapped.
fn swap_the_children(dir: &ImageDir, pid: i32) {
    let files = dir.files().unwrap();
    let kids: Vec<i32> = files
        .iter()
        .filter_map(|f| f.pidfd.as_deref())
        .filter(|p| p.nspid != -1 && p.nspid != pid)
        .map(|p| p.nspid)
        .collect();
    assert_eq!(kids.len(), 2, "{files:?}");
    edit_pidfds(dir, |p| {
        if p.nspid == kids[0] {
            p.nspid = kids[1];
        } else if p.nspid == kids[1] {
            p.nspid = kids[0];
        }
    });
}

#[test]
fn pidfds_of_children_swapped_are_noticed() {
    let _g = setup();
    let e = cycle("pidfds", &["children"], Some(swap_the_children)).unwrap_err();
    assert!(e.contains("FAIL: fd 16 fdinfo"), "{e}");
}

/// An epoll instance in flight in a unix socket, sent twice, held by no
/// fd (zdtm's scm05): dumped through rcriu's copy (its targets found in
/// the process by kcmp across the two), made again and registered among
/// the process's fds, both messages carrying the one instance. Inside,
/// each instance received reports its target with its data, and a target
/// deleted through one is gone from the other.
#[test]
fn an_epoll_instance_in_flight_carries_on() {
    let _g = setup();
    cycle("sk_epoll_flight", &[], None).unwrap();
    leave_running("sk_epoll_flight", &[]);
}

#[test]
fn a_corrupted_epoll_instance_in_flight_is_noticed() {
    let _g = setup();
    let e = cycle(
        "sk_epoll_flight",
        &[],
        Some(|dir, _| edit_targets(dir, |t| t.data ^= 1)),
    )
    .unwrap_err();
    assert!(
        e.contains("FAIL: the first instance reports 1 events (data 0x5eed4)"),
        "{e}"
    );
}

/// In a dump of two processes an epoll instance in flight with targets is
/// refused by name (rcriu registers them among one process's fds), no
/// image left, the processes running on.
#[test]
fn an_epoll_instance_in_flight_in_a_tree_is_refused_by_name() {
    let _g = setup();
    let w = start("sk_epoll_flight", &["tree"]);
    let images = TempDir::new("epoll-flight-tree");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect_err("an epoll instance in flight in a tree")
        .to_string();
    assert!(
        e.contains(
            "an epoll instance in flight in a unix socket, with 1 targets, in a dump of 2 processes"
        ),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(images.path()).unwrap().collect();
    assert!(left.is_empty(), "a refused dump leaves no image: {left:?}");
    w.verdict().unwrap();
}
