//! What the lazy restore tests share (tests/lazy_pages.rs, from the
//! images; tests/postcopy.rs, from a lazy dump's page server): a daemon
//! or dump running beside the test, the lazymem workload's fifos, and
//! looks at a process's memory that touch none of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use rcriu_test_support::{Workload, wait_child};

pub const RCRIU: &str = env!("CARGO_BIN_EXE_rcriu");

/// Runs rcriu with `args`; its standard error when it fails.
pub fn rcriu(args: &[&str]) -> Result<(), String> {
    let out = Command::new(RCRIU)
        .args(args)
        .output()
        .expect("running rcriu");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A process of the test's (a lazy-pages daemon, a lazy dump serving
/// its pages), killed (and reaped) if the test ends before it does.
pub struct Daemon(pub Option<Child>);

impl Daemon {
    /// Starts `program` with `args` (`--status-fd 1` among them) and
    /// waits for its status byte; its output when it ended without one.
    pub fn start(program: &str, args: &[&str]) -> Result<Daemon, std::process::Output> {
        // Standard input /dev/null, writable: CRIU 4.2's lazy dump, when
        // it cannot size its tee pipe (F_SETPIPE_SZ of 4 MiB without
        // CAP_SYS_RESOURCE), splices what it skips into fd 0 instead of
        // /dev/null, and fails on a read-only one.
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .expect("/dev/null");
        let mut c = Command::new(program)
            .args(args)
            .stdin(null)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting a daemon");
        let mut b = [1u8; 1];
        let said = c.stdout.take().unwrap().read_exact(&mut b);
        if said.is_err() || b[0] != 0 {
            return Err(c.wait_with_output().unwrap());
        }
        Ok(Daemon(Some(c)))
    }

    pub fn pid(&self) -> i32 {
        self.0.as_ref().unwrap().id() as i32
    }

    pub fn wait(mut self) -> i32 {
        wait_child(self.0.take().unwrap()).unwrap()
    }

    pub fn kill(&mut self) {
        self.0.as_mut().unwrap().kill().unwrap();
    }

    pub fn output(mut self) -> std::process::Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The lazymem workload's fifos.
pub struct Talk {
    pub to: std::fs::File,
    pub from: std::fs::File,
}

impl Talk {
    pub fn open(w: &Workload) -> Talk {
        let dir = w.outfile.parent().unwrap();
        Talk {
            to: std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("in"))
                .unwrap(),
            from: std::fs::File::open(dir.join("out")).unwrap(),
        }
    }

    pub fn ask(&mut self, c: u8) -> u8 {
        self.to.write_all(&[c]).unwrap();
        let mut b = [0u8; 1];
        self.from.read_exact(&mut b).unwrap();
        b[0]
    }
}

/// How many pages of `[addr, addr + len)` of process `pid` are present
/// (its pagemap's present bit), read without touching them.
pub fn present_pages(pid: i32, addr: u64, len: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(format!("/proc/{pid}/pagemap")).unwrap();
    let n = (len / 4096) as usize;
    let mut buf = vec![0u8; n * 8];
    f.read_exact_at(&mut buf, addr / 4096 * 8).unwrap();
    buf.chunks_exact(8)
        .filter(|e| u64::from_ne_bytes((*e).try_into().unwrap()) & (1 << 63) != 0)
        .count() as u64
}

/// Whether wait status `st` is a SIGKILL's.
pub fn killed(st: i32) -> bool {
    libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL
}

/// The children of process `pid` (of all its threads).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path().join("children");
        let kids = std::fs::read_to_string(t).unwrap_or_default();
        v.extend(
            kids.split_whitespace()
                .filter_map(|k| k.parse::<i32>().ok()),
        );
    }
    v
}

/// The log `name` in `dir`, or nothing.
pub fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}
