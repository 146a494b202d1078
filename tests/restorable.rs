//! A dump succeeds only for what its restore can bring back: before it
//! reports success (and before it kills the process) the dump runs the
//! restore's own check (`rcriu_restore::check`) on the images it wrote.
//! These tests show that check taking a real dump and refusing, by name
//! and before any process exists, images of the kinds the restore does
//! not bring back.

mod common;

use common::{edit_leader, setup, start};
use rcriu::images::{ImageDir, ImageFile, pb};
use rcriu_test_support::TempDir;

/// A --leave-running dump of `name`; the images and the workload.
fn dumped(name: &str) -> (TempDir, rcriu_test_support::Workload) {
    let w = start(name, &[]);
    let images = TempDir::new(&format!("restorable-{name}"));
    rcriu::Dump::new(w.pid)
        .images_dir(images.path())
        .leave_running(true)
        .run()
        .unwrap_or_else(|e| panic!("dumping {name}: {e}"));
    (images, w)
}

#[test]
fn the_restore_check_takes_what_the_dump_wrote() {
    let _g = setup();
    for name in [
        "onstack",
        "task_attrs",
        "files_tmpfile",
        "files_pty",
        "files_ghost",
        "eventfds",
    ] {
        let (images, w) = dumped(name);
        rcriu::restore::check(images.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
        w.verdict().unwrap();
    }
}

#[test]
fn the_restore_check_refuses_what_the_restore_would() {
    let _g = setup();
    let (images, w) = dumped("files_pty");
    let pid = w.pid;
    let dir = ImageDir::open(images.path()).unwrap();
    let refused = |what: &str| {
        let e = rcriu::restore::check(images.path())
            .expect_err(what)
            .to_string();
        assert!(e.contains(what), "{e}");
    };
    let keep_mm = dir.mm(pid as u32).unwrap();
    let keep_files = dir.files().unwrap();
    let keep_core = dir.core(pid as u32).unwrap();

    // An area of a kind the restore does not make (an AIO ring).
    let mut mm = keep_mm.clone();
    mm.vmas[1].status |= rcriu::images::vma::VMA_AREA_AIORING;
    dir.write_one(ImageFile::Mm(pid as u64), &mm).unwrap();
    refused("an AIO ring");
    dir.write_one(ImageFile::Mm(pid as u64), &keep_mm).unwrap();

    // An fd of a kind it does not open (a BPF map).
    let mut files = keep_files.clone();
    let f = files
        .iter_mut()
        .find(|f| f.tty.is_some())
        .expect("a terminal");
    f.r#type = pb::FdTypes::Bpfmap as i32;
    dir.write_all(ImageFile::Files, &files).unwrap();
    refused("restoring fd");
    dir.write_all(ImageFile::Files, &keep_files).unwrap();

    // An external terminal (CRIU's --inherit-fd tty[...]).
    let mut infos: Vec<pb::TtyInfoEntry> = dir.read_all(ImageFile::TtyInfo).unwrap();
    let keep_infos = infos.clone();
    infos[0].r#type = pb::TtyType::ExtTty as i32;
    dir.write_all(ImageFile::TtyInfo, &infos).unwrap();
    refused("a terminal of type 5");
    dir.write_all(ImageFile::TtyInfo, &keep_infos).unwrap();

    // A task state the restore does not make (CRIU's helper, 4), and a
    // root that is a zombie.
    edit_leader(&dir, pid, |c| c.tc.as_mut().unwrap().task_state = 4);
    refused("in state 4");
    edit_leader(&dir, pid, |c| c.tc.as_mut().unwrap().task_state = 2);
    refused("the root is a zombie");
    dir.write_one(ImageFile::Core(pid as u64), &keep_core)
        .unwrap();

    // A 32-bit signal action.
    edit_leader(&dir, pid, |c| {
        c.tc.as_mut().unwrap().sigactions[0].compat_sigaction = Some(true)
    });
    refused("32-bit signal action");
    dir.write_one(ImageFile::Core(pid as u64), &keep_core)
        .unwrap();

    // Untouched again: taken.
    rcriu::restore::check(images.path()).unwrap();
    w.verdict().unwrap();
}
