//! The corruption campaign: every file of a real dump truncated at its
//! entry boundaries, bit-flipped, swapped with another dump's, removed,
//! replaced by a FIFO, by a symbolic link, by a hard link. With the
//! manifest the dump wrote, each is refused before anything starts (an
//! error naming the file, no process left) unless it changed nothing;
//! without it (as a dump by CRIU) a restore never hangs nor crashes.
//!
//! `RCRIU_CORRUPTION_ALL=1` runs the manifest-less pass on every variant
//! (by default on every third).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcriu::images::manifest::MANIFEST;
use rcriu_test_support::{
    TempDir, Workload, become_subreaper, no_inherited_fds, require_root, trace_lock, wait_exit,
};

fn rcriu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rcriu"))
}

/// How long a restore may take before it is called hung.
const HUNG: Duration = Duration::from_secs(60);

fn dump(pid: i32, dir: &Path) {
    dump_with(pid, dir, &[]);
}

fn dump_with(pid: i32, dir: &Path, extra: &[&str]) {
    let out = rcriu()
        .args(["dump", "-R", "-t", &pid.to_string(), "-D"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("running rcriu dump");
    assert!(out.status.success(), "{out:?}");
}

/// What a restore did: its exit status (None: hung, killed), stderr.
struct Outcome {
    status: Option<std::process::ExitStatus>,
    stderr: String,
}

fn restore(dir: &Path) -> Outcome {
    restore_with(dir, &[], None)
}

/// A restore with options `extra`, and `key` as the restore's fd 9.
fn restore_with(dir: &Path, extra: &[&str], key: Option<&std::fs::File>) -> Outcome {
    let mut cmd = rcriu();
    if let Some(k) = key {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = k.as_raw_fd();
        // SAFETY: between fork and exec, one async-signal-safe dup2 of an
        // fd the parent holds open.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 9) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
    }
    let mut child = cmd
        .args(["restore", "-d", "-D"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running rcriu restore");
    let mut err = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for rcriu") {
            break Some(st);
        }
        if start.elapsed() > HUNG {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Outcome {
        status,
        stderr: reader.join().unwrap_or_default(),
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: a plain kill(2).
    unsafe { libc::kill(pid, sig) };
}

/// Ends whatever a restore left with `pid` (a subreaper's child).
fn none_left(pid: i32) {
    if Path::new(&format!("/proc/{pid}")).exists() {
        signal(pid, libc::SIGKILL);
        let _ = wait_exit(pid);
    }
}

/// The offsets of the entry boundaries of an image (after its magic, and
/// before and after each entry's size word), as far as its framing goes.
fn boundaries(bytes: &[u8]) -> Vec<usize> {
    let word = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let mut v = vec![0];
    let mut off = match word(0) {
        Some(0x5456_4319 | 0x5510_5940) => 8,
        Some(_) => 4,
        None => return v,
    };
    v.push(off);
    while let Some(n) = word(off) {
        let end = off + 4 + n as usize;
        if end > bytes.len() {
            break;
        }
        v.push(off + 4);
        v.push(end);
        off = end;
    }
    v
}

/// One change to one file.
#[derive(Clone, Debug)]
enum Change {
    Truncate(u64),
    Flip(u64, u8),
    Swap,
    Remove,
    Fifo,
    Symlink,
    HardLink,
}

/// The changes to make to `name` (of `len` bytes; its counterpart in the
/// other dump is `other`).
fn changes(bytes: &[u8], other_exists: bool) -> Vec<Change> {
    let len = bytes.len() as u64;
    let mut v = Vec::new();
    let mut cuts = boundaries(bytes);
    if cuts.len() <= 2 {
        // A raw file: a few cuts through it.
        cuts.extend([1, len as usize / 2, len as usize / 4 * 3]);
    }
    // At most a dozen cuts, spread over the file, and each one byte on.
    let step = cuts.len().div_ceil(12).max(1);
    for &c in cuts.iter().step_by(step) {
        for c in [c as u64, c as u64 + 1] {
            if c < len {
                v.push(Change::Truncate(c));
            }
        }
    }
    for k in 0..6u64 {
        if len > 0 {
            v.push(Change::Flip(
                (len * k / 6 + k % 3).min(len - 1),
                (k % 8) as u8,
            ));
        }
    }
    if other_exists {
        v.extend([Change::Swap, Change::Symlink, Change::HardLink]);
    }
    v.extend([Change::Remove, Change::Fifo]);
    v
}

fn apply(path: &Path, other: &Path, c: &Change) {
    match *c {
        Change::Truncate(n) => {
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.set_len(n).unwrap();
        }
        Change::Flip(off, bit) => {
            let mut b = std::fs::read(path).unwrap();
            b[off as usize] ^= 1 << bit;
            std::fs::write(path, b).unwrap();
        }
        Change::Swap => {
            std::fs::copy(other, path).unwrap();
        }
        Change::Remove => std::fs::remove_file(path).unwrap(),
        Change::Fifo => {
            std::fs::remove_file(path).unwrap();
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a plain mkfifo(3) of a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        }
        Change::Symlink => {
            std::fs::remove_file(path).unwrap();
            std::os::unix::fs::symlink(other, path).unwrap();
        }
        Change::HardLink => {
            std::fs::remove_file(path).unwrap();
            std::fs::hard_link(other, path).unwrap();
        }
    }
}

/// Puts `name` back as the dump wrote it.
fn put_back(dir: &Path, pristine: &Path, name: &str) {
    let path = dir.join(name);
    if let Ok(m) = std::fs::symlink_metadata(&path)
        && (m.file_type().is_fifo() || m.file_type().is_symlink() || m.is_file())
    {
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::copy(pristine.join(name), &path).unwrap();
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for n in files(from) {
        std::fs::copy(from.join(&n), to.join(&n)).unwrap();
    }
}

/// The verdict of a restored `trust` (as `Workload::verdict`).
fn verdict_of(pid: i32, outfile: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(outfile);
    signal(pid, libc::SIGUSR1);
    let status = wait_exit(pid)?;
    let text = std::fs::read_to_string(outfile).unwrap_or_default();
    if status == 0 && text.trim() == "PASS" {
        Ok(())
    } else {
        Err(format!("exit status {status:#x}: {}", text.trim()))
    }
}

#[test]
fn every_corruption_is_refused_with_the_manifest_and_never_hangs_without() {
    let _g = trace_lock();
    require_root();
    no_inherited_fds();
    become_subreaper();
    let home = TempDir::new("corruption");
    let (a, b, work) = (
        home.path().join("a"),
        home.path().join("b"),
        home.path().join("work"),
    );
    // Two dumps of one process whose threads compute meanwhile: their
    // files have the same names and (mostly) other contents.
    let mut w = Workload::start("trust", &["8", "2", "restored"]);
    w.wait_in("sigsuspend");
    let pid = w.pid;
    dump(pid, &a);
    dump(pid, &b);
    signal(pid, libc::SIGKILL);
    w.reap();
    let outfile: PathBuf = w.outfile.clone();
    assert!(files(&a).contains(&MANIFEST.to_string()));
    // The control: the pristine dump restores, whole.
    copy_dir(&a, &work);
    let o = restore(&work);
    assert!(
        o.status.is_some_and(|s| s.success()),
        "the pristine dump: {}",
        o.stderr
    );
    verdict_of(pid, &outfile).expect("the pristine dump restores whole");

    let all = std::env::var_os("RCRIU_CORRUPTION_ALL").is_some();
    let (mut refused, mut unchanged_ok, mut plain_runs, mut plain_restored) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut n = 0;
    for name in files(&a) {
        let bytes = std::fs::read(a.join(&name)).unwrap();
        let other = b.join(&name);
        for c in changes(&bytes, other.exists()) {
            n += 1;
            let what = format!("{name} {c:?}");
            let path = work.join(&name);
            apply(&path, &other, &c);
            // Nothing the restore reads changed: the file is as it was, or
            // the manifest went (then the dump restores unchecked, as
            // CRIU's: its images are whole).
            let same = (std::fs::metadata(&path)
                .ok()
                .filter(|m| m.is_file())
                .and_then(|_| std::fs::read(&path).ok())
                .is_some_and(|now| now == bytes)
                && !matches!(c, Change::Symlink))
                || (name == MANIFEST && matches!(c, Change::Remove));
            // With the manifest.
            let o = restore(&work);
            match o.status {
                None => failures.push(format!("{what}: the restore hung")),
                Some(s) if s.success() && same => {
                    // Nothing changed (a file equal in both dumps).
                    match verdict_of(pid, &outfile) {
                        Ok(()) => unchanged_ok += 1,
                        Err(e) => failures.push(format!("{what}: restored broken: {e}")),
                    }
                }
                Some(s) if s.success() => {
                    failures.push(format!("{what}: restored despite the change"));
                }
                Some(s) => {
                    // A change to the manifest shows as a file that is not
                    // what it says (or as a bad manifest).
                    let named = o.stderr.contains(&name)
                        || (name == MANIFEST
                            && (o.stderr.contains("the images are not the ones")
                                || o.stderr.contains(MANIFEST)));
                    if s.code() != Some(1) || o.stderr.contains("panicked") {
                        failures.push(format!("{what}: {s}: {}", o.stderr));
                    } else if !named {
                        failures.push(format!("{what}: the error names no file: {}", o.stderr));
                    } else if Path::new(&format!("/proc/{pid}")).exists() {
                        failures.push(format!("{what}: refused, yet a process is left"));
                    } else {
                        refused += 1;
                    }
                }
            }
            none_left(pid);
            // Without the manifest (a CRIU dump): never a hang or a crash.
            if name != MANIFEST && (all || n % 3 == 0) {
                let _ = std::fs::remove_file(work.join(MANIFEST));
                plain_runs += 1;
                let o = restore(&work);
                match o.status {
                    None => failures.push(format!("{what}, no manifest: the restore hung")),
                    Some(s) if o.stderr.contains("panicked") || s.code() == Some(101) => {
                        failures.push(format!("{what}, no manifest: crashed: {}", o.stderr));
                    }
                    Some(s) if s.success() => plain_restored += 1,
                    Some(_) => {}
                }
                none_left(pid);
                put_back(&work, &a, MANIFEST);
            }
            put_back(&work, &a, &name);
        }
    }
    eprintln!(
        "corruption: {n} variants of {} files; with the manifest {refused} refused, \
         {unchanged_ok} unchanged and restored whole; without it {plain_runs} restores \
         ({plain_restored} went through), none hung or crashed: {} failures",
        files(&a).len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `--encrypt`: every image of the dump, pages included, encrypted and
/// authenticated; restored whole with its key (from a file, or from a
/// descriptor), and refused by name, before the process runs (a large
/// pages file's chunks are checked as they are written into it), without
/// it, with another key, unencrypted images with a key, a flipped byte,
/// a pages file cut short (inside a chunk or at a chunk boundary), a
/// file or the manifest from another encrypted dump with the same key,
/// and a missing manifest. The controls: the pristine dumps restore.
#[test]
fn encrypted_dumps_restore_with_their_key_alone() {
    use rcriu::images::crypt::{CHUNK, HEADER_LEN, MAGIC};
    let _g = trace_lock();
    require_root();
    no_inherited_fds();
    become_subreaper();
    let home = TempDir::new("encrypted");
    let p = |n: &str| home.path().join(n);
    let (a, b, plain, work) = (p("a"), p("b"), p("plain"), p("work"));
    std::fs::write(p("key"), format!("{}\n", "5a".repeat(32))).unwrap();
    std::fs::write(p("wrong"), [0xa5u8; 32]).unwrap();
    let key_file = p("key");
    let key: &[&str] = &["--encrypt-key-file", key_file.to_str().unwrap()];
    let wrong_file = p("wrong");
    let wrong: &[&str] = &["--encrypt-key-file", wrong_file.to_str().unwrap()];
    let encrypted = [&["--encrypt"][..], key].concat();

    // 72 MiB: past the size for which the dump reserves room for the
    // pages, which an encrypted dump reserves in memory, for the parasite
    // and a helper thread to fill.
    let mut w = Workload::start("trust", &["72", "2", "restored"]);
    w.wait_in("sigsuspend");
    let pid = w.pid;
    dump_with(pid, &a, &encrypted);
    dump_with(pid, &b, &encrypted);
    dump(pid, &plain);
    signal(pid, libc::SIGKILL);
    w.reap();
    let outfile: PathBuf = w.outfile.clone();
    // Every file but the manifest is encrypted.
    let names = files(&a);
    assert!(names.contains(&MANIFEST.to_string()));
    for name in names.iter().filter(|n| *n != MANIFEST) {
        let bytes = std::fs::read(a.join(name)).unwrap();
        assert!(bytes.starts_with(MAGIC), "{name} is not encrypted");
    }
    let pages = names
        .iter()
        .find(|n| n.starts_with("pages-"))
        .expect("a pages image")
        .clone();
    let core = format!("core-{pid}.img");

    copy_dir(&a, &work);
    let refused = |extra: &[&str], says: &str| {
        let o = restore_with(&work, extra, None);
        assert!(
            o.status.is_some_and(|s| s.code() == Some(1)) && o.stderr.contains(says),
            "expected a refusal saying {says:?}: {:?} {}",
            o.status,
            o.stderr
        );
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "refused ({says}), yet a process is left"
        );
    };
    refused(&[], "are encrypted: restoring them needs their key");
    refused(
        wrong,
        "rcriu-manifest is not authenticated by the key given",
    );
    // A plain dump is not taken for an encrypted one when a key is given.
    let o = restore_with(&plain, key, None);
    assert!(o.stderr.contains("are not encrypted"), "{}", o.stderr);
    // A byte of the pages flipped.
    let path = work.join(&pages);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len() as u64;
    assert!(len > HEADER_LEN + 2 * CHUNK, "{pages} spans chunks");
    bytes[(len / 2) as usize] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    refused(key, &pages);
    // Cut short, inside a chunk and at a chunk boundary.
    for cut in [len - 1000, HEADER_LEN + CHUNK + 16] {
        put_back(&work, &a, &pages);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(cut))
            .unwrap();
        refused(key, &pages);
    }
    put_back(&work, &a, &pages);
    // A file of the other dump, under its own name, with the same key;
    // then the other dump's manifest over this dump's files.
    std::fs::copy(b.join(&core), work.join(&core)).unwrap();
    refused(key, &core);
    put_back(&work, &a, &core);
    std::fs::copy(b.join(MANIFEST), work.join(MANIFEST)).unwrap();
    refused(key, "the images are not the ones the dump wrote");
    // Without the manifest.
    std::fs::remove_file(work.join(MANIFEST)).unwrap();
    refused(&[], "are encrypted: restoring them needs their key");
    refused(key, "has no manifest of encrypted images");
    put_back(&work, &a, MANIFEST);

    // The controls: each pristine dump restores whole, with its key from
    // a file, then from a descriptor.
    let o = restore_with(&work, key, None);
    assert!(o.status.is_some_and(|s| s.success()), "{}", o.stderr);
    verdict_of(pid, &outfile).expect("the encrypted dump restores whole");
    let fd = std::fs::File::open(&key_file).unwrap();
    let o = restore_with(&b, &["--encrypt-key-fd", "9"], Some(&fd));
    assert!(o.status.is_some_and(|s| s.success()), "{}", o.stderr);
    verdict_of(pid, &outfile).expect("the other encrypted dump restores whole");
}

/// A file written over after the manifest (another dump into the same
/// directory, as CRIU's leaves rcriu's manifest behind) is still refused,
/// and the error says what likely happened and what to do. The control:
/// the same bytes with the file's time put back before the manifest's (a
/// corruption in place) get no such hint. With `RCRIU_TEST_CRIU`, a real
/// CRIU 4.2 dump into the directory of rcriu's.
#[test]
fn a_dump_written_over_by_another_engine_is_refused_saying_so() {
    let _g = trace_lock();
    require_root();
    no_inherited_fds();
    become_subreaper();
    let home = TempDir::new("overwritten");
    let (a, b, c) = (
        home.path().join("a"),
        home.path().join("b"),
        home.path().join("c"),
    );
    let mut w = Workload::start("trust", &["8", "2", "restored"]);
    w.wait_in("sigsuspend");
    let pid = w.pid;
    dump(pid, &a);
    dump(pid, &b);
    let criu = std::env::var_os("RCRIU_TEST_CRIU");
    if let Some(criu) = &criu {
        // CRIU 4.2 dumps into a directory of rcriu's (killing the process).
        copy_dir(&a, &c);
        let st = Command::new(criu)
            .args(["dump", "-t", &pid.to_string(), "-D"])
            .arg(&c)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("running CRIU");
        assert!(st.success(), "CRIU's dump");
    }
    signal(pid, libc::SIGKILL);
    w.reap();
    // A file the two dumps wrote differently.
    let name = files(&a)
        .into_iter()
        .filter(|n| n != MANIFEST)
        .find(|n| std::fs::read(a.join(n)).ok() != std::fs::read(b.join(n)).ok())
        .expect("the two dumps differ somewhere");
    let manifest_time = std::fs::metadata(a.join(MANIFEST))
        .and_then(|m| m.modified())
        .expect("the manifest's time");
    // Written over a moment later, as a second dump would.
    while std::time::SystemTime::now() <= manifest_time {
        std::thread::yield_now();
    }
    std::fs::copy(b.join(&name), a.join(&name)).expect("writing over an image");
    let hint = "remove rcriu-manifest to restore it unchecked";
    let o = restore(&a);
    assert!(
        o.status.is_some_and(|s| s.code() == Some(1)) && o.stderr.contains(&name),
        "refused, naming the file: {}",
        o.stderr
    );
    assert!(o.stderr.contains(hint), "the hint: {}", o.stderr);
    none_left(pid);
    // The control: the same bytes, as if changed in place long ago.
    let f = std::fs::File::options()
        .write(true)
        .open(a.join(&name))
        .expect("opening the image");
    f.set_modified(manifest_time - Duration::from_secs(60))
        .expect("putting its time back");
    drop(f);
    let o = restore(&a);
    assert!(
        o.status.is_some_and(|s| s.code() == Some(1)) && o.stderr.contains(&name),
        "the control is refused too: {}",
        o.stderr
    );
    assert!(
        !o.stderr.contains(hint),
        "no hint for a corruption: {}",
        o.stderr
    );
    none_left(pid);
    if criu.is_some() {
        let o = restore(&c);
        assert!(
            o.status.is_some_and(|s| s.code() == Some(1)) && o.stderr.contains(hint),
            "after CRIU's dump: {}",
            o.stderr
        );
        none_left(pid);
    } else {
        eprintln!("RCRIU_TEST_CRIU is not set: CRIU's own dump into the directory is not tried");
    }
}
