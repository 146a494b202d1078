//! The parasite blob, built by `build.rs` from `parasite/blob`.

#[allow(dead_code)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/parasite.rs"));
}

pub use generated::{
    DATA_OFF, IMAGE, RCRIU_PARASITE_HEAD as HEAD, RCRIU_PARASITE_SIGRETURN as SIGRETURN,
    RCRIU_PARASITE_SYSCALL_RET as SYSCALL_RET, RELOCS,
};

/// The blob's image with its relocations applied for loading at `base`.
pub fn image_at(base: u64) -> Vec<u8> {
    let mut img = IMAGE.to_vec();
    for &(off, addend) in RELOCS {
        let v = base.wrapping_add_signed(addend);
        img[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocations_land_inside_the_image() {
        assert!(HEAD < IMAGE.len());
        assert!(DATA_OFF <= IMAGE.len().next_multiple_of(4096));
        for &(off, addend) in RELOCS {
            assert!(off + 8 <= IMAGE.len());
            assert!((addend as usize) < IMAGE.len());
        }
        let img = image_at(0x7000_0000_0000);
        for &(off, addend) in RELOCS {
            let v = u64::from_le_bytes(img[off..off + 8].try_into().unwrap());
            assert_eq!(v, 0x7000_0000_0000 + addend as u64);
        }
    }
}
