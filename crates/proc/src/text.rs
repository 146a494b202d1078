//! Small helpers for the text parsers: lines with their offsets, numbers in
//! the bases /proc prints, whitespace-separated fields.

use crate::error::{ParseError, ParseResult};

/// Lines of `text` with the byte offset each starts at. A last line without
/// a newline is yielded too; the newline itself never is.
pub(crate) fn lines(text: &[u8]) -> Lines<'_> {
    Lines { text, pos: 0 }
}

pub(crate) struct Lines<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.text.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let start = self.pos;
        match memchr::memchr(b'\n', rest) {
            Some(n) => {
                self.pos += n + 1;
                Some((start, &rest[..n]))
            }
            None => {
                self.pos = self.text.len();
                Some((start, rest))
            }
        }
    }
}

/// A decimal number without sign.
#[inline]
pub(crate) fn dec_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

/// A decimal number with an optional leading `-`.
#[inline]
pub(crate) fn dec_i64(s: &[u8]) -> Option<i64> {
    match s.split_first() {
        Some((b'-', digits)) => {
            let v = dec_u64(digits)?;
            if v == 1 << 63 {
                Some(i64::MIN)
            } else {
                i64::try_from(v).ok().map(|v| -v)
            }
        }
        _ => i64::try_from(dec_u64(s)?).ok(),
    }
}

pub(crate) fn dec_u32(s: &[u8]) -> Option<u32> {
    u32::try_from(dec_u64(s)?).ok()
}

pub(crate) fn dec_i32(s: &[u8]) -> Option<i32> {
    i32::try_from(dec_i64(s)?).ok()
}

/// A hexadecimal number (either case), without `0x`.
#[inline]
pub(crate) fn hex_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        v = (v << 4) | u64::from(hex_digit(b)?);
    }
    Some(v)
}

#[inline]
pub(crate) fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

pub(crate) fn hex_u32(s: &[u8]) -> Option<u32> {
    u32::try_from(hex_u64(s)?).ok()
}

/// An octal number (a leading `0` is just a digit).
pub(crate) fn oct_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 11 {
        return None;
    }
    let mut v: u32 = 0;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 7 {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u32::from(d))?;
    }
    Some(v)
}

#[inline]
pub(crate) fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `s` without leading and trailing blanks (spaces, tabs).
#[inline]
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_blank(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| !is_blank(b))
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// Splits `line` at its first `:` into the key and the trimmed value.
#[inline]
pub(crate) fn key_value(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', line)?;
    Some((&line[..colon], trim(&line[colon + 1..])))
}

/// Blank-separated fields of `s`, each with its offset within `s`.
pub(crate) fn fields(s: &[u8]) -> Fields<'_> {
    Fields { s, pos: 0 }
}

pub(crate) struct Fields<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (usize, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.s;
        let mut i = self.pos;
        while i < s.len() && is_blank(s[i]) {
            i += 1;
        }
        if i == s.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        while i < s.len() && !is_blank(s[i]) {
            i += 1;
        }
        self.pos = i;
        Some((start, &s[start..i]))
    }
}

/// A parse error at `offset` saying which field was wrong and how it read.
pub(crate) fn bad(offset: usize, what: &str, found: &[u8]) -> ParseError {
    let found = String::from_utf8_lossy(&found[..found.len().min(64)]);
    ParseError::new(offset, format!("bad {what}: {found:?}"))
}

/// Parses `found` with `f`, or reports it as a bad `what` at `offset`.
#[inline]
pub(crate) fn num<T>(
    f: impl FnOnce(&[u8]) -> Option<T>,
    found: &[u8],
    offset: usize,
    what: &str,
) -> ParseResult<T> {
    f(found).ok_or_else(|| bad(offset, what, found))
}

/// Undoes the octal escapes (`\040`, `\011`, `\012`, `\134`) the kernel
/// writes for blanks, newlines and backslashes in mount paths.
pub(crate) fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 4 <= s.len() {
            let d = &s[i + 1..i + 4];
            if d.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = (u32::from(d[0] - b'0') << 6)
                    | (u32::from(d[1] - b'0') << 3)
                    | u32::from(d[2] - b'0');
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(dec_u64(b"0"), Some(0));
        assert_eq!(dec_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(dec_u64(b"18446744073709551616"), None);
        assert_eq!(dec_u64(b""), None);
        assert_eq!(dec_u64(b"1a"), None);
        assert_eq!(dec_i64(b"-1"), Some(-1));
        assert_eq!(dec_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(dec_i64(b"9223372036854775808"), None);
        assert_eq!(hex_u64(b"ffffFFFF00000001"), Some(0xffff_ffff_0000_0001));
        assert_eq!(hex_u64(b"1ffffffffffffffff"), None);
        assert_eq!(hex_u64(b"g"), None);
        assert_eq!(oct_u32(b"0100002"), Some(0o100002));
        assert_eq!(oct_u32(b"8"), None);
    }

    #[test]
    fn line_and_field_splitting() {
        let t = b"a b\n\nc\td  \nlast";
        let v: Vec<_> = lines(t).collect();
        assert_eq!(
            v,
            vec![
                (0, &b"a b"[..]),
                (4, &b""[..]),
                (5, &b"c\td  "[..]),
                (11, &b"last"[..])
            ]
        );
        let f: Vec<_> = fields(b"  x\t yy z ").collect();
        assert_eq!(f, vec![(2, &b"x"[..]), (5, &b"yy"[..]), (8, &b"z"[..])]);
        assert_eq!(trim(b" \t a b \t"), b"a b");
        assert_eq!(key_value(b"Uid:\t0\t1"), Some((&b"Uid"[..], &b"0\t1"[..])));
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape_octal(br"/a\040b\012c\134"), b"/a b\nc\\");
        assert_eq!(unescape_octal(br"\04"), br"\04");
        assert_eq!(unescape_octal(br"\777x"), br"\777x");
    }
}
