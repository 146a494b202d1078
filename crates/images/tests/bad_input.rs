//! Bad images give errors that name the file and the offset, never a
//! panic, and never an allocation sized by a length read from the file.

use std::path::Path;

use rcriu_images::json;
use rcriu_images::{Error, ImageReader, Kind};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/criu-4.2/counter")
            .join(name),
    )
    .unwrap()
}

fn decode(bytes: &[u8]) -> Result<json::Value, Error> {
    json::decode_bytes(bytes, "bad.img", false)
}

fn assert_err_at(bytes: &[u8], offset: u64, words: &str) {
    let e = decode(bytes).expect_err("bad input must fail");
    let text = e.to_string();
    assert!(text.contains("bad.img"), "{text}");
    assert_eq!(e.offset(), Some(offset), "{text}");
    assert!(text.contains(&format!("at offset {offset}")), "{text}");
    assert!(text.contains(words), "{text} (wanted {words:?})");
}

fn head(kind: Kind) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(w) = kind.head().word() {
        v.extend_from_slice(&w.to_le_bytes());
    }
    v.extend_from_slice(&kind.magic().to_le_bytes());
    v
}

#[test]
fn good_input_decodes() {
    // The control for everything below.
    assert!(decode(&fixture("core-30000.img")).is_ok());
    let mut v = head(Kind::Pstree);
    v.extend_from_slice(&[2, 0, 0, 0, 8, 1]);
    assert!(decode(&v).is_ok());
}

#[test]
fn wrong_or_unknown_magic() {
    assert_err_at(
        &[0x19, 0x43, 0x56, 0x54, 1, 2, 3, 4],
        4,
        "unknown magic 0x04030201",
    );
    assert_err_at(&[1, 2, 3, 4], 0, "unknown magic");
    // A raw file (pages) has no magic.
    assert_err_at(&[0; 4096], 0, "raw image");
    // Stats behind the common magic rather than the service one.
    let mut v = Kind::Pstree.head().word().unwrap().to_le_bytes().to_vec();
    v.extend_from_slice(&Kind::Stats.magic().to_le_bytes());
    assert_err_at(&v, 0, "first magic");
    assert_err_at(&[0x19, 0x43], 0, "magic");
    assert_err_at(&[], 0, "magic");
}

#[test]
fn huge_length() {
    let mut v = head(Kind::Core);
    v.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
    assert_err_at(&v, 8, "entry of 4294967295 bytes exceeds the 64 MiB limit");
    // Below the cap, but more than the file holds: refused before reading.
    let mut v = head(Kind::Core);
    v.extend_from_slice(&(1u32 << 20).to_le_bytes());
    v.extend_from_slice(&[0; 10]);
    assert_err_at(
        &v,
        12,
        "file ends 1048566 bytes short of a 1048576-byte entry",
    );
    // Same through a reader that does not know the length: it fails on
    // what is there, without sizing anything by the length.
    let mut r = ImageReader::new(v.as_slice(), "bad.img").unwrap();
    let e = r.next_raw().unwrap_err();
    assert!(e.to_string().contains("at offset 12"), "{e}");
}

#[test]
fn truncated() {
    let core = fixture("core-30000.img");
    assert_err_at(&core[..10], 8, "entry size");
    assert_err_at(&core[..100], 12, "bytes short of a");
    // Every truncation of every fixture fails cleanly or decodes a prefix.
    for name in [
        "core-30000.img",
        "mm-30000.img",
        "pagemap-30000.img",
        "stats-dump",
        "inventory.img",
        "files.img",
    ] {
        let bytes = fixture(name);
        for len in 0..bytes.len() {
            if let Err(e) = decode(&bytes[..len]) {
                assert!(e.offset().is_some(), "{name}[..{len}]: {e}");
            }
        }
    }
}

#[test]
fn garbage_protobuf() {
    let mut v = head(Kind::Pstree);
    v.extend_from_slice(&[3, 0, 0, 0, 0x08, 0xff, 0xff]);
    assert_err_at(&v, 13, "truncated varint");
    let mut v = head(Kind::Pstree);
    v.extend_from_slice(&[2, 0, 0, 0, 0x0f, 0x00]);
    assert_err_at(&v, 12, "wire type 7");
    let mut v = head(Kind::Core);
    v.extend_from_slice(&[4, 0, 0, 0, 0x12, 0x05, 0x08, 0x01]);
    assert_err_at(&v, 14, "bytes wanted");
    // The same bytes through the typed reader.
    let mut r = ImageReader::new(&v[..], "bad.img").unwrap();
    let e = r.read_next::<rcriu_images::pb::CoreEntry>().unwrap_err();
    assert!(
        e.to_string()
            .contains("bad.img at offset 12: bad core_entry"),
        "{e}"
    );
}

#[test]
fn every_byte_flipped_never_panics() {
    for name in [
        "core-30000.img",
        "mm-30000.img",
        "pagemap-30000.img",
        "files.img",
    ] {
        let bytes = fixture(name);
        for i in 0..bytes.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= x;
                let _ = decode(&b);
                let _ = json::decode_bytes(&b, "bad.img", true);
            }
        }
    }
}

#[test]
fn bad_json() {
    let enc = |text: &str| {
        let v = json::parse(text, "bad.json")?;
        json::encode_image(&v, "bad.json", Vec::new())
    };
    let e = enc("{").unwrap_err();
    assert!(e.to_string().contains("bad.json"), "{e}");
    let e = enc(r#"{"magic": "NOPE", "entries": []}"#).unwrap_err();
    assert!(e.to_string().contains("unknown kind \"NOPE\""), "{e}");
    let e = enc(r#"{"magic": "PSTREE", "entries": [{"pid": 1}]}"#).unwrap_err();
    assert!(
        e.to_string().contains("required field ppid is missing"),
        "{e}"
    );
    let e = enc(r#"{"magic": "PSTREE", "entries": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1, "bogus": 1}]}"#).unwrap_err();
    assert!(e.to_string().contains("no field \"bogus\""), "{e}");
    let e = enc(r#"{"magic": "PSTREE", "entries": [{"pid": -1, "ppid": 0, "pgid": 1, "sid": 1}]}"#)
        .unwrap_err();
    assert!(e.to_string().contains("$.entries[0].pid"), "{e}");
    let e = enc(
        r#"{"magic": "PIPES_DATA", "entries": [{"pipe_id": 1, "bytes": 4, "extra": "YWI=\n"}]}"#,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("2 bytes of payload where the entry announces 4"),
        "{e}"
    );
    assert!(
        enc(r#"{"magic": "PSTREE", "entries": [{"pid": "0x10", "ppid": 0, "pgid": 1, "sid": 1}]}"#)
            .is_ok()
    );
}
