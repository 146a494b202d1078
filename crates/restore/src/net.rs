//! A network namespace of the tree's own, made again as CRIU 4.2 makes
//! it: its sysctls (`netns-<id>.img`: the `all` and `default` ipv4 and
//! ipv6 confs, `net.unix`, `ping_group_range`), its links
//! (`netdev-<id>.img`: `lo`, veth pairs inside it, and veths whose peer
//! is outside, named by `--external veth[IN]:OUT[@BRIDGE]`), then what
//! iproute2 and the firewall tools saved (`ifaddr`, `route`, `route6`,
//! `rule`, `iptables`, `ip6tables`, `nftables`) and the conntrack
//! entries (`netns-ct`, `netns-exp`), in CRIU's order.
//!
//! All of it runs in the namespace holder's thread, right after it made
//! the namespace (the tools it runs are forked from it, so they work
//! there). The dump's lock of the whole namespace comes back with its
//! firewall; [`crate::net_lock::unlock_ns`] lifts it at network-unlock.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

use rcriu_images::{ImageDir, ImageFile, pb};
use rcriu_proc::rtnl::{self, Netlink};

use crate::{Error, Result};

/// The per-device ipv4 confs CRIU saves, in its order.
pub const DEVCONFS4: [&str; 30] = [
    "accept_local",
    "accept_redirects",
    "accept_source_route",
    "arp_accept",
    "arp_announce",
    "arp_filter",
    "arp_ignore",
    "arp_notify",
    "bootp_relay",
    "disable_policy",
    "disable_xfrm",
    "force_igmp_version",
    "forwarding",
    "igmpv2_unsolicited_report_interval",
    "igmpv3_unsolicited_report_interval",
    "log_martians",
    "medium_id",
    "promote_secondaries",
    "proxy_arp",
    "proxy_arp_pvlan",
    "route_localnet",
    "rp_filter",
    "secure_redirects",
    "send_redirects",
    "shared_media",
    "src_valid_mark",
    "tag",
    "ignore_routes_with_linkdown",
    "drop_gratuitous_arp",
    "drop_unicast_in_l2_multicast",
];

/// The per-device ipv6 confs CRIU saves, in its order.
pub const DEVCONFS6: [&str; 42] = [
    "accept_dad",
    "accept_ra",
    "accept_ra_defrtr",
    "accept_ra_from_local",
    "accept_ra_min_hop_limit",
    "accept_ra_mtu",
    "accept_ra_pinfo",
    "accept_ra_rt_info_max_plen",
    "accept_ra_rtr_pref",
    "accept_redirects",
    "accept_source_route",
    "autoconf",
    "dad_transmits",
    "disable_ipv6",
    "drop_unicast_in_l2_multicast",
    "drop_unsolicited_na",
    "force_mld_version",
    "force_tllao",
    "forwarding",
    "hop_limit",
    "ignore_routes_with_linkdown",
    "keep_addr_on_down",
    "max_addresses",
    "max_desync_factor",
    "mldv1_unsolicited_report_interval",
    "mldv2_unsolicited_report_interval",
    "mtu",
    "ndisc_notify",
    "optimistic_dad",
    "proxy_ndp",
    "regen_max_retry",
    "router_probe_interval",
    "router_solicitation_delay",
    "router_solicitation_interval",
    "router_solicitations",
    "stable_secret",
    "suppress_frag_ndisc",
    "temp_prefered_lft",
    "temp_valid_lft",
    "use_oif_addrs_only",
    "use_optimistic",
    "use_tempaddr",
];

/// The one ipv6 conf that is a string.
pub const STABLE_SECRET: &str = "stable_secret";
/// `net.unix`'s conf CRIU saves.
pub const UNIX_CONF: [&str; 1] = ["max_dgram_qlen"];
/// `net.ipv4`'s sysctl CRIU saves (a string).
pub const PING_GROUP_RANGE: &str = "ping_group_range";

/// `SysctlType`.
pub const CTL_STR: i32 = 5;
pub const CTL_32: i32 = 6;

/// `nd_type`.
pub const ND_LOOPBACK: i32 = 1;
pub const ND_VETH: i32 = 2;

pub const AF_PACKET: u8 = 17;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_SETLINK: u16 = 19;
pub const IFLA_ADDRESS: u16 = 1;
pub const IFLA_IFNAME: u16 = 3;
pub const IFLA_MTU: u16 = 4;
pub const IFLA_LINK: u16 = 5;
pub const IFLA_MASTER: u16 = 10;
pub const IFLA_LINKINFO: u16 = 18;
pub const IFLA_NET_NS_FD: u16 = 28;
pub const IFLA_LINK_NETNSID: u16 = 37;
pub const IFLA_INFO_KIND: u16 = 1;
pub const IFLA_INFO_DATA: u16 = 2;
pub const VETH_INFO_PEER: u16 = 1;

/// The conntrack dump CRIU asks for, for both `netns-ct` and
/// `netns-exp` (its request for the latter names the same message):
/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET`.
pub const CT_GET: u16 = (1 << 8) | 1;

/// Whether the kernel has ipv6 (CRIU skips `route6` and `ip6tables`
/// without it).
pub fn ipv6() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

/// The iptables program CRIU runs: `iptables-save` (or `-restore`;
/// `ip6tables-` for `v6`) when it drives the legacy tables, else its
/// `-legacy-` twin, else none (the tables then live in nftables, saved
/// there).
pub fn legacy_iptables(v6: bool, restore: bool) -> Option<String> {
    let base = if v6 { "ip6tables" } else { "iptables" };
    let verb = if restore { "restore" } else { "save" };
    [format!("{base}-{verb}"), format!("{base}-legacy-{verb}")]
        .into_iter()
        .find(|cmd| {
            Command::new(cmd)
                .arg("--version")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| {
                    o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("nf_tables")
                })
        })
}

/// Runs `cmd args`, its input `input` (a file or nothing), and returns
/// what it printed; a failure names the command and what it said.
pub fn run_tool(
    cmd: &str,
    args: &[&str],
    input: Option<std::fs::File>,
) -> std::io::Result<Vec<u8>> {
    let mut c = Command::new(cmd);
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(match input {
            Some(f) => Stdio::from(f),
            None => Stdio::null(),
        });
    let out = c.output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "`{cmd} {}` {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// What the images hold of a network namespace of the tree's own.
#[derive(Debug, Clone)]
pub struct NetNs {
    pub id: u32,
    pub entry: pb::NetnsEntry,
    pub links: Vec<pb::NetDeviceEntry>,
}

/// Reads `netns-<id>.img` and `netdev-<id>.img`; refuses the links not
/// made again.
pub fn load(dir: &ImageDir, id: u32, entry: pb::NetnsEntry) -> Result<NetNs> {
    let file = ImageFile::Netdev(id.into());
    let links: Vec<pb::NetDeviceEntry> = dir.read_all(file)?;
    for l in &links {
        let name = String::from_utf8_lossy(&l.name);
        match l.r#type {
            ND_LOOPBACK | ND_VETH => {}
            t => {
                return Err(Error::unsupported(format!(
                    "restoring network device {name} of type {t} ({}: only lo and veth are restored)",
                    file.name()
                )));
            }
        }
        if l.master.is_some() {
            return Err(Error::unsupported(format!(
                "restoring network device {name} enslaved to device {} ({})",
                l.master.unwrap_or(0),
                file.name()
            )));
        }
    }
    Ok(NetNs { id, entry, links })
}

/// The `--external veth[IN]:OUT[@BRIDGE]` given for `name`.
fn external_veth<'a>(veths: &'a [(String, String)], name: &str) -> Option<&'a str> {
    veths
        .iter()
        .find(|(i, _)| i == name)
        .map(|(_, o)| o.as_str())
}

impl NetNs {
    /// Checks, before anything is made, that every veth whose peer is
    /// outside has its peer named by the caller.
    pub fn check(&self, veths: &[(String, String)]) -> Result<()> {
        for l in &self.links {
            let name = String::from_utf8_lossy(&l.name);
            if l.r#type == ND_VETH && l.peer_nsid.is_none() && external_veth(veths, &name).is_none()
            {
                return Err(Error::unsupported(format!(
                    "restoring veth {name}, whose peer was outside its network namespace, without --external veth[{name}]:OUTSIDE_NAME"
                )));
            }
            if let Some(p) = l.peer_nsid
                && p != self.id
            {
                return Err(Error::unsupported(format!(
                    "restoring veth {name}, whose peer is in network namespace {p} of the images"
                )));
            }
        }
        Ok(())
    }
}

/// Makes the calling thread's network namespace, new, what the images
/// say: sysctls, links, addresses, routes, rules, firewall, conntrack.
/// `host` is rcriu's own network namespace (where the outside ends of
/// veths go).
pub fn restore_here(
    dir: &ImageDir,
    ns: &NetNs,
    veths: &[(String, String)],
    host: &OwnedFd,
) -> Result<()> {
    log::info!("restoring network namespace {}", ns.id);
    let e = &ns.entry;
    confs("ipv4", "all", &e.all_conf4, &DEVCONFS4, None)?;
    confs("ipv4", "default", &e.def_conf4, &DEVCONFS4, None)?;
    confs("ipv6", "all", &e.all_conf6, &DEVCONFS6, None)?;
    confs("ipv6", "default", &e.def_conf6, &DEVCONFS6, None)?;
    for (c, name) in e.unix_conf.iter().zip(UNIX_CONF) {
        write_ctl(&format!("unix/{name}"), c)?;
    }
    for (c, name) in e.ipv4_sysctl.iter().zip([PING_GROUP_RANGE]) {
        write_ctl(&format!("ipv4/{name}"), c)?;
    }
    let own = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(Error::file("opening", "/proc/thread-self/ns/net"))?;
    let mut nl = Netlink::route().map_err(nl_err("restoring the links".into()))?;
    let mut made: Vec<u32> = Vec::new();
    // CRIU makes them last listed first.
    for l in ns.links.iter().rev() {
        link(&mut nl, l, veths, host, &own, &mut made)?;
        let name = String::from_utf8_lossy(&l.name).into_owned();
        let lo = l.r#type == ND_LOOPBACK;
        confs(
            "ipv4",
            &name,
            &l.conf4,
            &DEVCONFS4,
            (!lo).then_some(&e.def_conf4[..]),
        )?;
        confs(
            "ipv6",
            &name,
            &l.conf6,
            &DEVCONFS6,
            (!lo).then_some(&e.def_conf6[..]),
        )?;
    }
    let id = u64::from(ns.id);
    ip_restore(dir, ImageFile::Ifaddr(id), "addr")?;
    ip_restore(dir, ImageFile::Route(id), "route")?;
    ip_restore(dir, ImageFile::Route6(id), "route")?;
    if raw(dir, ImageFile::Rule(id))?.is_some() {
        // The kernel's three default rules would be doubled.
        let _ = run_tool("ip", &["rule", "flush"], None);
        let _ = run_tool("ip", &["rule", "delete", "table", "local"], None);
        ip_restore(dir, ImageFile::Rule(id), "rule")?;
    }
    for (file, v6) in [
        (ImageFile::Iptables(id), false),
        (ImageFile::Ip6tables(id), true),
    ] {
        let Some(f) = raw(dir, file)? else {
            continue;
        };
        let Some(cmd) = legacy_iptables(v6, true) else {
            return Err(Error::unsupported(format!(
                "restoring {} without a legacy {}tables-restore",
                file.name(),
                if v6 { "ip6" } else { "ip" }
            )));
        };
        run_tool(&cmd, &["-w"], Some(f))
            .map_err(Error::io(format!("restoring {} with {cmd}", file.name())))?;
    }
    let nft = ImageFile::Nftables(id);
    if let Some(f) = raw(dir, nft)? {
        run_tool("nft", &["-f", "-"], Some(f))
            .map_err(Error::io(format!("restoring {} with nft", nft.name())))?;
    }
    for file in [ImageFile::NetnsCt(id), ImageFile::NetnsExp(id)] {
        conntrack(dir, file)?;
    }
    Ok(())
}

/// A netlink failure while `what`.
fn nl_err(what: String) -> impl FnOnce(rcriu_proc::Error) -> Error {
    move |e| Error::Io {
        what,
        source: std::io::Error::other(e),
    }
}

/// Raw image `file` open (through the directory, as its manifest checked
/// it: the thread may be in the container's mount namespace by now,
/// where a relative images path means nothing), or `None` when it is
/// absent or empty.
fn raw(dir: &ImageDir, file: ImageFile) -> Result<Option<std::fs::File>> {
    if !dir.exists(file) {
        return Ok(None);
    }
    let f = dir.open_raw(file)?;
    let len = f
        .metadata()
        .map_err(Error::file("examining", dir.file_path(file)))?
        .len();
    Ok((len > 0).then_some(f))
}

/// `ip CMD restore` of `file`, when it is there and not empty.
fn ip_restore(dir: &ImageDir, file: ImageFile, cmd: &str) -> Result<()> {
    let Some(f) = raw(dir, file)? else {
        return Ok(());
    };
    run_tool("ip", &[cmd, "restore"], Some(f)).map_err(Error::io(format!(
        "restoring {} with `ip {cmd} restore`",
        file.name()
    )))?;
    Ok(())
}

/// Writes sysctl `net/<path>` from `c` (nothing when the dump found no
/// value).
fn write_ctl(path: &str, c: &pb::SysctlEntry) -> Result<()> {
    let text = match (c.r#type, &c.iarg, &c.sarg) {
        (CTL_32, Some(v), _) => format!("{v}\n"),
        (CTL_STR, _, Some(s)) => format!("{}\n", String::from_utf8_lossy(s)),
        _ => return Ok(()),
    };
    let full = format!("/proc/sys/net/{path}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&full)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(Error::file("writing sysctl", &full))
}

/// The confs of `proto` for `tgt` (`all`, `default` or a device), in
/// CRIU's order (`accept_redirects` last, after `forwarding`); a value
/// equal to `default`'s is left (but `mtu`).
fn confs(
    proto: &str,
    tgt: &str,
    conf: &[pb::SysctlEntry],
    names: &[&str],
    defaults: Option<&[pb::SysctlEntry]>,
) -> Result<()> {
    let mut last = None;
    for (i, (c, name)) in conf.iter().zip(names).enumerate() {
        if let Some(d) = defaults.and_then(|d| d.get(i))
            && same(c, d)
            && *name != "mtu"
        {
            continue;
        }
        if *name == "accept_redirects" {
            last = Some(c);
            continue;
        }
        write_ctl(&format!("{proto}/conf/{tgt}/{name}"), c)?;
    }
    if let Some(c) = last
        && c.r#type == CTL_32
    {
        write_ctl(&format!("{proto}/conf/{tgt}/accept_redirects"), c)?;
    }
    Ok(())
}

fn same(a: &pb::SysctlEntry, b: &pb::SysctlEntry) -> bool {
    a.r#type == b.r#type
        && match a.r#type {
            CTL_32 => a.iarg.is_some() && a.iarg == b.iarg,
            CTL_STR => a.sarg.is_some() && a.sarg == b.sarg,
            _ => false,
        }
}

/// An `ifinfomsg`.
fn ifinfo(m: &mut Vec<u8>, index: u32, flags: u32) {
    m.extend_from_slice(&[AF_PACKET, 0, 0, 0]);
    m.extend_from_slice(&index.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
}

/// Makes (or, for `lo`, sets) link `l`; `made` lists the ifindexes of
/// the veth ends made with their peer.
fn link(
    nl: &mut Netlink,
    l: &pb::NetDeviceEntry,
    veths: &[(String, String)],
    host: &OwnedFd,
    own: &std::fs::File,
    made: &mut Vec<u32>,
) -> Result<()> {
    let name = String::from_utf8_lossy(&l.name).into_owned();
    log::info!(
        "restoring link {name} (type {}, index {})",
        l.r#type,
        l.ifindex
    );
    let flags = rtnl::NLM_F_REQUEST | rtnl::NLM_F_ACK | rtnl::NLM_F_CREATE;
    let (kind, index) = match l.r#type {
        ND_LOOPBACK => (RTM_SETLINK, 0),
        _ => (RTM_NEWLINK, l.ifindex),
    };
    // The second end of a pair made inside: it exists, set as the first.
    let second = l.r#type == ND_VETH
        && l.peer_nsid.is_some()
        && l.peer_ifindex.is_some_and(|p| made.contains(&p));
    let kind = if second { RTM_SETLINK } else { kind };
    let mut m = rtnl::header(kind, flags, 0);
    ifinfo(&mut m, index, l.flags);
    rtnl::put_attr(&mut m, IFLA_IFNAME, &l.name);
    rtnl::put_attr(&mut m, IFLA_MTU, &l.mtu.to_ne_bytes());
    if let Some(a) = &l.address {
        rtnl::put_attr(&mut m, IFLA_ADDRESS, a);
    }
    if l.r#type == ND_VETH && !second {
        let info = rtnl::begin_nest(&mut m, IFLA_LINKINFO);
        rtnl::put_attr(&mut m, IFLA_INFO_KIND, b"veth");
        let data = rtnl::begin_nest(&mut m, IFLA_INFO_DATA);
        let peer = rtnl::begin_nest(&mut m, VETH_INFO_PEER);
        let peer_index = if l.peer_nsid.is_some() {
            l.peer_ifindex.unwrap_or(0)
        } else {
            0
        };
        ifinfo(&mut m, peer_index, 0);
        if l.peer_nsid.is_some() {
            rtnl::put_attr(&mut m, IFLA_NET_NS_FD, &own.as_raw_fd().to_ne_bytes());
            made.push(l.ifindex);
        } else {
            let Some(out) = external_veth(veths, &name) else {
                return Err(Error::unsupported(format!(
                    "restoring veth {name}, whose peer was outside, without --external veth[{name}]:OUTSIDE_NAME"
                )));
            };
            let out = out.split('@').next().unwrap_or(out);
            rtnl::put_attr(&mut m, IFLA_IFNAME, out.as_bytes());
            rtnl::put_attr(&mut m, IFLA_NET_NS_FD, &host.as_raw_fd().to_ne_bytes());
        }
        rtnl::end_nest(&mut m, peer);
        rtnl::end_nest(&mut m, data);
        rtnl::end_nest(&mut m, info);
    }
    rtnl::finish(&mut m);
    nl.request(&mut m, &format!("link {name}"))
        .map_err(nl_err(format!(
            "restoring link {name} (netdev entry {})",
            l.ifindex
        )))
}

/// Puts the conntrack entries of `file` back (each marked "be liberal",
/// as CRIU does, so that the restored windows pass).
fn conntrack(dir: &ImageDir, file: ImageFile) -> Result<()> {
    let Some(mut f) = raw(dir, file)? else {
        return Ok(());
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut bytes)
        .map_err(Error::file("reading", dir.file_path(file)))?;
    let mut nl = Netlink::netfilter().map_err(nl_err(format!("restoring {}", file.name())))?;
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let len = rest
            .get(..4)
            .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])) as usize;
        if len < rtnl::NLMSG_HDRLEN + 4 || len > rest.len() {
            return Err(Error::invalid(
                file.name(),
                format!(
                    "a message of {len} bytes at offset {at}, {} left",
                    rest.len()
                ),
            ));
        }
        let mut m = rest[..len].to_vec();
        if matches!(file, ImageFile::NetnsCt(_)) {
            be_liberal(&mut m)
                .map_err(|e| Error::invalid(file.name(), format!("at offset {at}: {e}")))?;
        }
        let flags = rtnl::NLM_F_REQUEST | rtnl::NLM_F_ACK | rtnl::NLM_F_CREATE;
        m[6..8].copy_from_slice(&flags.to_ne_bytes());
        nl.request(&mut m, &format!("an entry of {}", file.name()))
            .map_err(nl_err(format!("restoring {}", file.name())))?;
        at += len;
    }
    Ok(())
}

/// Sets `IP_CT_TCP_FLAG_BE_LIBERAL` in both directions' TCP flags of a
/// conntrack message (ipv4 and ipv6 only).
fn be_liberal(m: &mut [u8]) -> std::result::Result<(), String> {
    const CTA_PROTOINFO: u16 = 4;
    const CTA_PROTOINFO_TCP: u16 = 1;
    const FLAGS_ORIGINAL: u16 = 4;
    const FLAGS_REPLY: u16 = 5;
    const BE_LIBERAL: u8 = 0x08;
    let base = rtnl::NLMSG_HDRLEN + 4;
    let family = m[rtnl::NLMSG_HDRLEN];
    if i32::from(family) != libc::AF_INET && i32::from(family) != libc::AF_INET6 {
        return Ok(());
    }
    let spans = |b: &[u8]| rtnl::attr_spans(b).map_err(|e| e.to_string());
    let Some((_, p, plen)) = spans(&m[base..])?
        .into_iter()
        .find(|(k, _, _)| *k == CTA_PROTOINFO)
    else {
        return Ok(());
    };
    let p = base + p;
    let Some((_, t, tlen)) = spans(&m[p..p + plen])?
        .into_iter()
        .find(|(k, _, _)| *k == CTA_PROTOINFO_TCP)
    else {
        return Ok(());
    };
    let t = p + t;
    for (k, at, len) in spans(&m[t..t + tlen])? {
        if (k == FLAGS_ORIGINAL || k == FLAGS_REPLY) && len >= 2 {
            m[t + at] |= BE_LIBERAL;
            m[t + at + 1] |= BE_LIBERAL;
        }
    }
    Ok(())
}

/// Puts each `--external veth[IN]:OUT@BRIDGE`'s outside end in its
/// bridge and up (run in rcriu's network namespace).
pub fn to_bridges(veths: &[(String, String)]) -> Result<()> {
    for (_, out) in veths {
        let Some((dev, br)) = out.split_once('@') else {
            continue;
        };
        run_tool("ip", &["link", "set", "dev", dev, "master", br], None)
            .and_then(|_| run_tool("ip", &["link", "set", "dev", dev, "up"], None))
            .map_err(Error::io(format!("moving veth {dev} to bridge {br}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The raw images of a network namespace are read through the images
    /// directory, not by their path: the thread that restores the
    /// namespace of a tree in a user namespace of its own is in the
    /// container's mount namespace by then, its working directory
    /// elsewhere, where a relative images path finds nothing (the
    /// firewall rules, addresses and routes were then skipped as if the
    /// dump had none; zdtm's `-f uns` showed it).
    #[test]
    fn raw_images_are_found_from_another_working_directory() {
        let base = std::env::temp_dir().join(format!("rcriu-net-raw-{}", std::process::id()));
        let dir = base.join("images");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("iptables-7.img"), b"*filter\nCOMMIT\n").unwrap();
        std::fs::write(dir.join("route-7.img"), b"").unwrap();
        // This thread alone changes its working directory.
        crate::sys::unshare(rustix::thread::UnshareFlags::FS).unwrap();
        std::env::set_current_dir(&base).unwrap();
        let images = ImageDir::open(std::path::Path::new("images")).unwrap();
        std::env::set_current_dir("/").unwrap();
        // The control: the relative path no longer names the file.
        assert!(std::fs::metadata(images.file_path(ImageFile::Iptables(7))).is_err());
        let f = raw(&images, ImageFile::Iptables(7)).unwrap();
        assert_eq!(f.unwrap().metadata().unwrap().len(), 15);
        // Empty or absent: nothing to restore.
        assert!(raw(&images, ImageFile::Route(7)).unwrap().is_none());
        assert!(raw(&images, ImageFile::Nftables(7)).unwrap().is_none());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn be_liberal_marks_both_directions() {
        // nlmsghdr, nfgenmsg (AF_INET), CTA_PROTOINFO { TCP { ORIG, REPLY } }.
        let mut m = rtnl::header(0x100, 0, 0);
        m.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
        let p = rtnl::begin_nest(&mut m, 4 | rtnl::NLA_F_NESTED);
        let t = rtnl::begin_nest(&mut m, 1 | rtnl::NLA_F_NESTED);
        rtnl::put_attr(&mut m, 4, &[0x01, 0x01]);
        rtnl::put_attr(&mut m, 5, &[0x02, 0x02]);
        rtnl::end_nest(&mut m, t);
        rtnl::end_nest(&mut m, p);
        rtnl::finish(&mut m);
        be_liberal(&mut m).unwrap();
        let n = m.len();
        // The two flag pairs are the last attributes, each padded to 8.
        assert_eq!(&m[n - 12..n - 10], &[0x09, 0x09]);
        assert_eq!(&m[n - 4..n - 2], &[0x0a, 0x0a]);
    }

    #[test]
    fn defaults_are_left_but_mtu() {
        let a = pb::SysctlEntry {
            r#type: CTL_32,
            iarg: Some(1),
            sarg: None,
        };
        assert!(same(&a, &a.clone()));
        let none = pb::SysctlEntry {
            iarg: None,
            ..a.clone()
        };
        assert!(!same(&none, &none));
    }
}
