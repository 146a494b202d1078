//! Process trees (issue 14): every process under the dumped one, with
//! its sessions, groups, zombies, a stopped child and what parent and
//! child share (a pipe with bytes in it, one open file description),
//! dumped and restored; each process checks itself after the restore.

mod common;

use common::{cycle, leave_running, setup, start, tree_gone};
use rcriu::images::{ImageDir, ImageFile};
use rcriu::{Dump, Restore};
use rcriu_test_support::TempDir;

#[test]
fn a_parent_and_its_child_sharing_a_pipe_and_a_file() {
    let _g = setup();
    cycle("tree", &["pair"], None).unwrap();
    leave_running("tree", &["pair"]);
}

#[test]
fn four_generations() {
    let _g = setup();
    cycle("tree", &["deep"], None).unwrap();
}

#[test]
fn process_groups() {
    let _g = setup();
    cycle("tree", &["groups"], None).unwrap();
}

#[test]
fn a_session_of_a_child() {
    let _g = setup();
    cycle("tree", &["session"], None).unwrap();
}

#[test]
fn zombies_come_back_with_their_status() {
    let _g = setup();
    cycle("tree", &["zombies"], None).unwrap();
}

#[test]
fn a_stopped_child_stays_stopped() {
    let _g = setup();
    cycle("tree", &["stopped"], None).unwrap();
}

/// The Pss of every process of the tree under `root`, in KiB.
fn tree_pss(root: i32) -> u64 {
    rcriu_test_support::tree_pids(root)
        .into_iter()
        .map(rcriu_test_support::pss_kib)
        .sum()
}

/// What the `cow` tree's dump and restore gave: the tree's Pss before and
/// after (KiB), the restore's report, and the bytes of the pages images
/// of the dump (its own, not those kept in `parent/`).
struct Cow {
    before: u64,
    after: u64,
    r: rcriu::Restored,
    pages_bytes: u64,
}

/// Dumps `cow` (8 children each rewriting 256 KiB of 16 MiB; in a
/// private file mapping with `file`) and restores it (`proxy`: with a
/// vDSO proxy, under which no child inherits). With `user_parent`, the
/// images directory has a `parent` link of the user's (to an empty
/// pre-dump directory), which the dump must leave alone: no page is then
/// kept once.
fn cow_cycle(proxy: bool, file: bool, user_parent: bool) -> Cow {
    let args: &[&str] = if file {
        &["8", "16", "256", "file"]
    } else {
        &["8", "16", "256"]
    };
    let mut w = start("cow", args);
    let kids = rcriu_test_support::tree_pids(w.pid);
    assert_eq!(kids.len(), 9, "the root and its 8 children");
    let before = tree_pss(w.pid);
    let images = TempDir::new("cow");
    let theirs = TempDir::new("cow-theirs");
    if user_parent {
        std::os::unix::fs::symlink(theirs.path(), images.path().join("parent")).unwrap();
    }
    Dump::new(w.pid).images_dir(images.path()).run().unwrap();
    w.reap();
    let pages_bytes = std::fs::read_dir(images.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(
        std::fs::read_dir(theirs.path()).unwrap().count(),
        0,
        "nothing written into the user's parent images"
    );
    tree_gone(&ImageDir::open(images.path()).unwrap());
    let r = Restore::new(images.path())
        .detach(true)
        .force_vdso_proxy(proxy)
        .run()
        .unwrap();
    assert_eq!(rcriu_test_support::tree_pids(w.pid), kids);
    let after = tree_pss(w.pid);
    w.verdict().unwrap();
    Cow {
        before,
        after,
        r,
        pages_bytes,
    }
}

/// The pages of the root's 16 MiB, and each child's 256 KiB and a page
/// or two more (its stack, its dropped page's neighbours), with room.
const COW_OWN_PAGES: u64 = (16 << 20) + 8 * (256 << 10) + (4 << 20);

#[test]
fn memory_shared_across_fork_stays_shared() {
    let _g = setup();
    let Cow {
        before,
        after,
        r,
        pages_bytes,
    } = cow_cycle(false, false, false);
    assert!(
        after * 10 <= before * 11,
        "the restored tree's Pss ({after} KiB) is within 1.1x of the original's ({before} KiB)"
    );
    // The pages the children share with the root are written once, and
    // inherited unread: all but their 256 KiB (and the page of every
    // third child dropped).
    assert!(pages_bytes <= COW_OWN_PAGES, "{pages_bytes} bytes of pages");
    assert!(r.pages_kept >= 8 * (4096 - 64) - 8, "{r:?}");
    assert!(r.pages_compared < 8 * 100, "{r:?}");
}

/// Its control: beside a user's `parent` link, each child's pages are
/// written whole, then compared with what it inherits: the Pss is kept
/// so too, but the images hold the 16 MiB nine times.
#[test]
fn memory_shared_across_fork_beside_a_users_parent_is_written_per_process() {
    let _g = setup();
    let Cow {
        before,
        after,
        r,
        pages_bytes,
    } = cow_cycle(false, false, true);
    assert!(
        pages_bytes >= 9 * (16 << 20),
        "{pages_bytes} bytes of pages"
    );
    assert_eq!(r.pages_kept, 0, "{r:?}");
    assert!(r.pages_compared >= 8 * 4096 - 8, "{r:?}");
    assert!(r.pages_cow >= 8 * (4096 - 64) - 8, "{r:?}");
    assert!(
        after * 10 <= before * 11,
        "the restored tree's Pss ({after} KiB) is within 1.1x of the original's ({before} KiB)"
    );
}

/// The negative control: with a vDSO proxy, which no child inherits from,
/// each child gets all its memory of its own, which the Pss shows (the
/// pages kept with the parent's are read for each).
#[test]
fn memory_not_inherited_is_counted_once_per_process() {
    let _g = setup();
    let Cow {
        before, after, r, ..
    } = cow_cycle(true, false, false);
    assert_eq!((r.pages_compared, r.pages_cow, r.pages_kept), (0, 0, 0));
    assert!(
        after > before * 3,
        "without inheritance the Pss grows ({before} KiB -> {after} KiB)"
    );
}

/// The pages a parent wrote in a private file mapping before forking stay
/// shared with its children (zdtm's cow01); the page a child dropped reads
/// as the file's again, and the root's page it never wrote as the file's.
#[test]
fn written_pages_of_a_private_file_mapping_stay_shared() {
    let _g = setup();
    let Cow {
        before, after, r, ..
    } = cow_cycle(false, true, false);
    assert!(
        after * 10 <= before * 11,
        "the restored tree's Pss ({after} KiB) is within 1.1x of the original's ({before} KiB)"
    );
    assert!(r.pages_kept >= 8 * (4096 - 64) - 8, "{r:?}");
}

/// Its control: without inheritance, the same tree's Pss grows.
#[test]
fn written_pages_of_a_private_file_mapping_not_inherited_show() {
    let _g = setup();
    let Cow {
        before, after, r, ..
    } = cow_cycle(true, true, false);
    assert_eq!((r.pages_compared, r.pages_cow, r.pages_kept), (0, 0, 0));
    assert!(
        after > before * 3,
        "without inheritance the Pss grows ({before} KiB -> {after} KiB)"
    );
}

/// Starts `cow` with 3 children of a parent with 72 MiB (enough for the
/// dump's second page worker on tmpfs), each rewriting 256 KiB; returns
/// it with the tree's Pss.
fn big_cow() -> (rcriu_test_support::Workload, u64) {
    let w = start("cow", &["3", "72", "256"]);
    assert_eq!(rcriu_test_support::tree_pids(w.pid).len(), 4);
    let pss = tree_pss(w.pid);
    (w, pss)
}

/// A dump (--leave-running, to tmpfs: the parasite and the page helper
/// both read) leaves the pages a parent and its children share since the
/// fork shared: the tree's Pss does not grow.
#[test]
fn a_dump_leaves_memory_shared_across_fork_shared() {
    let _g = setup();
    let (w, before) = big_cow();
    let images = TempDir::in_shm("cow-lr");
    Dump::new(w.pid)
        .images_dir(images.path())
        .leave_running(true)
        .run()
        .unwrap();
    let after = tree_pss(w.pid);
    assert!(
        after * 10 <= before * 11,
        "the tree's Pss after the dump ({after} KiB) is within 1.1x of before ({before} KiB)"
    );
    w.verdict().unwrap();
}

/// The negative control of the Pss measure: reading the children's
/// memory with process_vm_readv (which pins the pages, as the dump's
/// helper once did) makes each child copy what it shared.
#[test]
fn reading_memory_by_pinning_it_unshares_it() {
    let _g = setup();
    let (w, before) = big_cow();
    let mut buf = vec![0u8; 1 << 20];
    for pid in rcriu_test_support::tree_pids(w.pid).into_iter().skip(1) {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        for l in maps
            .lines()
            .filter(|l| l.contains(" rw-p 00000000 00:00 0"))
        {
            let (lo, hi) = l.split_once(' ').unwrap().0.split_once('-').unwrap();
            let (lo, hi) = (
                u64::from_str_radix(lo, 16).unwrap(),
                u64::from_str_radix(hi, 16).unwrap(),
            );
            if hi - lo < 64 << 20 {
                continue;
            }
            for at in (lo..hi).step_by(buf.len()) {
                let local = libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len().min((hi - at) as usize),
                };
                let remote = libc::iovec {
                    iov_base: at as usize as *mut libc::c_void,
                    iov_len: local.iov_len,
                };
                // SAFETY: the kernel writes at most iov_len bytes into
                // `buf`, which is that long; the remote side it checks.
                unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
            }
        }
    }
    let after = tree_pss(w.pid);
    assert!(
        after > before * 2,
        "pinned reads unshare ({before} KiB -> {after} KiB)"
    );
    w.verdict().unwrap();
}

#[test]
fn a_group_whose_leader_is_gone() {
    let _g = setup();
    cycle("tree", &["orphans"], None).unwrap();
}

#[test]
fn children_with_other_exit_signals() {
    let _g = setup();
    cycle("tree", &["exitsig"], None).unwrap();
}

/// The negative control of the exit signals: images without them bring
/// the children back with SIGCHLD, which the comparison of the tree's
/// /proc shows.
#[test]
fn exit_signals_lost_show() {
    let _g = setup();
    let diff = common::restored_diff("tree", &["exitsig"], |dir, _| {
        for e in dir.pstree().unwrap() {
            let mut core = dir.core(e.pid).unwrap();
            if let Some(tc) = core.tc.as_mut() {
                tc.rcriu_exit_signal = None;
            }
            common::write_core(dir, e.pid, &core);
        }
    });
    assert!(
        diff.iter().filter(|l| l.contains("exit_signal")).count() >= 2,
        "{diff:?}"
    );
}

#[test]
fn a_child_sharing_its_parents_fd_table_fs_and_memory() {
    let _g = setup();
    cycle("tree", &["sharing"], None).unwrap();
}

/// Gives each child whose id `of` reads is its root's an id of its own,
/// written back after `apart` made it.
fn part_sharers(
    dir: &ImageDir,
    root: i32,
    of: fn(&rcriu::images::pb::TaskKobjIdsEntry) -> u32,
    apart: impl Fn(&mut rcriu::images::pb::TaskKobjIdsEntry),
) {
    let root_ids = dir.ids(root as u32).unwrap();
    for e in dir.pstree().unwrap() {
        let mut ids = dir.ids(e.pid).unwrap();
        if e.pid != root as u32 && of(&ids) == of(&root_ids) {
            apart(&mut ids);
            dir.write_one(ImageFile::Ids(e.pid.into()), &ids).unwrap();
        }
    }
}

/// Reads image `name`, lets `f` change its bytes, writes it back.
fn patch_image(dir: &ImageDir, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.path().join(name);
    let mut bytes = std::fs::read(&path).unwrap();
    f(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
}

/// The negative control of CLONE_FS: images that give the child an fs of
/// its own bring it back apart from its parent, which the workload sees.
#[test]
fn an_fs_not_shared_shows() {
    let _g = setup();
    let err = cycle(
        "tree",
        &["sharing"],
        Some(|dir, root| part_sharers(dir, root, |ids| ids.fs_id, |ids| ids.fs_id += 0x1000)),
    )
    .unwrap_err();
    assert!(err.contains("the cwd and root it shares"), "{err}");
}

/// The negative control of CLONE_FILES: images that give the child an fd
/// table of its own (a copy of its parent's) bring it back apart, which
/// the workload sees.
#[test]
fn an_fd_table_not_shared_shows() {
    let _g = setup();
    let err = cycle(
        "tree",
        &["sharing"],
        Some(|dir, root| {
            let fds = dir.fdinfo(dir.ids(root as u32).unwrap().files_id).unwrap();
            part_sharers(
                dir,
                root,
                |ids| ids.files_id,
                |ids| {
                    ids.files_id += 0x1000;
                    dir.write_all(ImageFile::Fdinfo(ids.files_id.into()), &fds)
                        .unwrap();
                },
            );
        }),
    )
    .unwrap_err();
    assert!(err.contains("the fd table it shares"), "{err}");
}

/// A deleted file mapped shared and private by a parent and its two
/// children (what a POSIX semaphore of Python's multiprocessing is): saved
/// as a ghost file, made again once, mapped by all three.
#[test]
fn a_deleted_file_mapped_by_a_tree() {
    let _g = setup();
    cycle("tree", &["mapdel"], None).unwrap();
}

/// The negative control: a ghost whose bytes were changed restores as it
/// says, and the processes see it.
#[test]
fn a_changed_ghost_of_a_mapped_file_shows() {
    let _g = setup();
    let err = cycle(
        "tree",
        &["mapdel"],
        Some(|dir, _| {
            patch_image(dir, "ghost-file-1.img", |bytes| {
                // The file's bytes end the image; its word 100 is 77
                // (0x4d): make it 78.
                let at = bytes.len() - 8192 + 400;
                assert_eq!(bytes[at], 77, "the file's word 100");
                bytes[at] = 78;
            })
        }),
    )
    .unwrap_err();
    assert!(
        err.contains("the deleted file's private copy")
            || err.contains("the private copy of the deleted file"),
        "{err}"
    );
}

/// A pipeline of three processes (producer, relay, consumer) with numbers
/// in flight in both pipes: after the restore they run on, in order.
#[test]
fn a_pipeline_of_three_with_data_in_flight() {
    let _g = setup();
    cycle("tree", &["pipeline"], None).unwrap();
}

/// The negative control: the bytes in flight in a pipe, changed in the
/// images, reach the reader as changed.
#[test]
fn a_pipeline_with_changed_data_in_flight_shows() {
    let _g = setup();
    let err = cycle(
        "tree",
        &["pipeline"],
        Some(|dir, _| {
            patch_image(dir, "pipes-data.img", |bytes| {
                // The number 900, in flight in the first pipe, made 9000.
                let at = bytes
                    .windows(8)
                    .position(|w| w == [0x84, 3, 0, 0, 0x85, 3, 0, 0])
                    .expect("900 and 901 in the first pipe");
                bytes[at..at + 4].copy_from_slice(&9000u32.to_le_bytes());
            })
        }),
    )
    .unwrap_err();
    assert!(err.contains("numbers in flight"), "{err}");
}

/// The negative control of the stop signal: images that lose it bring the
/// SIGTSTP-stopped child back stopped by SIGSTOP, which its parent sees.
#[test]
fn a_stop_signal_lost_shows() {
    let _g = setup();
    let err = cycle(
        "tree",
        &["stopped"],
        Some(|dir, _| {
            for e in dir.pstree().unwrap() {
                let mut core = dir.core(e.pid).unwrap();
                if let Some(tc) = core.tc.as_mut()
                    && tc.stop_signo == Some(libc::SIGTSTP as u32)
                {
                    tc.stop_signo = None;
                    common::write_core(dir, e.pid, &core);
                }
            }
        }),
    )
    .unwrap_err();
    assert!(err.contains("stopped by SIGTSTP"), "{err}");
}

/// A file under /proc/PID of another process of the tree (the root
/// holding its child's stat) comes back: the root opens it itself once
/// every process of the tree exists (`files.rs::files_of_a_child_s_proc_carry_on`
/// checks what it reads).
#[test]
fn a_file_of_a_process_of_the_tree_under_proc_carries_on() {
    let _g = setup();
    cycle("tree", &["procfd"], None).unwrap();
}

/// The cow workload with 99 children (one small page each), every
/// process of it limited to 1024 open files, dumped.
fn hundred_under_1024() -> (rcriu_test_support::Workload, TempDir) {
    let mut w = start("cow", &["99", "1", "4"]);
    let pids = rcriu_test_support::tree_pids(w.pid);
    assert_eq!(pids.len(), 100, "the root and its 99 children");
    let limit = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    for p in pids {
        // SAFETY: prlimit with a limit read from a valid struct and no
        // old value asked for.
        let r = unsafe { libc::prlimit(p, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
        assert_eq!(r, 0, "limiting process {p} to 1024 files");
    }
    let images = TempDir::new("hundred");
    Dump::new(w.pid).images_dir(images.path()).run().unwrap();
    w.reap();
    tree_gone(&ImageDir::open(images.path()).unwrap());
    (w, images)
}

/// `rcriu restore -d` of `images` under an RLIMIT_NOFILE of `limit`
/// (soft and hard, so that rcriu cannot raise it): its output.
fn restore_limited(images: &std::path::Path, limit: u64) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rcriu"));
    cmd.env("HOME", "/nonexistent")
        .env_remove("CRIU_CONFIG_FILE")
        .args(["restore", "-d", "-D"])
        .arg(images);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("running rcriu restore")
}

/// A hundred processes restore within 1024 open files: rcriu holds one
/// fd for each open file of the tree (stdio, the pipes between root and
/// children, the mapped binary and libraries, the cwd), not one for each
/// process that holds it, plus each process's pages file.
#[test]
fn a_hundred_processes_restore_within_1024_files() {
    let _g = setup();
    let (w, images) = hundred_under_1024();
    let out = restore_limited(images.path(), 1024);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rcriu_test_support::tree_pids(w.pid).len(), 100);
    w.verdict().unwrap();
}

/// The control: under a limit the tree's own fds need more than, the
/// restore fails by name and leaves no process behind.
#[test]
fn a_tree_restored_under_too_few_files_fails_cleanly() {
    let _g = setup();
    let (w, images) = hundred_under_1024();
    let out = restore_limited(images.path(), 256);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a restore under 256 files fails");
    assert!(err.contains("Too many open files"), "{err}");
    tree_gone(&ImageDir::open(images.path()).unwrap());
    drop(w);
}

/// An epoll instance a parent and its child share, whose target only the
/// parent holds (the child closed it): the target is the parent's fd, and
/// both see its event (zdtm's transition/epoll).
#[test]
fn an_epoll_instance_shared_with_a_child_that_closed_its_target() {
    let _g = setup();
    cycle("tree", &["epoll"], None).unwrap();
}

/// The negative control: the target registered with other data shows.
#[test]
fn an_epoll_target_with_other_data_shows() {
    let _g = setup();
    let err = cycle(
        "tree",
        &["epoll"],
        Some(|dir, _| {
            let mut files = dir.files().unwrap();
            let e = files
                .iter_mut()
                .find_map(|f| f.epfd.as_deref_mut())
                .expect("the epoll instance");
            assert_eq!(e.tfd[0].data, 0x5eed);
            e.tfd[0].data = 0x5eee;
            dir.write_all(ImageFile::Files, &files).unwrap();
        }),
    )
    .unwrap_err();
    assert!(err.contains("the epoll instance's event"), "{err}");
}

/// A session whose leader is gone: the root (a subreaper) holds three of
/// its members, in two groups (one of them the leader's, gone too), and a
/// member's child; each is in the session and group it was in, with the
/// root its parent.
#[test]
fn a_session_whose_leader_is_gone() {
    let _g = setup();
    cycle("tree", &["deadsession"], None).unwrap();
}

/// The negative control: a member put in the root's session and group by
/// the image shows (the workload checks its group and session).
#[test]
fn a_member_of_a_gone_session_put_in_another_shows() {
    let _g = setup();
    let err = cycle(
        "tree",
        &["deadsession"],
        Some(|dir, root| {
            let mut tree = dir.pstree().unwrap();
            let root_sid = tree.iter().find(|e| e.pid as i32 == root).unwrap().sid;
            let member = tree
                .iter_mut()
                .find(|e| e.sid != root_sid && e.pgid == e.sid)
                .expect("a member in the group of the gone leader");
            member.sid = root_sid;
            member.pgid = root_sid;
            dir.write_all(ImageFile::Pstree, &tree).unwrap();
        }),
    )
    .unwrap_err();
    // Its group is checked before its session.
    assert!(
        err.contains("its process group") || err.contains("its session"),
        "{err}"
    );
}

/// CRIU 4.2 (when `RCRIU_TEST_CRIU` names its criu) restores a tree whose
/// shared pages rcriu kept once: it finds them in `parent/` as it finds
/// a pre-dump's. Without a child's pagemap there, it cannot.
#[test]
fn criu_restores_a_tree_whose_shared_pages_are_kept_once() {
    let _g = setup();
    let Ok(criu) = std::env::var("RCRIU_TEST_CRIU") else {
        eprintln!("RCRIU_TEST_CRIU is not set: skipping the restore by CRIU 4.2");
        return;
    };
    let criu_restore = |images: &std::path::Path| {
        let out = std::process::Command::new(&criu)
            .arg("restore")
            .arg("-D")
            .arg(images)
            .args(["-d", "-v2", "-o", "criu-restore.log"])
            .output()
            .unwrap();
        let log = std::fs::read_to_string(images.join("criu-restore.log")).unwrap_or_default();
        (out.status.success(), log)
    };
    for lose_a_pagemap in [false, true] {
        let mut w = start("cow", &["8", "16", "256"]);
        let kids = rcriu_test_support::tree_pids(w.pid);
        let images = TempDir::new("cow-criu");
        Dump::new(w.pid).images_dir(images.path()).run().unwrap();
        w.reap();
        let kept = images.path().join("parent");
        assert!(kept.join(rcriu::images::KEPT_MARK).is_file());
        if lose_a_pagemap {
            std::fs::remove_file(kept.join(format!("pagemap-{}.img", kids[1]))).unwrap();
        }
        tree_gone(&ImageDir::open(images.path()).unwrap());
        let (ok, log) = criu_restore(images.path());
        if lose_a_pagemap {
            assert!(
                !ok,
                "CRIU restored a child without its parent pages:\n{log}"
            );
            continue;
        }
        assert!(ok, "CRIU 4.2 failed:\n{log}");
        let mut back = rcriu_test_support::tree_pids(w.pid);
        back.sort_unstable();
        let mut kids = kids;
        kids.sort_unstable();
        assert_eq!(back, kids);
        w.verdict().unwrap();
    }
}

/// The images kept in `parent/` are checked against their own manifest
/// before anything starts: a child's pagemap there changed, or the
/// parent's pages image replaced by another file, is refused by name and
/// leaves nothing; untouched, the same images restore.
#[test]
fn pages_kept_with_the_parents_are_checked_too() {
    let _g = setup();
    let mut w = start("cow", &["3", "8", "64"]);
    let kids = rcriu_test_support::tree_pids(w.pid);
    let images = TempDir::new("cow-kept");
    Dump::new(w.pid).images_dir(images.path()).run().unwrap();
    w.reap();
    let dir = ImageDir::open(images.path()).unwrap();
    tree_gone(&dir);
    let kept = images.path().join("parent");
    let pagemap = kept.join(format!("pagemap-{}.img", kids[1]));
    let pages: Vec<std::path::PathBuf> = std::fs::read_dir(&kept)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pages-")
        })
        .collect();
    assert_eq!(pages.len(), 1, "the root's pages, linked");
    let original = std::fs::read(&pagemap).unwrap();
    let mut bad = original.clone();
    *bad.last_mut().unwrap() ^= 1;
    std::fs::write(&pagemap, &bad).unwrap();
    let e = Restore::new(images.path()).detach(true).run().unwrap_err();
    assert!(
        e.to_string().contains(&format!("pagemap-{}.img", kids[1])),
        "{e}"
    );
    assert!(!std::path::Path::new(&format!("/proc/{}", w.pid)).exists());
    std::fs::write(&pagemap, &original).unwrap();
    // The same bytes, but another file than the one the dump's manifest
    // checked: hashed, and found alike.
    let copy = std::fs::read(&pages[0]).unwrap();
    std::fs::remove_file(&pages[0]).unwrap();
    std::fs::write(&pages[0], &copy).unwrap();
    let mut flipped = copy.clone();
    flipped[100] ^= 1;
    std::fs::remove_file(&pages[0]).unwrap();
    std::fs::write(&pages[0], &flipped).unwrap();
    let e = Restore::new(images.path()).detach(true).run().unwrap_err();
    let name = pages[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(e.to_string().contains(&name), "{e}");
    std::fs::write(&pages[0], &copy).unwrap();
    Restore::new(images.path()).detach(true).run().unwrap();
    w.verdict().unwrap();
}
