//! The text of `/proc/PID/fdinfo/N` and the link of `/proc/PID/fd/N` on
//! arbitrary bytes: whatever parses must parse the same again, and every
//! kind-specific part (eventfd, epoll targets, inotify and fanotify
//! marks, signalfd, timerfd, pidfd, locks, io_uring) is read without
//! panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcriu_proc::{FdInfoKind, FdTarget, parse_fdinfo, parse_io_uring_fdinfo};

fuzz_target!(|data: &[u8]| {
    let _ = FdTarget::from_link(data);
    if let Ok(ring) = parse_io_uring_fdinfo(data) {
        assert_eq!(parse_io_uring_fdinfo(data).ok().as_ref(), Some(&ring));
    }
    if let Ok(info) = parse_fdinfo(data) {
        assert_eq!(parse_fdinfo(data).ok().as_ref(), Some(&info));
        if let FdInfoKind::Epoll(targets) = &info.kind {
            // The dump ranks targets of one number in fdinfo's order.
            for (i, t) in targets.iter().enumerate() {
                let _ = targets[..i].iter().filter(|o| o.tfd == t.tfd).count();
            }
        }
    }
});
