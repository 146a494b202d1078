//! An images directory hands out nothing but regular files, never blocks
//! on a FIFO, never writes through a planted link, and refuses to be
//! written in when others could plant files in it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rcriu_images::{Error, ImageDir, ImageFile, pb};

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
}

fn stats() -> pb::StatsEntry {
    pb::StatsEntry::default()
}

/// Runs `f` on a thread and fails if it does not come back: a FIFO opened
/// for reading without a writer would block for ever.
fn never_blocks<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} blocked"))
}

#[test]
fn a_fifo_image_is_refused_by_name_without_blocking() {
    let t = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(t.path()).unwrap();
    mkfifo(&dir.file_path(ImageFile::Inventory));
    mkfifo(&dir.file_path(ImageFile::Pages(1)));
    let d = dir.clone();
    let r = never_blocks("reading a FIFO image", move || d.inventory().map(drop));
    let e = r.expect_err("a FIFO is refused").to_string();
    assert!(
        e.contains("inventory.img") && e.contains("a FIFO, not a regular file"),
        "{e}"
    );
    let d = dir.clone();
    let r = never_blocks("opening FIFO pages", move || d.pages(1).map(drop));
    assert!(matches!(r, Err(Error::NotRegular { .. })), "{r:?}");
    // And the file given by path, as `rcriu decode -i` takes it.
    let p = dir.file_path(ImageFile::Inventory);
    let r = never_blocks("decoding a FIFO", move || {
        rcriu_images::open_image(&p).map(drop)
    });
    assert!(matches!(r, Err(Error::NotRegular { .. })), "{r:?}");
}

#[test]
fn a_symlink_image_is_refused_even_to_a_good_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(t.path().join("d")).unwrap();
    let other = ImageDir::create(t.path().join("other")).unwrap();
    other.write_one(ImageFile::StatsDump, &stats()).unwrap();
    // The control: the real file reads.
    assert!(other.stats_dump().unwrap().is_some());
    std::os::unix::fs::symlink(
        other.file_path(ImageFile::StatsDump),
        dir.file_path(ImageFile::StatsDump),
    )
    .unwrap();
    let e = dir
        .stats_dump()
        .expect_err("a symlink is refused")
        .to_string();
    assert!(e.contains("a symbolic link"), "{e}");
    // A symlink to a FIFO too, without blocking.
    let fifo = t.path().join("fifo");
    mkfifo(&fifo);
    std::os::unix::fs::symlink(&fifo, dir.file_path(ImageFile::Inventory)).unwrap();
    let d = dir.clone();
    let r = never_blocks("a symlink to a FIFO", move || d.inventory().map(drop));
    assert!(r.is_err());
}

#[test]
fn a_planted_hard_link_never_receives_an_image() {
    let t = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(t.path().join("d")).unwrap();
    // Someone's file, hard-linked under an image's name.
    let theirs = t.path().join("theirs");
    std::fs::write(&theirs, b"mine").unwrap();
    std::fs::hard_link(&theirs, dir.file_path(ImageFile::Core(42))).unwrap();
    dir.write_one(ImageFile::Core(42), &pb::CoreEntry::default())
        .unwrap();
    assert_eq!(std::fs::read(&theirs).unwrap(), b"mine", "untouched");
    let img = std::fs::metadata(dir.file_path(ImageFile::Core(42))).unwrap();
    assert_eq!(img.nlink(), 1, "the image is a file of its own");
    assert_eq!(img.mode() & 0o777, 0o600);
    assert_ne!(img.ino(), std::fs::metadata(&theirs).unwrap().ino());
    // The same for raw files and pages.
    std::fs::hard_link(&theirs, dir.file_path(ImageFile::Pages(1))).unwrap();
    let mut w = dir.create_pages(1).unwrap();
    w.write_pages(&[7u8; 4096]).unwrap();
    drop(w);
    assert_eq!(std::fs::read(&theirs).unwrap(), b"mine");
    // A symlink under an image's name is replaced, not followed.
    let target = t.path().join("target");
    std::os::unix::fs::symlink(&target, dir.file_path(ImageFile::Mm(42))).unwrap();
    dir.write_one(ImageFile::Mm(42), &pb::MmEntry::default())
        .unwrap();
    assert!(!target.exists(), "nothing written through the symlink");
}

#[test]
fn a_directory_of_another_user_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let open = t.path().join("open");
    std::fs::create_dir(&open).unwrap();
    // Ours and open to others (as zdtm makes its dump directories): taken,
    // with a warning; every image in it is a file made anew.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let d = ImageDir::create(&open).expect("ours, open to others");
    d.write_one(ImageFile::StatsDump, &stats()).unwrap();
    // Sticky and ours, as /tmp: allowed.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    ImageDir::create(&open).expect("sticky and ours");
    // Ours alone: fine (the control).
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    ImageDir::create(&open).expect("private");
    // Someone else's directory, even closed to others, is theirs to plant
    // files in.
    let theirs = t.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    rustix::fs::chown(&theirs, Some(rustix::process::Uid::from_raw(65534)), None)
        .expect("chown (the test runs as root)");
    let e = ImageDir::create(&theirs).expect_err("refused").to_string();
    assert!(e.contains("belongs to user 65534"), "{e}");
    // Reading from it is fine.
    ImageDir::open(&theirs).expect("reading is allowed");
    // Writing into a directory opened for reading is checked too.
    let d = ImageDir::open(&theirs).unwrap();
    assert!(d.write_one(ImageFile::StatsDump, &stats()).is_err());
}
