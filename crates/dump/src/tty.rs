//! Terminals (Unix98 ptys): a `tty_file_entry` in files.img per open
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
//! there may be only one.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use rcriu_images::pb;
use rcriu_proc::{Pid, Task};

use crate::files::OpenFd;
use crate::{Error, Result, files_sys};

/// The kind of terminal an open file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// /dev/ptmx (or a legacy master major).
    PtyMaster,
    /// /dev/pts/N.
    PtySlave,
}

const TTYAUX_MAJOR: u32 = 5;
const UNIX98_PTY_MASTER_MAJOR: u32 = 128;
const UNIX98_PTY_SLAVE_MAJOR: u32 = 136;

/// The pty driver of a character device, if it is one.
pub fn driver(rdev: u64) -> Option<Driver> {
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    match major {
        TTYAUX_MAJOR if minor == 2 => Some(Driver::PtyMaster),
        UNIX98_PTY_MASTER_MAJOR..UNIX98_PTY_SLAVE_MAJOR => Some(Driver::PtyMaster),
        UNIX98_PTY_SLAVE_MAJOR => Some(Driver::PtySlave),
        _ => None,
    }
}

/// Whether a character device is a terminal of another kind (/dev/tty,
/// the console, virtual terminals, serial lines).
pub fn is_terminal(rdev: u64) -> bool {
    matches!(rustix::fs::major(rdev), 4 | TTYAUX_MAJOR | 188 | 204)
}

/// The pty's index: asked of a master, read from a slave's name.
pub fn index(pid: Pid, f: &OpenFd, driver: Driver) -> Result<u32> {
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
    }
}

/// The id of the `tty_info_entry` of a pty end.
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
        tty: Some(pb::TtyFileEntry {
            id,
            tty_info_id,
            flags,
            fown,
            regf_id: Some(regf_id),
        }),
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
    /// Ends with bytes waiting to be read: info id, fd, path, bytes.
    queued: Vec<(u32, i32, String, i32)>,
    /// A task's controlling terminal, session and foreground group, from
    /// /proc, with the task.
    ctty: Option<(Pid, (u64, Pid, Pid))>,
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
            r#type: pb::TtyType::Pty as i32,
            locked: false,
            exclusive: false,
            packet_mode: false,
            sid: 0,
            pgrp: 0,
            rdev: f.info.rdev as u32,
            termios: None,
            termios_locked: None,
            winsize: None,
            pty: Some(pb::TtyPtyEntry { index }),
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
        let n = files_sys::queued(fd).map_err(what("reading a terminal's queue (FIONREAD)"))?;
        if n > 0 {
            self.queued
                .push((id, f.fd, f.info.path.display().to_string(), n));
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
            Driver::PtySlave => {
                let (tty, sid, pgrp) = self.ctty(pid)?;
                if tty == f.info.rdev {
                    info.sid = sid as u32;
                    info.pgrp = pgrp.max(0) as u32;
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
        self.active
            .push((id, f.fd, f.info.path.display().to_string()));
        Ok(Some(info))
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
    /// one with `--shell-job` (the shell's terminal); and no pty of the
    /// dump may hold bytes not read yet (rcriu does not carry them: CRIU
    /// writes tty-data.img), but the shell's terminal, whose input is the
    /// shell's.
    pub fn check_pairs(&self, pid: Pid, shell_job: bool) -> Result<()> {
        let has_master = |id: u32| self.active.iter().any(|a| a.0 == (id | 1));
        if let Some((_, fd, path, n)) = self
            .queued
            .iter()
            .find(|(id, ..)| id % 2 == 1 || has_master(*id))
        {
            return Err(Error::unsupported(
                pid,
                format!("fd {fd}: the terminal {path} with {n} bytes not read yet"),
            ));
        }
        let unpaired: Vec<&(u32, i32, String)> = self
            .active
            .iter()
            .filter(|(id, _, _)| id % 2 == 0 && !self.active.iter().any(|a| a.0 == id + 1))
            .collect();
        match unpaired.as_slice() {
            [] => Ok(()),
            [(_, fd, path)] if !shell_job => Err(Error::unsupported(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_and_ids() {
        let dev = rustix::fs::makedev;
        assert_eq!(driver(dev(5, 2)), Some(Driver::PtyMaster));
        assert_eq!(driver(dev(136, 3)), Some(Driver::PtySlave));
        assert_eq!(driver(dev(5, 0)), None);
        assert!(is_terminal(dev(5, 0)));
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
