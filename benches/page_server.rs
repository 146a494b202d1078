//! The dump of a process with 1 GiB of touched anonymous memory
//! (`bigmem`) through a page server on loopback, against the same dump to
//! local tmpfs, in one run; with `RCRIU_TEST_CRIU` naming CRIU 4.2's
//! criu, CRIU's dump through CRIU's page server too, and each engine's
//! dump through the other's server. Each dump through a page server is
//! measured through TLS too (`--tls`, certificates the bench makes with
//! rcgen, `rcriu_test_support::pki`: ECDSA P-256, the cipher suite each
//! pair negotiates). Needs
//! root.
//!
//! `cargo bench --bench page_server` (`-- ROUNDS`, 3 by default). Every
//! dump is `dump -R` from the command line; the page server's directory
//! and the dump's are on /dev/shm. Reports the medians of the wall time
//! of the dump command (through a page server, until the server has
//! acknowledged every page) and of its frozen time (`stats-dump`).

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcriu_test_support::{Workload, no_inherited_fds, require_root};

const MIB: u64 = 1024;
const RCRIU: &str = env!("CARGO_BIN_EXE_rcriu");

/// The `--tls` arguments of the server and of the dump, or none.
type Tls<'a> = Option<(&'a [String], &'a [String])>;

struct Round {
    wall: Duration,
    frozen: Duration,
}

/// Starts `engine`'s page server on a free port writing to `dir`; its
/// port, once it listens.
fn page_server(engine: &str, dir: &Path, tls: &[String]) -> (std::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (rd, wr) = rustix::pipe::pipe().expect("a status pipe");
    let child = Command::new(engine)
        .args(["page-server", "--address", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("-D")
        .arg(dir)
        .arg("--status-fd")
        .arg(wr.as_raw_fd().to_string())
        .args(tls)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the page server");
    drop(wr);
    let mut b = [1u8];
    std::fs::File::from(rd)
        .read_exact(&mut b)
        .expect("the page server listens");
    (child, port)
}

/// `dumper`'s dump of `pid`, through `server`'s page server (through
/// TLS with `tls`: the server's arguments and the dump's) or, without
/// one, to local tmpfs.
fn dump(dumper: &str, server: Option<&str>, tls: Tls<'_>, pid: i32, base: &Path) -> Round {
    let dir = base.join("dump");
    let ps_dir = base.join("ps");
    for d in [&dir, &ps_dir] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).expect("making the directories");
    }
    let (server_tls, dump_tls): (&[String], &[String]) = tls.unwrap_or((&[], &[]));
    let ps = server.map(|s| page_server(s, &ps_dir, server_tls));
    let mut cmd = Command::new(dumper);
    cmd.args(["dump", "-R", "-t", &pid.to_string(), "-D"])
        .arg(&dir)
        .stderr(Stdio::null());
    if let Some((_, port)) = &ps {
        cmd.args(["--page-server", "--address", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(dump_tls);
    }
    let t = Instant::now();
    let st = cmd.status().expect("running the dump");
    let wall = t.elapsed();
    assert!(st.success(), "{dumper} dump through {server:?} failed");
    if let Some((mut c, _)) = ps {
        let st = c.wait().expect("waiting for the page server");
        assert!(st.success(), "{server:?}'s page server failed");
    }
    let stats = rcriu::images::ImageDir::open(&dir)
        .and_then(|d| d.stats_dump())
        .ok()
        .flatten()
        .and_then(|s| s.dump)
        .expect("stats-dump");
    let _ = std::fs::remove_dir_all(base);
    Round {
        wall,
        frozen: Duration::from_micros(stats.frozen_time.into()),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Waits until the workload has let go of its readiness pipe.
fn settle(pid: i32) {
    loop {
        let busy = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("listing the workload's fds")
            .filter_map(|e| e.ok())
            .any(|e| {
                let n: i32 = e.file_name().to_string_lossy().parse().unwrap_or(0);
                let l = std::fs::read_link(e.path()).unwrap_or_default();
                n > 2 || l.to_string_lossy().starts_with("pipe:")
            });
        if !busy {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    require_root();
    no_inherited_fds();
    let w = Workload::start("bigmem", &[&MIB.to_string()]);
    settle(w.pid);
    let base = PathBuf::from(format!("/dev/shm/rcriu-bench-ps-{}", std::process::id()));
    let criu = std::env::var("RCRIU_TEST_CRIU").ok();
    let pki = rcriu_test_support::pki::Pki::new();
    let (tls_server, tls_client) = (pki.args("ca", "server"), pki.args("ca", "client"));
    let plain: Tls<'_> = None;
    let tls: Tls<'_> = Some((&tls_server, &tls_client));
    let mut cases: Vec<(String, &str, Option<&str>, Tls<'_>)> = vec![
        ("rcriu dump to /dev/shm".into(), RCRIU, None, plain),
        (
            "rcriu dump -> rcriu page-server".into(),
            RCRIU,
            Some(RCRIU),
            plain,
        ),
        (
            "rcriu dump -> rcriu page-server, TLS".into(),
            RCRIU,
            Some(RCRIU),
            tls,
        ),
    ];
    if let Some(c) = criu.as_deref() {
        cases.push(("CRIU dump to /dev/shm".into(), c, None, plain));
        cases.push(("CRIU dump -> CRIU page-server".into(), c, Some(c), plain));
        cases.push(("CRIU dump -> CRIU page-server, TLS".into(), c, Some(c), tls));
        cases.push((
            "rcriu dump -> CRIU page-server".into(),
            RCRIU,
            Some(c),
            plain,
        ));
        cases.push((
            "rcriu dump -> CRIU page-server, TLS".into(),
            RCRIU,
            Some(c),
            tls,
        ));
        cases.push((
            "CRIU dump -> rcriu page-server".into(),
            c,
            Some(RCRIU),
            plain,
        ));
        cases.push((
            "CRIU dump -> rcriu page-server, TLS".into(),
            c,
            Some(RCRIU),
            tls,
        ));
    } else {
        eprintln!("RCRIU_TEST_CRIU is not set: CRIU's page server is not measured");
    }
    // Warm-up.
    for (_, d, s, t) in &cases {
        dump(d, *s, *t, w.pid, &base);
    }
    let mut results: Vec<(Vec<Duration>, Vec<Duration>)> = vec![(vec![], vec![]); cases.len()];
    for _ in 0..rounds {
        for (i, (_, d, s, t)) in cases.iter().enumerate() {
            let r = dump(d, *s, *t, w.pid, &base);
            results[i].0.push(r.wall);
            results[i].1.push(r.frozen);
        }
    }
    println!("1 GiB dump (bigmem, dump -R), median of {rounds} rounds:");
    let local = median(results[0].0.clone());
    let ps = median(results[1].0.clone());
    for ((name, _, _, _), (wall, frozen)) in cases.iter().zip(results) {
        let (wl, f) = (median(wall), median(frozen));
        println!(
            "  {name:39} wall {:8.1} ms ({:.2} x rcriu local, {:.2} x rcriu plain page-server)  frozen {:8.1} ms",
            ms(wl),
            wl.as_secs_f64() / local.as_secs_f64(),
            wl.as_secs_f64() / ps.as_secs_f64(),
            ms(f)
        );
    }
    w.verdict()
        .expect("bigmem's memory is intact after the dumps");
}
