//! Terminals: Unix98 ptys are made again through /dev/ptmx with the index
//! they had (the kernel gives the lowest free one: lower ones are held
//! until the right one comes), unlocked, their slaves opened by name, and
//! each end's modes, locked modes, window size, packet and exclusive
//! modes set as `tty-info.img` has them; a pty that was locked is locked
//! again once every fd is open.
//!
//! A slave whose master is not in the dump is the terminal of the shell
//! the process was started from (`--shell-job`): rcriu's own standard
//! input stands for it, as in CRIU. A slave whose master was closed (hung
//! up: the dump knows no modes of it), or any unpaired slave without
//! `--shell-job`, is opened through a master made for the restore and
//! closed before the process runs, as CRIU does.
//!
//! The bytes that waited in a pty (`tty-data.img`, by the id of the end
//! they were read from) are written into its other end once every fd is
//! open, so that they wait again where they were, as CRIU writes them
//! (bytes of the slave's go through the master's input processing).
//!
//! In a container run with a terminal (criu's `orphan_pts_master`, which
//! runc sends), the one slave whose master the runtime held is made again
//! with a new pty of the container's devpts, whose master is handed to
//! the caller ([`OrphanPts`]: criu's `orphan-pts-master` notification,
//! the fd attached), as CRIU 4.2 does. A pty a mount binds (runc's
//! `/dev/console`) is made with the mounts; its master comes here
//! ([`Ttys::premade`]) and serves the pty's first use. When the tree has
//! a root of its own, ptys are made and opened in its `/dev`.
//!
//! /dev/tty (CRIU's `CTTY`) is not opened here: the process opens it
//! itself once its controlling terminal is back ([`Ttys::is_ctty`]).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use rcriu_images::{ImageDir, ImageFile, pb};

use crate::{Error, Result, files_sys};

/// Hands the master of a container's new terminal to the caller; `false`
/// when there is none to hand it to.
pub type OrphanPts = Arc<dyn Fn(BorrowedFd<'_>) -> std::result::Result<bool, String> + Send + Sync>;

/// `path` (absolute) in the container's root, when the tree has one.
fn dev_path(path: &str) -> PathBuf {
    match crate::files::task_root() {
        Some(root) => root.join(path.trim_start_matches('/')),
        None => PathBuf::from(path),
    }
}

/// The terminals of a restore.
#[derive(Debug, Default)]
pub struct Ttys {
    infos: BTreeMap<u32, pb::TtyInfoEntry>,
    /// pty index → its master, made.
    masters: BTreeMap<u32, OwnedFd>,
    /// Info ids whose parameters are set.
    set: Vec<u32>,
    /// pty index → a master made for slaves whose own is gone, closed
    /// once every fd is open.
    fakes: BTreeMap<u32, OwnedFd>,
    /// Info id → the bytes that waited to be read from that end.
    data: BTreeMap<u32, Vec<u8>>,
    /// pty index → a master made with the mounts (a pty a mount binds),
    /// taken when the pty is first wanted.
    premade: BTreeMap<u32, OwnedFd>,
    /// Who takes the master of the container's terminal.
    orphan: Option<Handover>,
    /// pty index → the master handed to the caller (closed here once
    /// every fd is open).
    handed: BTreeMap<u32, OwnedFd>,
}

/// An [`OrphanPts`], shown by name only.
#[derive(Clone)]
struct Handover(OrphanPts);

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrphanPts")
    }
}

/// What an open terminal is to the process.
#[derive(Debug)]
pub struct Opened {
    pub fd: OwnedFd,
    /// It is the process's controlling terminal (a slave whose session is
    /// the process's).
    pub session: Option<u32>,
}

fn is_master(info_id: u32) -> bool {
    info_id & 1 == 1
}

impl Ttys {
    pub fn load(dir: &ImageDir) -> Result<Ttys> {
        let mut t = Ttys::default();
        if !dir.exists(ImageFile::TtyInfo) {
            return Ok(t);
        }
        for i in dir.read_all::<pb::TtyInfoEntry>(ImageFile::TtyInfo)? {
            t.infos.insert(i.id, i);
        }
        if dir.exists(ImageFile::TtyData) {
            let name = ImageFile::TtyData.name();
            for d in dir.read_all::<pb::TtyDataEntry>(ImageFile::TtyData)? {
                let paired =
                    t.infos.contains_key(&d.tty_id) && t.infos.contains_key(&(d.tty_id ^ 1));
                if !paired {
                    return Err(Error::invalid(
                        &name,
                        format!(
                            "bytes of terminal {:#x}, which is not one end of a pty whose both ends the images hold",
                            d.tty_id
                        ),
                    ));
                }
                if t.data.insert(d.tty_id, d.data).is_some() {
                    return Err(Error::invalid(
                        &name,
                        format!("terminal {:#x} has its bytes twice", d.tty_id),
                    ));
                }
            }
        }
        Ok(t)
    }

    /// The masters of ptys the mounts made (index, master).
    pub fn premade(&mut self, ptys: Vec<(u32, OwnedFd)>) {
        self.premade.extend(ptys);
    }

    /// Who takes the master of a container's terminal (criu's
    /// `orphan_pts_master`).
    pub fn set_orphan(&mut self, f: Option<OrphanPts>) {
        self.orphan = f.map(Handover);
    }

    /// A new master of pty `index`: the one the mounts made, or one made
    /// now.
    fn new_master(&mut self, index: u32) -> Result<OwnedFd> {
        match self.premade.remove(&index) {
            Some(m) => Ok(m),
            None => open_ptmx_index(index),
        }
    }

    /// Whether a terminal file is /dev/tty (CRIU's `CTTY`), which the
    /// process opens itself once its controlling terminal is back.
    pub fn is_ctty(&self, e: &pb::TtyFileEntry) -> bool {
        self.infos
            .get(&e.tty_info_id)
            .is_some_and(|i| i.r#type == pb::TtyType::Ctty as i32)
    }

    /// Refuses a terminal of a kind this version does not restore.
    pub fn check(&self, e: &pb::TtyFileEntry) -> Result<()> {
        let info = self.infos.get(&e.tty_info_id).ok_or_else(|| {
            Error::invalid(
                ImageFile::Files.name(),
                format!(
                    "terminal file {} refers to {} entry {}, which it does not have",
                    e.id,
                    ImageFile::TtyInfo.name(),
                    e.tty_info_id
                ),
            )
        })?;
        check_type(info, e.id)
    }

    /// The open file of a `tty_file_entry`; `path` is its path entry's
    /// (a terminal that is not a pty is opened by it).
    pub fn open(
        &mut self,
        e: &pb::TtyFileEntry,
        path: Option<&std::path::Path>,
        shell_job: bool,
    ) -> Result<Opened> {
        let iname = ImageFile::TtyInfo.name();
        let info = self
            .infos
            .get(&e.tty_info_id)
            .ok_or_else(|| {
                Error::invalid(
                    ImageFile::Files.name(),
                    format!(
                        "terminal file {} refers to {iname} entry {}, which it does not have",
                        e.id, e.tty_info_id
                    ),
                )
            })?
            .clone();
        check_type(&info, e.id)?;
        if info.r#type != pb::TtyType::Pty as i32 {
            return self.open_simple(e, &info, path);
        }
        let index = info
            .pty
            .as_ref()
            .ok_or_else(|| Error::invalid(&iname, format!("pty {} without an index", info.id)))?
            .index;
        let flags = e.flags as i32;
        let fd = if is_master(info.id) {
            let m = self.master(index, &info)?;
            let fd = m.try_clone().map_err(Error::host("copying a pty master"))?;
            files_sys::set_status_flags(fd.as_fd(), flags & libc::O_NONBLOCK).map_err(
                Error::io(format!("setting the flags of pty master {index}")),
            )?;
            fd
        } else if self.infos.contains_key(&(info.id + 1)) {
            let master = self.infos[&(info.id + 1)].clone();
            self.master(index, &master)?;
            let f = open_slave(index, flags)?;
            let path = format!("/dev/pts/{index}");
            // Its owner, as the process may have set it (grantpt, or
            // fchown): the slave's inode is made anew with the pty.
            if let (Some(uid), Some(gid)) = (info.uid, info.gid) {
                rustix::fs::fchown(
                    &f,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                )
                .map_err(|e| Error::io(format!("giving {path} its owner {uid}:{gid}"))(e.into()))?;
            }
            f
        } else if let Some(f) = self.orphan_slave(index, flags, &info)? {
            f
        } else if !(shell_job && info.termios.is_some()) {
            // Its master is gone (a hung-up slave, which the dump knows
            // only by its index), or, in a CRIU image without
            // --shell-job, not in the dump: as CRIU, a master is made for
            // the restore and closed once every fd is open, which leaves
            // the slave hung up.
            if !self.fakes.contains_key(&index) {
                let m = self.new_master(index)?;
                files_sys::set_pty_lock(m.as_fd(), false)
                    .map_err(Error::io(format!("unlocking pty {index}")))?;
                self.fakes.insert(index, m);
            }
            open_slave(index, flags)?
        } else {
            let stdin = std::io::stdin();
            let fd = stdin.as_fd();
            if !files_sys::is_tty(fd) {
                return Err(Error::unsupported(format!(
                    "restoring the shell's terminal (/dev/pts/{index}) without a terminal on rcriu's standard input"
                )));
            }
            fd.try_clone_to_owned()
                .map_err(Error::host("copying the standard input"))?
        };
        self.params_once(fd.as_fd(), &info)?;
        Ok(Opened {
            fd,
            session: (!is_master(info.id) && info.sid != 0).then_some(info.sid),
        })
    }

    /// A console, virtual terminal or serial line: opened by its path, as
    /// CRIU does, given its owner and its parameters.
    fn open_simple(
        &mut self,
        e: &pb::TtyFileEntry,
        info: &pb::TtyInfoEntry,
        path: Option<&std::path::Path>,
    ) -> Result<Opened> {
        let path = path.ok_or_else(|| {
            Error::invalid(
                ImageFile::Files.name(),
                format!("terminal file {} has no path entry (regf_id)", e.id),
            )
        })?;
        if info.termios.is_none() {
            return Err(Error::unsupported(format!(
                "restoring terminal file {} ({}), which was hung up",
                e.id,
                path.display()
            )));
        }
        let flags = e.flags as i32;
        let f = std::fs::OpenOptions::new()
            .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
            .write(flags & libc::O_ACCMODE != libc::O_RDONLY)
            .custom_flags(
                (flags & (libc::O_NONBLOCK | libc::O_APPEND)) | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
            .open(path)
            .map_err(Error::file("opening the terminal", path))?;
        if let (Some(uid), Some(gid)) = (info.uid, info.gid) {
            rustix::fs::fchown(
                &f,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(|err| {
                Error::io(format!("giving {} its owner {uid}:{gid}", path.display()))(err.into())
            })?;
        }
        let fd = OwnedFd::from(f);
        self.params_once(fd.as_fd(), info)?;
        Ok(Opened {
            fd,
            session: (info.sid != 0).then_some(info.sid),
        })
    }

    /// The slave of a pty made for this restore whose session is `sid`,
    /// opened anew, when the process holds no fd of it: the terminal a
    /// session leader kept as its controlling terminal after closing it.
    pub fn session_slave(&mut self, sid: u32) -> Result<Option<OwnedFd>> {
        let Some(info) = self
            .infos
            .values()
            .find(|i| is_master(i.id) && i.sid == sid && i.pty.is_some())
            .cloned()
        else {
            return Ok(None);
        };
        let Some(index) = info.pty.as_ref().map(|p| p.index) else {
            return Ok(None);
        };
        if !self.masters.contains_key(&index) {
            return Ok(None);
        }
        open_slave(index, libc::O_RDWR).map(Some)
    }

    /// The slave of the container's terminal (an active slave whose master
    /// is not in the images), when a caller takes its new master: the pty
    /// made again, its master handed over; `None` without a caller or for
    /// a hung-up slave (no one held its master).
    fn orphan_slave(
        &mut self,
        index: u32,
        flags: i32,
        info: &pb::TtyInfoEntry,
    ) -> Result<Option<OwnedFd>> {
        if self.handed.contains_key(&index) {
            return open_slave(index, flags).map(Some);
        }
        let Some(Handover(hand)) = self.orphan.clone() else {
            return Ok(None);
        };
        if info.termios.is_none() {
            return Ok(None);
        }
        let m = self.new_master(index)?;
        files_sys::set_pty_lock(m.as_fd(), false)
            .map_err(Error::io(format!("unlocking pty {index}")))?;
        // The master is new: it takes the slave's modes, as CRIU's fake
        // master does.
        let master = pb::TtyInfoEntry {
            id: info.id + 1,
            ..info.clone()
        };
        self.params_once(m.as_fd(), &master)?;
        let slave = open_slave(index, flags)?;
        let handed = hand(m.as_fd()).map_err(|why| {
            Error::unsupported(format!(
                "handing the master of the container's terminal (pty {index}) to the caller: {why}"
            ))
        })?;
        if !handed {
            return Ok(None);
        }
        log::info!("the master of pty {index} went to the caller (orphan-pts-master)");
        self.handed.insert(index, m);
        Ok(Some(slave))
    }

    /// The master of pty `index`, made when first asked for.
    fn master(&mut self, index: u32, info: &pb::TtyInfoEntry) -> Result<&OwnedFd> {
        if !self.masters.contains_key(&index) {
            let m = self.new_master(index)?;
            files_sys::set_pty_lock(m.as_fd(), false)
                .map_err(Error::io(format!("unlocking pty {index}")))?;
            if info.packet_mode {
                files_sys::set_packet_mode(m.as_fd(), true)
                    .map_err(Error::io(format!("setting pty {index}'s packet mode")))?;
            }
            self.params_once(m.as_fd(), info)?;
            self.masters.insert(index, m);
        }
        Ok(&self.masters[&index])
    }

    /// Modes, locked modes and window size of a terminal end, once.
    fn params_once(&mut self, fd: BorrowedFd<'_>, info: &pb::TtyInfoEntry) -> Result<()> {
        if self.set.contains(&info.id) {
            return Ok(());
        }
        self.set.push(info.id);
        let err = |w: &str| Error::io(format!("setting the {w} of terminal {:#x}", info.id));
        if let Some(t) = &info.termios_locked {
            files_sys::set_termios(fd, &termios(t), true).map_err(err("locked modes"))?;
        }
        if let Some(t) = &info.termios {
            files_sys::set_termios(fd, &termios(t), false).map_err(err("modes"))?;
        }
        // Exclusive mode (TIOCEXCL) of this end: the opens of the restore
        // that follow are rcriu's, as root, which it does not stop.
        if info.exclusive {
            files_sys::set_exclusive(fd).map_err(err("exclusive mode (TIOCEXCL)"))?;
        }
        if let Some(w) = &info.winsize {
            let ws = libc::winsize {
                ws_row: w.ws_row as u16,
                ws_col: w.ws_col as u16,
                ws_xpixel: w.ws_xpixel as u16,
                ws_ypixel: w.ws_ypixel as u16,
            };
            files_sys::set_winsize(fd, &ws).map_err(err("window size"))?;
        }
        Ok(())
    }

    /// Once every fd is open: locks and exclusive modes; the masters made
    /// for orphaned slaves are closed (the slaves hang up, as they were).
    pub fn finish(&mut self) -> Result<()> {
        self.fakes.clear();
        self.handed.clear();
        self.premade.clear();
        self.put_data()?;
        for info in self.infos.values() {
            let Some(index) = info.pty.as_ref().map(|p| p.index) else {
                continue;
            };
            let Some(m) = self.masters.get(&index) else {
                continue;
            };
            if is_master(info.id) && info.locked {
                files_sys::set_pty_lock(m.as_fd(), true)
                    .map_err(Error::io(format!("locking pty {index}")))?;
            }
        }
        Ok(())
    }
}

impl Ttys {
    /// Writes the bytes that waited in each end into the other end: the
    /// slave's into the master, the master's into the slave (opened for
    /// the moment).
    fn put_data(&mut self) -> Result<()> {
        for (id, data) in std::mem::take(&mut self.data) {
            let Some(index) = self
                .infos
                .get(&id)
                .and_then(|i| i.pty.as_ref())
                .map(|p| p.index)
            else {
                continue;
            };
            let what = format!(
                "writing the {} bytes that waited in terminal {id:#x}",
                data.len()
            );
            let Some(m) = self.masters.get(&index) else {
                return Err(Error::unsupported(format!(
                    "{what}: no fd holds its pty's master"
                )));
            };
            if is_master(id) {
                let slave = open_slave(index, libc::O_RDWR | libc::O_NONBLOCK)?;
                write_all(slave.as_fd(), &data).map_err(Error::io(what))?;
            } else {
                write_all(m.as_fd(), &data).map_err(Error::io(what))?;
            }
            log::debug!("{} bytes wait again in terminal {id:#x}", data.len());
        }
        Ok(())
    }
}

/// Refuses a terminal of a kind rcriu does not restore: CRIU's external
/// terminals (`--inherit-fd tty[...]`), and a pty without its index.
fn check_type(info: &pb::TtyInfoEntry, file: u32) -> Result<()> {
    let iname = ImageFile::TtyInfo.name();
    match pb::TtyType::try_from(info.r#type) {
        Ok(pb::TtyType::Pty) if info.pty.is_none() => Err(Error::invalid(
            &iname,
            format!("pty {:#x} without an index", info.id),
        )),
        Ok(pb::TtyType::Pty) => Ok(()),
        Ok(pb::TtyType::Ctty | pb::TtyType::Console | pb::TtyType::Vt | pb::TtyType::Serial)
            if info.pty.is_some() =>
        {
            Err(Error::invalid(
                &iname,
                format!("terminal {:#x}, not a pty, with a pty index", info.id),
            ))
        }
        Ok(pb::TtyType::Ctty | pb::TtyType::Console | pb::TtyType::Vt | pb::TtyType::Serial) => {
            Ok(())
        }
        _ => Err(Error::unsupported(format!(
            "restoring a terminal of type {} (file {file}; ptys, /dev/tty, the console, virtual terminals and serial lines are)",
            info.r#type
        ))),
    }
}

/// Writes all of `data` into a terminal end without waiting (a pty that
/// cannot take it all is an error, not a hang).
fn write_all(fd: BorrowedFd<'_>, data: &[u8]) -> std::io::Result<()> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let flags = fcntl_getfl(fd)?;
    fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
    let mut off = 0;
    let mut r = Ok(());
    while off < data.len() {
        match rustix::io::write(fd, &data[off..]) {
            Ok(n) => off += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                r = Err(std::io::Error::from(e));
                break;
            }
        }
    }
    fcntl_setfl(fd, flags)?;
    r
}

/// A termios from its entry: the control characters are the bytes of the
/// words, four to a word, as CRIU stores them.
fn termios(t: &pb::TermiosEntry) -> libc::termios {
    let mut out = files_sys::zeroed_termios();
    out.c_iflag = t.c_iflag;
    out.c_oflag = t.c_oflag;
    out.c_cflag = t.c_cflag;
    out.c_lflag = t.c_lflag;
    out.c_line = t.c_line as u8;
    let bytes: Vec<u8> = t.c_cc.iter().flat_map(|w| w.to_le_bytes()).collect();
    let n = bytes.len().min(out.c_cc.len());
    out.c_cc[..n].copy_from_slice(&bytes[..n]);
    out
}

/// Opens the slave of pty `index` with `flags` (access, O_NONBLOCK,
/// O_APPEND), never as rcriu's controlling terminal.
fn open_slave(index: u32, flags: i32) -> Result<OwnedFd> {
    let path = dev_path(&format!("/dev/pts/{index}"));
    let f = std::fs::OpenOptions::new()
        .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
        .write(flags & libc::O_ACCMODE != libc::O_RDONLY)
        .custom_flags(
            (flags & (libc::O_NONBLOCK | libc::O_APPEND)) | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
        .open(&path)
        .map_err(Error::file("opening the pty slave", &path))?;
    Ok(f.into())
}

/// Opens /dev/ptmx (the container's, when the tree has a root) until the
/// kernel gives pty `index`.
fn open_ptmx_index(index: u32) -> Result<OwnedFd> {
    let ptmx = dev_path("/dev/ptmx");
    ptmx_index_at(index, || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&ptmx)
            .map(OwnedFd::from)
            .map_err(Error::file("opening", &ptmx))
    })
}

/// Opens a ptmx with `open` until the kernel gives pty `index` (it gives
/// the lowest free index: the lower ones are held meanwhile).
pub(crate) fn ptmx_index_at(index: u32, open: impl Fn() -> Result<OwnedFd>) -> Result<OwnedFd> {
    let mut held = Vec::new();
    loop {
        let f = open()?;
        let got = files_sys::pty_index(f.as_fd())
            .map_err(Error::io("reading a new pty's index (TIOCGPTN)"))?;
        if got == index {
            return Ok(f);
        }
        if got > index || held.len() > 4096 {
            return Err(Error::unsupported(format!(
                "restoring pty {index}, which another process holds (the kernel gave {got})"
            )));
        }
        held.push(f);
    }
}
