//! `sk-queues.img`: what waited to be read in unix sockets, by the file
//! id of the socket it waited in (`id_for`), each message with its bytes
//! and the file ids of the fds in flight with it. The messages are sent
//! again into their socket ([`sk_unix`](crate::sk_unix)), in order.

use std::collections::{BTreeMap, BTreeSet};

use rcriu_images::{ImageDir, ImageFile, pb};

use crate::{Error, Result};

/// `SCM_RIGHTS`, as `scm_entry.type` holds it.
pub const SCM_RIGHTS: u32 = 1;

/// The most bytes one queued message holds (a corrupt image beyond).
const MAX_MESSAGE: u32 = 1 << 28;
/// The most fds one message carries (the kernel's SCM_MAX_FD).
const MAX_RIGHTS: usize = 253;

/// One message.
#[derive(Debug, Clone)]
pub struct Packet {
    pub data: Vec<u8>,
    /// File ids of the fds in flight with it.
    pub rights: Vec<u32>,
}

/// The queues of a dump, by socket file id.
#[derive(Debug, Default)]
pub struct Queues {
    by_id: BTreeMap<u32, Vec<Packet>>,
}

impl Queues {
    /// Reads `sk-queues.img` (none: empty queues).
    pub fn load(dir: &ImageDir) -> Result<Queues> {
        let file = ImageFile::SkQueues;
        let mut q = Queues::default();
        let Some(mut r) = dir.reader_if_exists(file)? else {
            return Ok(q);
        };
        while let Some(e) = r.read_next::<pb::SkPacketEntry>()? {
            if e.length > MAX_MESSAGE {
                return Err(Error::invalid(
                    file.name(),
                    format!("a message of {} bytes for socket {}", e.length, e.id_for),
                ));
            }
            let data = r.read_payload(u64::from(e.length))?;
            let mut rights = Vec::new();
            match e.scm.as_slice() {
                [] => {}
                [s] if s.r#type == SCM_RIGHTS && s.rights.len() <= MAX_RIGHTS => {
                    rights.clone_from(&s.rights);
                }
                [s] if s.r#type == SCM_RIGHTS => {
                    return Err(Error::invalid(
                        file.name(),
                        format!("{} fds in one message", s.rights.len()),
                    ));
                }
                [s] => {
                    return Err(Error::unsupported(format!(
                        "restoring a queued message with a control message of type {} ({})",
                        s.r#type,
                        file.name()
                    )));
                }
                more => {
                    return Err(Error::invalid(
                        file.name(),
                        format!("{} control messages on one message", more.len()),
                    ));
                }
            }
            q.by_id
                .entry(e.id_for)
                .or_default()
                .push(Packet { data, rights });
        }
        Ok(q)
    }

    /// The ids of the sockets something waited in.
    pub fn receivers(&self) -> BTreeSet<u32> {
        self.by_id.keys().copied().collect()
    }

    /// What waited in socket `id`, taken.
    pub fn take(&mut self, id: u32) -> Vec<Packet> {
        self.by_id.remove(&id).unwrap_or_default()
    }

    /// Every file id in flight.
    pub fn in_flight(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_id
            .values()
            .flatten()
            .flat_map(|p| p.rights.iter().copied())
    }

    /// Sockets that had something queued and were not restored: refused
    /// (a queue of a socket the dump does not have).
    pub fn check_empty(&self) -> Result<()> {
        match self.by_id.keys().next() {
            None => Ok(()),
            Some(id) => Err(Error::invalid(
                ImageFile::SkQueues.name(),
                format!("messages for file {id}, which is no unix socket of the dump"),
            )),
        }
    }
}
