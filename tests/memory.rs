//! Memory beyond private anonymous memory, end to end: file-shared
//! mappings, protections, growsdown areas, madvise flags, guard regions,
//! shared anonymous memory, memfds, locked areas and hugetlb memory. Each
//! kind is dumped and restored after a kill and dumped with
//! --leave-running; the `memory` workload checks its own state, /proc
//! (maps and VmFlags) is the same before and after, the images say what
//! CRIU 4.2 would, and a negative control corrupts each kind's image field
//! and sees the workload fail.

use rcriu::images::{ImageDir, ImageFile, pb};
use rcriu::{Dump, Restore};
use rcriu_test_support::{
    ProcSnapshot, TempDir, Workload, become_subreaper, require_root, trace_lock,
};

/// What a cycle does to the images between the dump and the restore.
type Tweak<'a> = &'a dyn Fn(&ImageDir, &Workload);

fn setup() -> std::sync::MutexGuard<'static, ()> {
    require_root();
    let g = trace_lock();
    become_subreaper();
    g
}

fn start(modes: &[&str]) -> Workload {
    let w = Workload::start("memory", modes);
    w.wait_in("sigsuspend");
    w
}

/// The snapshot, with the inode numbers of memfds and shared anonymous
/// memory blanked: those are new files after a restore.
fn snapshot(pid: i32, like: Option<&ProcSnapshot>) -> ProcSnapshot {
    let mut s = match like {
        Some(l) => ProcSnapshot::settled(pid, l),
        None => ProcSnapshot::take(pid),
    };
    for l in &mut s.maps {
        if l.contains("/memfd:")
            || l.contains("/dev/zero (deleted)")
            || l.contains("/anon_hugepage (deleted)")
        {
            let mut f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 4 {
                f[4] = "*";
            }
            *l = f.join(" ");
        }
    }
    s
}

/// start → dump → kill → (tweak) → restore → same /proc → verdict.
fn cycle(modes: &[&str], tweak: Option<Tweak<'_>>) -> Result<(), String> {
    let mut w = start(modes);
    let images = TempDir::new("memory");
    let before = snapshot(w.pid, None);
    Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .map_err(|e| format!("dumping {modes:?}: {e}"))?;
    w.reap();
    let dir = ImageDir::open(images.path()).expect("opening the images");
    check_images(&dir, &w, modes);
    if let Some(t) = tweak {
        t(&dir, &w);
        // Tweaked images are not the dump's: restored without its
        // manifest, as a dump by CRIU (see tests/common).
        std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST))
            .expect("the dump wrote a manifest");
    }
    let r = Restore::new(images.path())
        .detach(true)
        .run()
        .map_err(|e| format!("restoring {modes:?}: {e}"))?;
    assert_eq!(r.pid, w.pid, "the process gets its pid back");
    if tweak.is_none() {
        let diff = before.diff(&snapshot(w.pid, Some(&before)));
        assert!(
            diff.is_empty(),
            "{modes:?}: /proc differs:\n{}",
            diff.join("\n")
        );
    }
    w.verdict()
}

/// start → dump --leave-running → same /proc → verdict of the original.
fn leave_running(modes: &[&str]) {
    let w = start(modes);
    let images = TempDir::new("memory-lr");
    let before = snapshot(w.pid, None);
    Dump::new(w.pid)
        .images_dir(images.path())
        .leave_running(true)
        .run()
        .unwrap_or_else(|e| panic!("dumping {modes:?}: {e}"));
    let diff = before.diff(&snapshot(w.pid, Some(&before)));
    assert!(
        diff.is_empty(),
        "{modes:?}: /proc differs after the dump:\n{}",
        diff.join("\n")
    );
    let dir = ImageDir::open(images.path()).expect("opening the images");
    check_images(&dir, &w, modes);
    w.verdict()
        .unwrap_or_else(|e| panic!("{modes:?} after a --leave-running dump: {e}"));
}

/// Both ways, and the control must fail.
fn carries_on(modes: &[&str], control: Tweak<'_>, failure: &str) {
    let _g = setup();
    cycle(modes, None).unwrap();
    leave_running(modes);
    let e = cycle(modes, Some(control)).expect_err("the negative control passes");
    assert!(e.contains(failure), "{modes:?}: {e}");
}

// ---- the images

fn mm(dir: &ImageDir, w: &Workload) -> pb::MmEntry {
    dir.mm(w.pid as u32).expect("mm image")
}

fn vma(mm: &pb::MmEntry, addr: u64) -> &pb::VmaEntry {
    mm.vmas
        .iter()
        .find(|v| v.start == addr && v.status & GUARD == 0)
        .unwrap_or_else(|| panic!("no area at {addr:#x}"))
}

fn edit_mm(dir: &ImageDir, w: &Workload, f: impl FnOnce(&mut pb::MmEntry)) {
    let mut m = mm(dir, w);
    f(&mut m);
    dir.write_one(ImageFile::Mm((w.pid as u32).into()), &m)
        .expect("rewriting mm");
}

fn edit_vma(dir: &ImageDir, w: &Workload, fact: &str, f: impl FnOnce(&mut pb::VmaEntry)) {
    let addr = w.fact_u64(fact);
    edit_mm(dir, w, |m| {
        let v = m
            .vmas
            .iter_mut()
            .find(|v| v.start == addr)
            .unwrap_or_else(|| panic!("no area at {addr:#x}"));
        f(v)
    });
}

const REGULAR: u32 = 1;
const FILE_PRIVATE: u32 = 1 << 6;
const FILE_SHARED: u32 = 1 << 7;
const ANON_PRIVATE: u32 = 1 << 9;
const MEMFD: u32 = 1 << 14;
const GUARD: u32 = 1 << 16;

/// What CRIU 4.2 writes for the kinds of `modes` (checked against its
/// own dumps of the same workload, see the report of issue 6).
fn check_images(dir: &ImageDir, w: &Workload, modes: &[&str]) {
    const ALL: &[&str] = &[
        "file_shared",
        "prot",
        "growsdown",
        "madvise",
        "guard",
        "shmem",
        "memfd",
        "mlock",
    ];
    let modes = if modes == ["all"] { ALL } else { modes };
    let m = mm(dir, w);
    let files = dir.files().expect("files image");
    let file = |id: u64| {
        files
            .iter()
            .find(|f| u64::from(f.id) == id)
            .unwrap_or_else(|| panic!("no file {id}"))
    };
    for mode in modes {
        match *mode {
            "file_shared" => {
                let rw = vma(&m, w.fact_u64("fs_rw"));
                let ro = vma(&m, w.fact_u64("fs_ro"));
                assert_eq!(rw.status, REGULAR | FILE_SHARED);
                assert_eq!(rw.flags, libc::MAP_SHARED as u32);
                assert_eq!((rw.fdflags, ro.fdflags), (Some(2), Some(0)));
                assert_eq!((ro.pgoff, ro.shmid), (2 * 4096, rw.shmid));
                let reg = file(rw.shmid).reg.as_deref().expect("a regular file");
                assert!(reg.name.ends_with(b"/shared"));
                assert_eq!(reg.size, Some(8 * 4096));
                // Nothing of a shared file mapping is dumped.
                let mut runs = dir.pagemap(w.pid as u32).unwrap();
                while let Some(r) = runs.next_run().unwrap() {
                    assert!(r.end() <= rw.start || r.vaddr >= rw.end);
                }
            }
            "madvise" => {
                for (fact, advice) in [
                    ("madv_dontfork", libc::MADV_DONTFORK),
                    ("madv_dontdump", libc::MADV_DONTDUMP),
                    ("madv_hugepage", libc::MADV_HUGEPAGE),
                    ("madv_nohugepage", libc::MADV_NOHUGEPAGE),
                    ("madv_wipeonfork", libc::MADV_WIPEONFORK),
                    ("madv_sequential", libc::MADV_SEQUENTIAL),
                    ("madv_random", libc::MADV_RANDOM),
                ] {
                    assert_eq!(vma(&m, w.fact_u64(fact)).madv, Some(1 << advice), "{fact}");
                }
            }
            "droppable" => {
                // Its own mapping type (not MAP_PRIVATE), and no pages
                // kept, as CRIU writes it.
                let v = vma(&m, w.fact_u64("droppable"));
                assert_eq!(v.flags & 0x0f, 0x08, "the mapping type");
                assert_ne!(v.flags & libc::MAP_ANONYMOUS as u32, 0);
                let mut runs = dir.pagemap(w.pid as u32).unwrap();
                while let Some(r) = runs.next_run().unwrap() {
                    assert!(r.end() <= v.start || r.vaddr >= v.end);
                }
            }
            "mlock" => {
                let v = vma(&m, w.fact_u64("mlock"));
                assert_eq!(
                    v.flags,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_LOCKED) as u32
                );
            }
            "growsdown" => {
                let v = vma(&m, w.fact_u64("growsdown"));
                assert_ne!(v.flags & libc::MAP_GROWSDOWN as u32, 0);
            }
            "guard" => {
                let g = w.fact_u64("guard");
                // After every area, one entry per run of guard pages.
                let guards: Vec<(u64, u64)> = m
                    .vmas
                    .iter()
                    .skip_while(|v| v.status != GUARD)
                    .map(|v| {
                        assert_eq!((v.status, v.flags, v.prot), (GUARD, 0, 0));
                        (v.start, v.end)
                    })
                    .collect();
                assert_eq!(
                    guards,
                    [(g + 2 * 4096, g + 4 * 4096), (g + 6 * 4096, g + 7 * 4096)]
                );
            }
            "shmem" | "memfd" => {
                if *mode == "memfd" {
                    let private = vma(&m, w.fact_u64("memfd_private"));
                    let shared = vma(&m, w.fact_u64("memfd"));
                    assert_eq!(private.status, REGULAR | FILE_PRIVATE | MEMFD);
                    assert_eq!(private.shmid, shared.shmid, "one file id per inode");
                }
                let inodes: Vec<pb::MemfdInodeEntry> = dir.read_all(ImageFile::Memfd).unwrap();
                let facts: &[&str] = if *mode == "shmem" {
                    &["shmem", "shmem_alias"]
                } else {
                    &["memfd", "memfd_ro", "memfd2"]
                };
                for fact in facts {
                    let v = vma(&m, w.fact_u64(fact));
                    assert_eq!(v.status, REGULAR | FILE_SHARED | MEMFD, "{fact}");
                    let f = file(v.shmid).memfd.as_deref().expect("a memfd file");
                    let inode = inodes
                        .iter()
                        .find(|i| i.inode_id == u64::from(f.inode_id))
                        .expect("its inode");
                    let name: &[u8] = match *fact {
                        "memfd2" => b"only-mapped",
                        "memfd" | "memfd_ro" => b"rcriu-mem",
                        _ => b"/dev/zero",
                    };
                    assert_eq!(inode.name, name);
                    if *fact == "memfd" {
                        assert_eq!(inode.size, 8 * 4096 + 100);
                        let seals = (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW) as u32;
                        assert_eq!(inode.seals, seals);
                        // Page 5 is a hole, page 8 (partly in the file) is
                        // dumped.
                        let mut runs = dir.shmem_pagemap(inode.shmid).unwrap();
                        let mut got = Vec::new();
                        while let Some(r) = runs.next_run().unwrap() {
                            got.push((r.vaddr, r.nr_pages));
                        }
                        assert_eq!(got, [(0, 5), (0x6000, 3)]);
                    }
                }
            }
            "hugetlb" => {
                let huge = (libc::MAP_HUGETLB | 21 << 26) as u32;
                let p = vma(&m, w.fact_u64("huge_private"));
                let s = vma(&m, w.fact_u64("huge_shared"));
                assert_eq!(p.status, REGULAR | ANON_PRIVATE);
                assert_eq!(
                    p.flags,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32 | huge
                );
                assert_eq!(s.status, REGULAR | FILE_SHARED | MEMFD);
                assert_eq!(s.flags, libc::MAP_SHARED as u32 | huge);
                let inodes: Vec<pb::MemfdInodeEntry> = dir.read_all(ImageFile::Memfd).unwrap();
                let f = file(s.shmid).memfd.as_deref().expect("a memfd file");
                let inode = &inodes[f.inode_id as usize - 1];
                assert_eq!(inode.name, b"/anon_hugepage");
                assert_eq!(inode.hugetlb_flag, Some(libc::MFD_HUGETLB | 21 << 26));
            }
            _ => {}
        }
    }
}

// ---- each kind, with its negative control

#[test]
fn file_shared_mappings_carry_on() {
    // Mapped private, the writes no longer reach the file.
    let private = |d: &ImageDir, w: &Workload| {
        edit_vma(d, w, "fs_rw", |v| v.flags = libc::MAP_PRIVATE as u32)
    };
    carries_on(&["file_shared"], &private, "no longer shared");
}

#[test]
fn a_changed_shared_file_is_refused() {
    let _g = setup();
    let grow = |_: &ImageDir, w: &Workload| {
        let path = w.outfile.with_file_name("shared");
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        std::io::Write::write_all(&mut f, b"x").unwrap();
    };
    let e = cycle(&["file_shared"], Some(&grow)).unwrap_err();
    assert!(e.contains("/shared") && e.contains("bytes"), "{e}");
}

#[test]
fn protections_carry_on() {
    let writable = |d: &ImageDir, w: &Workload| {
        let at = w.fact_u64("pr_area") + 3 * 4096;
        edit_mm(d, w, |m| {
            let v = m.vmas.iter_mut().find(|v| v.start == at).unwrap();
            v.prot |= libc::PROT_WRITE as u32;
        })
    };
    carries_on(&["prot"], &writable, "protection changed");
}

#[test]
fn growsdown_areas_carry_on() {
    let flat = |d: &ImageDir, w: &Workload| {
        edit_vma(d, w, "growsdown", |v| {
            v.flags &= !(libc::MAP_GROWSDOWN as u32)
        })
    };
    carries_on(&["growsdown"], &flat, "gd flag");
}

#[test]
fn madvise_flags_carry_on() {
    let forget = |d: &ImageDir, w: &Workload| edit_vma(d, w, "madv_wipeonfork", |v| v.madv = None);
    carries_on(&["madvise"], &forget, "wipeonfork");
}

#[test]
fn guard_regions_carry_on() {
    let drop_guards =
        |d: &ImageDir, w: &Workload| edit_mm(d, w, |m| m.vmas.retain(|v| v.status != GUARD));
    carries_on(&["guard"], &drop_guards, "guard page");
}

#[test]
fn shared_anonymous_memory_carries_on() {
    carries_on(
        &["shmem"],
        &flip_shmem_byte,
        "shared anonymous memory changed",
    );
}

/// Flips a byte of the first dumped page of the `/dev/zero` inode.
fn flip_shmem_byte(d: &ImageDir, _: &Workload) {
    let inodes: Vec<pb::MemfdInodeEntry> = d.read_all(ImageFile::Memfd).unwrap();
    let i = inodes.iter().find(|i| i.name == b"/dev/zero").unwrap();
    let runs = d.shmem_pagemap(i.shmid).unwrap();
    let path = d.file_path(ImageFile::Pages(runs.pages_id().into()));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x5a;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn memfds_carry_on() {
    let unseal = |d: &ImageDir, _: &Workload| {
        let mut inodes: Vec<pb::MemfdInodeEntry> = d.read_all(ImageFile::Memfd).unwrap();
        for i in &mut inodes {
            i.seals = 0;
        }
        d.write_all(ImageFile::Memfd, &inodes).unwrap();
    };
    carries_on(&["memfd"], &unseal, "seals");
}

#[test]
fn locked_areas_carry_on() {
    let unlock = |d: &ImageDir, w: &Workload| {
        edit_vma(d, w, "mlock", |v| v.flags &= !(libc::MAP_LOCKED as u32))
    };
    carries_on(&["mlock"], &unlock, "no longer locked");
}

/// MAP_DROPPABLE memory (zdtm's maps02, maps11) comes back droppable.
#[test]
fn droppable_memory_carries_on() {
    let private = |d: &ImageDir, w: &Workload| {
        edit_vma(d, w, "droppable", |v| {
            v.flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32
        })
    };
    carries_on(&["droppable"], &private, "not droppable");
}

#[test]
fn every_kind_at_once_carries_on() {
    let _g = setup();
    cycle(&["all"], None).unwrap();
    leave_running(&["all"]);
}

/// Makes sure two 2 MiB huge pages can be had (raising
/// vm.nr_hugepages if need be), or fails saying why.
fn two_huge_pages() {
    huge_pages(2);
}

/// Makes sure `n` 2 MiB huge pages are free.
fn huge_pages(n: u64) {
    let free = || {
        std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("HugePages_Free:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    if free() >= n {
        return;
    }
    let path = "/proc/sys/vm/nr_hugepages";
    let now: u64 = std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = std::fs::write(path, (now + n - free()).to_string());
    assert!(
        free() >= n,
        "this test needs {n} free 2 MiB huge pages (vm.nr_hugepages), and the kernel gives fewer"
    );
}

#[test]
fn hugetlb_memory_carries_on() {
    two_huge_pages();
    let flip = |d: &ImageDir, w: &Workload| {
        let at = w.fact_u64("huge_private");
        let mut runs = d.pagemap(w.pid as u32).unwrap();
        let path = d.file_path(ImageFile::Pages(runs.pages_id().into()));
        while let Some(r) = runs.next_run().unwrap() {
            if r.vaddr <= at && at < r.end() {
                let off = r.pages_offset.unwrap() + (at - r.vaddr) + 4096 * 7 + 3;
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[off as usize] ^= 0x11;
                std::fs::write(&path, bytes).unwrap();
                return;
            }
        }
        panic!("the private hugetlb memory was not dumped");
    };
    carries_on(&["hugetlb"], &flip, "hugetlb memory changed");
}

/// A hugetlb memfd mapped shared and private (zdtm's memfd02-hugetlb):
/// the private mapping an area of the memfd (REGULAR|FILE_PRIVATE|MEMFD,
/// hugetlb), its own copy of the huge page it wrote dumped and written
/// back, its other page left the file's. The control flips a byte of the
/// private copy.
#[test]
fn a_hugetlb_memfd_mapped_private_carries_on() {
    huge_pages(3);
    let flip = |d: &ImageDir, w: &Workload| {
        let at = w.fact_u64("hugememfd_private");
        let m = mm(d, w);
        let v = vma(&m, at);
        assert_eq!(v.status, REGULAR | FILE_PRIVATE | MEMFD, "{v:?}");
        assert_eq!(
            v.flags,
            (libc::MAP_PRIVATE | libc::MAP_HUGETLB | 21 << 26) as u32,
            "{v:?}"
        );
        let mut runs = d.pagemap(w.pid as u32).unwrap();
        let path = d.file_path(ImageFile::Pages(runs.pages_id().into()));
        while let Some(r) = runs.next_run().unwrap() {
            if r.vaddr <= at && at < r.end() {
                assert!(
                    r.end() <= at + (2 << 20),
                    "only the page written is dumped: {r:?}"
                );
                let off = r.pages_offset.unwrap() + (at - r.vaddr) + 4096 * 9 + 1;
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[off as usize] ^= 0x11;
                std::fs::write(&path, bytes).unwrap();
                return;
            }
        }
        panic!("the private copy of the hugetlb memfd was not dumped");
    };
    carries_on(
        &["hugememfd"],
        &flip,
        "the private copy of the hugetlb memfd changed",
    );
}
