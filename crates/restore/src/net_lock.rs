//! The network lock (criu's `--network-lock`): while a TCP connection is
//! dumped, and from the dump until its restore is done, the packets of
//! that connection are dropped, so that neither end answers the other
//! with a reset and nothing is lost (a sender retransmits what was
//! dropped). Packets marked 0xC114 (`SOCCR_MARK`) pass.
//!
//! The rules are CRIU 4.2's, so that either tool lifts what the other
//! set:
//! - `iptables` (criu's default): per connection, a rule in INPUT and
//!   one in OUTPUT that drop its packets (`-m mark ! --mark 0xC114`),
//!   set and lifted with one `iptables-restore --noflush` (and
//!   `ip6tables-restore`) for all connections at once;
//! - `nftables`: a table `inet CRIU-<run id>` whose input and output
//!   chains drop the connections of its sets `conns4` and `conns6`,
//!   made with one `nft -f -`; the restore deletes the table;
//! - `skip`: nothing (the caller locks the network itself).
//!
//! The dump keeps the lock when it kills the process; the restore lifts
//! it once the connections are back ([`unlock`]).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// `SOCCR_MARK`: packets rcriu (or CRIU) sends itself.
pub const MARK: u32 = 0xC114;

/// How connections are locked (criu's `--network-lock`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Method {
    #[default]
    Iptables,
    Nftables,
    Skip,
}

impl Method {
    /// `inventory_entry.network_lock_method` (CRIU's enum).
    pub fn code(self) -> u32 {
        match self {
            Method::Iptables => 0,
            Method::Nftables => 1,
            Method::Skip => 2,
        }
    }

    pub fn from_code(code: u32) -> Option<Method> {
        match code {
            0 => Some(Method::Iptables),
            1 => Some(Method::Nftables),
            2 => Some(Method::Skip),
            _ => None,
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Method, String> {
        match s {
            "iptables" => Ok(Method::Iptables),
            "nftables" => Ok(Method::Nftables),
            "skip" => Ok(Method::Skip),
            o => Err(format!(
                "unknown network lock method {o:?} (iptables, nftables or skip)"
            )),
        }
    }
}

/// A TCP connection: its local and remote ends, the addresses as CRIU's
/// images hold them (native words of network-order bytes; IPv4 in the
/// first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    pub v6: bool,
    pub src: [u32; 4],
    pub sport: u16,
    pub dst: [u32; 4],
    pub dport: u16,
}

impl Conn {
    /// Whether the addresses are IPv4's (an IPv6 socket's IPv4-mapped
    /// addresses count as IPv4, as CRIU counts them), and their text.
    fn text(&self) -> (bool, String, String) {
        let bytes = |w: &[u32; 4]| -> [u8; 16] {
            let mut b = [0u8; 16];
            for (i, x) in w.iter().enumerate() {
                b[4 * i..4 * i + 4].copy_from_slice(&x.to_ne_bytes());
            }
            b
        };
        let (s, d) = (bytes(&self.src), bytes(&self.dst));
        let mapped = self.v6 && d[8..12] == [0, 0, 0xff, 0xff] && d[..8] == [0; 8];
        if !self.v6 || mapped {
            let at = if self.v6 { 12 } else { 0 };
            let v4 = |b: &[u8; 16]| {
                std::net::Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]).to_string()
            };
            (true, v4(&s), v4(&d))
        } else {
            (
                false,
                std::net::Ipv6Addr::from(s).to_string(),
                std::net::Ipv6Addr::from(d).to_string(),
            )
        }
    }
}

/// The table of a run's nftables lock, as CRIU names it: its name is
/// made in a buffer of 32 bytes, so `inet CRIU-` and the first 21
/// characters of the run id.
pub fn nft_table(run_id: &str) -> String {
    let mut t = format!("inet CRIU-{run_id}");
    let mut end = t.len().min(31);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    t.truncate(end);
    t
}

/// The two iptables rules (INPUT, OUTPUT) that drop a connection's
/// packets, as CRIU words them, after `-I` or `-D`.
fn iptables_rules(c: &Conn, op: &str) -> (bool, [String; 2]) {
    let (v4, local, remote) = c.text();
    let rule = |chain: &str, src: &str, sport: u16, dst: &str, dport: u16| {
        format!(
            "{op} {chain} --protocol tcp -m mark ! --mark 0xC114 --source {src} --sport {sport} --destination {dst} --dport {dport} -j DROP"
        )
    };
    (
        v4,
        [
            rule("INPUT", &remote, c.dport, &local, c.sport),
            rule("OUTPUT", &local, c.sport, &remote, c.dport),
        ],
    )
}

/// Locks `conns` (with `run_id` naming the nftables table).
pub fn lock(method: Method, run_id: &str, conns: &[Conn]) -> Result<()> {
    if conns.is_empty() || method == Method::Skip {
        return Ok(());
    }
    log::info!(
        "locking {} connection(s) with {method:?} in network namespace {}",
        conns.len(),
        here()
    );
    match method {
        Method::Iptables => iptables(conns, "-I"),
        Method::Nftables => {
            let t = nft_table(run_id);
            let mut s = format!(
                "create table {t}\n\
                 add chain {t} output {{ type filter hook output priority 0; }}\n\
                 add rule {t} output meta mark {MARK:#x} accept\n\
                 add chain {t} input {{ type filter hook input priority 0; }}\n\
                 add rule {t} input meta mark {MARK:#x} accept\n\
                 add set {t} conns4 {{ type ipv4_addr . inet_service . ipv4_addr . inet_service; }}\n\
                 add rule {t} output ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n\
                 add rule {t} input ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n\
                 add set {t} conns6 {{ type ipv6_addr . inet_service . ipv6_addr . inet_service; }}\n\
                 add rule {t} output ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n\
                 add rule {t} input ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n"
            );
            let (mut four, mut six) = (Vec::new(), Vec::new());
            for c in conns {
                let (v4, local, remote) = c.text();
                let v = if v4 { &mut four } else { &mut six };
                v.push(format!("{remote} . {} . {local} . {}", c.dport, c.sport));
                v.push(format!("{local} . {} . {remote} . {}", c.sport, c.dport));
            }
            for (set, elems) in [("conns4", four), ("conns6", six)] {
                for chunk in elems.chunks(4096) {
                    s.push_str(&format!(
                        "add element {t} {set} {{ {} }}\n",
                        chunk.join(", ")
                    ));
                }
            }
            run("nft", &["-f", "-"], &s)
        }
        Method::Skip => Ok(()),
    }
}

/// Lifts the lock of `conns` set by [`lock`] (here or by CRIU).
pub fn unlock(method: Method, run_id: &str, conns: &[Conn]) -> Result<()> {
    if conns.is_empty() || method == Method::Skip {
        return Ok(());
    }
    log::info!(
        "unlocking {} connection(s) with {method:?} in network namespace {}",
        conns.len(),
        here()
    );
    match method {
        Method::Iptables => iptables(conns, "-D"),
        Method::Nftables => run(
            "nft",
            &["-f", "-"],
            &format!("delete table {}\n", nft_table(run_id)),
        ),
        Method::Skip => Ok(()),
    }
}

/// Locks the whole network namespace of the calling thread, as CRIU
/// does when the tree has one of its own: every packet but those marked
/// [`MARK`] is dropped (iptables: a chain `CRIU` jumped to from INPUT
/// and OUTPUT; nftables: table `inet CRIU-<run id>` with dropping
/// input and output chains). The dump's firewall images hold it, so
/// the restore brings it back with them.
pub fn lock_ns(method: Method, run_id: &str) -> Result<()> {
    log::info!("locking network namespace {} with {method:?}", here());
    match method {
        Method::Iptables => {
            let conf = "*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n\
                        -A CRIU -m mark --mark 0xC114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n";
            run("iptables-restore", &["-w", "--noflush"], conf)?;
            if crate::net::ipv6() {
                run("ip6tables-restore", &["-w", "--noflush"], conf)?;
            }
            Ok(())
        }
        Method::Nftables => {
            let t = nft_table(run_id);
            let s = format!(
                "create table {t}\n\
                 add chain {t} output {{ type filter hook output priority 0; policy drop; }}\n\
                 add rule {t} output meta mark {MARK:#x} accept\n\
                 add chain {t} input {{ type filter hook input priority 0; policy drop; }}\n\
                 add rule {t} input meta mark {MARK:#x} accept\n"
            );
            run("nft", &["-f", "-"], &s)
        }
        Method::Skip => Ok(()),
    }
}

/// Lifts [`lock_ns`]'s lock (set by rcriu or CRIU) in the calling
/// thread's network namespace; a failure is logged, as CRIU does.
pub fn unlock_ns(method: Method, run_id: &str) {
    log::info!("unlocking network namespace {} ({method:?})", here());
    let jumps = "*filter\n:CRIU - [0:0]\n-D INPUT -j CRIU\n-D OUTPUT -j CRIU\nCOMMIT\n";
    let chain = "*filter\n:CRIU - [0:0]\n-X CRIU\nCOMMIT\n";
    let v6 = crate::net::ipv6();
    let restore = |body: &str| {
        let mut r = run("iptables-restore", &["-w", "--noflush"], body);
        if v6 {
            r = r.and(run("ip6tables-restore", &["-w", "--noflush"], body));
        }
        if let Err(e) = r {
            let why = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            log::error!("unlocking the network namespace: {e}{why}");
        }
    };
    match method {
        Method::Iptables => {
            restore(jumps);
            // With iptables' nftables backend a jump may be left.
            let left = Command::new("iptables")
                .args(["-C", "INPUT", "-j", "CRIU"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if left {
                restore(jumps);
            }
            restore(chain);
        }
        Method::Nftables => {
            if let Err(e) = run(
                "nft",
                &["-f", "-"],
                &format!("delete table {}\n", nft_table(run_id)),
            ) {
                log::error!("unlocking the network namespace: {e}");
            }
        }
        Method::Skip => {}
    }
}

/// The calling thread's network namespace (the programs it runs work
/// there), for the log.
fn here() -> String {
    std::fs::read_link("/proc/thread-self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("(unknown: {e})"))
}

/// Adds (`-I`) or deletes (`-D`) every connection's rules, with one
/// `iptables-restore` per family.
fn iptables(conns: &[Conn], op: &str) -> Result<()> {
    let (mut four, mut six) = (String::new(), String::new());
    for c in conns {
        let (v4, rules) = iptables_rules(c, op);
        let s = if v4 { &mut four } else { &mut six };
        for r in rules {
            s.push_str(&r);
            s.push('\n');
        }
    }
    for (cmd, body) in [("iptables-restore", four), ("ip6tables-restore", six)] {
        if body.is_empty() {
            continue;
        }
        run(
            cmd,
            &["-w", "--noflush"],
            &format!("*filter\n{body}COMMIT\n"),
        )?;
    }
    Ok(())
}

/// Runs `cmd` with `input` on its standard input.
fn run(cmd: &str, args: &[&str], input: &str) -> Result<()> {
    let what = || format!("locking or unlocking the network with {cmd}");
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::io(what()))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(input.as_bytes()).map_err(Error::io(what()))?;
    }
    let out = child.wait_with_output().map_err(Error::io(what()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Io {
            what: what(),
            source: std::io::Error::other(format!("{}: {}", out.status, err.trim())),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_criu_s() {
        let c = Conn {
            v6: false,
            src: [u32::from_ne_bytes([127, 0, 0, 1]), 0, 0, 0],
            sport: 40000,
            dst: [u32::from_ne_bytes([10, 0, 0, 2]), 0, 0, 0],
            dport: 80,
        };
        let (v4, r) = iptables_rules(&c, "-I");
        assert!(v4);
        assert_eq!(
            r[0],
            "-I INPUT --protocol tcp -m mark ! --mark 0xC114 --source 10.0.0.2 --sport 80 --destination 127.0.0.1 --dport 40000 -j DROP"
        );
        assert_eq!(
            r[1],
            "-I OUTPUT --protocol tcp -m mark ! --mark 0xC114 --source 127.0.0.1 --sport 40000 --destination 10.0.0.2 --dport 80 -j DROP"
        );
        let mapped = Conn {
            v6: true,
            src: [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), c.src[0]],
            dst: [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), c.dst[0]],
            ..c
        };
        assert!(iptables_rules(&mapped, "-D").0);
        assert_eq!("nftables".parse::<Method>(), Ok(Method::Nftables));
        assert_eq!(
            nft_table("63dcef69-d791-4ad0-8b4e-3096cc4fa503"),
            "inet CRIU-63dcef69-d791-4ad0-8b"
        );
        assert_eq!(nft_table("42"), "inet CRIU-42");
    }
}
