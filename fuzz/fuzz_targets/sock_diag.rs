//! sock_diag answers: a datagram of netlink messages, each payload read
//! by every family's parser. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcriu_proc::sock_diag;

fuzz_target!(|data: &[u8]| {
    if let Ok(msgs) = sock_diag::parse_messages(data) {
        for m in msgs {
            let _ = sock_diag::parse_unix(m.payload);
            let _ = sock_diag::parse_inet(m.payload);
            let _ = sock_diag::parse_netlink(m.payload);
            let _ = sock_diag::parse_packet(m.payload);
        }
    }
    let _ = sock_diag::parse_unix(data);
    let _ = sock_diag::parse_inet(data);
    let _ = sock_diag::parse_netlink(data);
    let _ = sock_diag::parse_packet(data);
});
