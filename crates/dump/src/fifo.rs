//! FIFOs: a `fifo_entry` in files.img per open end, pointing to a
//! regular-file entry with the FIFO's path and the end's flags
//! (`regf_id`); buffered bytes go to `fifo-data.img` as a pipe's do
//! ([`pipes`](crate::pipes)).

use rcriu_images::pb;

/// The entry of one end of a FIFO; `regf_id` is the entry of its path.
pub fn entry(id: u32, pipe_id: u32, regf_id: u32) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Fifo as i32,
        id,
        fifo: Some(Box::new(pb::FifoEntry {
            id,
            pipe_id,
            regf_id: Some(regf_id),
        })),
        ..Default::default()
    }
}
