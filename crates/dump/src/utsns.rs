//! A container's UTS namespace: its host and domain names, as
//! `utsns-<id>.img`.

use rcriu_images::pb;

/// The names as seen inside the namespace the calling thread is in.
pub fn read_here() -> pb::UtsnsEntry {
    let u = rustix::system::uname();
    pb::UtsnsEntry {
        nodename: u.nodename().to_bytes().to_vec(),
        domainname: u.domainname().to_bytes().to_vec(),
    }
}
