//! Packet sockets made again from their `packet_sock_entry` (CRIU 4.2's
//! `open_packet_sk`): bound to their interface, then version, reserve,
//! timestamp source, copy threshold, auxdata, origdev, vnet header, loss,
//! memberships, rings (their geometry; an area of the process that mapped
//! them maps them again, in `mm`) and fanout
//! group, flags and options. A `SOCK_PACKET` socket is bound to its
//! interface by name.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rcriu_images::pb;

use crate::{Error, Result, sk_sys, sockets};

const SOL_PACKET: i32 = 263;
const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_RX_RING: i32 = 5;
const PACKET_COPY_THRESH: i32 = 7;
const PACKET_AUXDATA: i32 = 8;
const PACKET_ORIGDEV: i32 = 9;
const PACKET_VERSION: i32 = 10;
const PACKET_RESERVE: i32 = 12;
const PACKET_TX_RING: i32 = 13;
const PACKET_LOSS: i32 = 14;
const PACKET_VNET_HDR: i32 = 15;
const PACKET_TIMESTAMP: i32 = 17;
const PACKET_FANOUT: i32 = 18;
const SOCK_PACKET: u32 = 10;

fn describe(e: &pb::PacketSockEntry) -> String {
    format!(
        "packet socket (file {}, protocol {:#x}, interface {})",
        e.id,
        u16::from_be(e.protocol as u16),
        e.ifindex
    )
}

/// Makes the socket of `e`.
pub fn make(e: &pb::PacketSockEntry) -> Result<OwnedFd> {
    let what = || format!("making {}", describe(e));
    let fd = sk_sys::socket(libc::AF_PACKET, e.r#type as i32, e.protocol as i32)
        .map_err(Error::io(what()))?;
    let s = fd.as_fd();
    if e.r#type == SOCK_PACKET {
        if e.ifindex > 0 {
            let name = sk_sys::if_name(s, e.ifindex as i32).map_err(Error::io(format!(
                "finding interface {} for {}",
                e.ifindex,
                describe(e)
            )))?;
            // struct sockaddr: the family, then 14 bytes of the name.
            let mut a = (libc::AF_PACKET as u16).to_ne_bytes().to_vec();
            let mut n = [0u8; 14];
            let k = name.len().min(13);
            n[..k].copy_from_slice(&name[..k]);
            a.extend_from_slice(&n);
            sk_sys::bind(s, &a).map_err(Error::io(format!("binding {}", describe(e))))?;
        }
    } else {
        // struct sockaddr_ll: family, protocol, ifindex, then zeros.
        let mut a = (libc::AF_PACKET as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&[0, 0]);
        a.extend_from_slice(&(e.ifindex as i32).to_ne_bytes());
        a.extend_from_slice(&[0; 12]);
        sk_sys::bind(s, &a).map_err(Error::io(format!("binding {}", describe(e))))?;
        let set = |name, v: u32, o: &str| {
            sk_sys::setsockopt_int(s, SOL_PACKET, name, v as i32)
                .map_err(Error::io(format!("setting {o} of {}", describe(e))))
        };
        set(PACKET_VERSION, e.version, "PACKET_VERSION")?;
        set(PACKET_RESERVE, e.reserve, "PACKET_RESERVE")?;
        set(PACKET_TIMESTAMP, e.timestamp, "PACKET_TIMESTAMP")?;
        set(PACKET_COPY_THRESH, e.copy_thresh, "PACKET_COPY_THRESH")?;
        for (on, name, o) in [
            (e.aux_data, PACKET_AUXDATA, "PACKET_AUXDATA"),
            (e.orig_dev, PACKET_ORIGDEV, "PACKET_ORIGDEV"),
            (e.vnet_hdr, PACKET_VNET_HDR, "PACKET_VNET_HDR"),
            (e.loss, PACKET_LOSS, "PACKET_LOSS"),
        ] {
            if on {
                set(name, 1, o)?;
            }
        }
        for m in &e.mclist {
            if m.addr.len() > 8 {
                return Err(Error::invalid(
                    "files.img",
                    format!(
                        "{}: a membership address of {} bytes",
                        describe(e),
                        m.addr.len()
                    ),
                ));
            }
            // struct packet_mreq: ifindex, type, alen, address[8].
            let mut r = (m.index as i32).to_ne_bytes().to_vec();
            r.extend_from_slice(&(m.r#type as u16).to_ne_bytes());
            r.extend_from_slice(&(m.addr.len() as u16).to_ne_bytes());
            let mut addr = [0u8; 8];
            addr[..m.addr.len()].copy_from_slice(&m.addr);
            r.extend_from_slice(&addr);
            sk_sys::setsockopt(s, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &r)
                .map_err(Error::io(format!("joining a group with {}", describe(e))))?;
        }
        ring(s, PACKET_RX_RING, e.rx_ring.as_ref(), e)?;
        ring(s, PACKET_TX_RING, e.tx_ring.as_ref(), e)?;
        if let Some(f) = e.fanout.filter(|&f| f != u32::MAX) {
            set(PACKET_FANOUT, f, "PACKET_FANOUT")?;
        }
    }
    sockets::set_flags(s, e.flags, false)?;
    sockets::set_opts(s, &e.opts, None)?;
    Ok(fd)
}

/// A ring's geometry (`struct tpacket_req3`).
fn ring(
    s: BorrowedFd<'_>,
    name: i32,
    r: Option<&pb::PacketRing>,
    e: &pb::PacketSockEntry,
) -> Result<()> {
    let Some(r) = r else {
        return Ok(());
    };
    let req: Vec<u8> = [
        r.block_size,
        r.block_nr,
        r.frame_size,
        r.frame_nr,
        r.retire_tmo,
        r.sizeof_priv,
        r.features,
    ]
    .iter()
    .flat_map(|v| v.to_ne_bytes())
    .collect();
    sk_sys::setsockopt(s, SOL_PACKET, name, &req)
        .map_err(Error::io(format!("setting up a ring of {}", describe(e))))
}
