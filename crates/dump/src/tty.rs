//! Terminals: Unix98 ptys have a `tty_file_entry` in files.img per open
//! file, pointing to a regular-file entry with its path (`regf_id`) and
//! to a `tty_info_entry` in `tty-info.img` shared by every file of the
//! same pty end (its id is the pty's index times two, plus one for the
//! master): session, foreground group, modes, termios, locked termios,
//! window size.
//!
//! The session and group of a slave are known only to a process whose
//! controlling terminal it is (CRIU asks its parasite): rcriu reads them
//! from the task's /proc stat when the slave is the task's controlling
//! terminal, and records none otherwise, which is what the kernel tells
//! the task itself. A pty whose other end is not in the dump (the
//! terminal of the shell that started the task) needs `--shell-job`, and
//! there may be only one; or, in a container run with a terminal, whose
//! master its runtime holds, `orphan_pts_master` (which runc sends): the
//! restore makes the pty again and hands its new master to the caller.
//!
//! Bytes waiting in a pty both of whose ends the dump holds are read
//! from each end once every fd is seen (non-blocking, up to 16 KiB an
//! end, as CRIU reads them) and written to `tty-data.img`, by the id of
//! the end they were read from; the restore writes them into the other
//! end, so that they wait again where they were. When the process runs
//! on (`--leave-running`, a failed dump) they are written back the same
//! way, as CRIU does: bytes read from the slave come back through the
//! master's input processing (echoed again when ECHO is on). More than
//! 16 KiB waiting, or bytes in a pty whose other end is not in the dump
//! (but the shell's terminal, whose input is the shell's), are refused
//! by name. In canonical mode a line not ended yet cannot be read (nor
//! seen) and is not carried, as with CRIU.
//!
//! Terminals that are not ptys, as CRIU 4.2 dumps them: /dev/tty (CRIU's
//! `CTTY`), the console, virtual terminals and USB or low-density serial
//! lines each have one info entry for every file of that kind (id twice
//! CRIU's fixed index: console 2004, virtual terminals 2008, /dev/tty
//! 2012, serial lines 2020), with no pty index and no bytes read. An fd of
//! /dev/tty reaches the terminal it was opened for (TIOCGDEV says which):
//! it is dumped when that terminal is still its process's controlling
//! terminal, a pty both of whose ends the dump holds, and the process
//! leads the session in the foreground (what CRIU 4.2 accepts, and rcriu
//! restores: the process gets its terminal back, then opens /dev/tty
//! again), or, with `orphan_pts_master`, a pty whose slave the same
//! process holds and whose master is the caller's (a container's
//! terminal); it is refused by name otherwise, the shell's terminal of a
//! `--shell-job` included, as CRIU refuses it. Other minors of majors 4
//! and 5 (/dev/tty0, UART serial ports) are refused by name, as by CRIU.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use rcriu_images::pb;
use rcriu_proc::{Pid, Task};

use crate::files::OpenFd;
use crate::{Error, Result, files_sys};

/// The kind of terminal an open file is (CRIU's tty drivers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// /dev/ptmx (or a legacy master major).
    PtyMaster,
    /// /dev/pts/N.
    PtySlave,
    /// /dev/tty, the process's controlling terminal by another name
    /// (CRIU's `TTY_TYPE_CTTY`).
    Ctty,
    /// /dev/console (5:1).
    Console,
    /// A virtual terminal, /dev/ttyN (4:1 to 4:63).
    Vt,
    /// A USB or low-density serial line (majors 188, 204).
    Serial,
}

impl Driver {
    /// A pty end (rather than a terminal CRIU opens by its path alone).
    pub fn is_pty(self) -> bool {
        matches!(self, Driver::PtyMaster | Driver::PtySlave)
    }

    /// The type CRIU writes in `tty_info_entry`.
    pub fn tty_type(self) -> pb::TtyType {
        match self {
            Driver::PtyMaster | Driver::PtySlave => pb::TtyType::Pty,
            Driver::Ctty => pb::TtyType::Ctty,
            Driver::Console => pb::TtyType::Console,
            Driver::Vt => pb::TtyType::Vt,
            Driver::Serial => pb::TtyType::Serial,
        }
    }

    /// CRIU's fixed index of a terminal that is not a pty (its info id is
    /// twice it): there is one info entry for all the files of that
    /// kind.
    fn fixed_index(self) -> Option<u32> {
        match self {
            Driver::PtyMaster | Driver::PtySlave => None,
            Driver::Console => Some(1002),
            Driver::Vt => Some(1004),
            Driver::Ctty => Some(1006),
            Driver::Serial => Some(1010),
        }
    }

    /// What the terminal is called in messages.
    pub fn name(self) -> &'static str {
        match self {
            Driver::PtyMaster => "pty master",
            Driver::PtySlave => "pty slave",
            Driver::Ctty => "controlling terminal (/dev/tty)",
            Driver::Console => "console",
            Driver::Vt => "virtual terminal",
            Driver::Serial => "serial line",
        }
    }
}

const TTY_MAJOR: u32 = 4;
const TTYAUX_MAJOR: u32 = 5;
const UNIX98_PTY_MASTER_MAJOR: u32 = 128;
const UNIX98_PTY_SLAVE_MAJOR: u32 = 136;
const USB_SERIAL_MAJOR: u32 = 188;
const LOW_DENSE_SERIAL_MAJOR: u32 = 204;
/// Virtual terminals' minors (MIN_NR_CONSOLES to MAX_NR_CONSOLES).
const VT_MINORS: std::ops::RangeInclusive<u32> = 1..=63;

/// The terminal driver of a character device, if CRIU knows it.
pub fn driver(rdev: u64) -> Option<Driver> {
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    match major {
        TTYAUX_MAJOR if minor == 0 => Some(Driver::Ctty),
        TTYAUX_MAJOR if minor == 1 => Some(Driver::Console),
        TTYAUX_MAJOR if minor == 2 => Some(Driver::PtyMaster),
        TTY_MAJOR if VT_MINORS.contains(&minor) => Some(Driver::Vt),
        USB_SERIAL_MAJOR | LOW_DENSE_SERIAL_MAJOR => Some(Driver::Serial),
        UNIX98_PTY_MASTER_MAJOR..UNIX98_PTY_SLAVE_MAJOR => Some(Driver::PtyMaster),
        UNIX98_PTY_SLAVE_MAJOR => Some(Driver::PtySlave),
        _ => None,
    }
}

/// Whether a character device is a terminal CRIU does not dump either
/// (/dev/tty0, the current virtual terminal; 4:64 and above, UART serial
/// ports; other minors of major 5).
pub fn is_terminal(rdev: u64) -> bool {
    matches!(rustix::fs::major(rdev), TTY_MAJOR | TTYAUX_MAJOR)
}

/// The pty's index: asked of a master, read from a slave's name; CRIU's
/// fixed index of another terminal.
pub fn index(pid: Pid, f: &OpenFd, driver: Driver) -> Result<u32> {
    if let Some(i) = driver.fixed_index() {
        return Ok(i);
    }
    match driver {
        Driver::PtyMaster => files_sys::pty_index(f.file.as_fd())
            .map_err(Error::sys("reading a pty's index (TIOCGPTN)", pid)),
        Driver::PtySlave => {
            let name = f.info.path.as_os_str().as_bytes();
            let last = name.rsplit(|&b| b == b'/').next().unwrap_or_default();
            std::str::from_utf8(last)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Error::Inconsistent {
                    pid,
                    what: format!(
                        "fd {}: a pty slave named {}, without an index",
                        f.fd,
                        f.info.path.display()
                    ),
                })
        }
        _ => Ok(0),
    }
}

/// The id of the `tty_info_entry` of a terminal.
pub fn info_id(driver: Driver, index: u32) -> u32 {
    (index << 1) + u32::from(driver == Driver::PtyMaster)
}

/// The entry of an open terminal file; `regf_id` is the entry of its
/// path.
pub fn entry(
    id: u32,
    tty_info_id: u32,
    flags: u32,
    fown: pb::FownEntry,
    regf_id: u32,
) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Tty as i32,
        id,
        tty: Some(Box::new(pb::TtyFileEntry {
            id,
            tty_info_id,
            flags,
            fown,
            regf_id: Some(regf_id),
        })),
        ..Default::default()
    }
}

/// The number of control characters CRIU stores.
pub const NCC: usize = 19;

/// A termios as CRIU stores it: the control characters as the raw bytes
/// of libc's 32-byte array, four to a word, in 19 words.
pub fn termios_entry(t: &libc::termios) -> pb::TermiosEntry {
    let mut c_cc = vec![0u32; NCC];
    for (i, w) in t.c_cc.chunks(4).enumerate().take(NCC) {
        let mut b = [0u8; 4];
        b[..w.len()].copy_from_slice(w);
        c_cc[i] = u32::from_le_bytes(b);
    }
    pb::TermiosEntry {
        c_iflag: t.c_iflag,
        c_oflag: t.c_oflag,
        c_cflag: t.c_cflag,
        c_lflag: t.c_lflag,
        c_line: u32::from(t.c_line),
        c_ispeed: 0,
        c_ospeed: 0,
        c_cc,
    }
}

/// The terminals seen so far.
#[derive(Debug, Default)]
pub struct Seen {
    /// Info ids written.
    infos: Vec<u32>,
    /// Info ids of ends that are not hung up, with the fd and path first
    /// seen.
    active: Vec<(u32, i32, String)>,
    /// rcriu's copy of each end in `active` (the same order), to read
    /// what waits in it.
    ends: Vec<File>,
    /// Ends with bytes waiting to be read: info id, fd, path, bytes.
    queued: Vec<(u32, i32, String, i32)>,
    /// A task's controlling terminal, session and foreground group, from
    /// /proc, with the task.
    ctty: Option<(Pid, (u64, Pid, Pid))>,
    /// Every fd of /dev/tty seen.
    dev_ttys: Vec<DevTty>,
    /// Every fd of a console, virtual terminal or serial line seen: pid,
    /// fd, path, driver.
    simple: Vec<(Pid, i32, String, Driver)>,
    /// The pty slaves each process holds: pid, device.
    slaves: Vec<(Pid, u64)>,
}

/// An fd of /dev/tty: the terminal it reaches, which is its process's
/// controlling terminal.
#[derive(Debug, Clone)]
struct DevTty {
    pid: Pid,
    fd: i32,
    /// The terminal's device (a pty slave's).
    tty: u64,
    sid: Pid,
    pgrp: Pid,
}

fn zero_on_enotty(r: std::io::Result<i32>) -> std::io::Result<i32> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => Ok(0),
        other => other,
    }
}

impl Seen {
    /// The info entry of a pty end the first time it is seen.
    pub fn info_once(
        &mut self,
        pid: Pid,
        f: &OpenFd,
        driver: Driver,
        index: u32,
    ) -> Result<Option<pb::TtyInfoEntry>> {
        let id = info_id(driver, index);
        if self.infos.contains(&id) {
            return Ok(None);
        }
        self.infos.push(id);
        let fd = f.file.as_fd();
        let what = |w: &'static str| Error::sys(w, pid);
        let mut info = pb::TtyInfoEntry {
            id,
            r#type: driver.tty_type() as i32,
            locked: false,
            exclusive: false,
            packet_mode: false,
            sid: 0,
            pgrp: 0,
            rdev: f.info.rdev as u32,
            termios: None,
            termios_locked: None,
            winsize: None,
            pty: driver.is_pty().then_some(pb::TtyPtyEntry { index }),
            dev: Some(f.info.dev as u32),
            uid: Some(f.info.uid),
            gid: Some(f.info.gid),
        };
        // A hung-up terminal answers EIO to everything: only the above is
        // known of it.
        let excl = match files_sys::exclusive(fd) {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(Some(info)),
            r => {
                zero_on_enotty(r.map(i32::from)).map_err(what("reading a terminal (TIOCGEXCL)"))?
            }
        };
        info.exclusive = excl != 0;
        if driver.is_pty() {
            let n = files_sys::queued(fd).map_err(what("reading a terminal's queue (FIONREAD)"))?;
            if n > 0 {
                self.queued
                    .push((id, f.fd, f.info.path.display().to_string(), n));
            }
        }
        match driver {
            Driver::PtyMaster => {
                info.sid = zero_on_enotty(files_sys::session(fd))
                    .map_err(what("reading a terminal's session (TIOCGSID)"))?
                    as u32;
                info.pgrp = zero_on_enotty(files_sys::foreground(fd))
                    .map_err(what("reading a terminal's group (TIOCGPGRP)"))?
                    as u32;
                info.packet_mode = files_sys::packet_mode(fd)
                    .map_err(what("reading a pty's packet mode (TIOCGPKT)"))?;
                info.locked =
                    files_sys::pty_locked(fd).map_err(what("reading a pty's lock (TIOCGPTLCK)"))?;
            }
            Driver::PtySlave | Driver::Console | Driver::Vt | Driver::Serial => {
                let (tty, sid, pgrp) = self.ctty(pid)?;
                if tty == f.info.rdev {
                    info.sid = sid as u32;
                    info.pgrp = pgrp.max(0) as u32;
                }
            }
            Driver::Ctty => {
                // What the process itself reads through it (TIOCGSID,
                // TIOCGPGRP): its session and foreground group, as
                // checked by [`Seen::terminal`].
                if let Some(d) = self.dev_ttys.iter().find(|d| d.pid == pid && d.fd == f.fd) {
                    info.sid = d.sid as u32;
                    info.pgrp = d.pgrp.max(0) as u32;
                }
            }
        }
        let t = files_sys::termios(fd, false).map_err(what("reading a terminal's modes"))?;
        let l = files_sys::termios(fd, true).map_err(what("reading a terminal's locked modes"))?;
        let w = files_sys::winsize(fd).map_err(what("reading a terminal's window size"))?;
        info.termios = Some(termios_entry(&t));
        info.termios_locked = Some(termios_entry(&l));
        info.winsize = Some(pb::WinsizeEntry {
            ws_row: u32::from(w.ws_row),
            ws_col: u32::from(w.ws_col),
            ws_xpixel: u32::from(w.ws_xpixel),
            ws_ypixel: u32::from(w.ws_ypixel),
        });
        if !driver.is_pty() {
            return Ok(Some(info));
        }
        let copy = f
            .file
            .try_clone()
            .map_err(what("copying a terminal's fd"))?;
        self.active
            .push((id, f.fd, f.info.path.display().to_string()));
        self.ends.push(copy);
        Ok(Some(info))
    }

    /// Checks an fd of a terminal that is not a pty, each time one is seen
    /// (they share one info entry): it is not hung up (its terminal would
    /// be gone), and an fd of /dev/tty still reaches its process's
    /// controlling terminal, a pty (whose pair [`Seen::check_pairs`]
    /// looks at once every fd is seen).
    pub fn terminal(&mut self, pid: Pid, f: &OpenFd, driver: Driver) -> Result<()> {
        if driver == Driver::PtySlave && !self.slaves.contains(&(pid, f.info.rdev)) {
            self.slaves.push((pid, f.info.rdev));
        }
        if driver.is_pty() {
            return Ok(());
        }
        let path = f.info.path.display().to_string();
        let refuse = |why: String| {
            Error::unsupported(
                pid,
                format!("fd {}: the {} {path}, {why}", f.fd, driver.name()),
            )
        };
        let fd = f.file.as_fd();
        let hung = |e: &std::io::Error| e.raw_os_error() == Some(libc::EIO);
        if driver != Driver::Ctty {
            if let Err(e) = files_sys::exclusive(fd)
                && hung(&e)
            {
                return Err(refuse(
                    "hung up (rcriu would open it anew, not hung up)".into(),
                ));
            }
            self.simple.push((pid, f.fd, path, driver));
            return Ok(());
        }
        let tty = match files_sys::terminal_device(fd) {
            Err(e) if hung(&e) => {
                return Err(refuse(
                    "whose terminal was hung up (a restore could not open it again)".into(),
                ));
            }
            r => r.map_err(Error::sys(
                "reading which terminal /dev/tty reaches (TIOCGDEV)",
                pid,
            ))?,
        };
        let (ctty, sid, pgrp) = self.ctty(pid)?;
        let name = |d: u64| format!("{}:{}", rustix::fs::major(d), rustix::fs::minor(d));
        if tty != ctty {
            return Err(refuse(format!(
                "opened for terminal {}, which is no longer the process's controlling terminal ({})",
                name(tty),
                if ctty == 0 { "none".into() } else { name(ctty) }
            )));
        }
        if self::driver(tty) != Some(Driver::PtySlave) {
            return Err(refuse(format!(
                "for a controlling terminal ({}) that is not a pty",
                name(tty)
            )));
        }
        if let Some(other) = self.dev_ttys.iter().find(|d| d.tty != tty) {
            return Err(refuse(format!(
                "for terminal {}, while process {} holds /dev/tty for {} (CRIU keeps one /dev/tty entry for the whole dump)",
                name(tty),
                other.pid,
                name(other.tty)
            )));
        }
        self.dev_ttys.push(DevTty {
            pid,
            fd: f.fd,
            tty,
            sid,
            pgrp,
        });
        Ok(())
    }

    /// Reads the bytes waiting in each pty both of whose ends the dump
    /// holds (once every fd is seen, the tree frozen).
    pub fn take_data(&mut self, pid: Pid) -> Result<Queued> {
        let mut q = Queued::default();
        for (i, (id, fd, path)) in self.active.iter().enumerate() {
            let peer_id = id ^ 1;
            let Some(peer) = self.active.iter().position(|a| a.0 == peer_id) else {
                continue;
            };
            let end = &self.ends[i];
            let waiting = files_sys::queued(end.as_fd())
                .map_err(Error::sys("reading a terminal's queue (FIONREAD)", pid))?;
            if waiting <= 0 {
                continue;
            }
            let refuse = |why: String| {
                Error::unsupported(pid, format!("fd {fd}: the terminal {path} with {why}"))
            };
            if waiting as usize > MAX_DATA {
                return Err(refuse(format!(
                    "{waiting} bytes not read yet, more than the {MAX_DATA} CRIU carries"
                )));
            }
            let data = read_waiting(end).map_err(|e| {
                refuse(format!(
                    "{waiting} bytes not read yet, which rcriu cannot read ({e})"
                ))
            })?;
            let left = files_sys::queued(end.as_fd())
                .map_err(Error::sys("reading a terminal's queue (FIONREAD)", pid))?;
            let peer_file = self.ends[peer]
                .try_clone()
                .map_err(Error::sys("copying a terminal's fd", pid));
            // Read: from now on they go back if the process runs on.
            q.entries.push(pb::TtyDataEntry { tty_id: *id, data });
            q.peers.push(peer_file?);
            if left > 0 {
                return Err(refuse(format!(
                    "more than {MAX_DATA} bytes not read yet (CRIU carries {MAX_DATA})"
                )));
            }
            log::info!(
                "process {pid}: fd {fd}: {} bytes waiting in {path} dumped",
                q.entries.last().map_or(0, |e| e.data.len())
            );
        }
        Ok(q)
    }

    fn ctty(&mut self, pid: Pid) -> Result<(u64, Pid, Pid)> {
        if let Some((p, c)) = self.ctty
            && p == pid
        {
            return Ok(c);
        }
        let stat = Task::open(pid)
            .and_then(|mut t| t.stat())
            .map_err(Error::proc(pid))?;
        // tty_nr is the kernel's old encoding: minor bits 0-7 and 20-31,
        // major bits 8-19.
        let nr = stat.tty_nr as u32;
        let major = (nr >> 8) & 0xfff;
        let minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
        let c = (rustix::fs::makedev(major, minor), stat.session, stat.tpgid);
        self.ctty = Some((pid, c));
        Ok(c)
    }

    /// Every active pty slave must have its master in the dump, but for
    /// one with `--shell-job` (the shell's terminal) or
    /// `orphan_pts_master` (a container's terminal); and no pty master
    /// whose slave is not in the dump may hold bytes not read yet (they
    /// would have nowhere to wait again; the shell's terminal's input is
    /// the shell's).
    ///
    /// An fd of /dev/tty must reach a pty both of whose ends the dump
    /// holds (with `orphan_pts_master`, whose slave the same process
    /// holds: the caller gets the new master), be held by its session's
    /// leader, the session's foreground group its own (CRIU 4.2 refuses
    /// any other case as "ctty inheritance"; the shell's terminal of a
    /// `--shell-job` among them).
    /// A virtual terminal or serial line is refused with `--shell-job`,
    /// which makes CRIU restore it as the shell's terminal.
    pub fn check_pairs(&self, pid: Pid, shell_job: bool, orphan_pts_master: bool) -> Result<()> {
        let active = |id: u32| self.active.iter().any(|a| a.0 == id);
        for d in &self.dev_ttys {
            let index = rustix::fs::minor(d.tty);
            let refuse = |why: String| {
                Error::unsupported(
                    d.pid,
                    format!(
                        "fd {}: /dev/tty (the controlling terminal /dev/pts/{index}), {why}",
                        d.fd
                    ),
                )
            };
            let slave_held = self.slaves.contains(&(d.pid, d.tty));
            if !active(info_id(Driver::PtyMaster, index)) {
                if !orphan_pts_master {
                    return Err(refuse(
                        "whose pty master is not in the dump (a shell's terminal: CRIU 4.2 refuses it too, \"ctty inheritance\")".into(),
                    ));
                }
                if !slave_held {
                    return Err(refuse(
                        "whose pty master is the caller's (orphan_pts_master), while the process holds no fd of its slave (CRIU 4.2 refuses it too, \"ctty inheritance\")".into(),
                    ));
                }
            }
            if d.sid != d.pid {
                return Err(refuse(format!(
                    "held by a process that is not its session's leader ({}): rcriu gives the terminal back to session leaders",
                    d.sid
                )));
            }
            if d.pgrp != d.sid {
                return Err(refuse(format!(
                    "while the terminal's foreground group ({}) is not the session's (CRIU 4.2 refuses it too, \"ctty inheritance\")",
                    d.pgrp
                )));
            }
        }
        if shell_job
            && let Some((p, fd, path, driver)) = self
                .simple
                .iter()
                .find(|s| matches!(s.3, Driver::Vt | Driver::Serial))
        {
            return Err(Error::unsupported(
                *p,
                format!(
                    "fd {fd}: the {} {path} with --shell-job (CRIU 4.2 would restore it as the shell's terminal)",
                    driver.name()
                ),
            ));
        }
        if let Some((_, fd, path, n)) = self
            .queued
            .iter()
            .find(|(id, ..)| id % 2 == 1 && !active(id - 1))
        {
            return Err(Error::unsupported(
                pid,
                format!(
                    "fd {fd}: the pty master {path} with {n} bytes not read yet, whose slave is not in the dump"
                ),
            ));
        }
        let unpaired: Vec<&(u32, i32, String)> = self
            .active
            .iter()
            .filter(|(id, _, _)| id % 2 == 0 && !self.active.iter().any(|a| a.0 == id + 1))
            .collect();
        match unpaired.as_slice() {
            [] => Ok(()),
            [(_, fd, path)] if !shell_job && !orphan_pts_master => Err(Error::unsupported(
                pid,
                format!(
                    "fd {fd}: the terminal {path}, whose master is not in the dump (a shell's terminal: dump with --shell-job)"
                ),
            )),
            [_] => Ok(()),
            [(_, fd, path), ..] => Err(Error::unsupported(
                pid,
                format!(
                    "fd {fd}: the terminal {path}, one of several whose masters are not in the dump (only one may be)"
                ),
            )),
        }
    }
}

/// The most CRIU reads from one end of a pty.
pub const MAX_DATA: usize = 16384;

/// Reads what waits in a terminal end, non-blocking, up to
/// [`MAX_DATA`]; its flags (shared with the task's fd) are put back.
fn read_waiting(f: &File) -> std::io::Result<Vec<u8>> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let flags = fcntl_getfl(f)?;
    fcntl_setfl(f, flags | OFlags::NONBLOCK)?;
    let mut buf = vec![0u8; MAX_DATA];
    let mut off = 0;
    let read = loop {
        if off == buf.len() {
            break Ok(());
        }
        match rustix::io::read(f, &mut buf[off..]) {
            Ok(0) => break Ok(()),
            Ok(n) => off += n,
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::IO) => break Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => break Err(std::io::Error::from(e)),
        }
    };
    let back = fcntl_setfl(f, flags);
    read?;
    back?;
    buf.truncate(off);
    Ok(buf)
}

/// The bytes read from ptys (`tty-data.img`), and the other end of each,
/// where they are written back unless the dump ends with the process
/// gone.
#[derive(Debug, Default)]
pub struct Queued {
    pub entries: Vec<pb::TtyDataEntry>,
    /// For each entry, the other end of its pty.
    peers: Vec<File>,
}

impl Queued {
    /// The process is gone: the bytes live on in the images alone.
    pub fn keep(&mut self) {
        self.peers.clear();
    }

    /// The process runs on: each end's bytes are written into the other
    /// end, to wait where they were (as CRIU writes them back).
    pub fn put_back(&mut self) {
        for (e, peer) in self.entries.iter().zip(self.peers.drain(..)) {
            if let Err(err) = write_all_nonblocking(&peer, &e.data) {
                log::error!(
                    "cannot write back the {} bytes read from terminal {:#x}: {err}",
                    e.data.len(),
                    e.tty_id
                );
            }
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.put_back();
    }
}

/// Writes `data` into a terminal end without waiting (its flags put
/// back).
pub(crate) fn write_all_nonblocking(f: &File, data: &[u8]) -> std::io::Result<()> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let flags = fcntl_getfl(f)?;
    fcntl_setfl(f, flags | OFlags::NONBLOCK)?;
    let mut off = 0;
    let mut r = Ok(());
    while off < data.len() {
        match rustix::io::write(f, &data[off..]) {
            Ok(n) => off += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                r = Err(std::io::Error::from(e));
                break;
            }
        }
    }
    fcntl_setfl(f, flags)?;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_and_ids() {
        let dev = rustix::fs::makedev;
        assert_eq!(driver(dev(5, 2)), Some(Driver::PtyMaster));
        assert_eq!(driver(dev(136, 3)), Some(Driver::PtySlave));
        assert_eq!(driver(dev(5, 0)), Some(Driver::Ctty));
        assert_eq!(driver(dev(5, 1)), Some(Driver::Console));
        assert_eq!(driver(dev(4, 5)), Some(Driver::Vt));
        assert_eq!(driver(dev(204, 64)), Some(Driver::Serial));
        // /dev/tty0 and UART ports: CRIU dumps neither.
        assert_eq!(driver(dev(4, 0)), None);
        assert_eq!(driver(dev(4, 64)), None);
        assert!(is_terminal(dev(4, 0)) && is_terminal(dev(4, 64)));
        assert_eq!(info_id(Driver::Ctty, 1006), 2012);
        assert_eq!(info_id(Driver::Console, 1002), 2004);
        assert_eq!(info_id(Driver::PtySlave, 3), 6);
        assert_eq!(info_id(Driver::PtyMaster, 3), 7);
    }

    #[test]
    fn control_characters_are_packed_bytes() {
        let mut t = files_sys::zeroed_termios();
        t.c_cc[0] = 3;
        t.c_cc[1] = 0x1c;
        t.c_cc[4] = 4;
        let e = termios_entry(&t);
        assert_eq!(e.c_cc.len(), NCC);
        assert_eq!(e.c_cc[0], 0x1c03);
        assert_eq!(e.c_cc[1], 4);
    }
}
