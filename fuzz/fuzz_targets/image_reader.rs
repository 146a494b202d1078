//! The image reader on arbitrary bytes: framing, typed entries of the
//! kind the magic names, payloads, and the pagemap stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::{Message, Name};
use rcriu_images::pages::PagemapReader;
use rcriu_images::{ImageReader, Kind, Payload, pb};

fn typed<M: Message + Name + Default>(data: &[u8]) {
    let Ok(mut r) = ImageReader::with_len(data, "fuzz.img", data.len() as u64) else {
        return;
    };
    while let Ok(Some(_)) = r.read_next::<M>() {}
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = ImageReader::with_len(data, "fuzz.img", data.len() as u64) else {
        return;
    };
    let kind = r.kind();
    // Framing alone, payloads taken by a length from the bytes.
    loop {
        match r.next_raw() {
            Ok(Some((_, entry))) => {
                let len = entry.first().copied().unwrap_or(0) as u64 * 1000;
                if kind.payload() != Payload::None && r.read_payload(len).is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    // Unknown-length sources must behave too.
    if let Ok(mut r) = ImageReader::new(data, "fuzz.img") {
        while let Ok(Some(_)) = r.next_raw() {}
    }
    match kind {
        Kind::Pagemap => {
            if let Ok(r) = ImageReader::with_len(data, "fuzz.img", data.len() as u64)
                && let Ok(mut pm) = PagemapReader::new(r)
            {
                while let Ok(Some(_)) = pm.next_run() {}
            }
        }
        Kind::Core => typed::<pb::CoreEntry>(data),
        Kind::Mm => typed::<pb::MmEntry>(data),
        Kind::Files => typed::<pb::FileEntry>(data),
        Kind::Inventory => typed::<pb::InventoryEntry>(data),
        Kind::Pstree => typed::<pb::PstreeEntry>(data),
        Kind::Cgroup => typed::<pb::CgroupEntry>(data),
        Kind::Netdev => typed::<pb::NetDeviceEntry>(data),
        _ => {}
    }
});
