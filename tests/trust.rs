//! Trust under fire: `rcriu dump` killed (SIGKILL), interrupted (SIGTERM)
//! at random instants, and the target stopped and continued (SIGSTOP,
//! SIGCONT) at random instants of its dump; `rcriu restore` killed at
//! random instants. After each blow the target is untraced, in the state
//! job control says (stopped if stopped and not continued since, running
//! otherwise), with the same maps, signal state, fds and threads; every
//! so many blows it checks its own memory and its threads' registers; a
//! killed restore leaves no process, or a whole one.
//!
//! Bounded for CI (a few hundred blows); `RCRIU_STRESS_TRIALS=N` sets how
//! many of each kind (SIGKILL, SIGTERM, STOP+CONT, STOP) each test deals,
//! `RCRIU_STRESS_KINDS=kill,term,stopcont,stop` which kinds,
//! `RCRIU_STRESS_SEED` replays a run. Each test prints its tally.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcriu_test_support::{
    HANG_GUARD, SETTLE, TempDir, Workload, become_subreaper, no_inherited_fds, require_root,
    status_lines, trace_lock, wait_exit,
};

fn rcriu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rcriu"))
}

/// A small random number generator (xorshift), seeded for replays.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("RCRIU_STRESS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        eprintln!("trust: RCRIU_STRESS_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A duration in `[0, max)`.
    fn below(&mut self, max: Duration) -> Duration {
        let n = max.as_nanos().max(1) as u64;
        Duration::from_nanos(self.next() % n)
    }
}

fn trials() -> usize {
    std::env::var("RCRIU_STRESS_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// What a dump must leave as it found.
#[derive(Debug, PartialEq, Eq)]
struct Looks {
    maps: String,
    status: Vec<String>,
    fds: Vec<(String, String)>,
    threads: Vec<String>,
}

fn looks(pid: i32) -> Looks {
    let mut fds: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let l = std::fs::read_link(e.path()).ok()?;
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        l.to_string_lossy().into_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    let mut threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    threads.sort();
    Looks {
        maps: std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default(),
        // SigPnd is left out: a thread between two steps may hold a
        // signal for an instant.
        status: status_lines(
            pid,
            &[
                "ShdPnd",
                "SigBlk",
                "SigIgn",
                "SigCgt",
                "CapEff",
                "NoNewPrivs",
                "Seccomp",
            ],
        ),
        fds,
        threads,
    }
}

fn state(pid: i32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.to_owned()))
        .and_then(|r| r.trim_start().chars().next())
        .unwrap_or('?')
}

/// Whether `pid` is out of rcriu's hands: untraced, alive, and none of
/// its threads exiting (`PF_EXITING`) or with a SIGKILL pending (what
/// `PTRACE_O_EXITKILL` sends when rcriu dies holding it).
fn released(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let kill_bit = 1u64 << (libc::SIGKILL - 1);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    for t in tasks.flatten() {
        let dir = t.path();
        let (Ok(status), Ok(stat)) = (
            std::fs::read_to_string(dir.join("status")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            return false;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let pending = |name: &str| u64::from_str_radix(&field(name), 16).unwrap_or(u64::MAX);
        // After the comm: state, ppid, pgrp, session, tty, tpgid, flags.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("?");
        let flags: u64 = fields
            .nth(5)
            .and_then(|f| f.parse().ok())
            .unwrap_or(u64::MAX);
        if field("TracerPid:") != "0"
            || pending("SigPnd:") & kill_bit != 0
            || pending("ShdPnd:") & kill_bit != 0
            || flags & PF_EXITING != 0
            || matches!(state, "Z" | "X" | "?")
        {
            return false;
        }
    }
    true
}

/// Whether `pid` is [`released`] and stays so for 100 ms: a process
/// being killed (its 64 MiB unmapped) is gone well within that.
fn stays_released(pid: i32) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(100) {
        if !released(pid) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

fn tracer(pid: i32) -> String {
    status_lines(pid, &["TracerPid"]).join("")
}

/// Waits until `ok()` holds, for up to `SETTLE`; returns whether it did.
fn within_settle(mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ok() {
            return true;
        }
        if start.elapsed() > SETTLE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn in_sigsuspend(pid: i32) -> bool {
    state(pid) == 'S'
        && std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .is_ok_and(|w| w.contains("sigsuspend"))
}

/// Why `pid` does not look as `before` (and is not untraced and in
/// `want` state) once settled; `None` when it does. A stopped target is
/// continued first; the comparison waits for the main thread back in its
/// sigsuspend (its signal mask shows sigsuspend's meanwhile).
fn harm(pid: i32, before: &Looks, want: &[char]) -> Option<String> {
    if !within_settle(|| tracer(pid).ends_with("\t0")) {
        return Some(format!("still traced: {}", tracer(pid)));
    }
    if !within_settle(|| want.contains(&state(pid))) {
        return Some(format!("state {} (wanted {want:?})", state(pid)));
    }
    if want == ['T'] {
        signal(pid, libc::SIGCONT);
        if !within_settle(|| matches!(state(pid), 'R' | 'S')) {
            return Some(format!("no longer continues: {}", state(pid)));
        }
    }
    if !within_settle(|| in_sigsuspend(pid) && looks(pid) == *before) {
        let now = looks(pid);
        let mut d = Vec::new();
        if now.maps != before.maps {
            d.push(format!("maps:\n{}\nnow:\n{}", before.maps, now.maps));
        }
        if now.status != before.status {
            d.push(format!("status {:?} now {:?}", before.status, now.status));
        }
        if now.fds != before.fds {
            d.push(format!("fds {:?} now {:?}", before.fds, now.fds));
        }
        if now.threads != before.threads {
            d.push(format!(
                "threads {:?} now {:?}",
                before.threads, now.threads
            ));
        }
        return Some(d.join("\n"));
    }
    None
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: a plain kill(2); a process gone meanwhile just fails.
    unsafe { libc::kill(pid, sig) };
}

fn start_dump(pid: i32, dir: &Path) -> Child {
    let _ = std::fs::remove_dir_all(dir);
    rcriu()
        .args(["dump", "-R", "-t", &pid.to_string(), "-D"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting rcriu dump")
}

fn finish(child: Child) -> i32 {
    rcriu_test_support::wait_child(child).expect("rcriu ends")
}

/// How long a whole dump of the target takes (the span blows fall in).
fn dump_time(pid: i32, dir: &Path) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let st = finish(start_dump(pid, dir));
        assert_eq!(st, 0, "a plain dump of {pid} succeeds");
        best = best.min(t.elapsed());
    }
    best
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blow {
    Kill,
    Term,
    StopCont,
    Stop,
}

#[derive(Debug, Default)]
struct Tally {
    blows: [usize; 4],
    /// Dumps that got through before the blow (or despite it).
    finished: usize,
    harmed: Vec<String>,
}

/// One blow at a random instant of a dump of `w`.
fn blow(w: &Workload, b: Blow, span: Duration, rng: &mut Rng, dir: &Path, tally: &mut Tally) {
    let pid = w.pid;
    assert!(within_settle(|| in_sigsuspend(pid)), "{pid} waits");
    let before = looks(pid);
    let t1 = rng.below(span);
    let t2 = t1 + rng.below(span / 2);
    let child = start_dump(pid, dir);
    let rcriu_pid = child.id() as i32;
    let start = Instant::now();
    let sleep_until = |t: Duration| {
        if let Some(d) = t.checked_sub(start.elapsed()) {
            std::thread::sleep(d);
        }
    };
    sleep_until(t1);
    match b {
        Blow::Kill => signal(rcriu_pid, libc::SIGKILL),
        Blow::Term => signal(rcriu_pid, libc::SIGTERM),
        Blow::StopCont | Blow::Stop => signal(pid, libc::SIGSTOP),
    }
    if b == Blow::StopCont {
        sleep_until(t2);
        signal(pid, libc::SIGCONT);
    }
    let status = finish(child);
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        tally.finished += 1;
    }
    tally.blows[b as usize] += 1;
    let want: &[char] = if b == Blow::Stop { &['T'] } else { &['R', 'S'] };
    if let Some(h) = harm(pid, &before, want) {
        tally.harmed.push(format!(
            "{b:?} at {t1:?} (then {t2:?}), rcriu status {status:#x}: {h}"
        ));
    }
}

/// Blows of every kind at dumps of the `trust` workload with `threads`
/// threads, on fresh targets every 20 blows, each checked at the end.
fn dumps_under_fire(threads: &str, images: &TempDir) {
    let _g = trace_lock();
    require_root();
    no_inherited_fds();
    let mut rng = Rng::new();
    let n = trials();
    let mut tally = Tally::default();
    let kinds = std::env::var("RCRIU_STRESS_KINDS").unwrap_or_default();
    let mut plan: Vec<Blow> = [
        (Blow::Kill, "kill"),
        (Blow::Term, "term"),
        (Blow::StopCont, "stopcont"),
        (Blow::Stop, "stop"),
    ]
    .iter()
    .filter(|(_, name)| kinds.is_empty() || kinds.split(',').any(|k| k == *name))
    .flat_map(|&(b, _)| std::iter::repeat_n(b, n))
    .collect();
    // Shuffled, so that every kind meets every phase of a target's life.
    for i in (1..plan.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        plan.swap(i, j);
    }
    let dir = images.path().join("images");
    let mut verdicts = 0;
    for chunk in plan.chunks(20) {
        let w = Workload::start("trust", &["64", threads]);
        w.wait_in("sigsuspend");
        let span = dump_time(w.pid, &dir).mul_f64(1.2);
        for &b in chunk {
            blow(&w, b, span, &mut rng, &dir, &mut tally);
        }
        let pid = w.pid;
        if let Err(e) = w.verdict() {
            tally.harmed.push(format!("target {pid}: {e}"));
        }
        verdicts += 1;
    }
    eprintln!(
        "trust: dumps of a 64 MiB process with {threads} threads: {} SIGKILL, {} SIGTERM, \
         {} SIGSTOP+SIGCONT, {} SIGSTOP; {} dumps finished; {verdicts} targets checked; \
         {} harmed",
        tally.blows[0],
        tally.blows[1],
        tally.blows[2],
        tally.blows[3],
        tally.finished,
        tally.harmed.len()
    );
    assert!(
        tally.harmed.is_empty(),
        "harmed targets:\n{}",
        tally.harmed.join("\n\n")
    );
}

#[test]
fn dumps_of_one_thread_under_fire() {
    dumps_under_fire("0", &TempDir::new("trust-1"));
}

#[test]
fn dumps_of_threads_under_fire() {
    dumps_under_fire("3", &TempDir::new("trust-3"));
}

/// The same on tmpfs, where the parasite writes the pages itself and a
/// helper thread of rcriu copies from the other end.
#[test]
fn dumps_to_tmpfs_under_fire() {
    dumps_under_fire("3", &TempDir::in_shm("trust-shm"));
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

/// `rcriu restore -d` killed at random instants: each time either no
/// process is left with the pid, or a whole one that checks out.
#[test]
fn restores_under_fire() {
    let _g = trace_lock();
    require_root();
    no_inherited_fds();
    become_subreaper();
    let mut rng = Rng::new();
    let n = trials();
    let images = TempDir::new("trust-restore");
    let dir = images.path().join("images");
    let mut w = Workload::start("trust", &["64", "3", "restored"]);
    w.wait_in("sigsuspend");
    let pid = w.pid;
    let st = finish(
        rcriu()
            .args(["dump", "-t", &pid.to_string(), "-D"])
            .arg(&dir)
            .stdin(Stdio::null())
            .spawn()
            .expect("starting rcriu dump"),
    );
    assert_eq!(st, 0, "the dump succeeds");
    w.reap();
    let restore = || {
        rcriu()
            .args(["restore", "-d", "-D"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting rcriu restore")
    };
    // How long a restore takes.
    let t = Instant::now();
    assert_eq!(finish(restore()), 0, "a plain restore succeeds");
    let span = t.elapsed().mul_f64(1.2);
    let ends = |pid: i32| {
        signal(pid, libc::SIGKILL);
        wait_exit(pid).expect("the restored process ends");
    };
    ends(pid);
    let (mut kills, mut terms, mut whole, mut late, mut none) = (0, 0, 0, 0, 0);
    let mut harmed = Vec::new();
    for i in 0..2 * n {
        let sig = if i % 2 == 0 {
            kills += 1;
            libc::SIGKILL
        } else {
            terms += 1;
            libc::SIGTERM
        };
        let child = restore();
        let at = rng.below(span);
        std::thread::sleep(at);
        signal(child.id() as i32, sig);
        let status = finish(child);
        // Whatever the restore made is ours (a subreaper) once it is gone:
        // either a half-made process killed with it, or a whole one.
        let exists = Path::new(&format!("/proc/{pid}")).exists();
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            whole += 1;
            if !exists {
                harmed.push(format!("signal {sig} at {at:?}: restored, yet no process"));
                continue;
            }
            if let Err(e) = verdict_of(pid, &w.outfile) {
                harmed.push(format!("signal {sig} at {at:?}: the restored process: {e}"));
            }
        } else {
            // A half-restored process dies with rcriu (reaped here); a
            // kill that lands after rcriu let the process go (between the
            // release and rcriu's exit) leaves a whole one, which must
            // check out.
            let start = Instant::now();
            loop {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    none += 1;
                    break;
                }
                if stays_released(pid) {
                    late += 1;
                    if let Err(e) = verdict_of(pid, &w.outfile) {
                        harmed.push(format!(
                            "signal {sig} at {at:?}: rcriu failed ({status:#x}) and left \
                             process {pid}, which is not whole: {e}"
                        ));
                    }
                    break;
                }
                // SAFETY: a plain non-blocking waitpid on our (adopted)
                // child.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG | libc::__WALL) };
                if start.elapsed() > HANG_GUARD {
                    harmed.push(format!(
                        "signal {sig} at {at:?}: rcriu failed ({status:#x}) yet process {pid} \
                         is left, state {}",
                        state(pid)
                    ));
                    ends(pid);
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    eprintln!(
        "trust: restores of a 64 MiB process with 3 threads: {kills} SIGKILL, {terms} SIGTERM; \
         {whole} finished whole, {late} killed after the release (whole), {none} left nothing; \
         {} harmed",
        harmed.len()
    );
    assert!(none > 0, "some kills land before the release (the control)");
    assert!(harmed.is_empty(), "{}", harmed.join("\n"));
}
