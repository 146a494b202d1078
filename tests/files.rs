//! Open files end to end: regular files in every mode, ghost files,
//! pipes and FIFOs with their bytes, ptys and the controlling terminal.
//! Each workload is dumped, killed and restored (and dumped with
//! --leave-running), then checks itself; /proc (with every fd's position
//! and flags) is the same before and after. Negative controls corrupt
//! one field of the images and must make the workload fail or the
//! restore refuse, naming the image.

mod common;

use common::{
    Tweak, cycle, cycle_opts, cycle_with, leave_running, leave_running_opts, setup, start,
};
use rcriu::images::{ImageDir, ImageFile, pb};
use rcriu::{Dump, Restore};
use rcriu_test_support::{HANG_GUARD, ProcSnapshot, TempDir, no_inherited_fds};

/// Rewrites files.img through `f`.
fn edit_files(dir: &ImageDir, f: impl Fn(&mut pb::FileEntry)) {
    let mut files = dir.files().unwrap();
    files.iter_mut().for_each(f);
    dir.write_all(ImageFile::Files, &files).unwrap();
}

/// The error of a dump of `pid` (given options by `opts`) that must be
/// refused, once it is checked that the refusal left no image.
fn refused(pid: i32, tag: &str, opts: impl FnOnce(Dump) -> Dump) -> String {
    let images = TempDir::new(tag);
    let e = opts(Dump::new(pid))
        .images_dir(images.path())
        .run()
        .expect_err("a refused dump")
        .to_string();
    let left: Vec<_> = std::fs::read_dir(images.path()).unwrap().collect();
    assert!(left.is_empty(), "a refused dump leaves no image: {left:?}");
    e
}

/// Flips the last byte of an image (the end of its last payload).
fn flip_last_byte(dir: &ImageDir, file: ImageFile) {
    let path = dir.file_path(file);
    let mut bytes = std::fs::read(&path).unwrap();
    *bytes.last_mut().expect("a payload") ^= 0x5a;
    std::fs::write(&path, bytes).unwrap();
}

// -- Regular files.

#[test]
fn regular_files_carry_on() {
    let _g = setup();
    cycle("files_reg", &[], None).unwrap();
    leave_running("files_reg", &[]);
}

fn move_a_position(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(r) = e.reg.as_deref_mut()
            && r.pos == 1234
        {
            r.pos = 1235;
        }
    });
}

fn drop_append(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(r) = e.reg.as_deref_mut()
            && r.name.ends_with(b"log.txt")
        {
            r.flags &= !(libc::O_APPEND as u32);
        }
    });
}

fn grow_a_file(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(r) = e.reg.as_deref_mut()
            && r.name.ends_with(b"plain.txt")
        {
            r.size = r.size.map(|s| s + 1);
        }
    });
}

#[test]
fn a_corrupted_regular_file_is_noticed() {
    let _g = setup();
    let e = cycle("files_reg", &[], Some(move_a_position)).unwrap_err();
    assert!(e.contains("FAIL: fd 10 at 1235"), "{e}");
    let e = cycle("files_reg", &[], Some(drop_append)).unwrap_err();
    assert!(e.contains("FAIL: fd 13 flags"), "{e}");
    let e = cycle("files_reg", &[], Some(grow_a_file)).unwrap_err();
    assert!(
        e.contains("plain.txt") && e.contains("the dump had 65537"),
        "{e}"
    );
}

/// plain.txt, which files.img names, made a FIFO (as a user who can
/// write its directory might, between the dump and the restore).
fn fifo_for_a_file(dir: &ImageDir, _pid: i32) {
    use std::os::unix::ffi::OsStrExt;
    for e in dir.files().unwrap() {
        if let Some(r) = e.reg
            && r.name.ends_with(b"/plain.txt")
        {
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&r.name));
            std::fs::remove_file(path).unwrap();
            let c = std::ffi::CString::new(r.name).unwrap();
            // SAFETY: a plain mkfifo(3) of a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
            return;
        }
    }
    panic!("files.img names plain.txt");
}

/// A file the images name that is now a FIFO is refused by name, without
/// hanging in its open (a reader's open of a FIFO blocks until a writer
/// comes); the negative control is `regular_files_carry_on`.
#[test]
fn a_fifo_where_a_file_was_is_refused_by_name() {
    let _g = setup();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cycle("files_reg", &[], Some(fifo_for_a_file)));
    });
    let e = rx
        .recv_timeout(HANG_GUARD)
        .expect("the restore does not hang on the FIFO")
        .unwrap_err();
    assert!(
        e.contains("plain.txt") && e.contains("is a FIFO, where the dump had a file"),
        "{e}"
    );
}

// -- Ghost files.

#[test]
fn ghost_files_carry_on() {
    let _g = setup();
    cycle("files_ghost", &[], None).unwrap();
    leave_running("files_ghost", &[]);
}

fn flip_a_ghost_byte(dir: &ImageDir, _pid: i32) {
    flip_last_byte(dir, ImageFile::GhostFile(1));
}

#[test]
fn a_corrupted_ghost_is_noticed() {
    let _g = setup();
    let e = cycle("files_ghost", &[], Some(flip_a_ghost_byte)).unwrap_err();
    assert!(e.contains("FAIL: gone.txt contents"), "{e}");
}

// -- Unnamed temporary files (O_TMPFILE).

#[test]
fn unnamed_temporary_files_carry_on() {
    let _g = setup();
    cycle("files_tmpfile", &[], None).unwrap();
    leave_running("files_tmpfile", &[]);
}

/// The first temporary file's bytes, one flipped.
fn flip_a_tmpfile_byte(dir: &ImageDir, _pid: i32) {
    let remaps: Vec<pb::RemapFilePathEntry> = dir.read_all(ImageFile::RemapFpath).unwrap();
    let first = remaps.iter().map(|r| r.remap_id).min().expect("a ghost");
    let path = dir.file_path(ImageFile::GhostFile(first.into()));
    let mut bytes = std::fs::read(&path).unwrap();
    // The payload follows the entry: the byte 100 before the end is one
    // of the file's (the first file's 10000, or the second's 100).
    let at = bytes.len() - 50;
    bytes[at] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
}

/// The first file's fds opened as if it had not been made with O_TMPFILE
/// (what the restore did before: a ghost made at a name, then unlinked).
fn drop_tmpfile_flag(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |e| {
        if let Some(r) = e.reg.as_deref_mut()
            && r.flags & libc::O_ACCMODE as u32 == libc::O_RDWR as u32
        {
            r.flags &= !(libc::O_TMPFILE as u32);
        }
    });
}

#[test]
fn a_corrupted_temporary_file_is_noticed() {
    let _g = setup();
    let e = cycle("files_tmpfile", &[], Some(flip_a_tmpfile_byte)).unwrap_err();
    assert!(e.contains("FAIL:"), "{e}");
    let e = cycle("files_tmpfile", &[], Some(drop_tmpfile_flag)).unwrap_err();
    assert!(e.contains("FAIL: fd 10's flags"), "{e}");
}

#[test]
fn a_ghost_over_the_limit_is_refused_by_name() {
    let _g = setup();
    let w = start("files_ghost", &["huge"]);
    let e = refused(w.pid, "files-huge", |d| d);
    assert!(
        e.contains("huge.bin") && e.contains("ghost limit of 1048576"),
        "{e}"
    );
    // A larger limit takes it.
    let mut w = w;
    let images = TempDir::new("files-huge");
    Dump::new(w.pid)
        .images_dir(images.path())
        .ghost_limit(4 << 20)
        .run()
        .expect("dumping with a 4 MiB ghost limit");
    w.reap();
    Restore::new(images.path()).detach(true).run().unwrap();
    w.verdict().unwrap();
}

// -- Link remaps (--link-remap): files whose paths are gone, linked
// elsewhere.

/// The dump of files_linked with --link-remap: links made, the images
/// as CRIU writes them; the restore opens each file through its link
/// (the same inode), by its old name, and removes both; with
/// --leave-running the links go at once.
#[test]
fn linked_files_carry_on() {
    let _g = setup();
    let w = start("files_linked", &[]);
    cycle_opts(w, "files_linked", None, |d| d.link_remap(true), |r| r).unwrap();
    leave_running_opts("files_linked", &[], |d| d.link_remap(true));
}

/// The link remaps of a dump: (file id, the path of its link).
fn links(dir: &ImageDir) -> Vec<(u32, std::path::PathBuf)> {
    use std::os::unix::ffi::OsStrExt;
    let remaps: Vec<pb::RemapFilePathEntry> = dir.read_all(ImageFile::RemapFpath).unwrap();
    let files = dir.files().unwrap();
    remaps
        .iter()
        .filter(|r| r.remap_type == Some(pb::RemapType::Linked as i32))
        .map(|r| {
            let reg = files
                .iter()
                .find(|f| f.id == r.remap_id)
                .and_then(|f| f.reg.as_deref())
                .expect("a link's regular-file entry");
            let p = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&reg.name));
            (r.orig_id, p)
        })
        .collect()
}

/// Each regular file's link, made at the dump, replaced by a copy: the
/// same bytes and size, another inode.
fn copy_the_links(dir: &ImageDir, _pid: i32) {
    for (_, p) in links(dir) {
        if std::fs::symlink_metadata(&p).unwrap().is_file() {
            let bytes = std::fs::read(&p).unwrap();
            std::fs::remove_file(&p).unwrap();
            std::fs::write(&p, bytes).unwrap();
        }
    }
}

/// The link of the first file removed.
fn remove_a_link(dir: &ImageDir, _pid: i32) {
    let (_, p) = links(dir).into_iter().next().expect("a link remap");
    std::fs::remove_file(p).unwrap();
}

#[test]
fn a_replaced_or_missing_link_is_noticed() {
    let _g = setup();
    let opts = |d: Dump| d.link_remap(true);
    let e = cycle_opts(
        start("files_linked", &[]),
        "files_linked",
        Some(copy_the_links),
        opts,
        |r| r,
    )
    .unwrap_err();
    assert!(e.contains("FAIL: orig.txt is another file"), "{e}");
    let e = cycle_opts(
        start("files_linked", &[]),
        "files_linked",
        Some(remove_a_link),
        opts,
        |r| r,
    )
    .unwrap_err();
    assert!(
        e.contains("link_remap.") && e.contains("which is gone"),
        "{e}"
    );
}

/// What files_linked's images say: a LINKED remap for fds 10, 11, the
/// FIFO's path and the mapping, each to a `link_remap.<id>` entry whose
/// id follows the file's, beside the old path (or above a removed
/// directory), the file's own entry named without " (deleted)".
#[test]
fn link_remaps_are_written_as_criu_writes_them() {
    let _g = setup();
    let mut w = start("files_linked", &[]);
    let cwd = w.outfile.parent().unwrap().to_owned();
    let images = TempDir::new("files-linked-images");
    Dump::new(w.pid)
        .images_dir(images.path())
        .link_remap(true)
        .run()
        .unwrap();
    w.reap();
    let dir = ImageDir::open(images.path()).unwrap();
    let files = dir.files().unwrap();
    let links = links(&dir);
    assert_eq!(links.len(), 4, "{links:?}");
    let name_of = |id: u32| {
        let r = files
            .iter()
            .find(|f| f.id == id)
            .and_then(|f| f.reg.as_deref());
        String::from_utf8(r.expect("a regular-file entry").name.clone()).unwrap()
    };
    let mut olds = Vec::new();
    for (orig, link) in &links {
        let link_id: u32 = link
            .file_name()
            .and_then(|n| n.to_str()?.strip_prefix("link_remap.")?.parse().ok())
            .unwrap_or_else(|| panic!("{} is no link_remap.N", link.display()));
        assert_eq!(link_id, orig + 1, "{}", link.display());
        assert_eq!(link.parent(), Some(cwd.as_path()), "{}", link.display());
        let entry = files.iter().find(|f| f.id == link_id).unwrap();
        let reg = entry.reg.as_deref().unwrap();
        assert_eq!((reg.flags, reg.pos, reg.mode, reg.size), (0, 0, None, None));
        assert!(link.exists(), "{} is kept for the restore", link.display());
        olds.push(name_of(*orig));
    }
    olds.sort();
    let want: Vec<String> = ["mapped.bin", "orig.txt", "pipe.fifo", "sub/deep.txt"]
        .iter()
        .map(|n| cwd.join(n).to_string_lossy().into_owned())
        .collect();
    assert_eq!(olds, want);
    // The link of the FIFO's path entry: its fifo entry names it.
    let fifo = files.iter().find_map(|f| f.fifo.as_deref()).unwrap();
    assert!(links.iter().any(|(o, _)| Some(*o) == fifo.regf_id));
    for (_, l) in &links {
        std::fs::remove_file(l).unwrap();
    }
}

#[test]
fn linked_files_are_refused_without_link_remap() {
    let _g = setup();
    let w = start("files_linked", &[]);
    let e = refused(w.pid, "files-linked-refused", |d| d);
    assert!(
        e.contains("orig.txt, removed from that path but linked elsewhere")
            && e.contains("dump with --link-remap"),
        "{e}"
    );
    w.verdict().unwrap();
}

/// A dump that fails once its links are made (right after files.img is
/// written) removes them: the process runs on with one link to each
/// file and no link_remap.N beside them.
#[test]
fn a_failed_dump_removes_its_links() {
    let _g = setup();
    let w = start("files_linked", &[]);
    let images = TempDir::new("files-linked-failed");
    let log = images.path().join("dump.log");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rcriu"))
        .args([
            "dump",
            "-t",
            &w.pid.to_string(),
            "--link-remap",
            "-v4",
            "-o",
        ])
        .arg(&log)
        .arg("-D")
        .arg(images.path())
        .env("RCRIU_FAULT", "image:files")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the fault point fails the dump");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("(a link remap)"), "links were made: {log}");
    assert!(log.contains("link remap /"), "and removed: {log}");
    w.verdict().unwrap();
}

/// The workload's own checks of leftovers (the negative control of the
/// tests above): a link_remap.N beside its files, or a second link to
/// orig.txt, fail it.
#[test]
fn leftover_links_are_noticed() {
    let _g = setup();
    let w = start("files_linked", &[]);
    let cwd = w.outfile.parent().unwrap().to_owned();
    std::fs::write(cwd.join("link_remap.99"), b"").unwrap();
    let e = w.verdict().unwrap_err();
    assert!(e.contains("FAIL: link_remap.99 is left over"), "{e}");
    let w = start("files_linked", &[]);
    let cwd = w.outfile.parent().unwrap().to_owned();
    std::fs::hard_link(cwd.join("other.txt"), cwd.join("link_remap.98")).unwrap();
    let e = w.verdict().unwrap_err();
    assert!(e.contains("FAIL: orig.txt has 2 links"), "{e}");
}

/// CRIU 4.2's criu binary, when the machine has one
/// (`RCRIU_TEST_CRIU`).
fn criu() -> Option<String> {
    let c = std::env::var("RCRIU_TEST_CRIU")
        .ok()
        .filter(|c| !c.is_empty());
    if c.is_none() {
        eprintln!("RCRIU_TEST_CRIU is not set: skipping the tests against CRIU 4.2");
    }
    c
}

/// `tool dump -t PID` or `tool restore -d` of the images in `dir`.
fn criu_cli(
    tool: &str,
    pid: Option<i32>,
    dir: &std::path::Path,
    extra: &[&str],
) -> Result<(), String> {
    let cmd = if pid.is_some() { "dump" } else { "restore" };
    let log = format!("{cmd}.log");
    let mut c = std::process::Command::new(tool);
    c.arg(cmd);
    match pid {
        Some(p) => c.args(["-t", &p.to_string()]),
        None => c.arg("-d"),
    };
    c.arg("-D").arg(dir).args(["-v4", "-o", &log]).args(extra);
    let out = c.output().map_err(|e| format!("running {tool}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{tool} {cmd}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join(&log)).unwrap_or_default()
    ))
}

/// The images of files_linked (with --link-remap) and of files_pty
/// (queued) as CRIU 4.2 wrote them (`tests/fixtures/criu-4.2/link-remap`,
/// `pty-data`): read by rcriu as its own are written, and written back
/// by rcriu byte for byte.
#[test]
fn criu_4_2_s_link_remap_and_pty_images_are_rcriu_s() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/criu-4.2");
    let lr = ImageDir::open(root.join("link-remap")).unwrap();
    let links = links(&lr);
    let files = lr.files().unwrap();
    assert_eq!(links.len(), 4, "{links:?}");
    for (orig, link) in &links {
        let want = format!("link_remap.{}", orig + 1);
        assert_eq!(link.file_name().unwrap().to_str(), Some(want.as_str()));
        let entry = files.iter().find(|f| f.id == orig + 1).unwrap();
        let reg = entry.reg.as_deref().unwrap();
        assert_eq!((reg.flags, reg.pos, reg.mode, reg.size), (0, 0, None, None));
        let old = files.iter().find(|f| f.id == *orig).unwrap();
        assert!(!old.reg.as_deref().unwrap().name.ends_with(b" (deleted)"));
    }
    let pty = ImageDir::open(root.join("pty-data")).unwrap();
    let data = tty_data(&pty);
    let got: Vec<(u32, &[u8])> = data.iter().map(|e| (e.tty_id, &e.data[..])).collect();
    assert_eq!(got, [(1, &b"world!"[..]), (0, &b"hello"[..])]);
    // Written back by rcriu: the same bytes.
    let out = TempDir::new("criu-fixture-rewrite");
    let copy = ImageDir::create(out.path()).unwrap();
    let same = |from: &ImageDir, file: ImageFile| {
        std::fs::read(from.file_path(file)).unwrap() == std::fs::read(copy.file_path(file)).unwrap()
    };
    let remaps: Vec<pb::RemapFilePathEntry> = lr.read_all(ImageFile::RemapFpath).unwrap();
    copy.write_all(ImageFile::RemapFpath, &remaps).unwrap();
    copy.write_all(ImageFile::Files, &files).unwrap();
    copy.write_all(ImageFile::TtyData, &data).unwrap();
    let infos: Vec<pb::TtyInfoEntry> = pty.read_all(ImageFile::TtyInfo).unwrap();
    copy.write_all(ImageFile::TtyInfo, &infos).unwrap();
    assert!(same(&lr, ImageFile::RemapFpath));
    assert!(same(&lr, ImageFile::Files));
    assert!(same(&pty, ImageFile::TtyData));
    assert!(same(&pty, ImageFile::TtyInfo));
    // Negative control: one remap's type changed shows.
    let mut changed = remaps.clone();
    changed[0].remap_type = Some(pb::RemapType::Ghost as i32);
    copy.write_all(ImageFile::RemapFpath, &changed).unwrap();
    assert!(!same(&lr, ImageFile::RemapFpath));
}

/// CRIU 4.2 restores rcriu's link remaps and the bytes waiting in a pty,
/// rcriu restores CRIU's; a dump by either without --link-remap is
/// refused (the negative control).
#[test]
fn criu_4_2_and_rcriu_restore_each_other_s_link_remaps_and_pty_bytes() {
    let _g = setup();
    let Some(criu) = criu() else { return };
    let rcriu = env!("CARGO_BIN_EXE_rcriu");
    for (name, args, opts) in [
        ("files_linked", &["criu"][..], &["--link-remap"][..]),
        ("files_pty", &["queued"][..], &[][..]),
    ] {
        for (dumper, restorer) in [(rcriu, criu.as_str()), (criu.as_str(), rcriu)] {
            let what = format!("{name} dumped by {dumper}, restored by {restorer}");
            let mut w = start(name, args);
            if name == "files_linked" {
                let images = TempDir::new("compat-files-refused");
                let e = criu_cli(dumper, Some(w.pid), images.path(), &[])
                    .expect_err("a dump without --link-remap");
                assert!(e.contains("link-remap"), "{what}: {e}");
            }
            let images = TempDir::new(&format!("compat-{name}"));
            criu_cli(dumper, Some(w.pid), images.path(), opts)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            w.reap();
            if name == "files_pty" {
                let dir = ImageDir::open(images.path()).unwrap();
                assert_eq!(tty_data(&dir).len(), 2, "{what}: both ends' bytes");
            }
            criu_cli(restorer, None, images.path(), &[]).unwrap_or_else(|e| panic!("{what}: {e}"));
            w.verdict().unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

/// CRIU 4.2 restores rcriu's namespace files and /proc remaps, rcriu
/// restores CRIU's; a file of a namespace outside the dump is refused by
/// both (the negative control).
#[test]
fn criu_4_2_and_rcriu_restore_each_other_s_namespace_files_and_proc_remaps() {
    let _g = setup();
    let Some(criu) = criu() else { return };
    let rcriu = env!("CARGO_BIN_EXE_rcriu");
    for name in ["ns_files", "proc_cwd"] {
        for (dumper, restorer) in [(rcriu, criu.as_str()), (criu.as_str(), rcriu)] {
            let what = format!("{name} dumped by {dumper}, restored by {restorer}");
            let mut w = start(name, &[]);
            let images = TempDir::new(&format!("compat-{name}"));
            criu_cli(dumper, Some(w.pid), images.path(), &[])
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            w.reap();
            criu_cli(restorer, None, images.path(), &[]).unwrap_or_else(|e| panic!("{what}: {e}"));
            w.verdict().unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
    for dumper in [rcriu, criu.as_str()] {
        let w = start("ns_files", &["foreign"]);
        let images = TempDir::new("compat-ns-foreign");
        criu_cli(dumper, Some(w.pid), images.path(), &[])
            .expect_err("a file of a namespace outside the dump");
        w.verdict().unwrap();
    }
}

// -- Pipes and FIFOs.

#[test]
fn pipes_and_fifos_carry_on() {
    let _g = setup();
    cycle("files_pipe", &[], None).unwrap();
    leave_running("files_pipe", &[]);
}

fn flip_a_pipe_byte(dir: &ImageDir, _pid: i32) {
    flip_last_byte(dir, ImageFile::PipesData);
}

fn flip_a_fifo_byte(dir: &ImageDir, _pid: i32) {
    flip_last_byte(dir, ImageFile::FifoData);
}

/// Pipe A's size, halved below what it holds.
fn shrink_a_pipe(dir: &ImageDir, _pid: i32) {
    let mut r = dir.reader(ImageFile::PipesData).unwrap();
    let mut all = Vec::new();
    while let Some(mut e) = r.read_next::<pb::PipeDataEntry>().unwrap() {
        let bytes = r.read_payload(u64::from(e.bytes)).unwrap();
        if e.size == Some(128 * 1024) {
            e.size = Some(64 * 1024);
        }
        all.push((e, bytes));
    }
    let mut w = dir.writer(ImageFile::PipesData).unwrap();
    for (e, bytes) in &all {
        w.write(e).unwrap();
        w.write_payload(bytes).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn corrupted_pipe_data_is_noticed() {
    let _g = setup();
    let e = cycle("files_pipe", &[], Some(flip_a_pipe_byte)).unwrap_err();
    assert!(e.contains("FAIL: pipe C's bytes"), "{e}");
    let e = cycle("files_pipe", &[], Some(flip_a_fifo_byte)).unwrap_err();
    assert!(e.contains("FAIL: the FIFO's bytes"), "{e}");
    let e = cycle("files_pipe", &[], Some(shrink_a_pipe)).unwrap_err();
    assert!(
        e.contains("pipes-data.img") && e.contains("holds 70000 bytes"),
        "{e}"
    );
}

/// A FIFO removed while open: a ghost (its mode, owner and times) made
/// again at its name, opened by every end, then removed.
#[test]
fn a_deleted_fifo_carries_on() {
    let _g = setup();
    cycle("files_pipe", &["deleted"], None).unwrap();
    leave_running("files_pipe", &["deleted"]);
}

fn widen_the_ghost_fifo(dir: &ImageDir, _pid: i32) {
    let mut r = dir.reader(ImageFile::GhostFile(1)).unwrap();
    let mut g: pb::GhostFileEntry = r.expect_next().unwrap();
    assert_eq!(g.mode & libc::S_IFMT, libc::S_IFIFO, "{g:?}");
    g.mode |= 0o004;
    dir.write_one(ImageFile::GhostFile(1), &g).unwrap();
}

#[test]
fn a_corrupted_deleted_fifo_is_noticed() {
    let _g = setup();
    let e = cycle("files_pipe", &["deleted"], Some(widen_the_ghost_fifo)).unwrap_err();
    assert!(e.contains("FAIL: the deleted FIFO's mode is 10644"), "{e}");
    let e = cycle("files_pipe", &["deleted"], Some(flip_a_fifo_byte)).unwrap_err();
    assert!(e.contains("FAIL: the FIFO's bytes"), "{e}");
}

/// A pipe whose other end is outside the dump: dumped as any pipe and
/// restored as a new pipe whose other end is gone, as CRIU 4.2 does.
#[test]
fn a_pipe_to_the_outside_comes_back_alone() {
    let _g = setup();
    let (mut ours, writer) = std::io::pipe().unwrap();
    let path = format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        std::os::fd::AsRawFd::as_raw_fd(&ours)
    );
    leave_running("files_pipe", &["outside", &path]);
    let w = start("files_pipe", &["outside", &path]);
    // The workload's fd 23 is now the only writer.
    drop(writer);
    cycle_with(w, "files_pipe", None).unwrap();
    // The restored fd 23 was a new pipe: ours saw its writer go.
    let mut buf = [0u8; 1];
    let n = std::io::Read::read(&mut ours, &mut buf).unwrap();
    assert_eq!(n, 0, "our pipe has no writer left");
}

// -- Terminals.

#[test]
fn ptys_carry_on() {
    let _g = setup();
    cycle("files_pty", &[], None).unwrap();
    cycle("files_pty", &["ctty"], None).unwrap();
    leave_running("files_pty", &[]);
    leave_running("files_pty", &["ctty"]);
    cycle("files_pty", &["excl"], None).unwrap();
}

/// Takes the slave's exclusive mode out of the images.
fn drop_exclusive(dir: &ImageDir, _pid: i32) {
    let mut infos: Vec<pb::TtyInfoEntry> = dir.read_all(ImageFile::TtyInfo).unwrap();
    for i in &mut infos {
        i.exclusive = false;
    }
    dir.write_all(ImageFile::TtyInfo, &infos).unwrap();
}

/// Bytes waiting in both directions of a pty the process holds both ends
/// of: read at the dump into tty-data.img (as CRIU), written into the
/// other end by the restore, or back by the dump when the process runs
/// on; the process then reads them first, exactly.
#[test]
fn bytes_waiting_in_a_pty_carry_on() {
    let _g = setup();
    cycle("files_pty", &["queued"], None).unwrap();
    leave_running("files_pty", &["queued"]);
}

/// The entries of tty-data.img, and their ends' ids.
fn tty_data(dir: &ImageDir) -> Vec<pb::TtyDataEntry> {
    dir.read_all(ImageFile::TtyData).unwrap()
}

fn change_a_waiting_byte(dir: &ImageDir, _pid: i32) {
    let mut d = tty_data(dir);
    // The slave's (an even id): the bytes written to the master.
    let e = d
        .iter_mut()
        .find(|e| e.tty_id % 2 == 0)
        .expect("the slave's bytes");
    assert_eq!(e.data, b"hello");
    e.data[0] = b'j';
    dir.write_all(ImageFile::TtyData, &d).unwrap();
}

fn drop_the_waiting_bytes(dir: &ImageDir, _pid: i32) {
    let d = tty_data(dir);
    // The master's (an odd id): the bytes written to the slave.
    let e = d
        .iter()
        .find(|e| e.tty_id % 2 == 1)
        .expect("the master's bytes");
    assert_eq!(e.data, b"world!");
    std::fs::remove_file(dir.file_path(ImageFile::TtyData)).unwrap();
}

#[test]
fn corrupted_waiting_bytes_are_noticed() {
    let _g = setup();
    let e = cycle("files_pty", &["queued"], Some(change_a_waiting_byte)).unwrap_err();
    assert!(
        e.contains("FAIL: the bytes waiting for the slave: 5 \"jello\""),
        "{e}"
    );
    let e = cycle("files_pty", &["queued"], Some(drop_the_waiting_bytes)).unwrap_err();
    assert!(
        e.contains("FAIL: the bytes waiting for the slave: -1"),
        "{e}"
    );
}

fn grow_a_window(dir: &ImageDir, _pid: i32) {
    let mut infos: Vec<pb::TtyInfoEntry> = dir.read_all(ImageFile::TtyInfo).unwrap();
    for i in &mut infos {
        if let Some(w) = i.winsize.as_mut() {
            w.ws_row += 1;
        }
    }
    dir.write_all(ImageFile::TtyInfo, &infos).unwrap();
}

#[test]
fn a_corrupted_terminal_is_noticed() {
    let _g = setup();
    let e = cycle("files_pty", &["ctty"], Some(grow_a_window)).unwrap_err();
    assert!(e.contains("FAIL: window size"), "{e}");
    let e = cycle("files_pty", &["excl"], Some(drop_exclusive)).unwrap_err();
    assert!(e.contains("FAIL: the slave's exclusive mode"), "{e}");
}

/// /dev/tty (CRIU's CTTY) held by a session leader whose controlling
/// terminal is a pty it holds both ends of (zdtm's pty00): dumped as
/// CRIU 4.2 dumps it (one `tty_info_entry` 2012 of type CTTY, the
/// process's session and group, no pty index; the file's path entry
/// /dev/tty), restored by the process opening /dev/tty once its terminal
/// is back. Inside, fd 13 is /dev/tty again, reaching the slave both ways,
/// with the process's session and group.
#[test]
fn dev_tty_carries_on() {
    let _g = setup();
    cycle("files_pty", &["ctty", "devtty"], Some(dev_tty_is_criu_s)).unwrap();
    leave_running("files_pty", &["ctty", "devtty"]);
}

/// Checks the images of files_pty with /dev/tty (changes nothing).
fn dev_tty_is_criu_s(dir: &ImageDir, pid: i32) {
    let infos: Vec<pb::TtyInfoEntry> = dir.read_all(ImageFile::TtyInfo).unwrap();
    let c = infos
        .iter()
        .find(|i| i.id == 2012)
        .expect("/dev/tty's info");
    assert_eq!(c.r#type, pb::TtyType::Ctty as i32, "{c:?}");
    assert_eq!((c.sid, c.pgrp), (pid as u32, pid as u32), "{c:?}");
    assert_eq!(c.rdev, 0x500, "{c:?}");
    assert!(
        c.pty.is_none() && c.termios.is_some() && c.winsize.is_some(),
        "{c:?}"
    );
    let files = dir.files().unwrap();
    let t = files
        .iter()
        .filter_map(|f| f.tty.as_ref())
        .find(|t| t.tty_info_id == 2012)
        .expect("/dev/tty's file");
    let reg = files
        .iter()
        .find(|f| Some(f.id) == t.regf_id)
        .and_then(|f| f.reg.as_ref())
        .expect("its path entry");
    assert_eq!(reg.name, b"/dev/tty");
}

/// /dev/tty's path entry pointed at /dev/null.
fn dev_tty_at_dev_null(dir: &ImageDir, _pid: i32) {
    let files = dir.files().unwrap();
    let rid = files
        .iter()
        .filter_map(|f| f.tty.as_ref())
        .find(|t| t.tty_info_id == 2012)
        .and_then(|t| t.regf_id)
        .expect("/dev/tty's file");
    edit_files(dir, |e| {
        if e.id == rid
            && let Some(r) = e.reg.as_mut()
        {
            r.name = b"/dev/null".to_vec();
        }
    });
}

/// The slave's and master's sessions taken out: no controlling terminal
/// comes back, so /dev/tty cannot.
fn no_session(dir: &ImageDir, _pid: i32) {
    let mut infos: Vec<pb::TtyInfoEntry> = dir.read_all(ImageFile::TtyInfo).unwrap();
    for i in &mut infos {
        if i.id != 2012 {
            i.sid = 0;
            i.pgrp = 0;
        }
    }
    dir.write_all(ImageFile::TtyInfo, &infos).unwrap();
}

#[test]
fn a_corrupted_dev_tty_is_noticed() {
    let _g = setup();
    let e = cycle("files_pty", &["ctty", "devtty"], Some(dev_tty_at_dev_null)).unwrap_err();
    assert!(e.contains("FAIL: fd 13 is not /dev/tty (/dev/null)"), "{e}");
    let e = cycle("files_pty", &["ctty", "devtty"], Some(no_session)).unwrap_err();
    assert!(
        e.contains("fd 13")
            && e.contains("/dev/tty, while the images give the process no controlling terminal"),
        "{e}"
    );
}

/// /dev/tty reaching a terminal that is no longer the process's
/// controlling terminal (given up with TIOCNOTTY) is refused by name, no
/// image left, the process running on.
#[test]
fn a_dev_tty_of_a_terminal_given_up_is_refused_by_name() {
    let _g = setup();
    let w = start("files_pty", &["ctty", "devtty", "detached"]);
    let e = refused(w.pid, "files-devtty-detached", |d| d);
    assert!(
        e.contains("fd 13: the controlling terminal (/dev/tty) /dev/tty")
            && e.contains("no longer the process's controlling terminal (none)"),
        "{e}"
    );
    w.verdict().unwrap();
}

/// A shell job holding /dev/tty (its controlling terminal the shell's
/// pty, outside the dump): refused by name with --shell-job, as CRIU 4.2
/// refuses it ("ctty inheritance detected"), no image left, the job
/// running on with /dev/tty.
#[test]
fn a_shell_job_s_dev_tty_is_refused_by_name() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let _g = setup();
    no_inherited_fds();
    let home = TempDir::new("files-tty-job-devtty");
    let images = TempDir::new("files-tty-job-devtty-img");
    let verdict = home.path().join("verdict");
    let mut shell = Command::new(rcriu_test_support::workload("tty_shell"))
        .arg(rcriu_test_support::workload("files_tty_job"))
        .arg(&verdict)
        .arg("devtty")
        .args(["--", "true"])
        .current_dir(home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tty_shell");
    let go = shell.stdin.take().expect("piped");
    let mut out = BufReader::new(shell.stdout.take().expect("piped"));
    let mut pid = 0;
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the job never got ready"
        );
        match line.trim().split_once(' ') {
            Some(("pid", p)) => pid = p.parse().unwrap(),
            _ if line.trim() == "ready" => break,
            _ => {}
        }
    }
    wait_in(pid, "sigsuspend");
    let e = Dump::new(pid)
        .images_dir(images.path())
        .shell_job(true)
        .run()
        .expect_err("a shell job's /dev/tty")
        .to_string();
    let left: Vec<_> = std::fs::read_dir(images.path()).unwrap().collect();
    rcriu_test_support::signal(pid, libc::SIGUSR1);
    let start = std::time::Instant::now();
    let mut text = String::new();
    while !text.ends_with('\n') {
        assert!(start.elapsed() < HANG_GUARD, "no verdict from the job");
        std::thread::sleep(std::time::Duration::from_millis(2));
        text = std::fs::read_to_string(&verdict).unwrap_or_default();
    }
    drop(go);
    let _ = rcriu_test_support::wait_child(shell);
    assert!(
        e.contains("fd 13: /dev/tty (the controlling terminal /dev/pts/")
            && e.contains("whose pty master is not in the dump")
            && e.contains("ctty inheritance"),
        "{e}"
    );
    assert!(left.is_empty(), "a refused dump leaves no image: {left:?}");
    assert_eq!(text.trim(), "PASS");
}

/// The console and a virtual terminal, through device nodes the process
/// made (zdtm's console and vt): dumped as CRIU 4.2 dumps them (one info
/// entry for each kind, 2004 CONSOLE and 2008 VT, no pty index; each
/// file's path entry its node), opened again by their paths, with their
/// flags. Inside, each fd is its node's terminal again.
#[test]
fn the_console_and_a_virtual_terminal_carry_on() {
    let _g = setup();
    cycle("files_console", &[], Some(console_and_vt_are_criu_s)).unwrap();
    leave_running("files_console", &[]);
}

/// Checks the images of files_console (changes nothing).
fn console_and_vt_are_criu_s(dir: &ImageDir, _pid: i32) {
    let infos: Vec<pb::TtyInfoEntry> = dir.read_all(ImageFile::TtyInfo).unwrap();
    let got: Vec<(u32, i32, u32)> = infos.iter().map(|i| (i.id, i.r#type, i.rdev)).collect();
    assert_eq!(
        got,
        [
            (2004, pb::TtyType::Console as i32, 0x501),
            (2008, pb::TtyType::Vt as i32, 0x405)
        ],
        "{infos:?}"
    );
    assert!(infos.iter().all(|i| i.pty.is_none() && i.termios.is_some()));
    let files = dir.files().unwrap();
    let ttys: Vec<u32> = files
        .iter()
        .filter_map(|f| f.tty.as_ref())
        .map(|t| t.tty_info_id)
        .collect();
    assert_eq!(ttys, [2004, 2008, 2008]);
}

/// The console's path entry pointed at the virtual terminal's node.
fn console_at_the_vt(dir: &ImageDir, _pid: i32) {
    let files = dir.files().unwrap();
    let path_of = |info: u32| {
        let rid = files
            .iter()
            .filter_map(|f| f.tty.as_ref())
            .find(|t| t.tty_info_id == info)
            .and_then(|t| t.regf_id)
            .unwrap();
        let name = files
            .iter()
            .find(|f| f.id == rid)
            .and_then(|f| f.reg.as_ref())
            .unwrap()
            .name
            .clone();
        (rid, name)
    };
    let (console, _) = path_of(2004);
    let (_, vt) = path_of(2008);
    edit_files(dir, |e| {
        if e.id == console
            && let Some(r) = e.reg.as_mut()
        {
            r.name = vt.clone();
        }
    });
}

#[test]
fn a_corrupted_console_is_noticed() {
    let _g = setup();
    let e = cycle("files_console", &[], Some(console_at_the_vt)).unwrap_err();
    assert!(
        e.contains("FAIL: fd 10 is ") && e.contains("/vt5, not "),
        "{e}"
    );
}

/// A shell job on the terminal of a stand-in shell (tty_shell): dumped
/// with --shell-job, then restored by `rcriu restore -j` run by that
/// shell on the same terminal (or, with `leave_running`, left running).
fn shell_job(tweak: Option<Tweak>, leave_running: bool) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    no_inherited_fds();
    let home = TempDir::new("files-tty-job");
    let images = TempDir::new("files-tty-job-img");
    let verdict = home.path().join("verdict");
    let mut shell = Command::new(rcriu_test_support::workload("tty_shell"))
        .arg(rcriu_test_support::workload("files_tty_job"))
        .arg(&verdict)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_rcriu"))
        .args(["restore", "-j", "-d", "-D"])
        .arg(images.path())
        .current_dir(home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tty_shell");
    let mut go = shell.stdin.take().expect("piped");
    let mut out = BufReader::new(shell.stdout.take().expect("piped"));
    let mut pid = 0;
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the job never got ready"
        );
        match line.trim().split_once(' ') {
            Some(("pid", p)) => pid = p.parse().unwrap(),
            _ if line.trim() == "ready" => break,
            _ => {}
        }
    }
    wait_in(pid, "sigsuspend");
    let before = ProcSnapshot::take(pid);
    let dumped = Dump::new(pid)
        .images_dir(images.path())
        .shell_job(true)
        .leave_running(leave_running)
        .run()
        .map_err(|e| format!("dumping the shell job: {e}"));
    if dumped.is_ok() && !leave_running {
        // The dump (this process) traced it: its end is ours to see first,
        // then the shell's.
        let _ = rcriu_test_support::wait_exit(pid);
        if let Some(t) = tweak {
            t(&ImageDir::open(images.path()).unwrap(), pid);
            // Restored without the manifest, as a dump by CRIU (see
            // tests/common).
            std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST)).unwrap();
        }
        writeln!(go, "go").unwrap();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "after 0", "rcriu restore -j failed");
        if tweak.is_none() {
            // A shell job comes back under rcriu, in its group.
            let before = before.clone().apart_from_tree();
            let diff = before.diff(&ProcSnapshot::settled(pid, &before));
            assert!(diff.is_empty(), "/proc differs:\n{}", diff.join("\n"));
        }
    }
    if dumped.is_ok() {
        rcriu_test_support::signal(pid, libc::SIGUSR1);
    }
    let start = std::time::Instant::now();
    let mut text = String::new();
    while dumped.is_ok() && !text.ends_with('\n') {
        assert!(start.elapsed() < HANG_GUARD, "no verdict from the job");
        std::thread::sleep(std::time::Duration::from_millis(2));
        text = std::fs::read_to_string(&verdict).unwrap_or_default();
    }
    if !leave_running {
        // Ours as subreaper once the rcriu that restored it exited.
        let _ = rcriu_test_support::wait_exit(pid);
    }
    drop(go);
    let _ = rcriu_test_support::wait_child(shell);
    dumped?;
    if text.trim() == "PASS" {
        Ok(())
    } else {
        Err(text)
    }
}

fn wait_in(pid: i32, wchan: &str) {
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/wchan"))
        .unwrap_or_default()
        .contains(wchan)
    {
        assert!(
            start.elapsed() < HANG_GUARD,
            "{pid} never waited in {wchan}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn change_the_terminal_modes(dir: &ImageDir, _pid: i32) {
    let mut infos: Vec<pb::TtyInfoEntry> = dir.read_all(ImageFile::TtyInfo).unwrap();
    for i in &mut infos {
        if let Some(t) = i.termios.as_mut() {
            t.c_lflag ^= libc::ECHO;
        }
    }
    dir.write_all(ImageFile::TtyInfo, &infos).unwrap();
}

#[test]
fn a_shell_job_keeps_its_terminal() {
    let _g = setup();
    shell_job(None, false).unwrap();
    shell_job(None, true).unwrap();
    let e = shell_job(Some(change_the_terminal_modes), false).unwrap_err();
    assert!(e.contains("FAIL: the terminal's modes"), "{e}");
}

// -- Things with no name left, held otherwise than as open files.

/// A removed directory as the cwd and as fds, a removed device node open,
/// a removed symbolic link open (O_PATH|O_NOFOLLOW, zdtm's symlink01),
/// and a removed file mapped private and shared: ghosts (the directories
/// by their mode, owner and times; the link by its target, as CRIU's
/// `symlnk_target`; the file with its bytes), made again at their names
/// and removed once the process holds them.
#[test]
fn removed_directories_and_mapped_files_carry_on() {
    let _g = setup();
    cycle("deleted", &[], None).unwrap();
    leave_running("deleted", &[]);
}

/// Files of a child's /proc directory (zdtm's child_opened_proc):
/// opened again by the process itself once every process of the tree
/// exists, at their positions. The control points fd 10's entry at the
/// process's own stat.
#[test]
fn files_of_a_child_s_proc_carry_on() {
    let _g = setup();
    cycle("proc_child", &[], None).unwrap();
    leave_running("proc_child", &[]);
}

fn stat_of_the_parent(dir: &ImageDir, pid: i32) {
    edit_files(dir, |e| {
        if let Some(r) = e.reg.as_mut()
            && r.name.starts_with(b"/proc/")
            && r.name.ends_with(b"/stat")
        {
            r.name = format!("/proc/{pid}/stat").into_bytes();
        }
    });
}

/// A file of the /proc directory of another process's thread (which the
/// restore would open before the thread exists) is refused by name, no
/// image left, the process running on.
#[test]
fn a_file_of_another_process_s_thread_under_proc_is_refused_by_name() {
    let _g = setup();
    let w = start("proc_child", &["thread"]);
    let e = refused(w.pid, "files-proc-thread", |d| d);
    assert!(
        e.contains("fd 12: /proc/")
            && e.contains("a file of thread")
            && e.contains("of another process of the dump"),
        "{e}"
    );
    w.verdict().unwrap();
}

#[test]
fn a_corrupted_file_of_a_child_s_proc_is_noticed() {
    let _g = setup();
    let e = cycle("proc_child", &[], Some(stat_of_the_parent)).unwrap_err();
    assert!(e.contains("FAIL: fd 10 is /proc/"), "{e}");
}

/// A cwd and an fd in the /proc directory of a process that has ended:
/// as CRIU, a process of that pid stands for it while the restore opens
/// them (a /proc remap), then ends; the restored process finds its cwd
/// and its fd in the directory of an ended process again.
#[test]
fn files_in_an_ended_process_s_proc_carry_on() {
    let _g = setup();
    cycle("proc_cwd", &[], None).unwrap();
    leave_running("proc_cwd", &[]);
}

/// The /proc remaps of a dump, as CRIU 4.2 writes them: one PROCFS entry
/// for the ended process, whose pid it gives; then dropped.
fn drop_the_proc_remap(dir: &ImageDir, _pid: i32) {
    let remaps: Vec<pb::RemapFilePathEntry> = dir.read_all(ImageFile::RemapFpath).unwrap();
    let procfs: Vec<_> = remaps
        .iter()
        .filter(|r| r.remap_type == Some(pb::RemapType::Procfs as i32))
        .collect();
    assert_eq!(
        procfs.len(),
        1,
        "one remap for the ended process: {remaps:?}"
    );
    let files = dir.files().unwrap();
    let orig = files
        .iter()
        .find(|f| f.id == procfs[0].orig_id)
        .and_then(|f| f.reg.as_ref())
        .expect("the remap's file is a regular-file entry");
    let name = String::from_utf8_lossy(&orig.name).into_owned();
    assert!(
        name.starts_with(&format!("/proc/{}", procfs[0].remap_id)) && !name.contains("deleted"),
        "{name}"
    );
    let kept: Vec<_> = remaps
        .into_iter()
        .filter(|r| r.remap_type != Some(pb::RemapType::Procfs as i32))
        .collect();
    dir.write_all(ImageFile::RemapFpath, &kept).unwrap();
}

/// Control: without its remap no process stands for the ended one, and
/// the restore fails naming the directory (nothing is left running).
#[test]
fn files_in_an_ended_process_s_proc_need_their_remap() {
    let _g = setup();
    let e = cycle("proc_cwd", &[], Some(drop_the_proc_remap)).unwrap_err();
    assert!(
        e.contains("restoring proc_cwd") && e.contains("/proc/"),
        "{e}"
    );
}

/// A POSIX message queue (CRIU 4.2 has no image for one): refused by
/// name, with --link-remap too, no image left, the process and its
/// message untouched.
#[test]
fn a_posix_message_queue_is_refused_by_name() {
    let _g = setup();
    let w = start("mqueue", &[]);
    for link_remap in [false, true] {
        let e = refused(w.pid, "files-mqueue", |d| d.link_remap(link_remap));
        assert!(
            e.contains(": a POSIX message queue (/rcriu-test-")
                && e.contains("which CRIU 4.2 does not dump either"),
            "{e}"
        );
    }
    w.verdict().unwrap();
}

/// fds on the process's own namespaces (/proc/self/ns/*), every kind:
/// each is the file of its namespace again.
#[test]
fn namespace_files_carry_on() {
    let _g = setup();
    cycle("ns_files", &[], None).unwrap();
    leave_running("ns_files", &[]);
}

/// The network namespace file's entry given the uts namespace's id and
/// flag: the restored fd 20 is the uts namespace's file.
fn net_file_to_uts(dir: &ImageDir, _pid: i32) {
    let files = dir.files().unwrap();
    let uts = files
        .iter()
        .filter_map(|f| f.nsf.as_deref())
        .find(|n| n.ns_cflag == libc::CLONE_NEWUTS as u32)
        .cloned()
        .expect("the uts namespace's file");
    edit_files(dir, |f| {
        if let Some(n) = f.nsf.as_deref_mut()
            && n.ns_cflag == libc::CLONE_NEWNET as u32
        {
            n.ns_id = uts.ns_id;
            n.ns_cflag = uts.ns_cflag;
        }
    });
}

/// The network namespace file's entry given an id no process has.
fn net_file_to_nowhere(dir: &ImageDir, _pid: i32) {
    edit_files(dir, |f| {
        if let Some(n) = f.nsf.as_deref_mut()
            && n.ns_cflag == libc::CLONE_NEWNET as u32
        {
            n.ns_id = 999;
        }
    });
}

#[test]
fn a_namespace_file_pointed_elsewhere_is_noticed() {
    let _g = setup();
    let e = cycle("ns_files", &[], Some(net_file_to_uts)).unwrap_err();
    assert!(e.contains("FAIL: fd 20 is not the net namespace"), "{e}");
    let e = cycle("ns_files", &[], Some(net_file_to_nowhere)).unwrap_err();
    assert!(
        e.contains("restoring fd 20 of process")
            && e.contains("net namespace 999, which no process of the images is in"),
        "{e}"
    );
}

/// A file of a network namespace no process of the dump is in (a child
/// made it and ended): refused by name, no image left, the process
/// running on.
#[test]
fn a_namespace_file_of_a_namespace_outside_the_dump_is_refused_by_name() {
    let _g = setup();
    let w = start("ns_files", &["foreign"]);
    let e = refused(w.pid, "files-ns-foreign", |d| d);
    assert!(
        e.contains("fd 30: a file of net namespace net:[")
            && e.contains("which no process of the dump is in"),
        "{e}"
    );
    w.verdict().unwrap();
}

/// The ghost images of a dump, by id, with their entries.
fn ghosts(dir: &ImageDir) -> Vec<(u64, pb::GhostFileEntry)> {
    (1..)
        .map_while(|id| {
            let f = ImageFile::GhostFile(id);
            dir.exists(f)
                .then(|| (id, dir.reader(f).unwrap().expect_next().unwrap()))
        })
        .collect()
}

fn widen_the_cwd(dir: &ImageDir, _pid: i32) {
    let (id, mut g) = ghosts(dir)
        .into_iter()
        .find(|(_, g)| g.mode == libc::S_IFDIR | 0o750)
        .expect("the cwd's ghost");
    g.mode |= 0o005;
    dir.write_one(ImageFile::GhostFile(id), &g).unwrap();
}

fn flip_a_mapped_byte(dir: &ImageDir, _pid: i32) {
    let (id, _) = ghosts(dir)
        .into_iter()
        .find(|(_, g)| g.mode & libc::S_IFMT == libc::S_IFREG)
        .expect("the mapped file's ghost");
    flip_last_byte(dir, ImageFile::GhostFile(id));
}

/// The removed device node given /dev/zero's number.
fn make_the_node_zero(dir: &ImageDir, _pid: i32) {
    let (id, mut g) = ghosts(dir)
        .into_iter()
        .find(|(_, g)| g.mode & libc::S_IFMT == libc::S_IFCHR)
        .expect("the device's ghost");
    assert_eq!(g.rdev, Some(0x103), "{g:?}");
    g.rdev = Some(0x105);
    dir.write_one(ImageFile::GhostFile(id), &g).unwrap();
}

/// The removed symbolic link's target changed.
fn retarget_the_symlink(dir: &ImageDir, _pid: i32) {
    let (id, mut g) = ghosts(dir)
        .into_iter()
        .find(|(_, g)| g.mode & libc::S_IFMT == libc::S_IFLNK)
        .expect("the symbolic link's ghost");
    assert_eq!(
        g.symlnk_target.as_deref(),
        Some(&b"no/such target"[..]),
        "{g:?}"
    );
    g.symlnk_target = Some(b"no/such targex".to_vec());
    dir.write_one(ImageFile::GhostFile(id), &g).unwrap();
}

#[test]
fn corrupted_removed_directories_and_mapped_files_are_noticed() {
    let _g = setup();
    let e = cycle("deleted", &[], Some(widen_the_cwd)).unwrap_err();
    assert!(e.contains("FAIL: the cwd: mode 40755"), "{e}");
    let e = cycle("deleted", &[], Some(flip_a_mapped_byte)).unwrap_err();
    assert!(e.contains("FAIL: byte 12287"), "{e}");
    let e = cycle("deleted", &[], Some(make_the_node_zero)).unwrap_err();
    assert!(e.contains("FAIL: fd 13: mode 20640, device 1:5"), "{e}");
    let e = cycle("deleted", &[], Some(retarget_the_symlink)).unwrap_err();
    assert!(
        e.contains("FAIL: fd 14: mode 120777, links 0, target \"no/such targex\""),
        "{e}"
    );
}

/// A chrooted process (zdtm's chroot): its fds opened before and inside
/// the jail, and the jail as its root, come back. The control points the
/// root's entry at the jail's parent, which the process sees.
#[test]
fn a_chrooted_process_carries_on() {
    let _g = setup();
    cycle("chrooted", &[], None).unwrap();
    fn jail_parent(dir: &ImageDir, _pid: i32) {
        edit_files(dir, |e| {
            if let Some(r) = e.reg.as_deref_mut()
                && r.name.ends_with(b"/jail")
            {
                r.name.truncate(r.name.len() - "/jail".len());
            }
        });
    }
    let e = cycle("chrooted", &[], Some(jail_parent)).unwrap_err();
    assert!(e.contains("root is not the jail"), "{e}");
}
