//! Packet sockets (`AF_PACKET`, raw and cooked, and the old
//! `SOCK_PACKET`): a `packet_sock_entry` in files.img, as CRIU 4.2
//! writes it: the protocol, the interface it is bound to, the version,
//! reserve, timestamp source, copy threshold and flags (auxdata, origdev,
//! vnet header, loss), the memberships, the fanout group and the rings'
//! geometry. Rings mapped into the process are an area of their own
//! (in `mm`, CRIU's VMA_AREA_SOCKET), whose `shmid` is the
//! socket's file id.

use std::os::fd::AsFd;

use rcriu_images::pb;

use crate::files::{Files, OpenFd};
use crate::sockets::{self, what};
use crate::{Error, Result};

const PDI_AUXDATA: u32 = 0x2;
const PDI_ORIGDEV: u32 = 0x4;
const PDI_VNETHDR: u32 = 0x8;
const PDI_LOSS: u32 = 0x10;
const PACKET_MR_MULTICAST: u16 = 0;
const PACKET_MR_PROMISC: u16 = 1;
const PACKET_MR_ALLMULTI: u16 = 2;
const PACKET_MR_UNICAST: u16 = 3;

/// Dumps the packet socket open as `f`, as file `id`.
pub fn dump(files: &mut Files, f: &OpenFd, id: u32, fown: pb::FownEntry) -> Result<()> {
    let pid = files.pid();
    let ino = f.info.ino as u32;
    let sk = files
        .sockets
        .packet(pid)?
        .get(&ino)
        .cloned()
        .ok_or_else(|| Error::Inconsistent {
            pid,
            what: format!("{}: a packet socket sock_diag does not know", what(f)),
        })?;
    let info = sk.info.unwrap_or_default();
    let mut mclist = Vec::with_capacity(sk.mclist.len());
    for m in &sk.mclist {
        if m.count != 1 {
            return Err(Error::unsupported(
                pid,
                format!(
                    "{}: a packet socket joined {} times to one group",
                    what(f),
                    m.count
                ),
            ));
        }
        let addr = match m.kind {
            PACKET_MR_MULTICAST | PACKET_MR_UNICAST => m.addr.clone(),
            PACKET_MR_PROMISC | PACKET_MR_ALLMULTI => Vec::new(),
            k => {
                return Err(Error::unsupported(
                    pid,
                    format!("{}: a packet membership of type {k}", what(f)),
                ));
            }
        };
        mclist.push(pb::PacketMclist {
            index: m.index,
            r#type: u32::from(m.kind),
            addr,
        });
    }
    let ring = |r: &rcriu_proc::sock_diag::PacketRing| pb::PacketRing {
        block_size: r.block_size,
        block_nr: r.block_nr,
        frame_size: r.frame_size,
        frame_nr: r.frame_nr,
        retire_tmo: r.retire_tmo,
        sizeof_priv: r.sizeof_priv,
        features: r.features,
    };
    let e = pb::PacketSockEntry {
        id,
        r#type: u32::from(sk.kind),
        protocol: u32::from(sk.protocol),
        flags: f.flags(),
        ifindex: info.index,
        fown,
        opts: sockets::opts(pid, f, libc::AF_PACKET)?,
        version: info.version,
        reserve: info.reserve,
        aux_data: info.flags & PDI_AUXDATA != 0,
        orig_dev: info.flags & PDI_ORIGDEV != 0,
        vnet_hdr: info.flags & PDI_VNETHDR != 0,
        loss: info.flags & PDI_LOSS != 0,
        timestamp: info.tstamp,
        copy_thresh: info.copy_thresh,
        mclist,
        fanout: sk.fanout,
        rx_ring: sk.rx_ring.as_ref().map(ring),
        tx_ring: sk.tx_ring.as_ref().map(ring),
        ns_id: Some(files.sockets.ns_id()),
    };
    let _ = f.file.as_fd();
    files.entries.push(pb::FileEntry {
        r#type: pb::FdTypes::Packetsk as i32,
        id,
        psk: Some(Box::new(e)),
        ..Default::default()
    });
    Ok(())
}
