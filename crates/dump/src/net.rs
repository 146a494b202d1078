//! A network namespace of the tree's own, dumped as CRIU 4.2 dumps it:
//! `netns-<id>.img` (the `all` and `default` ipv4 and ipv6 confs,
//! `net.unix.max_dgram_qlen`, `net.ipv4.ping_group_range`),
//! `netdev-<id>.img` (each link with its confs: `lo` and veths; any
//! other kind is refused by name), and what the tools CRIU runs print,
//! kept raw: `ip addr save` (`ifaddr`), `ip route save` (`route`),
//! `ip -6 route save` (`route6`), `ip rule save` (`rule`), the legacy
//! `iptables-save` and `ip6tables-save` (`iptables`, `ip6tables`),
//! `nft list ruleset` (`nftables`), and the conntrack table as the
//! kernel sends it (`netns-ct`, `netns-exp`, only when not empty).
//!
//! Read from a thread of rcriu that joined the namespace (the tools are
//! forked from it), once the namespace is locked as a whole
//! ([`rcriu_restore::net_lock::lock_ns`]): the firewall images hold the
//! lock, which the restore lifts at its end.

use std::io::Read;

use rcriu_images::{ImageFile, pb};
use rcriu_proc::rtnl::{self, Netlink};
use rcriu_restore::net::{
    self as rnet, CT_GET, CTL_32, CTL_STR, DEVCONFS4, DEVCONFS6, IFLA_ADDRESS, IFLA_IFNAME,
    IFLA_INFO_KIND, IFLA_LINK, IFLA_LINK_NETNSID, IFLA_LINKINFO, IFLA_MASTER, IFLA_MTU,
    ND_LOOPBACK, ND_VETH, PING_GROUP_RANGE, RTM_GETLINK, STABLE_SECRET, UNIX_CONF,
};

/// `ARPHRD_LOOPBACK`, `ARPHRD_ETHER`.
const ARPHRD_LOOPBACK: u16 = 772;
const ARPHRD_ETHER: u16 = 1;
const RTM_NEWLINK: u16 = 16;

/// A link of the namespace: its entry, and whether its peer (a veth's
/// other end) is in the namespace too (its `peer_nsid`, the
/// namespace's id, is set when the images are written).
#[derive(Debug, Clone)]
pub struct Link {
    pub entry: pb::NetDeviceEntry,
    pub peer_inside: bool,
}

/// A raw image's name, from the namespace's id.
pub type RawImage = fn(u64) -> ImageFile;

/// What the images hold of the namespace.
#[derive(Debug, Clone, Default)]
pub struct NetDump {
    pub netns: pb::NetnsEntry,
    pub links: Vec<Link>,
    /// Raw images, by their constructor, with their bytes; `Some` bytes
    /// are written even when empty, as CRIU creates them.
    pub raw: Vec<(RawImage, Vec<u8>)>,
}

impl NetDump {
    /// The entries of `netdev-<id>.img`.
    pub fn netdev(&self, id: u32) -> Vec<pb::NetDeviceEntry> {
        self.links
            .iter()
            .map(|l| {
                let mut e = l.entry.clone();
                if l.peer_inside {
                    e.peer_nsid = Some(id);
                }
                e
            })
            .collect()
    }
}

/// Reads sysctl `net/<path>`: `Ok(None)` when the kernel has no such
/// file (or, for a string, will not tell: `stable_secret` unset).
fn read_ctl(path: &str) -> Result<Option<String>, String> {
    let full = format!("/proc/sys/net/{path}");
    let mut s = String::new();
    match std::fs::File::open(&full).and_then(|mut f| f.read_to_string(&mut s)) {
        Ok(_) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(None),
        Err(e) => Err(format!("reading sysctl {full}: {e}")),
    }
}

/// A number as `strtol` reads it, cut to 32 bits as CRIU keeps it.
fn ctl_int(path: &str, text: &str) -> Result<i32, String> {
    let t = text.split_whitespace().next().unwrap_or("");
    t.parse::<i64>()
        .map(|v| v as i32)
        .map_err(|_| format!("sysctl net/{path} holds {text:?}, not a number"))
}

fn int_entry(path: &str) -> Result<pb::SysctlEntry, String> {
    let iarg = read_ctl(path)?.map(|t| ctl_int(path, &t)).transpose()?;
    Ok(pb::SysctlEntry {
        r#type: CTL_32,
        iarg,
        sarg: None,
    })
}

/// The confs of `proto` for `tgt`, in CRIU's order.
fn confs(proto: &str, tgt: &str, names: &[&str]) -> Result<Vec<pb::SysctlEntry>, String> {
    names
        .iter()
        .map(|name| {
            let path = format!("{proto}/conf/{tgt}/{name}");
            if *name == STABLE_SECRET {
                Ok(pb::SysctlEntry {
                    r#type: CTL_STR,
                    iarg: None,
                    sarg: read_ctl(&path)?.map(String::into_bytes),
                })
            } else {
                int_entry(&path)
            }
        })
        .collect()
}

/// `netns-<id>.img`'s sysctls, read in the calling thread's namespace.
fn netns_entry() -> Result<pb::NetnsEntry, String> {
    let mut e = pb::NetnsEntry {
        def_conf4: confs("ipv4", "default", &DEVCONFS4)?,
        all_conf4: confs("ipv4", "all", &DEVCONFS4)?,
        def_conf6: confs("ipv6", "default", &DEVCONFS6)?,
        all_conf6: confs("ipv6", "all", &DEVCONFS6)?,
        ..Default::default()
    };
    let unix: Vec<pb::SysctlEntry> = UNIX_CONF
        .iter()
        .map(|n| int_entry(&format!("unix/{n}")))
        .collect::<Result<_, _>>()?;
    if unix.iter().any(|c| c.iarg.is_some()) {
        e.unix_conf = unix;
    }
    let path = format!("ipv4/{PING_GROUP_RANGE}");
    if let Some(text) = read_ctl(&path)? {
        let mut it = text.split_whitespace().map(|t| t.parse::<i64>());
        let sarg = match (it.next(), it.next()) {
            // The default: no group may ping.
            (Some(Ok(1)), Some(Ok(0))) => None,
            (Some(Ok(_)), Some(Ok(_))) => Some(text.into_bytes()),
            _ => return Err(format!("sysctl net/{path} holds {text:?}")),
        };
        e.ipv4_sysctl = vec![pb::SysctlEntry {
            r#type: CTL_STR,
            iarg: None,
            sarg,
        }];
    }
    Ok(e)
}

/// The links of the calling thread's namespace; a kind not restored is
/// refused by name.
fn links() -> Result<Vec<Link>, String> {
    let mut nl = Netlink::route().map_err(|e| e.to_string())?;
    let mut body = vec![rnet::AF_PACKET, 0, 0, 0];
    body.extend_from_slice(&[0; 12]);
    let msgs = nl
        .dump(RTM_GETLINK, &body, "a link dump")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for m in msgs {
        let kind = u16::from_ne_bytes([m[4], m[5]]);
        if kind != RTM_NEWLINK {
            continue;
        }
        let p = &m[rtnl::NLMSG_HDRLEN..];
        if p.len() < 16 {
            return Err("a link message cut short".into());
        }
        let ty = u16::from_ne_bytes([p[2], p[3]]);
        let index = u32::from_ne_bytes([p[4], p[5], p[6], p[7]]);
        let flags = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
        let attrs = rtnl::attrs(&p[16..]).map_err(|e| format!("link {index}: {e}"))?;
        let get = |k: u16| attrs.iter().find(|(t, _)| *t == k).map(|(_, v)| *v);
        let u32_of = |k: u16| {
            get(k)
                .filter(|v| v.len() >= 4)
                .map(|v| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
        };
        let Some(name) = get(IFLA_IFNAME) else {
            return Err(format!("link {index} has no name"));
        };
        let name = name.split(|b| *b == 0).next().unwrap_or(name).to_vec();
        let shown = String::from_utf8_lossy(&name).into_owned();
        let link_kind = get(IFLA_LINKINFO)
            .and_then(|li| rtnl::attrs(li).ok())
            .and_then(|li| {
                li.iter()
                    .find(|(t, _)| *t == IFLA_INFO_KIND)
                    .map(|(_, v)| v.to_vec())
            })
            .map(|k| {
                String::from_utf8_lossy(k.split(|b| *b == 0).next().unwrap_or(&k)).into_owned()
            });
        let nd = if ty == ARPHRD_LOOPBACK {
            ND_LOOPBACK
        } else if ty == ARPHRD_ETHER && link_kind.as_deref() == Some("veth") {
            ND_VETH
        } else {
            return Err(format!(
                "network device {shown} (kind {}, type {ty}) in its network namespace (only lo and veth are restored)",
                link_kind.as_deref().unwrap_or("unknown")
            ));
        };
        if let Some(master) = u32_of(IFLA_MASTER) {
            return Err(format!(
                "network device {shown} enslaved to device {master} in its network namespace (not restored)"
            ));
        }
        let outside = get(IFLA_LINK_NETNSID).is_some();
        let entry = pb::NetDeviceEntry {
            r#type: nd,
            ifindex: index,
            mtu: u32_of(IFLA_MTU).unwrap_or(0),
            flags,
            name,
            address: if nd == ND_LOOPBACK {
                None
            } else {
                get(IFLA_ADDRESS).map(<[u8]>::to_vec)
            },
            conf4: confs("ipv4", &shown, &DEVCONFS4)?,
            conf6: confs("ipv6", &shown, &DEVCONFS6)?,
            peer_ifindex: Some(u32_of(IFLA_LINK).unwrap_or(index)),
            ..Default::default()
        };
        out.push(Link {
            entry,
            peer_inside: !outside,
        });
    }
    Ok(out)
}

/// What `cmd args` prints, in the calling thread's namespace.
fn tool(cmd: &str, args: &[&str]) -> Result<Vec<u8>, String> {
    rnet::run_tool(cmd, args, None).map_err(|e| format!("running {cmd}: {e}"))
}

/// The conntrack table (CRIU's request), every message whole.
fn conntrack() -> Result<Vec<u8>, String> {
    let mut nl = Netlink::netfilter().map_err(|e| e.to_string())?;
    let msgs = match nl.dump(
        CT_GET,
        &[libc::AF_UNSPEC as u8, 0, 0, 0],
        "a conntrack dump",
    ) {
        Ok(m) => m,
        Err(e) => {
            // Without conntrack in the kernel there is no table.
            let io = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .and_then(std::io::Error::raw_os_error);
            if matches!(
                io,
                Some(libc::EOPNOTSUPP | libc::ENOENT | libc::EPROTONOSUPPORT)
            ) {
                return Ok(Vec::new());
            }
            return Err(e.to_string());
        }
    };
    Ok(msgs.concat())
}

/// Reads the calling thread's network namespace (joined by the caller).
pub fn read_here() -> Result<NetDump, String> {
    let mut d = NetDump {
        netns: netns_entry()?,
        links: links()?,
        ..Default::default()
    };
    d.raw
        .push((ImageFile::Ifaddr, tool("ip", &["addr", "save"])?));
    d.raw
        .push((ImageFile::Route, tool("ip", &["route", "save"])?));
    let v6 = rnet::ipv6();
    if v6 {
        d.raw
            .push((ImageFile::Route6, tool("ip", &["-6", "route", "save"])?));
    }
    match rnet::run_tool("ip", &["rule", "save"], None) {
        Ok(b) => d.raw.push((ImageFile::Rule, b)),
        Err(e) => log::warn!("`ip rule save` failed ({e}): no rule image"),
    }
    let v4_cmd = rnet::legacy_iptables(false, false);
    d.raw.push((
        ImageFile::Iptables,
        match &v4_cmd {
            Some(c) => tool(c, &[])?,
            None => Vec::new(),
        },
    ));
    if v6 {
        let v6_cmd = rnet::legacy_iptables(true, false);
        d.raw.push((
            ImageFile::Ip6tables,
            match &v6_cmd {
                Some(c) => tool(c, &[])?,
                None => Vec::new(),
            },
        ));
    }
    d.raw
        .push((ImageFile::Nftables, tool("nft", &["list", "ruleset"])?));
    let ct = conntrack()?;
    if !ct.is_empty() {
        // CRIU asks the same of the kernel for both images.
        d.raw.push((ImageFile::NetnsCt, ct.clone()));
        d.raw.push((ImageFile::NetnsExp, ct));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_strtol_into_32_bits() {
        assert_eq!(ctl_int("x", "10\n"), Ok(10));
        assert_eq!(ctl_int("x", "-1\n"), Ok(-1));
        assert_eq!(ctl_int("x", "4294967295\n"), Ok(-1));
        assert!(ctl_int("x", "abc").is_err());
    }

    #[test]
    fn a_peer_inside_gets_the_namespace_id() {
        let d = NetDump {
            links: vec![
                Link {
                    entry: pb::NetDeviceEntry::default(),
                    peer_inside: true,
                },
                Link {
                    entry: pb::NetDeviceEntry::default(),
                    peer_inside: false,
                },
            ],
            ..Default::default()
        };
        let e = d.netdev(9);
        assert_eq!(e[0].peer_nsid, Some(9));
        assert_eq!(e[1].peer_nsid, None);
    }
}
