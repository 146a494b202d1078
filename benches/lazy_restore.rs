//! Lazy restore of a process with 1 GiB of anonymous memory (the
//! `lazymem` workload, its images on tmpfs), against the full restore of
//! the same images timed in the same rounds. Needs root.
//!
//! For each: the time from the start of the restore until the process
//! answers a handshake on its fifo (it runs again); for the lazy one also
//! until every page is in (`rcriu lazy-pages` ends, its hashing of the
//! pages image against the manifest included) and, apart, until the
//! daemon logs that the last page is in. Each round checks the memory
//! afterwards (the process's own check).
//!
//! The remote mode, in the same rounds: the process of the full restore
//! is dumped with `rcriu dump --lazy-pages --port P` (its lazy pages
//! held by the dump, which kills it and serves them over TCP on
//! loopback), then restored with `rcriu lazy-pages --page-server` and
//! `restore --lazy-pages`: the same times, its pages coming from the
//! dump instead of the images.
//!
//! `cargo bench --bench lazy_restore` (`-- ROUNDS`, 5 by default).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcriu::{Dump, Restore};
use rcriu_test_support::{Workload, become_subreaper, require_root, wait_exit};

const MIB: &str = "1024";

struct Talk {
    to: std::fs::File,
    from: std::fs::File,
}

impl Talk {
    fn open(dir: &Path) -> Talk {
        Talk {
            to: std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("in"))
                .expect("the workload's fifo"),
            from: std::fs::File::open(dir.join("out")).expect("the workload's fifo"),
        }
    }

    fn ask(&mut self, c: u8) -> u8 {
        self.to.write_all(&[c]).expect("asking the workload");
        let mut b = [0u8; 1];
        self.from.read_exact(&mut b).expect("its answer");
        b[0]
    }

    /// Checks the memory, then ends the process.
    fn check_and_end(mut self, pid: i32) {
        assert_eq!(self.ask(b'c'), b'P', "the restored memory is wrong");
        self.to.write_all(b"x").expect("ending the workload");
        assert_eq!(wait_exit(pid), Ok(0));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Starts `rcriu` with `args` (`--status-fd 1` among them) and waits
/// for its status byte.
fn started(args: &[&str], what: &str) -> std::process::Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rcriu"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let mut b = [1u8];
    c.stdout
        .take()
        .expect("piped")
        .read_exact(&mut b)
        .unwrap_or_else(|e| panic!("{what} says it is ready: {e}"));
    c
}

/// The seconds between the lines of `log` holding `from` and `to`.
fn logged(log: &Path, from: &str, to: &str) -> Duration {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let at = |what: &str| {
        text.lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.strip_prefix('(')?.split(')').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {what:?} in {}", log.display()))
    };
    Duration::from_secs_f64((at(to) - at(from)).max(0.0))
}

fn main() {
    require_root();
    become_subreaper();
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let dir = Path::new("/dev/shm/rcriu-bench-lazy");
    let _ = std::fs::remove_dir_all(dir);
    let mut w = Workload::start("lazymem", &[MIB, "0"]);
    let pid = w.pid;
    let fifos = w
        .outfile
        .parent()
        .expect("the workload's directory")
        .to_owned();
    Dump::new(pid)
        .images_dir(dir)
        .run()
        .expect("dumping lazymem");
    w.reap();
    let (mut full, mut lazy_run, mut lazy_all, mut lazy_in, mut lazy_call) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut remote_run, mut remote_all, mut remote_in) = (Vec::new(), Vec::new(), Vec::new());
    let served = Path::new("/dev/shm/rcriu-bench-lazy-served");
    for _ in 0..rounds {
        // The full restore.
        let t = Instant::now();
        Restore::new(dir)
            .detach(true)
            .run()
            .expect("restoring lazymem");
        let mut talk = Talk::open(&fifos);
        assert_eq!(talk.ask(b'p'), b'p');
        full.push(t.elapsed());
        assert_eq!(talk.ask(b'c'), b'P', "the restored memory is wrong");

        // The remote one: that process dumped lazily, its pages served.
        let _ = std::fs::remove_dir_all(served);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
            .to_string();
        let sd = served.to_str().expect("a path");
        let p = pid.to_string();
        let dump = started(
            &[
                "dump",
                "--lazy-pages",
                "--address",
                "127.0.0.1",
                "--port",
                &port,
                "-t",
                &p,
                "-D",
                sd,
                "--status-fd",
                "1",
                "-v3",
                "-o",
                "dump.log",
            ],
            "the lazy dump",
        );
        drop(talk);
        let _ = wait_exit(pid);
        let rlog = served.join("lazy-pages.log");
        let mut daemon = started(
            &[
                "lazy-pages",
                "--page-server",
                "--address",
                "127.0.0.1",
                "--port",
                &port,
                "-D",
                sd,
                "--status-fd",
                "1",
                "-v3",
                "-o",
                "lazy-pages.log",
            ],
            "rcriu lazy-pages --page-server",
        );
        let t = Instant::now();
        Restore::new(served)
            .lazy_pages(served)
            .detach(true)
            .run()
            .expect("restoring lazymem from the lazy dump");
        let mut talk = Talk::open(&fifos);
        assert_eq!(talk.ask(b'p'), b'p');
        remote_run.push(t.elapsed());
        let status = daemon.wait().expect("the daemon ends");
        remote_all.push(t.elapsed());
        assert!(
            status.success(),
            "the daemon failed: see {}",
            rlog.display()
        );
        remote_in.push(logged(
            &rlog,
            "the restore connected",
            "every lazy page is in",
        ));
        let mut dump = dump;
        assert!(
            dump.wait().expect("the dump ends").success(),
            "the lazy dump failed"
        );
        talk.check_and_end(pid);

        // The lazy one, its daemon listening first.
        let log = dir.join("lazy-pages.log");
        let _ = std::fs::remove_file(&log);
        let mut daemon = Command::new(env!("CARGO_BIN_EXE_rcriu"))
            .args(["lazy-pages", "-D", dir.to_str().expect("a path")])
            .args(["--status-fd", "1", "-v3", "-o", "lazy-pages.log"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting rcriu lazy-pages");
        let mut b = [1u8];
        daemon
            .stdout
            .take()
            .expect("piped")
            .read_exact(&mut b)
            .expect("the daemon listens");
        let t = Instant::now();
        Restore::new(dir)
            .lazy_pages(dir)
            .detach(true)
            .run()
            .expect("restoring lazymem lazily");
        lazy_call.push(t.elapsed());
        let mut talk = Talk::open(&fifos);
        assert_eq!(talk.ask(b'p'), b'p');
        lazy_run.push(t.elapsed());
        let status = daemon.wait().expect("the daemon ends");
        lazy_all.push(t.elapsed());
        assert!(status.success(), "the daemon failed: see {}", log.display());
        // When the last page went in, from the daemon's log (its times
        // count from its start): the restore's connection and the end.
        lazy_in.push(logged(
            &log,
            "the restore connected",
            "every lazy page is in",
        ));
        talk.check_and_end(pid);
    }
    let (f, r, a, i, c) = (
        median(full),
        median(lazy_run),
        median(lazy_all),
        median(lazy_in),
        median(lazy_call),
    );
    println!("lazy restore of {MIB} MiB, medians of {rounds} rounds:");
    println!("  full restore, until it answers     {:8.1} ms", ms(f));
    println!(
        "  lazy restore, until it answers     {:8.1} ms  = {:.3} of the full restore",
        ms(r),
        r.as_secs_f64() / f.as_secs_f64()
    );
    println!("  (of which the restore call itself    {:8.1} ms)", ms(c));
    println!(
        "  lazy restore, until the daemon ends {:7.1} ms  = {:.2} of the full restore",
        ms(a),
        a.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "  daemon: connected to last page in {:8.1} ms  = {:.2} of the full restore",
        ms(i),
        i.as_secs_f64() / f.as_secs_f64()
    );
    let (rr, ra, ri) = (median(remote_run), median(remote_all), median(remote_in));
    println!("from a lazy dump's page server (TCP on loopback):");
    println!(
        "  remote lazy restore, until it answers  {:7.1} ms  = {:.3} of the full, {:.2} of the local lazy",
        ms(rr),
        rr.as_secs_f64() / f.as_secs_f64(),
        rr.as_secs_f64() / r.as_secs_f64()
    );
    println!(
        "  remote, until the daemon ends         {:7.1} ms  = {:.2} of the full, {:.2} of the local lazy",
        ms(ra),
        ra.as_secs_f64() / f.as_secs_f64(),
        ra.as_secs_f64() / a.as_secs_f64()
    );
    println!(
        "  daemon: connected to last page in     {:7.1} ms  = {:.2} of the local lazy's",
        ms(ri),
        ri.as_secs_f64() / i.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(served);
}
