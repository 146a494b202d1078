//! What crit gets from Python's standard library, written out:
//! `json.dumps`, `base64.encodebytes`/`decodebytes`,
//! `quopri.encodestring`/`decodestring`, `int(s, 0)`, and the text of
//! IPv6 addresses.

use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::Value;

/// `json.dumps(v)` (`indent` None) or `json.dumps(v, indent=N)`, with
/// Python's defaults (`ensure_ascii`, ", " / ": " separators).
pub fn dumps(v: &Value, indent: Option<usize>) -> String {
    let mut out = String::new();
    write_value(&mut out, v, indent, 0);
    out
}

fn newline(out: &mut String, indent: Option<usize>, level: usize) {
    if let Some(n) = indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', n * level));
    }
}

fn write_value(out: &mut String, v: &Value, indent: Option<usize>, level: usize) {
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, indent, level + 1);
                write_value(out, x, indent, level + 1);
            }
            newline(out, indent, level);
            out.push(']');
        }
        Value::Object(o) if o.is_empty() => out.push_str("{}"),
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, indent, level + 1);
                write_str(out, k);
                out.push_str(": ");
                write_value(out, x, indent, level + 1);
            }
            newline(out, indent, level);
            out.push('}');
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// `base64.encodebytes`: lines of 76 characters, each ending in "\n".
pub fn encodebytes(data: &[u8]) -> String {
    let flat = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(flat.len() + flat.len() / 76 + 1);
    for chunk in flat.as_bytes().chunks(76) {
        // The engine's output is ASCII.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// `base64.decodebytes`: characters outside the alphabet are skipped,
/// decoding stops at padding.
pub fn decodebytes(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut quad = [0u8; 4];
    let mut n = 0;
    let mut pads = 0;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                if n >= 2 {
                    pads += 1;
                    if n + pads == 4 {
                        break;
                    }
                }
                continue;
            }
            _ => continue,
        };
        if pads > 0 {
            break;
        }
        quad[n] = v;
        n += 1;
        if n == 4 {
            out.push(quad[0] << 2 | quad[1] >> 4);
            out.push(quad[1] << 4 | quad[2] >> 2);
            out.push(quad[2] << 6 | quad[3]);
            n = 0;
        }
    }
    match n {
        0 => {}
        1 => return Err("base64 text has a stray character at its end".into()),
        2 => out.push(quad[0] << 2 | quad[1] >> 4),
        _ => {
            out.push(quad[0] << 2 | quad[1] >> 4);
            out.push(quad[1] << 4 | quad[2] >> 2);
        }
    }
    if n > 0 && pads == 0 {
        return Err("base64 text lacks its padding".into());
    }
    Ok(out)
}

const QP_LINE: usize = 76;

fn qp_must_quote(data: &[u8], i: usize, linelen: usize) -> bool {
    let c = data[i];
    let next = data.get(i + 1).copied();
    c > 126
        || c == b'='
        || (c == b'.' && linelen == 0 && matches!(next, None | Some(b'\n' | b'\r' | 0)))
        || ((c == b'\t' || c == b' ') && next.is_none())
        || (c < 33 && c != b'\r' && c != b'\n' && c != b'\t' && c != b' ')
}

/// `quopri.encodestring` (binascii's `b2a_qp`, text mode, tabs unquoted).
pub fn qp_encode(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let crlf = data
        .iter()
        .position(|&b| b == b'\n')
        .is_some_and(|p| p > 0 && data[p - 1] == b'\r');
    let soft_break = |out: &mut Vec<u8>| {
        out.push(b'=');
        if crlf {
            out.push(b'\r');
        }
        out.push(b'\n');
    };
    let mut out: Vec<u8> = Vec::with_capacity(data.len() * 3 / 2);
    let mut linelen = 0;
    let mut i = 0;
    while i < data.len() {
        if qp_must_quote(data, i, linelen) {
            if linelen + 3 >= QP_LINE {
                soft_break(&mut out);
                linelen = 0;
            }
            out.push(b'=');
            out.push(HEX[usize::from(data[i] >> 4)]);
            out.push(HEX[usize::from(data[i] & 15)]);
            i += 1;
            linelen += 3;
        } else if data[i] == b'\n' || (data[i] == b'\r' && data.get(i + 1) == Some(&b'\n')) {
            linelen = 0;
            if let Some(&last) = out.last()
                && (last == b' ' || last == b'\t')
            {
                let n = out.len();
                out[n - 1] = b'=';
                out.push(HEX[usize::from(last >> 4)]);
                out.push(HEX[usize::from(last & 15)]);
            }
            if crlf {
                out.push(b'\r');
            }
            out.push(b'\n');
            i += if data[i] == b'\r' { 2 } else { 1 };
        } else {
            if i + 1 != data.len() && data[i + 1] != b'\n' && linelen + 1 >= QP_LINE {
                soft_break(&mut out);
                linelen = 0;
            }
            linelen += 1;
            out.push(data[i]);
            i += 1;
        }
    }
    // Everything above 126 and below 32 (but tab, CR, LF) was quoted.
    String::from_utf8_lossy(&out).into_owned()
}

/// `quopri.decodestring` (binascii's `a2b_qp`).
pub fn qp_decode(text: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'=' {
            out.push(text[i]);
            i += 1;
            continue;
        }
        i += 1;
        if i >= text.len() {
            break;
        }
        match text[i] {
            b'\n' | b'\r' => {
                while i < text.len() && text[i] != b'\n' {
                    i += 1;
                }
                if i < text.len() {
                    i += 1;
                }
            }
            b'=' => {
                out.push(b'=');
                i += 1;
            }
            c => match (hex(c), text.get(i + 1).and_then(|&d| hex(d))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'='),
            },
        }
    }
    out
}

/// `int(s, 0)`: optional sign, then a decimal number without leading
/// zeros or a 0x/0o/0b-prefixed one, underscores between digits.
pub fn int0(s: &str) -> Option<i128> {
    let s = s.trim();
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = s.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.strip_prefix('_').unwrap_or(d))
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.strip_prefix('_').unwrap_or(d))
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.strip_prefix('_').unwrap_or(d))
    } else {
        if lower.len() > 1
            && lower.starts_with('0')
            && lower.bytes().any(|b| b != b'0' && b != b'_')
        {
            return None;
        }
        (10, lower.as_str())
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut v: i128 = 0;
    for c in digits.chars().filter(|&c| c != '_') {
        v = v
            .checked_mul(radix)?
            .checked_add(i128::from(c.to_digit(radix as u32)?))?;
    }
    Some(if neg { -v } else { v })
}

/// An IPv6 address as Python's `ipaddress` (before 3.13) writes it.
pub fn ipv6(addr: u128) -> String {
    let hextets: Vec<String> = (0..8)
        .map(|i| format!("{:x}", (addr >> (112 - 16 * i)) & 0xffff))
        .collect();
    let (mut best_start, mut best_len) = (0, 0);
    let (mut start, mut len) = (0, 0);
    for (i, h) in hextets.iter().enumerate() {
        if h == "0" {
            if len == 0 {
                start = i;
            }
            len += 1;
            if len > best_len {
                best_len = len;
                best_start = start;
            }
        } else {
            len = 0;
        }
    }
    if best_len < 2 {
        return hextets.join(":");
    }
    let head = hextets[..best_start].join(":");
    let tail = hextets[best_start + best_len..].join(":");
    format!("{head}::{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_like_python() {
        let v: Value = serde_json::from_str(
            r#"{"a": [1, {"b": "é\u0001\"\\", "c": []}], "d": {}, "e": true}"#,
        )
        .unwrap();
        assert_eq!(
            dumps(&v, None),
            r#"{"a": [1, {"b": "\u00e9\u0001\"\\", "c": []}], "d": {}, "e": true}"#
        );
        assert_eq!(
            dumps(&v, Some(4)),
            "{\n    \"a\": [\n        1,\n        {\n            \"b\": \"\\u00e9\\u0001\\\"\\\\\",\n            \"c\": []\n        }\n    ],\n    \"d\": {},\n    \"e\": true\n}"
        );
        let astral: Value = Value::String("\u{1f600}".into());
        assert_eq!(dumps(&astral, None), r#""\ud83d\ude00""#);
    }

    #[test]
    fn base64_like_python() {
        assert_eq!(encodebytes(b""), "");
        assert_eq!(encodebytes(b"ab"), "YWI=\n");
        let long = vec![0xffu8; 60];
        let text = encodebytes(&long);
        assert_eq!(text.lines().next().unwrap().len(), 76);
        assert_eq!(text.matches('\n').count(), 2);
        assert_eq!(decodebytes(&text).unwrap(), long);
        assert_eq!(decodebytes("YW\nI=\n").unwrap(), b"ab");
        assert_eq!(decodebytes("YWJj").unwrap(), b"abc");
        assert!(decodebytes("YWJjZ").is_err());
    }

    // Expected values printed by CPython 3.11's quopri.encodestring.
    #[test]
    fn quopri_like_python() {
        assert_eq!(qp_encode(b"\0/tmp/sock"), "=00/tmp/sock");
        assert_eq!(qp_encode(b"a=b \xff"), "a=3Db =FF");
        assert_eq!(qp_encode(b"tab\t"), "tab=09");
        assert_eq!(qp_encode(b"x \ny"), "x=20\ny");
        assert_eq!(qp_encode(b"."), "=2E");
        assert_eq!(
            qp_encode(&[b'a'; 80]),
            format!("{}=\n{}", "a".repeat(75), "a".repeat(5))
        );
        for s in [
            &b"\0/tmp/sock"[..],
            b"a=b \xff",
            b"x \ny",
            &[b'a'; 200],
            b"=\r\n.\r\n",
        ] {
            assert_eq!(qp_decode(qp_encode(s).as_bytes()), s);
        }
    }

    #[test]
    fn int0_like_python() {
        assert_eq!(int0("0x1f"), Some(31));
        assert_eq!(int0(" -0X1F "), Some(-31));
        assert_eq!(int0("1_000"), Some(1000));
        assert_eq!(int0("0o17"), Some(15));
        assert_eq!(int0("0"), Some(0));
        assert_eq!(int0("00"), Some(0));
        assert_eq!(int0("010"), None);
        assert_eq!(int0("0x"), None);
        assert_eq!(int0("1__0"), None);
        assert_eq!(int0("abc"), None);
    }

    #[test]
    fn ipv6_like_python() {
        assert_eq!(ipv6(1), "::1");
        assert_eq!(ipv6(0), "::");
        assert_eq!(ipv6(0xffff_7f00_0001), "::ffff:7f00:1");
        assert_eq!(
            ipv6(0x2001_0db8_0000_0000_0001_0000_0000_0001),
            "2001:db8::1:0:0:1"
        );
        assert_eq!(
            ipv6(0x2001_0db8_0000_0001_0001_0001_0001_0001),
            "2001:db8:0:1:1:1:1:1"
        );
    }
}
