//! A container's UTS namespace made again: its host and domain names
//! (`utsns-<id>.img`), set in the namespace the calling thread is in.

use rcriu_images::pb;

use crate::{Error, Result};

/// Sets the names of the calling thread's UTS namespace.
pub fn set_here(e: &pb::UtsnsEntry) -> Result<()> {
    rustix::system::sethostname(&e.nodename)
        .map_err(|err| Error::host("setting the host name")(err.into()))?;
    rustix::system::setdomainname(&e.domainname)
        .map_err(|err| Error::host("setting the domain name")(err.into()))
}
