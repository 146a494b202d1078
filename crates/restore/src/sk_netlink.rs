//! Netlink sockets made again from their `netlink_sk_entry` (CRIU 4.2's
//! `open_netlink_sk`): bound to the port id and groups they had (a port
//! taken meanwhile gets one from the kernel, as CRIU does: programs
//! rarely care which), connected to the port and group they were, with
//! their flags and options.

use std::os::fd::{AsFd, OwnedFd};

use rcriu_images::pb;

use crate::{Error, Result, sk_sys, sockets};

const NETLINK_CONNECTED: u32 = 1;

fn describe(e: &pb::NetlinkSkEntry) -> String {
    format!(
        "netlink socket socket:[{}] (protocol {}, port {})",
        e.ino, e.protocol, e.portid
    )
}

/// A `sockaddr_nl`.
fn sockaddr(portid: u32, groups: u32) -> Vec<u8> {
    let mut a = (libc::AF_NETLINK as u16).to_ne_bytes().to_vec();
    a.extend_from_slice(&[0, 0]);
    a.extend_from_slice(&portid.to_ne_bytes());
    a.extend_from_slice(&groups.to_ne_bytes());
    a
}

/// Refuses what a restore cannot make.
pub fn check(e: &pb::NetlinkSkEntry) -> Result<()> {
    if e.groups.len() > 1 {
        return Err(Error::unsupported(format!(
            "restoring {}, in groups above 32",
            describe(e)
        )));
    }
    Ok(())
}

/// Makes the socket of `e`.
pub fn make(e: &pb::NetlinkSkEntry) -> Result<OwnedFd> {
    check(e)?;
    let what = || format!("making {}", describe(e));
    let fd = sk_sys::socket(libc::AF_NETLINK, libc::SOCK_RAW, e.protocol as i32)
        .map_err(Error::io(what()))?;
    let s = fd.as_fd();
    if e.portid != 0 {
        let groups = e.groups.first().copied().unwrap_or(0);
        if let Err(err) = sk_sys::bind(s, &sockaddr(e.portid, groups)) {
            log::warn!(
                "{}: port {} taken ({err}); the kernel gives another",
                describe(e),
                e.portid
            );
            sk_sys::bind(s, &sockaddr(0, groups))
                .map_err(Error::io(format!("binding {}", describe(e))))?;
        }
    }
    if e.state == NETLINK_CONNECTED {
        let group = if e.dst_group == 0 {
            0
        } else {
            1u32.checked_shl(e.dst_group - 1).unwrap_or(0)
        };
        sk_sys::connect(s, &sockaddr(e.dst_portid, group))
            .map_err(Error::io(format!("connecting {}", describe(e))))?;
    }
    sockets::set_flags(s, e.flags, false)?;
    let fresh = sockets::fresh(libc::AF_NETLINK, libc::SOCK_RAW, e.protocol as i32);
    sockets::set_opts(s, &e.opts, fresh)?;
    Ok(fd)
}
