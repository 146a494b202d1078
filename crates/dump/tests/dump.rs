//! Dumps of real processes, checked against what the processes set up and
//! against /proc; refusals of what this slice does not cover; the target
//! carries on, intact, whatever happens.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcriu_dump::{Dump, Error};
use rcriu_images::pages::{PE_LAZY, PE_PRESENT, PageRun};
use rcriu_images::{ImageDir, ImageFile, pb};
use rcriu_test_support::{
    Counter, HANG_GUARD, ProcSnapshot, TempDir, Workload, no_inherited_fds, require_root, signal,
    trace_lock, wait_child, workload,
};

const PAGE: u64 = 4096;

/// Every image of a dump, decoded with rcriu-images' readers.
#[allow(dead_code)]
struct Images {
    dir: ImageDir,
    inventory: pb::InventoryEntry,
    pstree: Vec<pb::PstreeEntry>,
    core: pb::CoreEntry,
    ids: pb::TaskKobjIdsEntry,
    mm: pb::MmEntry,
    runs: Vec<PageRun>,
    fs: pb::FsEntry,
    files: Vec<pb::FileEntry>,
    fdinfo: Vec<pb::FdinfoEntry>,
    seccomp: pb::SeccompEntry,
    timens: pb::TimensEntry,
    stats: pb::StatsEntry,
}

fn read_images(path: &Path, pid: i32) -> Images {
    let dir = ImageDir::open(path).unwrap();
    let p = pid as u32;
    let ids = dir.ids(p).expect("ids");
    let mut pm = dir.pagemap(p).expect("pagemap");
    assert_eq!(pm.pages_id(), 1);
    let mut runs = Vec::new();
    while let Some(r) = pm.next_run().expect("pagemap entry") {
        runs.push(r);
    }
    let time_id = if ids.time_ns_id == dir.inventory().unwrap().root_ids.and_then(|r| r.time_ns_id)
    {
        0
    } else {
        ids.time_ns_id.unwrap()
    };
    Images {
        inventory: dir.inventory().expect("inventory"),
        pstree: dir.pstree().expect("pstree"),
        core: dir.core(p).expect("core"),
        mm: dir.mm(p).expect("mm"),
        fs: dir.fs(p).expect("fs"),
        files: dir.files().expect("files"),
        fdinfo: dir.fdinfo(ids.files_id).expect("fdinfo"),
        seccomp: dir.seccomp().expect("seccomp").expect("seccomp.img exists"),
        timens: dir.timens(time_id).expect("timens").expect("timens image"),
        stats: dir.stats_dump().expect("stats").expect("stats-dump exists"),
        runs,
        ids,
        dir,
    }
}

/// Starts a workload and waits until it has let go of the readiness pipe
/// (its stdout goes to /dev/null right after "ready").
fn start(name: &str, args: &[&str]) -> Workload {
    no_inherited_fds();
    let w = Workload::start(name, args);
    let start = Instant::now();
    while std::fs::read_link(format!("/proc/{}/fd/1", w.pid))
        .is_ok_and(|l| l != Path::new("/dev/null"))
    {
        assert!(start.elapsed() < HANG_GUARD, "{name} keeps its stdout pipe");
        std::thread::sleep(Duration::from_millis(1));
    }
    w
}

/// A path for images inside a fresh temporary directory (not created: the
/// dump creates it).
fn images_path(tag: &str) -> (TempDir, PathBuf) {
    let t = TempDir::new(tag);
    let p = t.path().join("images");
    (t, p)
}

/// The names of the files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn proc_state(pid: i32) -> char {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s.rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().chars().next())
        .unwrap_or('?')
}

/// Stops `pid` with SIGSTOP and waits until it is in the group stop.
fn stop(pid: i32) {
    signal(pid, libc::SIGSTOP);
    let start = Instant::now();
    while proc_state(pid) != 'T' {
        assert!(start.elapsed() < HANG_GUARD, "process {pid} does not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The build-id `readelf -n` prints for `bin`, as CRIU's u32 words.
fn readelf_build_id(bin: &Path) -> Vec<u32> {
    let out = Command::new("readelf").arg("-n").arg(bin).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("readelf shows no build-id for {}", bin.display()));
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    bytes
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(b)
        })
        .collect()
}

/// /proc/PID/maps as (start, end, prot), [vvar] and [vvar_vclock] as one.
fn maps(pid: i32) -> Vec<(u64, u64, u32, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut out: Vec<(u64, u64, u32, String)> = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (a, b) = f[0].split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let perm = f[1].as_bytes();
        let prot = u32::from(perm[0] == b'r')
            | u32::from(perm[1] == b'w') << 1
            | u32::from(perm[2] == b'x') << 2;
        let name = f.get(5).copied().unwrap_or("").to_owned();
        if name == "[vvar_vclock]"
            && let Some(last) = out.last_mut()
            && last.3 == "[vvar]"
        {
            last.1 = b;
            continue;
        }
        out.push((a, b, prot, name));
    }
    out
}

/// Reads `len` bytes of `pid`'s memory at `addr`.
fn mem(pid: i32, addr: u64, len: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, addr)
        .unwrap_or_else(|e| panic!("reading {len} bytes at {addr:#x}: {e}"));
    buf
}

fn pattern(i: u64, salt: u8) -> u8 {
    ((i.wrapping_mul(2654435761) as u32) >> 13) as u8 ^ salt
}

fn files_by_id(files: &[pb::FileEntry]) -> BTreeMap<u32, &pb::RegFileEntry> {
    files
        .iter()
        .map(|f| (f.id, f.reg.as_deref().expect("a regular file entry")))
        .collect()
}

fn name(r: &pb::RegFileEntry) -> String {
    String::from_utf8_lossy(&r.name).into_owned()
}

#[test]
fn images_hold_what_the_process_set_up() {
    require_root();
    let _g = trace_lock();
    let w = start("dump_state", &[]);
    let pid = w.pid;
    stop(pid);
    let before = ProcSnapshot::take(pid);
    let (_t, path) = images_path("state");
    let stats = Dump::new(pid)
        .images_dir(&path)
        .leave_running(true)
        .run()
        .unwrap_or_else(|e| panic!("dumping dump_state: {e}"));
    // Left as it was: stopped, and nothing of the dump in it. (compel
    // stops it again on release with a SIGSTOP that stays pending in the
    // stopped process, until SIGCONT discards it.)
    assert_eq!(proc_state(pid), 'T');
    // And a task stopped in sigsuspend() shows its own mask again until it
    // runs: the kernel restores it when the interrupted call returns, and
    // the call, restarted, sets the temporary one anew.
    let mut after = ProcSnapshot::take(pid);
    let sigsuspend_mask = before
        .status
        .iter()
        .find_map(|l| l.strip_prefix("SigBlk:\t"))
        .map(|m| u64::from_str_radix(m, 16).unwrap() | 1 << (libc::SIGUSR1 - 1));
    for l in after.status.iter_mut() {
        if l.as_str() == "ShdPnd:\t0000000000040000" {
            *l = "ShdPnd:\t0000000000000000".into();
        }
        if let (Some(m), Some(want)) = (l.strip_prefix("SigBlk:\t"), sigsuspend_mask)
            && u64::from_str_radix(m, 16).unwrap() == want
        {
            *l = before
                .status
                .iter()
                .find(|b| b.starts_with("SigBlk:"))
                .unwrap()
                .clone();
        }
    }
    // The same for the leader's line among the threads'.
    let leader_blk = format!("{pid} SigBlk:\t");
    let before_blk = before
        .threads
        .iter()
        .find(|l| l.starts_with(&leader_blk))
        .cloned();
    for l in after.threads.iter_mut() {
        if let (Some(m), Some(want), Some(b)) = (
            l.strip_prefix(leader_blk.as_str()),
            sigsuspend_mask,
            before_blk.as_ref(),
        ) && u64::from_str_radix(m, 16).unwrap() == want
        {
            *l = b.clone();
        }
    }
    let diff = before.diff(&after);
    assert!(diff.is_empty(), "the process changed: {diff:#?}");

    // The files CRIU 4.2 writes for such a process, mode 0600, in a
    // directory made 0700.
    let p = pid;
    let mut expect: Vec<String> = [
        "inventory.img".into(),
        "pstree.img".into(),
        format!("core-{p}.img"),
        format!("ids-{p}.img"),
        format!("mm-{p}.img"),
        format!("pagemap-{p}.img"),
        "pages-1.img".into(),
        format!("fs-{p}.img"),
        "files.img".into(),
        "fdinfo-2.img".into(),
        "seccomp.img".into(),
        "timens-0.img".into(),
        "stats-dump".into(),
        // And rcriu's manifest beside them, which CRIU ignores.
        "rcriu-manifest".into(),
    ]
    .into();
    expect.sort();
    assert_eq!(listing(&path), expect);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in &expect {
        let m = std::fs::metadata(path.join(f)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
    }
    let img = read_images(&path, pid);

    // inventory and ids: rcriu's own ids first, the task's kernel objects
    // numbered 2, its namespaces rcriu's.
    let inv = &img.inventory;
    assert_eq!(inv.img_version, 2);
    assert_eq!((inv.fdinfo_per_id, inv.ns_per_id), (Some(true), Some(true)));
    assert_eq!(inv.root_cg_set, Some(1));
    assert_eq!(inv.lsmtype, Some(0));
    assert!(inv.plugins_entry.is_some());
    assert_eq!(inv.dump_criu_run_id.as_ref().map(Vec::len), Some(36));
    let root = inv.root_ids.expect("root_ids");
    assert_eq!(
        (root.vm_id, root.files_id, root.fs_id, root.sighand_id),
        (1, 1, 1, 1)
    );
    assert_eq!(
        (
            root.pid_ns_id,
            root.net_ns_id,
            root.time_ns_id,
            root.mnt_ns_id
        ),
        (Some(1), Some(2), Some(5), Some(6))
    );
    let ids = img.ids;
    assert_eq!(
        (ids.vm_id, ids.files_id, ids.fs_id, ids.sighand_id),
        (2, 2, 2, 2)
    );
    let mut same_ns = root;
    (
        same_ns.vm_id,
        same_ns.files_id,
        same_ns.fs_id,
        same_ns.sighand_id,
    ) = (2, 2, 2, 2);
    assert_eq!(ids, same_ns, "the task shares rcriu's namespaces");

    // pstree: a session leader with its one thread.
    assert_eq!(
        img.pstree,
        vec![pb::PstreeEntry {
            pid: p as u32,
            ppid: 0,
            pgid: p as u32,
            sid: p as u32,
            threads: vec![p as u32],
            ..Default::default()
        }]
    );

    // Signal actions as printed before "ready", mask, timers, stack.
    let core = &img.core;
    let tc = core.tc.as_ref().unwrap();
    assert_eq!(tc.sigactions.len(), 62);
    let mut i = 0;
    for s in 1..=64 {
        if s == libc::SIGKILL || s == libc::SIGSTOP {
            continue;
        }
        let a = &tc.sigactions[i];
        i += 1;
        let want: Vec<u64> = w
            .fact(&format!("sig{s}"))
            .split(',')
            .map(|x| rcriu_test_support::parse_num(x).unwrap())
            .collect();
        assert_eq!(
            [a.sigaction, a.flags, a.restorer, a.mask][..],
            want[..],
            "signal {s}"
        );
    }
    assert_ne!(
        tc.sigactions[libc::SIGUSR2 as usize - 2].flags & libc::SA_SIGINFO as u64,
        0,
        "SIGUSR2's handler takes siginfo"
    );
    let bit = |s: i32| 1u64 << (s - 1);
    // (SIGUSR1 too when the workload waits in sigsuspend(): its own mask,
    // which sigsuspend's temporary one replaces only for the wait, as
    // CRIU 4.2 stores it.)
    assert_eq!(
        tc.blk_sigset & !bit(libc::SIGUSR1),
        bit(libc::SIGPIPE) | bit(libc::SIGRTMIN() + 7),
        "the blocked mask"
    );
    let timers = tc.timers.as_ref().unwrap();
    assert_eq!(timers.real.isec, 1000);
    assert!(timers.real.vsec > 0 && timers.real.vsec <= 10000);
    assert_eq!(timers.virt.isec, 500);
    assert_eq!((timers.prof.isec, timers.prof.vsec), (0, 0));
    assert_eq!(tc.task_state, 3, "stopped");
    assert_eq!(tc.stop_signo, Some(libc::SIGSTOP as u32));
    assert_eq!(tc.child_subreaper, Some(true));
    assert_eq!(tc.rlimits.as_ref().unwrap().rlimits.len(), 16);
    let th = core.thread_core.as_ref().unwrap();
    let sas = th.sas.unwrap();
    assert_eq!(sas.ss_sp, w.fact_u64("altstack_sp"));
    assert_eq!(sas.ss_size, w.fact_u64("altstack_size"));
    assert_eq!(th.pdeath_sig, Some(libc::SIGUSR2 as u32));
    let creds = th.creds.as_ref().unwrap();
    assert_eq!(creds.groups, [1, 2, 3]);
    assert_eq!(creds.no_new_privs, Some(1));
    assert_eq!(creds.cap_eff.len(), 2);
    assert_eq!(img.fs.umask, Some(0o27));
    assert_eq!(th.cg_set, Some(1));
    let rseq = th.rseq_entry.unwrap();
    assert_ne!(rseq.rseq_abi_pointer, 0, "glibc registers rseq");

    // Registers: stopped in its wait (pause or sigsuspend), stored as they resume, the syscall
    // to be restarted (ip back over `syscall`, ax the syscall number).
    let seized = rcriu_compel::Seized::seize(pid).unwrap();
    let ctx = rcriu_compel::ThreadCtx::capture(pid).unwrap();
    seized.release().unwrap();
    let live = ctx.regs;
    let gp = &core.thread_info.as_ref().unwrap().gpregs;
    let nr = live.orig_ax;
    assert!(
        nr == libc::SYS_pause as u64 || nr == libc::SYS_rt_sigsuspend as u64,
        "stopped in its wait, syscall {nr}"
    );
    assert_eq!(gp.ip, live.ip - 2, "ip moved back over the syscall");
    assert_eq!(gp.ax, nr, "ax holds the syscall again");
    assert_eq!(
        (gp.sp, gp.bx, gp.bp, gp.r12, gp.fs_base, gp.cs),
        (live.sp, live.bx, live.bp, live.r12, live.fs_base, live.cs)
    );
    let fp = &core.thread_info.as_ref().unwrap().fpregs;
    let xs = fp.xsave.as_ref().unwrap();
    assert_eq!(xs.xstate_bv, ctx.xstate.xstate_bv());
    let live_xmm: Vec<u32> = ctx.xstate.legacy().unwrap()[160..416]
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(fp.xmm_space, live_xmm);
    assert_eq!(core.thread_info.as_ref().unwrap().tls.len(), 3);

    // The areas: /proc's maps exactly, in order.
    let live_maps = maps(pid);
    let vmas: Vec<(u64, u64, u32)> = img
        .mm
        .vmas
        .iter()
        .map(|v| (v.start, v.end, v.prot))
        .collect();
    let want: Vec<(u64, u64, u32)> = live_maps.iter().map(|m| (m.0, m.1, m.2)).collect();
    assert_eq!(vmas, want);
    let status_of = |name: &str| -> Vec<u32> {
        live_maps
            .iter()
            .zip(&img.mm.vmas)
            .filter(|(m, _)| m.3 == name)
            .map(|(_, v)| v.status)
            .collect()
    };
    assert_eq!(status_of("[heap]"), [545]);
    assert_eq!(status_of("[vdso]"), [521]);
    assert_eq!(status_of("[vvar]"), [4609]);
    assert_eq!(status_of("[stack]"), [513]);

    // Files: the exe (mapped, and open at fd 42), the mapped file, the
    // libraries; /dev/null; cwd and root.
    let files = files_by_id(&img.files);
    let bin = workload("dump_state");
    let exe = files[&img.mm.exe_file_id];
    assert_eq!(Path::new(&name(exe)), bin);
    assert_eq!(exe.build_id, readelf_build_id(&bin));
    assert_eq!(exe.size, Some(std::fs::metadata(&bin).unwrap().len()));
    let fds: BTreeMap<u32, &pb::FdinfoEntry> = img.fdinfo.iter().map(|f| (f.fd, f)).collect();
    assert_eq!(fds.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 42]);
    let fd42 = files[&fds[&42].id];
    assert_eq!(Path::new(&name(fd42)), bin);
    assert_eq!(fd42.pos, 1234);
    assert_eq!(fd42.flags & libc::O_ACCMODE as u32, libc::O_RDONLY as u32);
    // As CRIU numbers them: the exe takes the id of the latest entry of
    // the same file (fd 42's), the areas mapping it the first one's.
    assert_eq!(fds[&42].id, img.mm.exe_file_id);
    let exe_area = img
        .mm
        .vmas
        .iter()
        .zip(&live_maps)
        .find(|(_, m)| Path::new(&m.3) == bin)
        .unwrap()
        .0;
    assert_eq!(exe_area.shmid, 1, "the first file entry");
    assert_eq!(name(files[&1]), name(fd42));
    assert_eq!(name(files[&fds[&1].id]), "/dev/null");
    let fmap_addr = w.fact_u64("fmap");
    let fmap = img
        .mm
        .vmas
        .iter()
        .find(|v| v.start == fmap_addr)
        .expect("the mapped file's area");
    assert_eq!(fmap.status, 65, "REGULAR|FILE_PRIVATE");
    assert_eq!(fmap.fdflags, Some(libc::O_RDWR as u32));
    assert!(name(files[&(fmap.shmid as u32)]).ends_with("/mapped"));
    let libc_area = img
        .mm
        .vmas
        .iter()
        .zip(&live_maps)
        .find(|(_, m)| m.3.contains("libc.so"))
        .expect("libc is mapped");
    let libc_file = files[&(libc_area.0.shmid as u32)];
    assert_eq!(
        libc_file.build_id,
        readelf_build_id(Path::new(&libc_area.1.3))
    );
    assert_eq!(
        name(files[&img.fs.cwd_id]),
        w.outfile.parent().unwrap().to_string_lossy()
    );
    assert_eq!(name(files[&img.fs.root_id]), "/");

    // Pages: every run is the process's memory, byte for byte.
    let pages = std::fs::read(path.join("pages-1.img")).unwrap();
    let mut total = 0;
    for r in &img.runs {
        let off = r.pages_offset.expect("present") as usize;
        let want = mem(pid, r.vaddr, r.len());
        assert!(
            pages[off..off + r.len() as usize] == want[..],
            "pages at {:#x} differ",
            r.vaddr
        );
        total += r.nr_pages;
    }
    assert_eq!(total * PAGE, pages.len() as u64);
    let st = img.stats.dump.as_ref().unwrap();
    assert_eq!(st.pages_written, total);
    assert_eq!(stats.pages_written, total);
    assert!(st.frozen_time > 0 && st.frozen_time >= st.memdump_time);
    let covered = |a: u64| {
        img.runs
            .iter()
            .find(|r| r.vaddr <= a && a < r.end())
            .copied()
    };
    // Anonymous memory, with its pattern; lazy unless sp is page aligned
    // (CRIU's rule).
    let region = w.fact_u64("region");
    let anon = w.fact_u64("anon");
    let lazy = if gp.sp.is_multiple_of(PAGE) {
        0
    } else {
        PE_LAZY
    };
    for pg in 0..region / PAGE {
        let r = covered(anon + pg * PAGE).expect("anonymous page dumped");
        assert_eq!(r.flags, PE_PRESENT | lazy);
    }
    let off = covered(anon).unwrap().pages_offset.unwrap() + (anon - covered(anon).unwrap().vaddr);
    assert!((0..region).all(|i| pages[(off + i) as usize] == pattern(i, 1)));
    // The private file mapping: only the pages written (the even ones).
    for pg in 0..region / PAGE {
        let r = covered(fmap_addr + pg * PAGE);
        if pg % 2 == 0 {
            assert_eq!(
                r.map(|r| r.flags),
                Some(PE_PRESENT),
                "page {pg} was written"
            );
        } else {
            assert!(r.is_none(), "page {pg} of the file mapping was only read");
        }
    }
    // PROT_NONE memory written before, and the vdso, whole; vvar never.
    assert!(covered(w.fact_u64("none")).is_some());
    let vdso = live_maps.iter().find(|m| m.3 == "[vdso]").unwrap();
    for a in (vdso.0..vdso.1).step_by(PAGE as usize) {
        assert_eq!(covered(a).map(|r| r.flags), Some(PE_PRESENT));
    }
    let vvar = live_maps.iter().find(|m| m.3 == "[vvar]").unwrap();
    assert!(covered(vvar.0).is_none());

    // Let it go on: it checks its own state.
    signal(pid, libc::SIGCONT);
    w.verdict().expect("the process is intact after the dump");
}

#[test]
fn compute_carries_on_after_dumps() {
    require_root();
    let _g = trace_lock();
    for mode in ["spin", "sleep"] {
        let w = start("compute", &[mode]);
        for i in 0..3 {
            let (_t, path) = images_path("compute");
            let s = Dump::new(w.pid)
                .images_dir(&path)
                .leave_running(true)
                .run()
                .unwrap_or_else(|e| panic!("{mode}, dump {i}: {e}"));
            assert!(s.pages_written > 0);
            let img = read_images(&path, w.pid);
            // A static binary: one mapped file, the executable; the rest
            // is /dev/null (opened once per standard fd), cwd and root.
            let names: Vec<String> = img
                .files
                .iter()
                .map(|f| name(f.reg.as_deref().unwrap()))
                .filter(|n| n != "/dev/null")
                .collect();
            assert_eq!(names.len(), 3, "exe, cwd, root: {names:?}");
            assert_eq!(Path::new(&names[0]), workload("compute"));
            assert_eq!(img.core.tc.as_ref().unwrap().task_state, 1);
        }
        w.verdict()
            .unwrap_or_else(|e| panic!("{mode}: the computation went wrong: {e}"));
    }
}

/// Starts the fixture counter (static) in a new session.
#[test]
fn counter_carries_on_after_a_dump() {
    require_root();
    let _g = trace_lock();
    let t = TempDir::new("counter");
    let counter = Counter::start(t.path());
    counter.lines_past(1);
    let (_t, path) = images_path("counter");
    Dump::new(counter.pid)
        .images_dir(&path)
        .leave_running(true)
        .run()
        .expect("dumping the counter");
    let n = counter.lines_past(0).len();
    let l = counter.lines_past(n + 2);
    let pid = counter.pid;
    drop(counter);
    assert!(l.iter().all(|x| !x.starts_with("CORRUPT")), "{l:?}");
    let nums: Vec<u64> = l.iter().map(|x| x.parse().unwrap()).collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    // Its 4 MiB buffer is in the dump.
    let img = read_images(&path, pid);
    assert!(img.runs.iter().map(|r| r.nr_pages).sum::<u64>() > 1024);
}

#[test]
fn a_dump_without_leave_running_kills_the_process() {
    require_root();
    let _g = trace_lock();
    let w = start("compute", &["sleep"]);
    let pid = w.pid;
    let (_t, path) = images_path("kill");
    Dump::new(pid).images_dir(&path).run().expect("dumping");
    let start = Instant::now();
    while proc_state(pid) != 'Z' {
        assert!(start.elapsed() < HANG_GUARD, "the process lives on");
        std::thread::sleep(Duration::from_millis(1));
    }
    let st = w.verdict().expect_err("killed, it gives no verdict");
    assert!(st.contains("0x9"), "killed by SIGKILL: {st}");
    // The images are complete.
    let img = read_images(&path, pid);
    assert!(!img.runs.is_empty());
}

/// A dump that must be refused, naming `what`: nothing written, the
/// process intact.
fn refused(w: Workload, what: &str) {
    let before = ProcSnapshot::take(w.pid);
    let (t, path) = images_path("refused");
    let e = Dump::new(w.pid)
        .images_dir(&path)
        .leave_running(false)
        .run()
        .expect_err("the dump must be refused");
    let msg = e.to_string();
    assert!(e.is_unsupported(), "{msg}");
    assert!(msg.contains(what), "the error names {what:?}: {msg}");
    assert!(msg.contains(&w.pid.to_string()), "{msg}");
    assert!(!path.exists(), "images were written: {:?}", listing(&path));
    drop(t);
    let diff = before.diff(&ProcSnapshot::take(w.pid));
    assert!(diff.is_empty(), "{what}: the process changed: {diff:#?}");
    w.verdict()
        .unwrap_or_else(|e| panic!("{what}: the process is not intact: {e}"));
}

#[test]
fn out_of_scope_resources_are_refused_by_name() {
    require_root();
    let _g = trace_lock();
    // The controls: the same workload holding nothing more dumps, and
    // with shared anonymous memory, a unix socket pair, a child or a UTS
    // namespace of its own too (no longer out of scope).
    for mode in ["none", "shm", "socket", "child", "uts"] {
        let w = start("dump_scope", &[mode]);
        let (_t, path) = images_path("scope");
        Dump::new(w.pid)
            .images_dir(&path)
            .leave_running(true)
            .run()
            .unwrap_or_else(|e| panic!("the control {mode} does not dump: {e}"));
        w.verdict().expect("the control carries on");
    }

    for (mode, what) in [
        ("lock", "a lock on"),
        ("vsock", "a socket of family AF_VSOCK"),
        ("userfaultfd", "userfaultfd (an anonymous inode)"),
        ("alarm", "a timerfd on clock 9 (an alarm clock)"),
    ] {
        refused(start("dump_scope", &[mode]), what);
    }
}

#[test]
fn another_cgroup_is_dumped() {
    require_root();
    let _g = trace_lock();
    let w = start("dump_scope", &["none"]);
    let cg = Path::new("/sys/fs/cgroup/freezer").join(format!("rcriu-dump-{}", w.pid));
    std::fs::create_dir(&cg).expect("making a freezer cgroup");
    std::fs::write(cg.join("cgroup.procs"), w.pid.to_string()).unwrap();
    let before = ProcSnapshot::take(w.pid);
    let (_t, path) = images_path("cgroup");
    let r = Dump::new(w.pid).images_dir(&path).leave_running(true).run();
    let after = ProcSnapshot::take(w.pid);
    // Back where it was, for the verdict and the cleanup.
    let home = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let freezer = home
        .lines()
        .find_map(|l| l.split_once(":freezer:").map(|(_, p)| p.to_owned()))
        .unwrap();
    std::fs::write(
        Path::new("/sys/fs/cgroup/freezer")
            .join(freezer.trim_start_matches('/'))
            .join("cgroup.procs"),
        w.pid.to_string(),
    )
    .unwrap();
    std::fs::remove_dir(&cg).unwrap();
    r.expect("a process in a cgroup of its own is dumped");
    let dir = ImageDir::open(&path).unwrap();
    // rcriu's set is 1, the process's 2, which cgroup.img describes.
    assert_eq!(dir.inventory().unwrap().root_cg_set, Some(1));
    let core = dir.core(w.pid as u32).unwrap();
    assert_eq!(core.thread_core.unwrap().cg_set, Some(2));
    let cgi: pb::CgroupEntry = dir.read_one(ImageFile::Cgroup).unwrap();
    assert_eq!(cgi.sets.len(), 1);
    assert_eq!(cgi.sets[0].id, 2);
    let want = format!("/rcriu-dump-{}", w.pid);
    assert!(
        cgi.sets[0]
            .ctls
            .iter()
            .any(|m| m.name == b"freezer" && m.path == want.as_bytes()),
        "{:?}",
        cgi.sets[0]
    );
    // Without --freeze-cgroup, no freezer.state.
    let fr = cgi
        .controllers
        .iter()
        .find(|c| c.cnames == [b"freezer".to_vec()])
        .unwrap();
    assert_eq!(fr.dirs[0].dir_name, want.as_bytes()[1..].to_vec());
    assert!(
        fr.dirs[0]
            .properties
            .iter()
            .all(|p| p.name != b"freezer.state")
    );
    let diff = before.diff(&after);
    assert!(diff.is_empty(), "{diff:#?}");
    w.verdict().expect("intact");
}

#[test]
fn a_traced_process_is_refused() {
    require_root();
    let _g = trace_lock();
    let w = start("dump_scope", &["none"]);
    let tracer = Workload::start("tracer", &[&w.pid.to_string()]);
    let (_t, path) = images_path("traced");
    let e = Dump::new(w.pid)
        .images_dir(&path)
        .run()
        .expect_err("refused");
    let msg = format!(
        "{e}: {}",
        std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(
        msg.contains(&format!("traced by process {}", tracer.pid)),
        "{msg}"
    );
    assert!(listing(&path).is_empty());
    tracer.verdict().expect("the tracer lets go");
    w.verdict().expect("intact");
}

#[test]
fn a_shell_job_needs_shell_job() {
    require_root();
    let _g = trace_lock();
    // Not in a session of its own: started directly, in ours.
    let t = TempDir::new("shell-job");
    let out = t.path().join("verdict");
    no_inherited_fds();
    let mut child = Command::new(workload("dump_scope"))
        .arg(&out)
        .arg("none")
        .current_dir(t.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let pid = child.id() as i32;
    let start = Instant::now();
    while std::fs::read_link(format!("/proc/{pid}/fd/1")).is_ok_and(|l| l != Path::new("/dev/null"))
    {
        assert!(start.elapsed() < HANG_GUARD, "it keeps its stdout pipe");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (_t, path) = images_path("shell-job");
    let e = Dump::new(pid).images_dir(&path).run().expect_err("refused");
    assert!(matches!(e, Error::NotSessionLeader { .. }), "{e}");
    assert!(e.to_string().contains("--shell-job"), "{e}");
    assert!(listing(&path).is_empty());
    Dump::new(pid)
        .images_dir(&path)
        .shell_job(true)
        .leave_running(true)
        .run()
        .expect("a shell job dumps with --shell-job");
    let img = read_images(&path, pid);
    let me = std::process::id() as i32;
    // SAFETY: getsid takes an integer.
    let sid = unsafe { libc::getsid(me) };
    assert_eq!(img.pstree[0].sid, sid as u32);
    signal(pid, libc::SIGUSR1);
    assert_eq!(wait_child(child).unwrap(), 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n");
}

#[test]
fn a_process_in_its_own_time_namespace_gets_its_timens_image() {
    require_root();
    let _g = trace_lock();
    no_inherited_fds();
    // unshare(1) makes the namespace (clocks 1000 s and 2000 s ahead) and
    // forks the workload into it.
    let t = TempDir::new("timens");
    let out = t.path().join("verdict");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--time",
        "--monotonic",
        "1000",
        "--boottime",
        "2000",
        "--fork",
    ])
    .arg(workload("dump_scope"))
    .arg(&out)
    .arg("none")
    .current_dir(t.path())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut unshare = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(unshare.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let up = unshare.id();
    let pid: i32 = std::fs::read_to_string(format!("/proc/{up}/task/{up}/children"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let start = Instant::now();
    while std::fs::read_link(format!("/proc/{pid}/fd/1")).is_ok_and(|l| l != Path::new("/dev/null"))
    {
        assert!(start.elapsed() < HANG_GUARD);
        std::thread::sleep(Duration::from_millis(1));
    }

    let (_t, path) = images_path("timens");
    Dump::new(pid)
        .images_dir(&path)
        .shell_job(true)
        .leave_running(true)
        .run()
        .expect("dumping a process in a time namespace");
    let img = read_images(&path, pid);
    let root_time = img.inventory.root_ids.unwrap().time_ns_id;
    assert_eq!(root_time, Some(5));
    assert_eq!(
        img.ids.time_ns_id,
        Some(9),
        "the next id after rcriu's eight"
    );
    let files = listing(&path);
    assert!(files.contains(&"timens-9.img".to_string()), "{files:?}");
    assert!(!files.contains(&"timens-0.img".to_string()), "{files:?}");
    // The clocks as the process sees them: the host's plus the offsets.
    let now = |c| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: the kernel writes one timespec to `ts`.
        unsafe { libc::clock_gettime(c, &mut ts) };
        ts.tv_sec
    };
    let mono = img.timens.monotonic.tv_sec as i64 - now(libc::CLOCK_MONOTONIC);
    let boot = img.timens.boottime.tv_sec as i64 - now(libc::CLOCK_BOOTTIME);
    assert!((998..=1000).contains(&mono), "monotonic {mono} s ahead");
    assert!((1998..=2000).contains(&boot), "boottime {boot} s ahead");

    signal(pid, libc::SIGUSR1);
    assert_eq!(wait_child(unshare).unwrap(), 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n");
}
