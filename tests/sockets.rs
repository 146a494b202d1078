//! Sockets end to end: unix sockets of every kind with their queues, fds
//! in flight, names and connections; TCP and UDP; netlink. Each workload
//! is dumped, killed and restored (and dumped with --leave-running), then
//! checks itself; /proc (with what /proc/net says of each socket) is the
//! same before and after. Negative controls change one thing in the
//! images and the workload must notice, or the dump must refuse by name.

mod common;

use common::{cycle, cycle_with, leave_running, setup, start};
use rcriu::images::{ImageDir, ImageFile, pb};
use rcriu::{Dump, Restore};
use rcriu_test_support::TempDir;

/// Rewrites files.img's unix socket entries through `f`.
fn edit_unix(dir: &ImageDir, f: impl Fn(&mut pb::UnixSkEntry)) {
    let mut files = dir.files().unwrap();
    for e in &mut files {
        if let Some(u) = e.usk.as_deref_mut() {
            f(u);
        }
    }
    dir.write_all(ImageFile::Files, &files).unwrap();
}

/// sk-queues.img's entries with their bytes.
fn read_queues(dir: &ImageDir) -> Vec<(pb::SkPacketEntry, Vec<u8>)> {
    let mut r = dir.reader(ImageFile::SkQueues).unwrap();
    let mut all = Vec::new();
    while let Some(e) = r.read_next::<pb::SkPacketEntry>().unwrap() {
        let b = r.read_payload(u64::from(e.length)).unwrap();
        all.push((e, b));
    }
    all
}

fn write_queues(dir: &ImageDir, all: &[(pb::SkPacketEntry, Vec<u8>)]) {
    let mut w = dir.writer(ImageFile::SkQueues).unwrap();
    for (e, b) in all {
        w.write(e).unwrap();
        w.write_payload(b).unwrap();
    }
    w.finish().unwrap();
}

/// The unix socket entry of the socket bound to `name` (a path's NUL
/// left out).
fn named(dir: &ImageDir, name: &[u8]) -> pb::UnixSkEntry {
    dir.files()
        .unwrap()
        .into_iter()
        .filter_map(|e| e.usk.map(|b| *b))
        .find(|u| u.name.split(|&b| b == 0).next() == Some(name))
        .unwrap_or_else(|| panic!("no socket named {}", String::from_utf8_lossy(name)))
}

#[test]
fn unix_sockets_carry_on() {
    let _g = setup();
    cycle("sk_unix", &[], None).unwrap();
    leave_running("sk_unix", &[]);
    cycle("sk_unix", &["ghost"], None).unwrap();
    leave_running("sk_unix", &["ghost"]);
}

fn drop_fd_in_flight(dir: &ImageDir, _pid: i32) {
    let mut q = read_queues(dir);
    for (e, _) in &mut q {
        e.scm.clear();
    }
    write_queues(dir, &q);
}

fn flip_a_queued_byte(dir: &ImageDir, _pid: i32) {
    let mut q = read_queues(dir);
    let (_, b) = q
        .iter_mut()
        .find(|(_, b)| b.as_slice() == b"ping-from-10")
        .expect("the ping waits");
    b[0] ^= 0x20;
    write_queues(dir, &q);
}

fn drop_a_datagram(dir: &ImageDir, _pid: i32) {
    let mut q = read_queues(dir);
    let at = q
        .iter()
        .position(|(e, _)| e.length == 100)
        .expect("the 100 bytes");
    q.remove(at);
    write_queues(dir, &q);
}

fn loosen_the_listener(dir: &ImageDir, _pid: i32) {
    let l = named(dir, b"listen.sock");
    edit_unix(dir, |u| {
        if u.id == l.id
            && let Some(p) = u.file_perms.as_mut()
        {
            p.mode |= 0o006;
        }
    });
}

/// Both ends of the pair 21/22 forget their shutdown (one end's shut
/// down the other too).
fn forget_a_shutdown(dir: &ImageDir, _pid: i32) {
    edit_unix(dir, |u| {
        let half = [pb::SkShutdown::Write as i32, pb::SkShutdown::Read as i32];
        if u.shutdown.is_some_and(|s| half.contains(&s)) {
            u.shutdown = None;
        }
    });
}

fn shrink_a_buffer(dir: &ImageDir, _pid: i32) {
    edit_unix(dir, |u| {
        if u.opts.so_rcvbuf == 2 * 65536 {
            u.opts.so_rcvbuf = 65536;
        }
    });
}

fn forget_passcred(dir: &ImageDir, _pid: i32) {
    edit_unix(dir, |u| u.opts.so_passcred = Some(false));
}

fn block_a_socket(dir: &ImageDir, _pid: i32) {
    edit_unix(dir, |u| u.flags &= !(libc::O_NONBLOCK as u32));
}

fn rename_the_abstract_socket(dir: &ImageDir, _pid: i32) {
    edit_unix(dir, |u| {
        if u.name.starts_with(b"\0rcriu-sk-") {
            u.name.push(b'x');
        }
    });
}

/// d/gone.sock no longer marked removed: the restore binds it where it
/// was, in a directory gone too.
fn unlink_a_removed_name(dir: &ImageDir, _pid: i32) {
    edit_unix(dir, |u| {
        if u.name.starts_with(b"d/gone.sock") {
            u.deleted = None;
        }
    });
}

#[test]
fn corrupted_unix_sockets_are_noticed() {
    let _g = setup();
    let fails =
        |tweak: common::Tweak, args: &[&str], want: &str| match cycle("sk_unix", args, Some(tweak))
        {
            Ok(()) => panic!("{want}: the tweaked images restored and passed"),
            Err(e) => assert!(e.contains(want), "{want}: {e}"),
        };
    fails(drop_fd_in_flight, &[], "FAIL: no fd in flight on fd 10");
    fails(flip_a_queued_byte, &[], "FAIL: the queue of fd 11");
    fails(drop_a_datagram, &[], "FAIL: the datagrams on fd 13");
    fails(loosen_the_listener, &[], "FAIL: listen.sock's mode");
    fails(forget_a_shutdown, &[], "FAIL: fd 22 after 21's shutdown");
    fails(shrink_a_buffer, &[], "FAIL: fd 19's SO_RCVBUF");
    fails(forget_passcred, &[], "FAIL: fd 26's SO_PASSCRED");
    fails(block_a_socket, &[], "FAIL: fds 12/13's flags");
    fails(rename_the_abstract_socket, &[], "FAIL: fd 19's name");
    fails(unlink_a_removed_name, &["ghost"], "binding unix socket");
}

#[test]
fn credentials_attached_to_queued_messages_are_refused_by_name() {
    let _g = setup();
    let w = start("sk_unix", &["creds"]);
    let images = TempDir::new("sk-unix-creds");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect_err("a datagram waits in a socket with SO_PASSCRED")
        .to_string();
    assert!(e.contains("fd 26") && e.contains("SO_PASSCRED"), "{e}");
    let left: Vec<_> = std::fs::read_dir(images.path()).unwrap().collect();
    assert!(left.is_empty(), "a refused dump leaves no image: {left:?}");
    // It runs on untouched, the datagram still there.
    w.verdict().unwrap();
}

/// A datagram socket connected to one outside the dump (as /dev/log): the
/// dump refuses it unless told --ext-unix-sk, the restore too; restored
/// with it, the socket sends to the outside again.
#[test]
fn a_peer_outside_needs_ext_unix_sk() {
    let _g = setup();
    let home = TempDir::new("sk-unix-ext");
    let log = home.path().join("log.sock");
    let outside = std::os::unix::net::UnixDatagram::bind(&log).unwrap();
    let path = log.to_str().unwrap();
    let w = start("sk_unix", &["ext", path]);
    let images = TempDir::new("sk-unix-ext-img");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect_err("fd 27's peer is outside")
        .to_string();
    assert!(
        e.contains("outside the dump") && e.contains("--ext-unix-sk"),
        "{e}"
    );
    let mut w = w;
    Dump::new(w.pid)
        .images_dir(images.path())
        .ext_unix_sk(true)
        .run()
        .expect("dumping with --ext-unix-sk");
    w.reap();
    let files = ImageDir::open(images.path()).unwrap().files().unwrap();
    assert!(
        files
            .iter()
            .filter_map(|f| f.usk.as_deref())
            .any(|u| u.uflags == 1 && u.name.starts_with(path.as_bytes())),
        "an external entry names the outside socket"
    );
    let e = Restore::new(images.path())
        .detach(true)
        .run()
        .expect_err("restoring without --ext-unix-sk")
        .to_string();
    assert!(e.contains("--ext-unix-sk"), "{e}");
    Restore::new(images.path())
        .detach(true)
        .ext_unix_sk(true)
        .run()
        .expect("restoring with --ext-unix-sk");
    w.verdict().unwrap();
    let mut buf = [0u8; 64];
    outside.set_nonblocking(true).unwrap();
    let n = outside
        .recv(&mut buf)
        .expect("the workload sent to the outside");
    assert_eq!(&buf[..n], b"from-the-workload");
}

/// Half a stream connection is refused whatever the options.
#[test]
fn a_stream_peer_outside_is_refused() {
    let _g = setup();
    let home = TempDir::new("sk-unix-extstream");
    let path = home.path().join("srv.sock");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let w = start("sk_unix", &["extstream", path.to_str().unwrap()]);
    let (_accepted, _) = l.accept().unwrap();
    let images = TempDir::new("sk-unix-extstream-img");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .ext_unix_sk(true)
        .run()
        .expect_err("half a stream connection")
        .to_string();
    assert!(e.contains("half a connection"), "{e}");
    w.verdict().unwrap();
    let _ = cycle_with;
}

#[test]
fn tcp_listeners_and_udp_carry_on() {
    let _g = setup();
    cycle("sk_inet", &[], None).unwrap();
    leave_running("sk_inet", &[]);
}

/// Rewrites files.img's inet socket entries through `f`.
fn edit_inet(dir: &ImageDir, f: impl Fn(&mut pb::InetSkEntry)) {
    let mut files = dir.files().unwrap();
    for e in &mut files {
        if let Some(i) = e.isk.as_deref_mut() {
            f(i);
        }
    }
    dir.write_all(ImageFile::Files, &files).unwrap();
}

fn stretch_keepidle(dir: &ImageDir, _pid: i32) {
    edit_inet(dir, |i| {
        if let Some(t) = i.tcp_opts.as_mut()
            && t.keepidle == Some(77)
        {
            t.keepidle = Some(78);
        }
    });
}

/// Every IPv6 socket IPv6-only (fd 12 was not; a socket bound to ::1
/// is, whatever it asked).
fn force_v6only(dir: &ImageDir, _pid: i32) {
    edit_inet(dir, |i| {
        if i.v6only.is_some() {
            i.v6only = Some(true);
        }
    });
}

fn forget_the_device(dir: &ImageDir, _pid: i32) {
    edit_inet(dir, |i| i.opts.so_bound_dev = None);
}

fn drop_the_filter(dir: &ImageDir, _pid: i32) {
    edit_inet(dir, |i| i.opts.so_filter.clear());
}

fn change_tos(dir: &ImageDir, _pid: i32) {
    edit_inet(dir, |i| {
        if let Some(ip) = i.ip_opts.as_mut()
            && ip.tos == Some(0x10)
        {
            ip.tos = Some(0x08);
        }
    });
}

fn drop_timestamps(dir: &ImageDir, _pid: i32) {
    edit_inet(dir, |i| i.opts.rcriu_timestamp = None);
}

fn drop_peek_off(dir: &ImageDir, _pid: i32) {
    edit_inet(dir, |i| i.opts.rcriu_peek_off = None);
}

fn change_ttl(dir: &ImageDir, _pid: i32) {
    edit_inet(dir, |i| {
        if let Some(ip) = i.ip_opts.as_mut()
            && ip.ttl == Some(33)
        {
            ip.ttl = Some(34);
        }
    });
}

fn forget_the_listen(dir: &ImageDir, _pid: i32) {
    edit_inet(dir, |i| {
        if i.backlog == 9 {
            i.state = 7;
        }
    });
}

#[test]
fn corrupted_inet_sockets_are_noticed() {
    let _g = setup();
    let fails = |tweak: common::Tweak, want: &str| match cycle("sk_inet", &[], Some(tweak)) {
        Ok(()) => panic!("{want}: the tweaked images restored and passed"),
        Err(e) => assert!(e.contains(want), "{want}: {e}"),
    };
    fails(stretch_keepidle, "FAIL: fd 10's keepalive");
    fails(forget_the_listen, "FAIL: fd 10's address or listening");
    fails(force_v6only, "FAIL: fd 12's address, IPV6_V6ONLY or flags");
    fails(forget_the_device, "FAIL: fd 11's device");
    fails(drop_the_filter, "FAIL: fd 12's filter");
    fails(change_tos, "FAIL: fd 10's IP_TOS");
    fails(drop_timestamps, "FAIL: fd 13's address or options");
    fails(drop_peek_off, "FAIL: fd 13's address or options");
    fails(change_ttl, "FAIL: fd 14's IP options");
}

/// Established connections with both ends in the process, data on the
/// way both ways (some of it not sent yet: the window was full).
#[test]
fn tcp_connections_inside_carry_on() {
    let _g = setup();
    let est = |d: Dump| d.tcp_established(true);
    let rest = |r: Restore| r.tcp_established(true);
    common::cycle_opts(start("sk_tcp", &["pair"]), "sk_tcp", None, est, rest).unwrap();
    common::leave_running_opts("sk_tcp", &["pair"], est);
    common::cycle_opts(start("sk_tcp", &["halfclosed"]), "sk_tcp", None, est, rest).unwrap();
}

#[test]
fn connected_tcp_sockets_need_tcp_established() {
    let _g = setup();
    let w = start("sk_tcp", &["pair"]);
    let images = TempDir::new("sk-tcp-refused");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect_err("connected TCP sockets")
        .to_string();
    assert!(
        e.contains("fd 11") && e.contains("--tcp-established"),
        "{e}"
    );
    w.verdict().unwrap();
}

/// The TCP client outside the dump, the FIFO its handshake with the
/// workload goes through, and the port the workload listens on.
fn outside_client(tag: &str) -> (TempDir, String, u16) {
    let home = TempDir::new(tag);
    let fifo = home.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path, borrowed for the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    (home, fifo.to_str().unwrap().to_owned(), port)
}

/// Starts `sk_tcp server` and connects to it from here (outside the
/// dumped tree), once it listens (it opens the FIFO after listen).
fn start_server(fifo: &str, port: u16) -> (rcriu_test_support::Workload, std::net::TcpStream) {
    use std::io::Write;
    let f = fifo.to_owned();
    let client = std::thread::spawn(move || {
        let gate = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"hello").unwrap();
        drop(gate);
        c
    });
    let w = start("sk_tcp", &["server", fifo, &port.to_string()]);
    (w, client.join().unwrap())
}

fn read_exactly(c: &mut std::net::TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    c.set_read_timeout(Some(rcriu_test_support::HANG_GUARD))
        .unwrap();
    let mut b = vec![0; n];
    c.read_exact(&mut b)?;
    Ok(b)
}

/// A server whose client is outside the dump: the connection carries on
/// across the dump and the restore (--tcp-established), what the client
/// sent meanwhile arriving once the lock is lifted; nothing is reset.
/// With either lock (iptables, nftables).
#[test]
fn a_tcp_client_outside_keeps_its_connection() {
    use rcriu::dump::tcp_stream::LockMethod;
    let _g = setup();
    client_outside(LockMethod::Iptables);
    client_outside(LockMethod::Nftables);
}

fn client_outside(lock: rcriu::dump::tcp_stream::LockMethod) {
    use std::io::Write;
    let (_home, fifo, port) = outside_client("sk-tcp-outside");
    let (mut w, mut client) = start_server(&fifo, port);
    client.write_all(b"before-dump").unwrap();
    let images = TempDir::new("sk-tcp-outside-img");
    let before = common::steady(w.pid);
    Dump::new(w.pid)
        .images_dir(images.path())
        .tcp_established(true)
        .network_lock(lock)
        .run()
        .unwrap();
    w.reap();
    // The connection is locked: this waits in the client's queue.
    client.write_all(b"during-dump").unwrap();
    Restore::new(images.path())
        .detach(true)
        .tcp_established(true)
        .run()
        .unwrap();
    let diff = before.diff(&rcriu_test_support::ProcSnapshot::settled(w.pid, &before));
    assert!(diff.is_empty(), "/proc differs:\n{}", diff.join("\n"));
    w.verdict().unwrap();
    assert_eq!(read_exactly(&mut client, 8).unwrap(), b"greeting");
    assert_eq!(read_exactly(&mut client, 13).unwrap(), b"after-restore");
    let rules = std::process::Command::new("iptables")
        .arg("-S")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&rules.stdout).contains("0xc114"),
        "the restore lifted the lock"
    );
    let tables = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains("CRIU-"),
        "the restore deleted the lock's table"
    );
}

/// The negative control of the lock: without it, what the client sends
/// while the server is gone is answered with a reset.
#[test]
fn without_the_network_lock_the_client_is_reset() {
    use std::io::Write;
    let _g = setup();
    let (_home, fifo, port) = outside_client("sk-tcp-nolock");
    let (mut w, mut client) = start_server(&fifo, port);
    client.write_all(b"before-dump").unwrap();
    let images = TempDir::new("sk-tcp-nolock-img");
    Dump::new(w.pid)
        .images_dir(images.path())
        .tcp_established(true)
        .network_lock(rcriu::dump::tcp_stream::LockMethod::Skip)
        .run()
        .unwrap();
    w.reap();
    client.write_all(b"during-dump").unwrap();
    let e = read_exactly(&mut client, 8).and_then(|_| read_exactly(&mut client, 13));
    assert_eq!(
        e.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "the client's data met no socket"
    );
}

#[test]
fn netlink_sockets_carry_on() {
    let _g = setup();
    cycle("sk_netlink", &[], None).unwrap();
    leave_running("sk_netlink", &[]);
}

fn move_a_netlink_port(dir: &ImageDir, _pid: i32) {
    let mut files = dir.files().unwrap();
    for e in &mut files {
        if let Some(n) = e.nlsk.as_deref_mut()
            && n.protocol == libc::NETLINK_GENERIC as u32
        {
            n.portid += 1;
        }
    }
    dir.write_all(ImageFile::Files, &files).unwrap();
}

fn leave_a_group(dir: &ImageDir, _pid: i32) {
    let mut files = dir.files().unwrap();
    for e in &mut files {
        if let Some(n) = e.nlsk.as_deref_mut() {
            for g in &mut n.groups {
                *g &= !1;
            }
        }
    }
    dir.write_all(ImageFile::Files, &files).unwrap();
}

#[test]
fn corrupted_netlink_sockets_are_noticed() {
    let _g = setup();
    let e = cycle("sk_netlink", &[], Some(move_a_netlink_port)).unwrap_err();
    assert!(e.contains("FAIL: fd 11's port or groups"), "{e}");
    let e = cycle("sk_netlink", &[], Some(leave_a_group)).unwrap_err();
    assert!(e.contains("FAIL: fd 10's port or groups"), "{e}");
}

/// The datagram the root of sk_tree sent its child, gone from the queue.
fn drop_the_child_s_datagram(dir: &ImageDir, _pid: i32) {
    let mut q = read_queues(dir);
    let at = q
        .iter()
        .position(|(_, b)| b == b"dgram-root")
        .expect("the datagram to the child");
    q.remove(at);
    write_queues(dir, &q);
}

#[test]
fn sockets_across_a_tree_carry_on() {
    let _g = setup();
    // A stream and a datagram pair between a parent and its child, with
    // data both ways, and a TCP listener both hold.
    cycle("sk_tree", &[], None).unwrap();
    leave_running("sk_tree", &[]);
    // Negative control: the child misses its datagram, and the root
    // never sees the child's connection.
    let e = cycle("sk_tree", &[], Some(drop_the_child_s_datagram)).unwrap_err();
    assert!(e.contains("FAIL: root: no connection"), "{e}");
}

/// A process with more sockets than one thread reads (1,200: their fds
/// and their options are then read by two), each with 16 bytes queued;
/// the control flips one queued byte, which its check sees.
#[test]
fn twelve_hundred_unix_sockets_carry_on() {
    let _g = setup();
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write one rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < 4096 {
            rl.rlim_cur = rl.rlim_max.min(4096);
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
    cycle("manysk", &["unix", "1200"], None).unwrap();
    fn flip(dir: &ImageDir, _pid: i32) {
        let mut q = read_queues(dir);
        assert!(q.len() >= 600, "{} queues", q.len());
        q[599].1[3] ^= 0x20;
        write_queues(dir, &q);
    }
    let e = cycle("manysk", &["unix", "1200"], Some(flip)).unwrap_err();
    assert!(!e.is_empty());
}

/// A queue larger than a new socket's buffers (1 MiB in a stream whose
/// writer had raised its SO_SNDBUF) is restored whole: the buffers grow
/// when the socket cannot take more, and come back to what they were.
#[test]
fn a_queue_larger_than_a_new_sockets_buffers_carries_on() {
    let _g = setup();
    cycle("manysk", &["unix", "4", "big"], None).unwrap();
}

/// A packet socket's rings mapped (zdtm's packet_sock_mmap): the area
/// dumped as CRIU 4.2 dumps it (status REGULAR|SOCKET, `shmid` the
/// socket's file id, no pages), mapped again from the socket made again
/// with its rings. Inside, the rings are where they were, of fd 10's
/// socket, the RX ring the kernel's, the TX ring writable.
#[test]
fn a_packet_socket_s_mapped_rings_carry_on() {
    let _g = setup();
    cycle("sk_packet_ring", &[], Some(rings_are_criu_s)).unwrap();
    leave_running("sk_packet_ring", &[]);
}

/// The file id of fd `fd` of process `pid`.
fn file_of_fd(dir: &ImageDir, pid: i32, fd: u32) -> u32 {
    let ids = dir.ids(pid as u32).unwrap();
    let fdinfo: Vec<pb::FdinfoEntry> = dir
        .read_all(ImageFile::Fdinfo(ids.files_id.into()))
        .unwrap();
    fdinfo.iter().find(|e| e.fd == fd).expect("the fd").id
}

/// Checks the area of the rings (changes nothing).
fn rings_are_criu_s(dir: &ImageDir, pid: i32) {
    let mm = dir.mm(pid as u32).unwrap();
    let v = mm
        .vmas
        .iter()
        .find(|v| v.status & rcriu::images::vma::VMA_AREA_SOCKET != 0)
        .expect("the rings' area");
    assert_eq!(v.status, 1 | rcriu::images::vma::VMA_AREA_SOCKET, "{v:?}");
    assert_eq!(v.shmid, u64::from(file_of_fd(dir, pid, 10)), "{v:?}");
    assert_eq!(v.end - v.start, 8192, "{v:?}");
}

/// The rings' area pointed at fd 11's socket (rings of the same geometry,
/// not mapped).
fn rings_of_fd_11(dir: &ImageDir, pid: i32) {
    let to = file_of_fd(dir, pid, 11);
    let mut mm = dir.mm(pid as u32).unwrap();
    for v in &mut mm.vmas {
        if v.status & rcriu::images::vma::VMA_AREA_SOCKET != 0 {
            v.shmid = u64::from(to);
        }
    }
    dir.write_one(ImageFile::Mm(pid as u64), &mm).unwrap();
}

#[test]
fn corrupted_rings_are_noticed() {
    let _g = setup();
    let e = cycle("sk_packet_ring", &[], Some(rings_of_fd_11)).unwrap_err();
    assert!(e.contains("not of fd 10's"), "{e}");
}

/// Rings mapped from a packet socket no fd holds any more: refused by
/// name (as CRIU), no image left, the process running on.
#[test]
fn rings_of_a_closed_packet_socket_are_refused_by_name() {
    let _g = setup();
    let w = start("sk_packet_ring", &["closed"]);
    let images = TempDir::new("packet-rings-closed");
    let e = Dump::new(w.pid)
        .images_dir(images.path())
        .run()
        .expect_err("rings of a closed socket")
        .to_string();
    assert!(
        e.contains("a mapping of socket:[")
            && e.contains("which is not a packet socket an fd of the process holds"),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(images.path()).unwrap().collect();
    assert!(left.is_empty(), "a refused dump leaves no image: {left:?}");
    w.verdict().unwrap();
}
