//! Netlink sockets (route, generic, uevent, ...): a `netlink_sk_entry` in
//! files.img, as CRIU 4.2 writes it: the protocol, the port id it is
//! bound to, the multicast groups it listens to (the first 32) and the
//! port and group it is connected to. A socket with messages waiting to
//! be read is refused (as CRIU: the kernel's answers cannot be queued
//! again), as is one listening to a group above 32.

use std::os::fd::AsFd;

use rcriu_images::pb;

use crate::files::{Files, OpenFd};
use crate::sockets::{self, what};
use crate::{Error, Result, sk_sys};

/// Dumps the netlink socket open as `f`, as file `id`.
pub fn dump(files: &mut Files, f: &OpenFd, id: u32, fown: pb::FownEntry) -> Result<()> {
    let pid = files.pid();
    let fd = f.file.as_fd();
    let ino = f.info.ino as u32;
    let ev = sk_sys::poll_now(fd, libc::POLLIN).map_err(Error::sys("polling a socket", pid))?;
    if ev & libc::POLLIN != 0 {
        return Err(Error::unsupported(
            pid,
            format!(
                "{}: a netlink socket with messages waiting to be read",
                what(f)
            ),
        ));
    }
    let listed = files.sockets.netlink(pid)?.get(&ino).cloned();
    let mut e = pb::NetlinkSkEntry {
        id,
        ino,
        flags: f.flags(),
        fown,
        ns_id: Some(files.sockets.ns_id()),
        ..Default::default()
    };
    match listed {
        Some(sk) => {
            e.protocol = u32::from(sk.protocol);
            e.portid = sk.portid;
            e.state = u32::from(sk.state);
            e.dst_portid = sk.dst_portid;
            e.dst_group = sk.dst_group;
            let mut groups: Vec<u32> = sk
                .groups
                .as_deref()
                .unwrap_or_default()
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            // The bitmap comes in whole longs: a second word of zeros is
            // no group.
            if groups.last() == Some(&0) {
                groups.pop();
            }
            if groups.len() > 1 {
                return Err(Error::unsupported(
                    pid,
                    format!("{}: a netlink socket listening to groups above 32", what(f)),
                ));
            }
            if !groups.is_empty() && sk.portid == 0 {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "{}: a netlink socket in groups but bound to no port",
                        what(f)
                    ),
                ));
            }
            e.groups = groups;
        }
        None => {
            // Neither bound nor connected: sock_diag does not list it.
            e.protocol = sk_sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)
                .map_err(Error::sys("reading a socket's protocol (SO_PROTOCOL)", pid))?
                as u32;
        }
    }
    e.opts = sockets::opts(pid, f, libc::AF_NETLINK)?;
    files.entries.push(pb::FileEntry {
        r#type: pb::FdTypes::Netlinksk as i32,
        id,
        nlsk: Some(Box::new(e)),
        ..Default::default()
    });
    Ok(())
}
