//! A process in a network namespace of its own, dumped with it and
//! restored into it made again, as CRIU 4.2 does: links (lo, a veth whose
//! peer is outside, `--external veth[IN]:OUT`), addresses, routes, rules,
//! sysctls, the iptables and nftables rules, the conntrack table, and an
//! established TCP connection inside it, locked with the whole namespace. The workload
//! (tests/workloads/netns.c) checks all of it from inside once restored.
//! Each claim has a negative control: images edited to lose a piece,
//! which the workload then misses. Devices not restored are refused by
//! name, the process left running with its network unlocked. With CRIU
//! 4.2 at hand (`RCRIU_TEST_CRIU`), each tool restores the other's dump.

mod common;

use std::path::Path;
use std::process::Command;

use common::{cycle_opts, setup, start};
use rcriu::Dump;
use rcriu::dump::tcp_stream::LockMethod;
use rcriu::images::{ImageDir, ImageFile, pb};
use rcriu_test_support::TempDir;

/// Runs `cmd args`, panicking with what it said on a failure.
fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth whose inside end `inside` is in process `pid`'s namespace with
/// 10.80.0.2/24, and whose outside end `outside` is up here; the outside
/// end is deleted on drop (which takes the pair).
struct Veth {
    outside: String,
}

impl Veth {
    fn give(pid: i32, outside: &str, inside: &str) -> Veth {
        let _ = Command::new("ip").args(["link", "del", outside]).output();
        let p = pid.to_string();
        sh(
            "ip",
            &[
                "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", &p,
            ],
        );
        sh("ip", &["link", "set", outside, "up"]);
        sh(
            "nsenter",
            &["-t", &p, "-n", "ip", "link", "set", inside, "up"],
        );
        sh(
            "nsenter",
            &[
                "-t",
                &p,
                "-n",
                "ip",
                "addr",
                "add",
                "10.80.0.2/24",
                "dev",
                inside,
            ],
        );
        Veth {
            outside: outside.into(),
        }
    }

    /// Waits (up to 10 s) until the pair is gone with its namespace,
    /// which the kernel tears down after its last process, apart.
    fn wait_gone(&self) {
        let start = std::time::Instant::now();
        while self.exists() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "veth {} outlives its namespace",
                self.outside
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn exists(&self) -> bool {
        Command::new("ip")
            .args(["link", "show", &self.outside])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.outside])
            .output();
    }
}

/// The id of the root's network namespace in the images.
fn net_id(dir: &ImageDir) -> u64 {
    let pid = dir.pstree().expect("pstree.img")[0].pid;
    dir.ids(pid)
        .expect("ids")
        .net_ns_id
        .expect("a net_ns_id")
        .into()
}

#[test]
fn a_namespace_of_its_own_comes_back_whole() {
    let _g = setup();
    for method in [LockMethod::Iptables, LockMethod::Nftables] {
        let w = start("netns", &["veth=rcvi0"]);
        let veth = Veth::give(w.pid, "rcvh0", "rcvi0");
        let images = TempDir::new("netns");
        Dump::new(w.pid)
            .images_dir(images.path())
            .tcp_established(true)
            .network_lock(method)
            .run()
            .unwrap_or_else(|e| panic!("dumping ({method:?}): {e}"));
        let dir = ImageDir::open(images.path()).unwrap();
        let id = net_id(&dir);
        let links: Vec<pb::NetDeviceEntry> = dir.read_all(ImageFile::Netdev(id)).unwrap();
        let names: Vec<&[u8]> = links.iter().map(|l| &l.name[..]).collect();
        assert_eq!(names, [&b"lo"[..], b"rcvi0"], "netdev-{id}.img");
        // The veth's peer was outside: no namespace of the images holds it.
        assert_eq!(links[1].peer_nsid, None);
        assert_eq!(links[0].peer_nsid, Some(id as u32));
        for f in [
            ImageFile::Ifaddr(id),
            ImageFile::Route(id),
            ImageFile::Rule(id),
        ] {
            assert!(dir.exists(f), "{} written", f.name());
        }
        let ipt = std::fs::read_to_string(dir.file_path(ImageFile::Iptables(id))).unwrap();
        assert!(ipt.contains("-A INPUT -s 10.79.0.0/24 -j DROP"), "{ipt}");
        let nft = std::fs::read_to_string(dir.file_path(ImageFile::Nftables(id))).unwrap();
        assert!(nft.contains("ip saddr 10.81.0.1 drop"), "{nft}");
        // The conntrack entries as the kernel sent them, echoing CRIU's
        // sequence number (which CRIU's restore waits for).
        let ct = std::fs::read(dir.file_path(ImageFile::NetnsCt(id))).unwrap();
        assert!(ct.len() > 16, "netns-ct-{id}.img holds the connection");
        assert_eq!(u32::from_ne_bytes(ct[8..12].try_into().unwrap()), 24680);
        let mode = std::fs::metadata(dir.file_path(ImageFile::Route(id))).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        let mut w = w;
        w.reap();
        veth.wait_gone();
        // Refused by name without the veth's outside end, before anything
        // is made.
        let e = rcriu::Restore::new(images.path())
            .tcp_established(true)
            .detach(true)
            .run()
            .expect_err("a veth restored without its outside end");
        assert!(e.to_string().contains("--external veth[rcvi0]"), "{e}");
        let r = rcriu::Restore::new(images.path())
            .tcp_established(true)
            .external_veth("rcvi0", "rcvh0")
            .detach(true)
            .run()
            .unwrap_or_else(|e| panic!("restoring ({method:?}): {e}"));
        assert_eq!(r.pid, w.pid);
        assert!(veth.exists(), "the outside end is made again");
        w.verdict()
            .unwrap_or_else(|e| panic!("restored ({method:?}): {e}"));
    }
}

#[test]
fn a_veth_pair_inside_and_a_peer_put_in_a_bridge() {
    let _g = setup();
    let _ = Command::new("ip").args(["link", "del", "rcbr0"]).output();
    sh("ip", &["link", "add", "rcbr0", "type", "bridge"]);
    struct Bridge;
    impl Drop for Bridge {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", "rcbr0"]).output();
        }
    }
    let _br = Bridge;
    for lose_pair in [false, true] {
        let mut w = start("netns", &["veth=rcbi0", "pair"]);
        let veth = Veth::give(w.pid, "rcbh0", "rcbi0");
        let images = TempDir::new("netns-pair");
        Dump::new(w.pid)
            .images_dir(images.path())
            .tcp_established(true)
            .run()
            .unwrap_or_else(|e| panic!("dumping: {e}"));
        w.reap();
        veth.wait_gone();
        let dir = ImageDir::open(images.path()).unwrap();
        let id = net_id(&dir);
        let mut links: Vec<pb::NetDeviceEntry> = dir.read_all(ImageFile::Netdev(id)).unwrap();
        let pair: Vec<_> = links.iter().filter(|l| l.name.starts_with(b"vp")).collect();
        assert_eq!(pair.len(), 2, "both ends of the pair dumped");
        assert!(pair.iter().all(|l| l.peer_nsid == Some(id as u32)));
        if lose_pair {
            // Negative control: the second end renamed in the images.
            for l in &mut links {
                if l.name == b"vpb" {
                    l.name = b"vpz".to_vec();
                }
            }
            let file = ImageFile::Netdev(id);
            std::fs::remove_file(dir.file_path(file)).unwrap();
            dir.write_all(file, &links).unwrap();
            std::fs::remove_file(images.path().join(rcriu::images::manifest::MANIFEST)).unwrap();
        }
        let r = rcriu::Restore::new(images.path())
            .tcp_established(true)
            .external_veth("rcbi0", "rcbh0@rcbr0")
            .detach(true)
            .run();
        if !lose_pair {
            // While it runs (its end takes the pair with it).
            r.as_ref().unwrap_or_else(|e| panic!("restoring: {e}"));
            let out = Command::new("ip")
                .args(["-br", "link", "show", "master", "rcbr0"])
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.contains("rcbh0"),
                "the outside end is in the bridge: {out}"
            );
        }
        let verdict = r.map_err(|e| e.to_string()).and_then(|_| w.verdict());
        if lose_pair {
            let e = verdict.expect_err("the pair lost an end, yet PASS");
            assert!(
                e.contains("the veth pair inside is not there")
                    || e.contains("restoring the addresses")
                    || e.contains("ifaddr"),
                "{e}"
            );
            continue;
        }
        verdict.unwrap_or_else(|e| panic!("restored: {e}"));
    }
}

/// `iptables -S` (the nftables backend, where the lock's chain goes) in
/// the namespace mounted at `/run/netns/NAME`.
fn rules_in(name: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", name, "iptables", "-w", "-S"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_namespace_joined_at_the_restore_is_unlocked() {
    let _g = setup();
    let name = "rcriu-join-test";
    let _ = Command::new("ip").args(["netns", "del", name]).output();
    let mut w = start("netns", &[]);
    // The namespace outlives the process: the restore joins it
    // (criu's --join-ns net:PATH), as zdtm's netns_lock tests do.
    sh("ip", &["netns", "attach", name, &w.pid.to_string()]);
    struct Mounted(&'static str);
    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", self.0]).output();
        }
    }
    let _m = Mounted(name);
    let images = TempDir::new("netns-join");
    Dump::new(w.pid)
        .images_dir(images.path())
        .tcp_established(true)
        .run()
        .unwrap_or_else(|e| panic!("dumping: {e}"));
    w.reap();
    // The dump left the namespace locked as a whole.
    assert!(
        rules_in(name).contains("-A INPUT -j CRIU"),
        "{}",
        rules_in(name)
    );
    rcriu::Restore::new(images.path())
        .tcp_established(true)
        .join_net(format!("/run/netns/{name}"))
        .detach(true)
        .run()
        .unwrap_or_else(|e| panic!("restoring: {e}"));
    assert!(!rules_in(name).contains("CRIU"), "{}", rules_in(name));
    // Its checks pass, a new connection to its listener among them.
    w.verdict().unwrap_or_else(|e| panic!("restored: {e}"));
}

/// What a negative control does to the images of namespace `id`.
type Edit = fn(&Path, u64);

/// Keeps only the 4-byte header iproute2 writes in a saved dump.
fn header_only(dir: &Path, file: ImageFile) {
    let p = dir.join(file.name());
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..4]).unwrap();
}

#[test]
fn a_namespace_losing_a_piece_shows() {
    let _g = setup();
    let edits: [(&str, Edit, &str); 7] = [
        (
            "conntrack",
            |d, id| {
                for f in [ImageFile::NetnsCt(id), ImageFile::NetnsExp(id)] {
                    std::fs::remove_file(d.join(f.name())).expect("a conntrack image");
                }
            },
            "the conntrack entry of the connection is not there",
        ),
        (
            "route",
            |d, id| header_only(d, ImageFile::Route(id)),
            "the route is not there",
        ),
        (
            "ipv6 route",
            |d, id| header_only(d, ImageFile::Route6(id)),
            "the ipv6 route is not there",
        ),
        (
            "addresses",
            |d, id| {
                // 10.82.0.1 (in the address and local attributes) made .9.
                let p = d.join(ImageFile::Ifaddr(id).name());
                let mut b = std::fs::read(&p).unwrap();
                let mut n = 0;
                for i in 0..b.len().saturating_sub(3) {
                    if b[i..i + 4] == [10, 82, 0, 1] {
                        b[i + 3] = 9;
                        n += 1;
                    }
                }
                assert!(n > 0, "10.82.0.1 in the saved addresses");
                std::fs::write(&p, b).unwrap();
            },
            "the second address on lo is not there",
        ),
        (
            "iptables rule",
            |d, id| {
                let p = d.join(ImageFile::Iptables(id).name());
                let t = std::fs::read_to_string(&p).unwrap();
                let kept: String = t
                    .lines()
                    .filter(|l| !l.contains("10.79.0.0/24"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                assert_ne!(kept, t);
                std::fs::write(&p, kept).unwrap();
            },
            "the iptables rule is not there",
        ),
        (
            "nftables rule",
            |d, id| {
                let p = d.join(ImageFile::Nftables(id).name());
                let t = std::fs::read_to_string(&p).unwrap();
                let kept = t.replace("ip saddr 10.81.0.1 drop", "ip saddr 10.81.0.2 drop");
                assert_ne!(kept, t);
                std::fs::write(&p, kept).unwrap();
            },
            "the nftables rule is not there",
        ),
        (
            "sysctl",
            |d, id| {
                let dir = ImageDir::open(d).unwrap();
                let file = ImageFile::Netns(id);
                let mut e: pb::NetnsEntry = dir.read_one(file).unwrap();
                assert_eq!(e.unix_conf[0].iarg, Some(77));
                e.unix_conf[0].iarg = Some(10);
                std::fs::remove_file(d.join(file.name())).unwrap();
                dir.write_one(file, &e).unwrap();
            },
            "max_dgram_qlen is not 77",
        ),
    ];
    for (what, edit, expect) in edits {
        let w = start("netns", &[]);
        let images = TempDir::new("netns-edit");
        let path = images.path().to_owned();
        let mut w = w;
        Dump::new(w.pid)
            .images_dir(&path)
            .tcp_established(true)
            .run()
            .unwrap_or_else(|e| panic!("dumping ({what}): {e}"));
        w.reap();
        let dir = ImageDir::open(&path).unwrap();
        let id = net_id(&dir);
        edit(&path, id);
        std::fs::remove_file(path.join(rcriu::images::manifest::MANIFEST)).unwrap();
        rcriu::Restore::new(&path)
            .tcp_established(true)
            .detach(true)
            .run()
            .unwrap_or_else(|e| panic!("restoring ({what} edited): {e}"));
        let e = w.verdict().expect_err(&format!("{what} lost, yet PASS"));
        assert!(e.contains(expect), "{what}: {e}");
    }
}

#[test]
fn a_cycle_keeps_proc_as_it_was() {
    // The unedited cycle through the shared helper, which also compares
    // /proc before and after.
    let _g = setup();
    cycle_opts(
        start("netns", &[]),
        "netns",
        None,
        |d| d.tcp_established(true),
        |r| r.tcp_established(true),
    )
    .unwrap();
}

#[test]
fn devices_not_restored_are_refused_by_name() {
    let _g = setup();
    for kind in ["bridge", "vxlan id 42 dstport 4789", "tun"] {
        let w = start("netns", &[&format!("kind={kind}")]);
        let kind = kind.split(' ').next().unwrap();
        let images = TempDir::new("netns-refused");
        let e = Dump::new(w.pid)
            .images_dir(images.path())
            .tcp_established(true)
            .run()
            .expect_err("a namespace with a device not restored was dumped");
        let e = e.to_string();
        assert!(
            e.contains(&format!("network device rc0 (kind {kind}")),
            "{e}"
        );
        // Left running with its network unlocked: it passes its checks
        // (a new connection to its listener among them).
        w.verdict()
            .unwrap_or_else(|e| panic!("after the refused dump ({kind}): {e}"));
    }
}

/// CRIU 4.2's criu binary, when the machine has one.
fn criu() -> Option<String> {
    let c = std::env::var("RCRIU_TEST_CRIU")
        .ok()
        .filter(|c| !c.is_empty());
    if c.is_none() {
        eprintln!("RCRIU_TEST_CRIU is not set: skipping the tests against CRIU 4.2");
    }
    c
}

/// `tool dump -t PID` or `tool restore -d` of `dir`, with `extra`.
fn run(tool: &str, cmd: &str, pid: Option<i32>, dir: &Path, extra: &[&str]) -> Result<(), String> {
    let log = format!("{cmd}.log");
    let mut c = Command::new(tool);
    c.arg(cmd);
    match pid {
        Some(p) => c.args(["-t", &p.to_string()]),
        None => c.arg("-d"),
    };
    c.arg("-D").arg(dir).args(["-v4", "-o", &log]).args(extra);
    let out = c.output().map_err(|e| format!("running {tool}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} {cmd}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join(&log)).unwrap_or_default()
        ))
    }
}

#[test]
fn criu_4_2_and_rcriu_restore_each_other_s_namespaces() {
    let _g = setup();
    let Some(criu) = criu() else { return };
    let rcriu = env!("CARGO_BIN_EXE_rcriu");
    let mut netns = Vec::new();
    for lock in ["iptables", "nftables"] {
        for (dumper, restorer) in [(rcriu, criu.as_str()), (criu.as_str(), rcriu)] {
            let what = format!("dumped by {dumper}, restored by {restorer}, {lock} lock");
            let mut w = start("netns", &["veth=rcvi1"]);
            let veth = Veth::give(w.pid, "rcvh1", "rcvi1");
            let images = TempDir::new("netns-compat");
            let lock_opt = ["--tcp-established", "--network-lock", lock];
            run(dumper, "dump", Some(w.pid), images.path(), &lock_opt)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            w.reap();
            veth.wait_gone();
            let dir = ImageDir::open(images.path()).unwrap();
            let id = net_id(&dir);
            if lock == "iptables" {
                netns.push(std::fs::read(dir.file_path(ImageFile::Netns(id))).unwrap());
            }
            run(
                restorer,
                "restore",
                None,
                images.path(),
                &["--tcp-established", "--external", "veth[rcvi1]:rcvh1"],
            )
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(veth.exists(), "{what}: the outside end is made again");
            w.verdict().unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
    // The sysctls of two namespaces set up alike are written alike.
    assert_eq!(netns[0], netns[1], "netns-<id>.img of rcriu and of CRIU");
}
