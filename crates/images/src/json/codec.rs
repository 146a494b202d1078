//! Protobuf entries to crit's JSON values and back, driven by the schema.
//! Decoding follows Python protobuf as crit uses it (fields listed in
//! number order, unknown fields skipped, a repeated scalar accepted
//! packed or not); encoding follows protobuf-c (fields in number order,
//! repeated scalars unpacked unless the schema packs them), so that what
//! CRIU wrote comes back byte for byte.

use serde_json::{Map, Number, Value};

use super::pretty;
use super::py;
use super::schema::{Field, Schema, Ty};

/// A problem at an offset within the entry.
#[derive(Debug)]
pub(crate) struct WireError {
    pub offset: usize,
    pub detail: String,
}

const MAX_DEPTH: u32 = 64;

#[derive(Clone, Copy)]
enum Raw<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64(u64),
    Bytes(&'a [u8]),
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, at: usize, detail: impl Into<String>) -> WireError {
        WireError {
            offset: self.base + at,
            detail: detail.into(),
        }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err(start, "truncated varint"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err(start, "varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let start = self.pos;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                self.err(
                    start,
                    format!("{n} bytes wanted, {} left", self.buf.len() - start),
                )
            })?;
        self.pos = end;
        Ok(&self.buf[start..end])
    }

    /// One value of wire type `wt`.
    fn value(&mut self, wt: u8, depth: u32) -> Result<Option<Raw<'a>>, WireError> {
        Ok(Some(match wt {
            0 => Raw::Varint(self.varint()?),
            1 => Raw::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().unwrap_or_default(),
            )),
            5 => Raw::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().unwrap_or_default(),
            )),
            2 => {
                let at = self.pos;
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| self.err(at, "length out of range"))?;
                Raw::Bytes(self.take(len)?)
            }
            3 => {
                self.skip_group(depth)?;
                return Ok(None);
            }
            _ => return Err(self.err(self.pos, format!("wire type {wt}"))),
        }))
    }

    fn skip_group(&mut self, depth: u32) -> Result<(), WireError> {
        if depth > MAX_DEPTH {
            return Err(self.err(self.pos, "groups nested too deep"));
        }
        loop {
            let at = self.pos;
            if self.pos >= self.buf.len() {
                return Err(self.err(at, "unterminated group"));
            }
            let key = self.varint()?;
            let wt = (key & 7) as u8;
            if wt == 4 {
                return Ok(());
            }
            self.value(wt, depth + 1)?;
        }
    }
}

/// Accumulated occurrences of one field.
enum Acc<'a> {
    One(Raw<'a>, usize),
    Many(Vec<(Raw<'a>, usize)>),
    /// A singular message's pieces (merged by concatenation).
    Pieces(Vec<u8>, usize),
}

/// Decodes one message into crit's dict.
pub(crate) fn decode(
    schema: &Schema,
    msg: usize,
    bytes: &[u8],
    base: usize,
    pretty: bool,
    hex: bool,
    depth: u32,
) -> Result<Map<String, Value>, WireError> {
    let m = schema.msg(msg);
    let mut cur = Cursor {
        buf: bytes,
        pos: 0,
        base,
    };
    if depth > MAX_DEPTH {
        return Err(cur.err(0, "messages nested too deep"));
    }
    let mut accs: Vec<Option<Acc>> = (0..m.fields.len()).map(|_| None).collect();
    while cur.pos < bytes.len() {
        let at = cur.pos;
        let key = cur.varint()?;
        let number = key >> 3;
        let wt = (key & 7) as u8;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(cur.err(at, format!("field number {number}")));
        }
        if wt == 4 {
            return Err(cur.err(at, "end of a group never started"));
        }
        if wt > 5 {
            return Err(cur.err(at, format!("wire type {wt}")));
        }
        let value_at = cur.pos;
        let Some(raw) = cur.value(wt, depth)? else {
            continue;
        };
        let Ok(i) = m
            .fields
            .binary_search_by_key(&(number as u32), |f| f.number)
        else {
            continue;
        };
        let f = &m.fields[i];
        let slot = &mut accs[i];
        if f.repeated {
            if !matches!(slot, Some(Acc::Many(_))) {
                *slot = Some(Acc::Many(Vec::new()));
            }
            let Some(Acc::Many(list)) = slot else {
                continue;
            };
            if wt == f.ty.wire_type() {
                list.push((raw, value_at));
            } else if wt == 2
                && f.ty.packable()
                && let Raw::Bytes(b) = raw
            {
                let mut inner = Cursor {
                    buf: b,
                    pos: 0,
                    base: base + value_at,
                };
                while inner.pos < b.len() {
                    let p = inner.pos;
                    if let Some(r) = inner.value(f.ty.wire_type(), depth)? {
                        list.push((r, p));
                    }
                }
            }
            continue;
        }
        if wt != f.ty.wire_type() {
            continue;
        }
        match (f.ty, raw, slot.as_mut()) {
            (Ty::Message, Raw::Bytes(b), Some(Acc::Pieces(v, _))) => v.extend_from_slice(b),
            (Ty::Message, Raw::Bytes(b), _) => *slot = Some(Acc::Pieces(b.to_vec(), value_at)),
            _ => *slot = Some(Acc::One(raw, value_at)),
        }
    }
    let mut out = Map::new();
    for (f, acc) in m.fields.iter().zip(accs) {
        let Some(acc) = acc else { continue };
        let hex = hex || f.opts.hex;
        let v = match acc {
            Acc::One(raw, at) => single(schema, f, raw, base + at, pretty, hex, depth)?,
            Acc::Pieces(bytes, at) => Value::Object(decode(
                schema,
                f.message,
                &bytes,
                base + at,
                pretty,
                hex,
                depth + 1,
            )?),
            Acc::Many(list) => {
                if list.is_empty() {
                    continue;
                }
                if pretty && f.opts.ipadd && (list.len() == 1 || list.len() == 4) {
                    let words: Vec<u32> = list
                        .iter()
                        .map(|(r, _)| match r {
                            Raw::Varint(v) => *v as u32,
                            Raw::Fixed32(v) => *v,
                            Raw::Fixed64(v) => *v as u32,
                            Raw::Bytes(_) => 0,
                        })
                        .collect();
                    Value::Array(vec![Value::String(ip_text(&words))])
                } else {
                    let mut items = Vec::with_capacity(list.len());
                    for (raw, at) in list {
                        items.push(single(schema, f, raw, base + at, pretty, hex, depth)?);
                    }
                    Value::Array(items)
                }
            }
        };
        out.insert(f.name.clone(), v);
    }
    Ok(out)
}

fn ip_text(words: &[u32]) -> String {
    if let [w] = words {
        std::net::Ipv4Addr::from(u32::from_be(*w)).to_string()
    } else {
        let v = words
            .iter()
            .fold(0u128, |a, w| (a << 32) | u128::from(u32::from_be(*w)));
        py::ipv6(v)
    }
}

fn num(v: i128) -> Value {
    if v < 0 {
        Value::Number(Number::from(v as i64))
    } else {
        Value::Number(Number::from(v as u64))
    }
}

fn single(
    schema: &Schema,
    f: &Field,
    raw: Raw,
    at: usize,
    pretty: bool,
    hex: bool,
    depth: u32,
) -> Result<Value, WireError> {
    let int: i128 = match (f.ty, raw) {
        (Ty::Message, Raw::Bytes(b)) => {
            return Ok(Value::Object(decode(
                schema,
                f.message,
                b,
                at,
                pretty,
                hex,
                depth + 1,
            )?));
        }
        (Ty::String, Raw::Bytes(b)) => {
            return Ok(Value::String(match std::str::from_utf8(b) {
                Ok(s) => s.to_owned(),
                Err(_) => bytes_repr(b),
            }));
        }
        (Ty::Bytes, Raw::Bytes(b)) => {
            return Ok(Value::String(match f.opts.conv.as_deref() {
                Some("unix_name") => py::qp_encode(b),
                _ => py::encodebytes(b),
            }));
        }
        (Ty::Bool, Raw::Varint(v)) => return Ok(Value::Bool(v != 0)),
        (Ty::Double, Raw::Fixed64(v)) => {
            return Ok(Number::from_f64(f64::from_bits(v)).map_or(Value::Null, Value::Number));
        }
        (Ty::Float, Raw::Fixed32(v)) => {
            return Ok(
                Number::from_f64(f64::from(f32::from_bits(v))).map_or(Value::Null, Value::Number)
            );
        }
        (Ty::Enum, Raw::Varint(v)) => {
            let n = v as i32;
            return Ok(match f.values.iter().find(|(k, _)| *k == n) {
                Some((_, name)) => Value::String(name.clone()),
                None => num(i128::from(n)),
            });
        }
        (Ty::Int32, Raw::Varint(v)) => i128::from(v as i32),
        (Ty::Int64, Raw::Varint(v)) => i128::from(v as i64),
        (Ty::Uint32, Raw::Varint(v)) => i128::from(v as u32),
        (Ty::Uint64, Raw::Varint(v)) => i128::from(v),
        (Ty::Sint32, Raw::Varint(v)) => {
            let u = v as u32;
            i128::from((u >> 1) as i32 ^ -((u & 1) as i32))
        }
        (Ty::Sint64, Raw::Varint(v)) => i128::from((v >> 1) as i64 ^ -((v & 1) as i64)),
        (Ty::Fixed32, Raw::Fixed32(v)) => i128::from(v),
        (Ty::Sfixed32, Raw::Fixed32(v)) => i128::from(v as i32),
        (Ty::Fixed64, Raw::Fixed64(v)) => i128::from(v),
        (Ty::Sfixed64, Raw::Fixed64(v)) => i128::from(v as i64),
        _ => {
            return Err(WireError {
                offset: at,
                detail: format!("field {} has the wrong wire type", f.name),
            });
        }
    };
    Ok(if pretty {
        pretty_int(f, int, hex)
    } else {
        num(int)
    })
}

fn pretty_int(f: &Field, v: i128, hex: bool) -> Value {
    if hex {
        return Value::String(pretty::hex(v));
    }
    let u = v as u64;
    if f.opts.dev {
        return Value::String(pretty::dev(u, f.opts.odev));
    }
    if let Some(table) = &f.opts.flags {
        return Value::String(pretty::flags(table, u).unwrap_or_else(|| pretty::hex(v)));
    }
    if let Some(dict) = &f.opts.dict
        && let Some(name) = pretty::dict_name(dict, &f.name, u)
    {
        return Value::String(name.to_owned());
    }
    num(v)
}

/// Python's `str()` of bytes: how crit shows a string field that is
/// not UTF-8.
fn bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut s = String::from("b");
    s.push(quote);
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            c if c as char == quote => {
                s.push('\\');
                s.push(quote);
            }
            0x20..=0x7e => s.push(c as char),
            c => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push(quote);
    s
}

/// The bytes of a `bytes_repr` text, when it stands for bytes that are
/// not UTF-8 (anything else is a string as it is).
fn bytes_unrepr(s: &str) -> Option<Vec<u8>> {
    let inner = s
        .strip_prefix("b'")
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| s.strip_prefix("b\"").and_then(|r| r.strip_suffix('"')))?;
    let mut out = Vec::new();
    let mut it = inner.bytes();
    while let Some(c) = it.next() {
        if c != b'\\' {
            out.push(c);
            continue;
        }
        match it.next()? {
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'x' => {
                let h = [it.next()?, it.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&h).ok()?, 16).ok()?);
            }
            _ => return None,
        }
    }
    std::str::from_utf8(&out).is_err().then_some(out)
}

/// A problem with a JSON value, and where it is.
#[derive(Debug)]
pub(crate) struct JsonError {
    pub path: String,
    pub detail: String,
}

fn jerr(path: &str, detail: impl Into<String>) -> JsonError {
    JsonError {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, number: u32, wt: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wt));
}

/// Encodes crit's dict as a message.
pub(crate) fn encode(
    schema: &Schema,
    msg: usize,
    obj: &Map<String, Value>,
    out: &mut Vec<u8>,
    path: &str,
    depth: u32,
) -> Result<(), JsonError> {
    if depth > MAX_DEPTH {
        return Err(jerr(path, "nested too deep"));
    }
    let m = schema.msg(msg);
    for key in obj.keys() {
        if m.field_named(key).is_none() {
            return Err(jerr(path, format!("{} has no field {key:?}", m.name)));
        }
    }
    for f in &m.fields {
        let fpath = format!("{path}.{}", f.name);
        let Some(v) = obj.get(&f.name) else {
            if f.required {
                return Err(jerr(path, format!("required field {} is missing", f.name)));
            }
            continue;
        };
        if f.repeated {
            let Value::Array(items) = v else {
                return Err(jerr(&fpath, "expected a list"));
            };
            let mut values = Vec::with_capacity(items.len());
            if f.opts.ipadd
                && let Some(Value::String(s)) = items.first()
            {
                let addr: std::net::IpAddr = s
                    .parse()
                    .map_err(|_| jerr(&fpath, format!("{s:?} is not an IP address")))?;
                match addr {
                    std::net::IpAddr::V4(a) => {
                        values.push(Enc::Varint(u64::from(u32::from(a).to_be())))
                    }
                    std::net::IpAddr::V6(a) => {
                        for chunk in a.octets().chunks(4) {
                            let w = u32::from_be_bytes(chunk.try_into().unwrap_or_default());
                            values.push(Enc::Varint(u64::from(w.to_be())));
                        }
                    }
                }
            } else {
                for (i, item) in items.iter().enumerate() {
                    values.push(value(schema, f, item, &format!("{fpath}[{i}]"), depth)?);
                }
            }
            if f.packed && !values.is_empty() {
                let mut body = Vec::new();
                for v in &values {
                    v.put(&mut body);
                }
                put_key(out, f.number, 2);
                put_varint(out, body.len() as u64);
                out.extend_from_slice(&body);
            } else {
                for v in &values {
                    put_key(out, f.number, f.ty.wire_type());
                    v.put(out);
                }
            }
        } else {
            let v = value(schema, f, v, &fpath, depth)?;
            put_key(out, f.number, f.ty.wire_type());
            v.put(out);
        }
    }
    Ok(())
}

enum Enc {
    Varint(u64),
    Fixed32(u32),
    Fixed64(u64),
    Bytes(Vec<u8>),
}

impl Enc {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Enc::Varint(v) => put_varint(out, *v),
            Enc::Fixed32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Enc::Fixed64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Enc::Bytes(b) => {
                put_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
        }
    }
}

fn value(schema: &Schema, f: &Field, v: &Value, path: &str, depth: u32) -> Result<Enc, JsonError> {
    Ok(match f.ty {
        Ty::Message => {
            let Value::Object(o) = v else {
                return Err(jerr(path, "expected an object"));
            };
            let mut body = Vec::new();
            encode(schema, f.message, o, &mut body, path, depth + 1)?;
            Enc::Bytes(body)
        }
        Ty::String => match v {
            Value::String(s) => {
                Enc::Bytes(bytes_unrepr(s).unwrap_or_else(|| s.as_bytes().to_vec()))
            }
            _ => return Err(jerr(path, "expected a string")),
        },
        Ty::Bytes => match v {
            Value::String(s) => Enc::Bytes(match f.opts.conv.as_deref() {
                Some("unix_name") => py::qp_decode(s.as_bytes()),
                _ => py::decodebytes(s).map_err(|e| jerr(path, e))?,
            }),
            _ => return Err(jerr(path, "expected a base64 string")),
        },
        Ty::Bool => match v {
            Value::Bool(b) => Enc::Varint(u64::from(*b)),
            Value::Number(n) => Enc::Varint(u64::from(n.as_f64().is_some_and(|x| x != 0.0))),
            _ => return Err(jerr(path, "expected true or false")),
        },
        Ty::Double => Enc::Fixed64(as_f64(v, path)?.to_bits()),
        Ty::Float => Enc::Fixed32((as_f64(v, path)? as f32).to_bits()),
        Ty::Enum => {
            let n = match v {
                Value::String(s) => f
                    .values
                    .iter()
                    .find(|(_, name)| name == s)
                    .map(|(k, _)| *k)
                    .ok_or_else(|| {
                        jerr(path, format!("{s:?} is not a value of the field's enum"))
                    })?,
                other => {
                    let n = json_int(other, path)?;
                    i32::try_from(n).map_err(|_| jerr(path, format!("{n} is out of range")))?
                }
            };
            Enc::Varint(i64::from(n) as u64)
        }
        _ => {
            let n = match v {
                Value::String(s) => {
                    string_int(f, s).ok_or_else(|| jerr(path, format!("{s:?} is not a number")))?
                }
                other => json_int(other, path)?,
            };
            let (lo, hi): (i128, i128) = match f.ty {
                Ty::Int32 | Ty::Sint32 | Ty::Sfixed32 => (i32::MIN.into(), i32::MAX.into()),
                Ty::Uint32 | Ty::Fixed32 => (0, u32::MAX.into()),
                Ty::Int64 | Ty::Sint64 | Ty::Sfixed64 => (i64::MIN.into(), i64::MAX.into()),
                _ => (0, u64::MAX.into()),
            };
            if n < lo || n > hi {
                return Err(jerr(path, format!("{n} is out of range for {:?}", f.ty)));
            }
            match f.ty {
                Ty::Int32 | Ty::Int64 => Enc::Varint(n as i64 as u64),
                Ty::Sint32 => {
                    let x = n as i32;
                    Enc::Varint(u64::from(((x << 1) ^ (x >> 31)) as u32))
                }
                Ty::Sint64 => {
                    let x = n as i64;
                    Enc::Varint(((x << 1) ^ (x >> 63)) as u64)
                }
                Ty::Fixed32 | Ty::Sfixed32 => Enc::Fixed32(n as u32),
                Ty::Fixed64 | Ty::Sfixed64 => Enc::Fixed64(n as u64),
                _ => Enc::Varint(n as u64),
            }
        }
    })
}

fn as_f64(v: &Value, path: &str) -> Result<f64, JsonError> {
    v.as_f64().ok_or_else(|| jerr(path, "expected a number"))
}

fn json_int(v: &Value, path: &str) -> Result<i128, JsonError> {
    match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok(u.into())
            } else if let Some(i) = n.as_i64() {
                Ok(i.into())
            } else {
                match n.as_f64() {
                    Some(x) if x.fract() == 0.0 && x.abs() < 1.8e19 => Ok(x as i128),
                    _ => Err(jerr(path, format!("{n} is not an integer"))),
                }
            }
        }
        Value::Bool(b) => Ok((*b).into()),
        _ => Err(jerr(path, "expected a number")),
    }
}

/// crit's reading of a number written as a string.
fn string_int(f: &Field, s: &str) -> Option<i128> {
    if f.opts.dev {
        return pretty::undev(s, f.opts.odev).map(i128::from);
    }
    if let Some(table) = &f.opts.flags
        && let Some(v) = pretty::unflags(table, s)
    {
        return v;
    }
    if let Some(dict) = &f.opts.dict
        && let Some(v) = pretty::dict_value(dict, &f.name, s)
    {
        return Some(v.into());
    }
    py::int0(s)
}

/// The last value of a varint field, read from an entry's bytes (for
/// payload lengths).
pub(crate) fn varint_field(bytes: &[u8], number: u32) -> Option<u64> {
    let mut cur = Cursor {
        buf: bytes,
        pos: 0,
        base: 0,
    };
    let mut found = None;
    while cur.pos < bytes.len() {
        let key = cur.varint().ok()?;
        let wt = (key & 7) as u8;
        let raw = cur.value(wt, 0).ok()?;
        if key >> 3 == u64::from(number)
            && let Some(Raw::Varint(v)) = raw
        {
            found = Some(v);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_both_ways() {
        assert_eq!(bytes_repr(b"a\xffb"), "b'a\\xffb'");
        assert_eq!(bytes_unrepr("b'a\\xffb'"), Some(b"a\xffb".to_vec()));
        assert_eq!(bytes_unrepr("b'abc'"), None);
        assert_eq!(bytes_repr(b"it's\xff"), "b\"it's\\xff\"");
        assert_eq!(bytes_unrepr("b\"it's\\xff\""), Some(b"it's\xff".to_vec()));
    }
}
