//! Images to crit's JSON on arbitrary bytes, both forms; whatever decodes
//! and encodes back must decode to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcriu_images::json;

fuzz_target!(|data: &[u8]| {
    for pretty in [false, true] {
        let Ok(v) = json::decode_bytes(data, "fuzz.img", pretty) else {
            continue;
        };
        let _ = json::to_text(&v, pretty);
        let mut bytes = Vec::new();
        if json::encode_image(&v, "fuzz.json", &mut bytes).is_err() {
            continue;
        }
        let again = json::decode_bytes(&bytes, "again.img", pretty)
            .expect("what rcriu encodes, rcriu decodes");
        assert_eq!(again, v, "decode(encode(v)) != v");
    }
});
