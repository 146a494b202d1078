//! `rcriu dedup` and `--auto-dedup` (criu's): a process that keeps
//! rewriting random pages under a running checksum is pre-dumped twice
//! and dumped (`pre-dump -D 1`, `pre-dump -D 2 --prev-images-dir ../1`,
//! `dump -D 3 --prev-images-dir ../2`, all `--track-mem`); then
//!
//! - `rcriu dedup -D 3` punches out of `1/pages-1.img` and
//!   `2/pages-1.img` exactly the pages the dump holds again (the holes,
//!   read with `SEEK_DATA`/`SEEK_HOLE`, page by page against what the
//!   pagemaps say), the parents take fewer blocks, their manifests are
//!   rewritten, and the restore from the chain is checked from inside
//!   (every page agrees with its checksum);
//! - `--auto-dedup` on the pre-dump and the dump does the same as they
//!   write; on the restore, every page read is punched out and the
//!   images refuse a second restore by name.
//!
//! Negative controls: without dedup the blocks stay as they were; a
//! page the dump does not hold, punched out of a parent (as a wrong
//! dedup would), is refused by the parent's manifest, and with the
//! manifest made to match, the restored process finds the page wrong.
//! With `RCRIU_TEST_CRIU` naming CRIU 4.2's criu, `criu dedup` on a
//! copy of the chain punches the same ranges as `rcriu dedup`, and CRIU
//! restores rcriu's deduplicated chain.
//!
//! rcriu's own `parent/` (the pages a tree's children share with their
//! parents since fork, the parents' own pages images linked there) is
//! never punched: CRIU's walk would punch the parents' pages where the
//! children hold their own (which `criu dedup` does, with
//! `RCRIU_TEST_CRIU`).

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use rcriu::Restore;
use rcriu::images::ImageDir;
use rcriu::images::manifest::{self, Manifest};
use rcriu::images::pages::{PE_PARENT, PE_PRESENT};
use rcriu_test_support::{TempDir, Workload, become_subreaper, require_root, trace_lock};

const PAGE: u64 = 4096;

fn rcriu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rcriu"))
        .args(args)
        .output()
        .expect("running rcriu")
}

fn ok(args: &[&str]) {
    let out = rcriu(args);
    assert!(
        out.status.success(),
        "rcriu {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// rcriu's error text, the command having failed.
fn refused(args: &[&str]) -> String {
    let out = rcriu(args);
    assert!(!out.status.success(), "rcriu {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The runs of a pagemap: (vaddr, pages, flags, offset in the pages).
fn runs(dir: &Path, pid: i32) -> Vec<(u64, u64, u32, Option<u64>)> {
    let d = ImageDir::open(dir).unwrap();
    let mut r = d.pagemap(pid as u32).unwrap();
    let mut v = Vec::new();
    while let Some(run) = r.next_run().unwrap() {
        v.push((run.vaddr, run.nr_pages, run.flags, run.pages_offset));
    }
    v
}

/// The pages (addresses) a pagemap holds itself.
fn held(dir: &Path, pid: i32) -> BTreeSet<u64> {
    let mut s = BTreeSet::new();
    for (v, n, f, _) in runs(dir, pid) {
        if f & PE_PARENT == 0 {
            s.extend((0..n).map(|i| v + i * PAGE));
        }
    }
    s
}

/// The pages (addresses) a pagemap has an entry for, held or kept.
fn covered(dir: &Path, pid: i32) -> BTreeSet<u64> {
    let mut s = BTreeSet::new();
    for (v, n, _, _) in runs(dir, pid) {
        s.extend((0..n).map(|i| v + i * PAGE));
    }
    s
}

/// Where each page a pagemap holds lies in its pages image.
fn offsets(dir: &Path, pid: i32) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for (v, n, f, off) in runs(dir, pid) {
        if let (true, Some(off)) = (f & PE_PRESENT != 0 && f & PE_PARENT == 0, off) {
            out.extend((0..n).map(|i| (v + i * PAGE, off + i * PAGE)));
        }
    }
    out
}

/// The bytes a file takes on disk.
fn blocks(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// The data ranges of a file, by `SEEK_DATA` and `SEEK_HOLE`.
fn data_map(path: &Path) -> Vec<(u64, u64)> {
    use rustix::fs::{SeekFrom, seek};
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let start = match seek(&f, SeekFrom::Data(at)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => panic!("SEEK_DATA in {}: {e}", path.display()),
        };
        let end = seek(&f, SeekFrom::Hole(start)).unwrap();
        out.push((start, end));
        at = end;
    }
    out
}

/// Whether the page at `off` of a file with data `map` is a hole.
fn hole(map: &[(u64, u64)], off: u64) -> bool {
    !map.iter().any(|&(s, e)| s <= off && off < e)
}

/// A chain of two pre-dumps and a dump of a rewriting process, in
/// `1`, `2`, `3` of `top`; `extra` goes to the second pre-dump and the
/// dump; `between` runs after each round with its number.
fn chain(w: &Workload, top: &Path, extra: &[&str], between: &mut dyn FnMut(&str)) {
    let p = w.pid.to_string();
    let d = |n: &str| top.join(n).to_str().unwrap().to_owned();
    let (one, two, three) = (d("1"), d("2"), d("3"));
    ok(&["pre-dump", "-t", &p, "-D", &one, "--track-mem"]);
    between("1");
    let mut a = vec![
        "pre-dump",
        "-t",
        &p,
        "-D",
        &two,
        "--prev-images-dir",
        "../1",
        "--track-mem",
    ];
    a.extend_from_slice(extra);
    ok(&a);
    between("2");
    let mut a = vec![
        "dump",
        "-t",
        &p,
        "-D",
        &three,
        "--prev-images-dir",
        "../2",
        "--track-mem",
    ];
    a.extend_from_slice(extra);
    ok(&a);
    between("3");
}

fn rewriter() -> Workload {
    // 64 MiB, a page rewritten every 20 us: about a fifth of it between
    // two rounds.
    Workload::start("rewriter", &["64", "20"])
}

/// The pages of each parent `dedup -D 3` must punch, as byte offsets of
/// its pages image, found page by page from the pagemaps: of `2`, the
/// pages it holds that `3` holds; of `1`, those it holds that `3` holds
/// and `2` has an entry for (CRIU's walk goes up through the entries).
fn expected(top: &Path, pid: i32) -> [(String, BTreeSet<u64>); 2] {
    let d = |n: &str| top.join(n);
    let three = held(&d("3"), pid);
    let two_covers = covered(&d("2"), pid);
    let of = |n: &str, want: &dyn Fn(u64) -> bool| -> BTreeSet<u64> {
        offsets(&d(n), pid)
            .into_iter()
            .filter(|&(a, _)| want(a))
            .map(|(_, o)| o)
            .collect()
    };
    [
        ("2".into(), of("2", &|a| three.contains(&a))),
        (
            "1".into(),
            of("1", &|a| three.contains(&a) && two_covers.contains(&a)),
        ),
    ]
}

/// Checks that the pages images of `1` and `2` have holes exactly where
/// `expected` says.
fn holes_as_expected(top: &Path, pid: i32, want: &[(String, BTreeSet<u64>)]) {
    for (n, punched) in want {
        let path = top.join(n).join("pages-1.img");
        let map = data_map(&path);
        let len = std::fs::metadata(&path).unwrap().len();
        let mut wrong = Vec::new();
        for off in (0..len).step_by(PAGE as usize) {
            if hole(&map, off) != punched.contains(&off) {
                wrong.push(off);
            }
        }
        assert!(
            wrong.is_empty(),
            "{n}/pages-1.img of {pid}: {} pages punched or not against the pagemaps (first at {:?}); {} expected punched",
            wrong.len(),
            wrong.first(),
            punched.len()
        );
    }
}

#[test]
fn dedup_punches_the_parents_and_the_chain_restores() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let mut w = rewriter();
    let top = TempDir::new("dedup");
    let d = |n: &str| top.path().join(n);
    chain(&w, top.path(), &[], &mut |_| {});
    w.reap();
    let pages = |n: &str| d(n).join("pages-1.img");
    let before = [blocks(&pages("1")), blocks(&pages("2"))];
    for n in ["1", "2"] {
        assert_eq!(data_map(&pages(n)).len(), 1, "{n} has holes already");
    }
    let want = expected(top.path(), w.pid);
    assert!(
        want.iter().all(|(_, s)| !s.is_empty()),
        "the dump holds no page its parents hold: nothing to show"
    );
    ok(&["dedup", "-D", d("3").to_str().unwrap()]);
    let after = [blocks(&pages("1")), blocks(&pages("2"))];
    // Fewer blocks (not exactly the pages punched: the file system's
    // extent blocks grow with the holes); the holes themselves, exactly.
    for (i, n) in ["1", "2"].iter().enumerate() {
        let punched = want[1 - i].1.len() as u64 * PAGE;
        assert!(
            after[i] < before[i] && before[i] - after[i] > punched / 2,
            "{n}/pages-1.img: {} bytes on disk before, {} after, {punched} punched",
            before[i],
            after[i]
        );
    }
    holes_as_expected(top.path(), w.pid, &want);
    assert_eq!(
        data_map(&pages("3")).len(),
        1,
        "the dump's own pages are never punched"
    );
    // The manifests were rewritten: the restore checks every file.
    Restore::new(d("3")).detach(true).run().unwrap();
    w.verdict().unwrap();
}

#[test]
fn without_dedup_the_parents_keep_their_blocks() {
    // The control of the test above: the same chain and restore, without
    // `dedup`, leave every block where it was.
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let mut w = rewriter();
    let top = TempDir::new("dedup-none");
    let d = |n: &str| top.path().join(n);
    chain(&w, top.path(), &[], &mut |_| {});
    w.reap();
    let pages = |n: &str| d(n).join("pages-1.img");
    let before: Vec<u64> = ["1", "2", "3"].map(|n| blocks(&pages(n))).to_vec();
    Restore::new(d("3")).detach(true).run().unwrap();
    w.verdict().unwrap();
    let after: Vec<u64> = ["1", "2", "3"].map(|n| blocks(&pages(n))).to_vec();
    assert_eq!(before, after);
    for n in ["1", "2", "3"] {
        assert_eq!(data_map(&pages(n)).len(), 1, "{n} has holes");
    }
}

/// A page of `2` that `3` keeps there (does not hold), with data:
/// (its offset in `2/pages-1.img`).
fn page_kept_in_two(top: &Path, pid: i32) -> u64 {
    let three = held(&top.join("3"), pid);
    let kept: BTreeSet<u64> = covered(&top.join("3"), pid)
        .difference(&three)
        .copied()
        .collect();
    let f = std::fs::File::open(top.join("2/pages-1.img")).unwrap();
    offsets(&top.join("2"), pid)
        .into_iter()
        .filter(|(a, _)| kept.contains(a))
        .map(|(_, o)| o)
        .find(|&o| {
            let mut b = vec![0u8; PAGE as usize];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, o).unwrap();
            b.iter().any(|&x| x != 0)
        })
        .expect("3 keeps no page of data in 2")
}

#[test]
fn a_punch_where_the_dump_holds_nothing_is_caught() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let mut w = rewriter();
    let top = TempDir::new("dedup-wrong");
    let d = |n: &str| top.path().join(n);
    chain(&w, top.path(), &[], &mut |_| {});
    w.reap();
    ok(&["dedup", "-D", d("3").to_str().unwrap()]);
    // A wrong dedup: a page 3 reads from 2 punched out of 2.
    let off = page_kept_in_two(top.path(), w.pid);
    let path = d("2").join("pages-1.img");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    rustix::fs::fallocate(
        &f,
        rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
        off,
        PAGE,
    )
    .unwrap();
    // The manifest refuses it, by name...
    let e = Restore::new(d("3")).detach(true).run().unwrap_err();
    let e = rcriu::rpc::report(&e);
    assert!(
        e.contains("pages-1.img") && e.contains("hash differs"),
        "{e}"
    );
    // ...and with a manifest that matches it, the restored process
    // finds the page wrong.
    let dir = ImageDir::open(d("2")).unwrap();
    let m = Manifest::read(&dir).unwrap().unwrap();
    let digest = manifest::digest(&f, &path).unwrap();
    m.with("pages-1.img", digest).replace(&dir).unwrap();
    Restore::new(d("3")).detach(true).run().unwrap();
    let e = w.verdict().unwrap_err();
    assert!(e.contains("disagrees with its checksum"), "{e}");
}

#[test]
fn auto_dedup_punches_the_parents_as_the_rounds_write() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let mut w = rewriter();
    let top = TempDir::new("dedup-auto");
    let d = |n: &str| top.path().join(n);
    let pages = |n: &str| d(n).join("pages-1.img");
    // The blocks of each round's pages right after it, and of its parent
    // before and after the next round.
    let mut seen: Vec<(String, u64, u64)> = Vec::new();
    let mut last_parent: Option<(String, u64)> = None;
    chain(&w, top.path(), &["--auto-dedup"], &mut |n| {
        if let Some((p, b)) = last_parent.take() {
            seen.push((p.clone(), b, blocks(&pages(&p))));
        }
        last_parent = Some((n.to_owned(), blocks(&pages(n))));
    });
    w.reap();
    for (n, before, after) in &seen {
        assert!(
            after < before,
            "{n}/pages-1.img: {before} bytes on disk before the next round, {after} after"
        );
    }
    assert_eq!(seen.len(), 2);
    // The dump's own pages and those of 2 it does not hold are there.
    let want = expected(top.path(), w.pid);
    let map = data_map(&pages("2"));
    let all = offsets(&d("2"), w.pid);
    assert!(
        all.iter()
            .all(|&(_, o)| hole(&map, o) == want[0].1.contains(&o)),
        "2/pages-1.img is punched where the dump does not hold the page, or not where it does"
    );
    Restore::new(d("3")).detach(true).run().unwrap();
    w.verdict().unwrap();
}

#[test]
fn auto_dedup_on_restore_consumes_the_images() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let mut w = rewriter();
    let top = TempDir::new("dedup-restore");
    let d = |n: &str| top.path().join(n);
    let pages = |n: &str| d(n).join("pages-1.img");
    chain(&w, top.path(), &[], &mut |_| {});
    w.reap();
    let before: Vec<u64> = ["1", "2", "3"].map(|n| blocks(&pages(n))).to_vec();
    ok(&[
        "restore",
        "-d",
        "-D",
        d("3").to_str().unwrap(),
        "--auto-dedup",
    ]);
    let after: Vec<u64> = ["1", "2", "3"].map(|n| blocks(&pages(n))).to_vec();
    w.verdict().unwrap();
    for i in 0..3 {
        assert!(
            after[i] < before[i],
            "{}/pages-1.img: {} bytes on disk before the restore, {} after",
            i + 1,
            before[i],
            after[i]
        );
    }
    // The dump's own pages were all read: none is left.
    assert!(
        data_map(&pages("3")).is_empty(),
        "{:?}",
        data_map(&pages("3"))
    );
    // A second restore is refused by name, not run on zeroes.
    let e = refused(&["restore", "-d", "-D", d("3").to_str().unwrap()]);
    assert!(e.contains("consumed by a restore with --auto-dedup"), "{e}");
}

#[test]
fn what_cannot_be_deduplicated_is_refused_by_name() {
    require_root();
    let t = TempDir::new("dedup-refused");
    let dir = t.path().to_str().unwrap();
    // No parent: nothing to deduplicate against, as criu fails.
    let e = refused(&["dedup", "-D", dir]);
    assert!(e.contains("parent"), "{e}");
    for (args, what) in [
        (
            &[
                "dump",
                "-t",
                "1",
                "-D",
                dir,
                "--auto-dedup",
                "--page-server",
                "--address",
                "127.0.0.1",
                "--port",
                "1",
            ][..],
            "--auto-dedup with --page-server",
        ),
        (
            &["restore", "-D", dir, "--auto-dedup", "--lazy-pages"],
            "--auto-dedup with a lazy restore",
        ),
        (
            &["page-server", "-D", dir, "--auto-dedup"],
            "--auto-dedup on a page server",
        ),
        (
            &["lazy-pages", "-D", dir, "--auto-dedup"],
            "--auto-dedup with lazy-pages",
        ),
    ] {
        let e = refused(args);
        assert!(e.contains(what), "{args:?}: {e}");
    }
}

#[test]
fn encrypted_images_are_not_deduplicated() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let w = rewriter();
    let t = TempDir::new("dedup-encrypted");
    let key = t.path().join("key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let dir = t.path().join("d");
    let p = w.pid.to_string();
    ok(&[
        "dump",
        "-t",
        &p,
        "-D",
        dir.to_str().unwrap(),
        "--leave-running",
        "--encrypt",
        "--encrypt-key-file",
        key.to_str().unwrap(),
    ]);
    std::os::unix::fs::symlink(".", dir.join("parent")).unwrap();
    let e = refused(&["dedup", "-D", dir.to_str().unwrap()]);
    assert!(e.contains("encrypted"), "{e}");
    let e = refused(&[
        "restore",
        "-D",
        dir.to_str().unwrap(),
        "--auto-dedup",
        "--encrypt-key-file",
        key.to_str().unwrap(),
    ]);
    assert!(e.contains("--auto-dedup with --encrypt"), "{e}");
    w.verdict().unwrap();
}

#[test]
fn criu_dedup_punches_the_same_ranges() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    let Ok(criu) = std::env::var("RCRIU_TEST_CRIU") else {
        eprintln!("RCRIU_TEST_CRIU is not set: skipping the comparison with CRIU 4.2's dedup");
        return;
    };
    let mut w = rewriter();
    let top = TempDir::new("dedup-criu");
    let ours = top.path().join("rcriu");
    let theirs = top.path().join("criu");
    std::fs::create_dir(&ours).unwrap();
    chain(&w, &ours, &[], &mut |_| {});
    w.reap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(&ours)
        .arg(&theirs)
        .status()
        .unwrap();
    assert!(st.success());
    ok(&["dedup", "-D", ours.join("3").to_str().unwrap()]);
    let out = Command::new(&criu)
        .args(["dedup", "-v4", "-D"])
        .arg(theirs.join("3"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "criu dedup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in ["1", "2", "3"] {
        let a = data_map(&ours.join(n).join("pages-1.img"));
        let b = data_map(&theirs.join(n).join("pages-1.img"));
        assert_eq!(a, b, "{n}/pages-1.img: rcriu's holes against CRIU's");
    }
    // And something was punched at all.
    assert!(data_map(&ours.join("2/pages-1.img")).len() > 1);
    // CRIU's chain restores with rcriu's restore once CRIU's punches are
    // known to its manifests? No: CRIU leaves them stale, which the
    // restore refuses by name.
    let e = Restore::new(theirs.join("3"))
        .detach(true)
        .run()
        .unwrap_err();
    assert!(rcriu::rpc::report(&e).contains("hash differs"), "{e}");
    // CRIU restores rcriu's deduplicated chain.
    let out = Command::new(&criu)
        .args(["restore", "-d", "-D"])
        .arg(ours.join("3"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "criu restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.verdict().unwrap();
}

/// The pages images of a directory, by name.
fn pages_images(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pages-")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn pages_shared_since_fork_are_never_punched() {
    require_root();
    let _g = trace_lock();
    become_subreaper();
    // 3 children, each rewriting 64 KiB of the 8 MiB they share.
    let mut w = Workload::start("cow", &["3", "8", "64"]);
    let kids = rcriu_test_support::tree_pids(w.pid);
    let top = TempDir::new("dedup-kept");
    let images = top.path().join("d");
    rcriu::Dump::new(w.pid).images_dir(&images).run().unwrap();
    w.reap();
    common::tree_gone(&ImageDir::open(&images).unwrap());
    let kept = images.join("parent");
    assert!(kept.join(rcriu::images::KEPT_MARK).is_file());
    // What a walk as CRIU's would punch there: a child's own pages at
    // addresses of its parent's pages.
    let hazard: usize = kids
        .iter()
        .filter(|&&k| kept.join(format!("pagemap-{k}.img")).exists())
        .map(|&k| {
            let own = held(&images, k);
            offsets(&kept, k)
                .iter()
                .filter(|(a, _)| own.contains(a))
                .count()
        })
        .sum();
    assert!(
        hazard > 0,
        "no child holds pages of its own where its parent has some"
    );
    let before: Vec<_> = pages_images(&images).iter().map(|p| data_map(p)).collect();
    if let Ok(criu) = std::env::var("RCRIU_TEST_CRIU") {
        let copy = top.path().join("criu");
        assert!(
            Command::new("cp")
                .arg("-a")
                .arg(&images)
                .arg(&copy)
                .status()
                .unwrap()
                .success()
        );
        let out = Command::new(&criu)
            .args(["dedup", "-D"])
            .arg(&copy)
            .output()
            .unwrap();
        let punched = pages_images(&copy).iter().any(|p| data_map(p).len() > 1);
        eprintln!(
            "criu dedup on rcriu's parent/ of pages shared since fork: {} ({})",
            if punched {
                "punches the parents' own pages"
            } else {
                "punches nothing"
            },
            out.status
        );
    } else {
        eprintln!("RCRIU_TEST_CRIU is not set: not showing what criu dedup does here");
    }
    ok(&["dedup", "-D", images.to_str().unwrap()]);
    let after: Vec<_> = pages_images(&images).iter().map(|p| data_map(p)).collect();
    assert_eq!(before, after, "rcriu dedup punched a tree's own pages");
    Restore::new(&images).detach(true).run().unwrap();
    w.verdict().unwrap();
}
