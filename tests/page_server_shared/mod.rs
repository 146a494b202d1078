//! What the page-server tests share (tests/page_server.rs and
//! tests/page_server_tls.rs): a page server started and waited for, a
//! dump through it, the server's images put beside the dump's, and a
//! byte of the workload's memory changed on the server's side.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use rcriu::images::ImageDir;
use rcriu::images::pages::PE_PRESENT;
use rcriu_test_support::{Workload, become_subreaper, require_root, trace_lock};

/// No more arguments.
pub const NONE: &[&str] = &[];

pub const RCRIU: &str = env!("CARGO_BIN_EXE_rcriu");

pub fn setup() -> std::sync::MutexGuard<'static, ()> {
    require_root();
    let g = trace_lock();
    become_subreaper();
    g
}

pub fn bigmem(mib: u32) -> Workload {
    let w = Workload::start("bigmem", &[&mib.to_string()]);
    w.wait_in("sigsuspend");
    w
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a port");
    l.local_addr().expect("its address").port()
}

/// A page server of `engine` writing to `dir` with `extra` arguments,
/// listening on 127.0.0.1 once this returns.
pub struct Server {
    child: Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl Server {
    pub fn start<S: AsRef<OsStr>>(engine: &str, dir: &Path, extra: &[S]) -> Server {
        let port = free_port();
        let log = dir.join("ps.log");
        let (rd, wr) = rustix::pipe::pipe().expect("a status pipe");
        let child = Command::new(engine)
            .args(["page-server", "--address", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("-D")
            .arg(dir)
            .args(["-v4", "-o"])
            .arg(&log)
            .arg("--status-fd")
            .arg(wr.as_raw_fd().to_string())
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("starting the page server");
        drop(wr);
        let mut f = std::fs::File::from(rd);
        let mut b = [1u8; 1];
        f.read_exact(&mut b).unwrap_or_else(|e| {
            panic!(
                "the page server did not say it listens: {e}; its log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        assert_eq!(b[0], 0, "the status byte");
        Server { child, port, log }
    }

    /// Waits for the server to end its session; its exit status and log.
    pub fn wait(mut self) -> (i32, String) {
        let s = self.child.wait().expect("waiting for the page server");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        (s.code().unwrap_or(-1), log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().expect("running the dumper");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `engine dump` of `pid` into `dir`, its pages to `port` with `extra`.
pub fn dump<S: AsRef<OsStr>>(
    engine: &str,
    pid: i32,
    dir: &Path,
    port: u16,
    extra: &[S],
) -> Result<(), String> {
    run(Command::new(engine)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(dir)
        .args(["--page-server", "--address", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(["-v4", "-o", "dump.log"])
        .args(extra))
    .map_err(|e| {
        format!(
            "{e}\nits log: {}",
            std::fs::read_to_string(dir.join("dump.log")).unwrap_or_default()
        )
    })
}

/// The server's images copied beside the dump's.
pub fn combine(server: &Path, dump: &Path) {
    for e in std::fs::read_dir(server).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("pagemap-") || name.starts_with("pages-") {
            assert!(
                !dump.join(&name).exists(),
                "{name} is written by the dump too"
            );
            std::fs::copy(e.path(), dump.join(&name)).unwrap();
        }
    }
}

/// Flips a byte of the workload's big area in the server's pages image.
pub fn flip_big_area_byte(server: &Path, w: &Workload) {
    let addr = u64::from_str_radix(w.fact("addr").trim_start_matches("0x"), 16).unwrap();
    let d = ImageDir::open(server).unwrap();
    let mut pm = d.pagemap(w.pid as u32).expect("the server's pagemap");
    let id = pm.pages_id();
    let mut off = None;
    while let Some(r) = pm.next_run().unwrap() {
        if r.flags & PE_PRESENT != 0 && r.vaddr <= addr + 4096 && addr + 4096 < r.end() {
            off = r.pages_offset.map(|o| o + (addr + 4096 - r.vaddr) + 100);
        }
    }
    let off = off.expect("the big area's second page is in the pagemap");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(server.join(format!("pages-{id}.img")))
        .unwrap();
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], off).unwrap();
}

/// Restores the dump in `dir` with rcriu's library (`restorer` `None`)
/// or with the `criu` at `restorer`.
pub fn restore_with(restorer: Option<&str>, dir: &Path) -> Result<(), String> {
    match restorer {
        None => rcriu::Restore::new(dir)
            .detach(true)
            .run()
            .map(drop)
            .map_err(|e| format!("restoring: {e}")),
        Some(criu) => run(Command::new(criu)
            .args(["restore", "-d", "-v4", "-o", "restore.log", "-D"])
            .arg(dir))
        .map_err(|e| format!("CRIU's restore: {e}")),
    }
}
