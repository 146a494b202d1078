//! crit's JSON form of images, both ways: `decode` gives the values crit
//! 4.2's `decode` gives (or, pretty, what its `show` gives), `encode`
//! takes either form back to the image, byte for byte.
//!
//! Where crit cannot go, rcriu keeps the data: an enum value the schema
//! does not name is shown as its number, and a `string` field holding
//! bytes that are not UTF-8 is shown as Python shows such bytes
//! (`"b'a\\xffb'"`, as crit does) and encoded back to those bytes.
//! `ipcns-shm` entries flagged `in_pagemaps` (all that CRIU 4.x writes)
//! have no payload; crit would read one.

mod codec;
mod pretty;
pub mod py;
mod schema;

#[cfg(test)]
mod kinds_tests;

use std::io::{Read, Write};

use serde_json::Map;
/// A JSON value (serde_json's, keys in document order).
pub use serde_json::Value;

use crate::error::{Error, Problem, Result};
use crate::framing::{ImageReader, ImageWriter};
use crate::kind::{Kind, Payload};
use codec::{WireError, varint_field};
use schema::Schema;

/// Reads a whole image into crit's JSON value (`{"magic": ..., "entries":
/// [...]}`); `pretty` gives `crit show`'s forms.
pub fn decode_image<R: Read>(img: ImageReader<R>, pretty: bool) -> Result<Value> {
    let mut d = Decoder {
        img,
        schema: Schema::get(),
        pretty,
    };
    let entries = d.entries()?;
    let mut top = Map::new();
    top.insert("magic".into(), Value::String(d.img.kind().name().into()));
    top.insert("entries".into(), Value::Array(entries));
    Ok(Value::Object(top))
}

/// [`decode_image`] of an image held in memory.
pub fn decode_bytes(bytes: &[u8], file: &str, pretty: bool) -> Result<Value> {
    decode_image(
        ImageReader::with_len(bytes, file, bytes.len() as u64)?,
        pretty,
    )
}

/// Writes crit's JSON value of an image (either form) as the image.
pub fn encode_image(value: &Value, file: &str, out: impl Write) -> Result<()> {
    let bad = |path: &str, detail: String| Error::Json {
        file: file.to_owned(),
        path: path.to_owned(),
        detail,
    };
    let Value::Object(top) = value else {
        return Err(bad(
            "$",
            "expected an object with \"magic\" and \"entries\"".into(),
        ));
    };
    let magic = match top.get("magic") {
        Some(Value::String(s)) => s.as_str(),
        _ => {
            return Err(bad(
                "$.magic",
                "expected the name of a kind of image".into(),
            ));
        }
    };
    let kind =
        Kind::from_name(magic).ok_or_else(|| bad("$.magic", format!("unknown kind {magic:?}")))?;
    let Some(Value::Array(entries)) = top.get("entries") else {
        return Err(bad("$.entries", "expected a list".into()));
    };
    let mut e = Encoder {
        w: ImageWriter::new(out, kind, file)?,
        schema: Schema::get(),
        file,
    };
    e.entries(kind, entries)?;
    e.w.finish().map(drop)
}

/// Parses JSON text (of an image in crit's form).
pub fn parse(text: &str, file: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|source| Error::JsonSyntax {
        file: file.to_owned(),
        source,
    })
}

/// The JSON text of a decoded image as crit prints it: on one line, or
/// (`pretty`) indented by 4.
pub fn to_text(value: &Value, pretty: bool) -> String {
    py::dumps(value, pretty.then_some(4))
}

/// `v` rounded up to a multiple of `to`, saturating (a length that large
/// fails as truncated anyway).
fn round_up(v: u64, to: u64) -> u64 {
    v.checked_next_multiple_of(to).unwrap_or(u64::MAX)
}

/// An entry's dict and its bytes.
type Decoded = (Map<String, Value>, Vec<u8>);

struct Decoder<R> {
    img: ImageReader<R>,
    schema: &'static Schema,
    pretty: bool,
}

impl<R: Read> Decoder<R> {
    fn wire(&self, e: WireError, message: &str) -> Error {
        Error::corrupt(
            self.img.file(),
            e.offset as u64,
            Problem::Protobuf {
                message: message.to_owned(),
                detail: e.detail,
            },
        )
    }

    /// Reads the next entry as `message`: its dict and its bytes.
    fn next(&mut self, message: &str, pretty: bool) -> Result<Option<Decoded>> {
        let idx = self.schema.index(message).ok_or_else(|| {
            Error::corrupt(
                self.img.file(),
                0,
                Problem::Other(format!("no message {message} in the schema")),
            )
        })?;
        let Some((at, bytes)) = self.img.next_raw()? else {
            return Ok(None);
        };
        let bytes = bytes.to_vec();
        let dict = codec::decode(self.schema, idx, &bytes, at as usize, pretty, false, 0)
            .map_err(|e| self.wire(e, message))?;
        Ok(Some((dict, bytes)))
    }

    fn expect(&mut self, message: &str, pretty: bool) -> Result<Decoded> {
        let at = self.img.offset();
        self.next(message, pretty)?.ok_or_else(|| {
            Error::corrupt(
                self.img.file(),
                at,
                Problem::Truncated {
                    what: "entry size",
                    needed: 4,
                    missing: 4,
                },
            )
        })
    }

    fn b64(&mut self, len: u64) -> Result<Value> {
        Ok(Value::String(py::encodebytes(&self.img.read_payload(len)?)))
    }

    fn entries(&mut self) -> Result<Vec<Value>> {
        let kind = self.img.kind();
        let pretty = self.pretty;
        let mut out = Vec::new();
        match kind {
            Kind::Pagemap => {
                if let Some((head, _)) = self.next("pagemap_head", pretty)? {
                    out.push(Value::Object(head));
                    while let Some((e, _)) = self.next("pagemap_entry", pretty)? {
                        out.push(Value::Object(e));
                    }
                }
            }
            Kind::GhostFile => {
                let (mut g, bytes) = self.expect("ghost_file_entry", pretty)?;
                if varint_field(&bytes, 9).unwrap_or(0) != 0 {
                    out.push(Value::Object(g));
                    while let Some((mut c, bytes)) = self.next("ghost_chunk_entry", pretty)? {
                        let len = varint_field(&bytes, 1).unwrap_or(0);
                        c.insert("extra".into(), self.b64(len)?);
                        out.push(Value::Object(c));
                    }
                } else {
                    let rest = self.img.read_rest()?;
                    g.insert("extra".into(), Value::String(py::encodebytes(&rest)));
                    out.push(Value::Object(g));
                }
            }
            _ => {
                let message = kind.entry_message();
                while let Some((mut e, bytes)) = self.next(message, pretty)? {
                    let field = |n| varint_field(&bytes, n).unwrap_or(0);
                    let extra = match kind.payload() {
                        Payload::None | Payload::GhostFile => None,
                        Payload::PipeData | Payload::SkQueue => Some(self.b64(field(2))?),
                        Payload::BpfmapData => Some(self.b64(field(2).saturating_add(field(3)))?),
                        Payload::TcpStream => {
                            let mut q = Map::new();
                            q.insert("inq".into(), self.b64(field(1))?);
                            q.insert("outq".into(), self.b64(field(3))?);
                            Some(Value::Object(q))
                        }
                        Payload::IpcSem => {
                            let size = field(2).saturating_mul(2);
                            let data = self.img.read_payload(round_up(size, 8))?;
                            let sems = data[..size as usize]
                                .chunks(2)
                                .map(|c| Value::from(u16::from_le_bytes([c[0], c[1]])))
                                .collect();
                            Some(Value::Array(sems))
                        }
                        Payload::IpcShm if field(3) != 0 => None,
                        Payload::IpcShm => {
                            let size = field(2);
                            let data = self.img.read_payload(round_up(size, 4))?;
                            Some(Value::String(py::encodebytes(&data[..size as usize])))
                        }
                        Payload::IpcMsg => {
                            let mut msgs = Vec::new();
                            for _ in 0..field(3) {
                                let (m, mb) = self.expect("ipc_msg", false)?;
                                let size = varint_field(&mb, 2).unwrap_or(0);
                                let data = self.img.read_payload(round_up(size, 8))?;
                                msgs.push(Value::Object(m));
                                msgs.push(Value::String(py::encodebytes(&data[..size as usize])));
                            }
                            Some(Value::Array(msgs))
                        }
                    };
                    if let Some(x) = extra {
                        e.insert("extra".into(), x);
                    }
                    out.push(Value::Object(e));
                }
            }
        }
        Ok(out)
    }
}

struct Encoder<'a, W: Write> {
    w: ImageWriter<W>,
    schema: &'static Schema,
    file: &'a str,
}

impl<W: Write> Encoder<'_, W> {
    fn bad(&self, path: &str, detail: impl Into<String>) -> Error {
        Error::Json {
            file: self.file.to_owned(),
            path: path.to_owned(),
            detail: detail.into(),
        }
    }

    /// Encodes and writes one entry; returns its bytes and its "extra".
    fn entry<'v>(
        &mut self,
        message: &str,
        v: &'v Value,
        path: &str,
    ) -> Result<(Vec<u8>, Option<&'v Value>)> {
        let Value::Object(obj) = v else {
            return Err(self.bad(path, "expected an object"));
        };
        let mut obj = obj.clone();
        let extra_key = obj.remove("extra");
        let extra = extra_key.as_ref().and_then(|_| match v {
            Value::Object(o) => o.get("extra"),
            _ => None,
        });
        let idx = self
            .schema
            .index(message)
            .ok_or_else(|| self.bad(path, format!("no message {message} in the schema")))?;
        let mut bytes = Vec::new();
        codec::encode(self.schema, idx, &obj, &mut bytes, path, 0)
            .map_err(|e| self.bad(&e.path, e.detail))?;
        self.w.write_raw(&bytes)?;
        Ok((bytes, extra))
    }

    fn b64(&self, v: Option<&Value>, path: &str, len: u64) -> Result<Vec<u8>> {
        let data = match v {
            None if len == 0 => Vec::new(),
            None => {
                return Err(self.bad(
                    path,
                    format!("the entry announces {len} bytes of payload but has no \"extra\""),
                ));
            }
            Some(Value::String(s)) => py::decodebytes(s).map_err(|e| self.bad(path, e))?,
            Some(_) => return Err(self.bad(path, "expected base64 text")),
        };
        if data.len() as u64 != len {
            return Err(self.bad(
                path,
                format!(
                    "{} bytes of payload where the entry announces {len}",
                    data.len()
                ),
            ));
        }
        Ok(data)
    }

    fn entries(&mut self, kind: Kind, entries: &[Value]) -> Result<()> {
        match kind {
            Kind::Pagemap => {
                for (i, e) in entries.iter().enumerate() {
                    let m = if i == 0 {
                        "pagemap_head"
                    } else {
                        "pagemap_entry"
                    };
                    self.entry(m, e, &format!("$.entries[{i}]"))?;
                }
            }
            Kind::GhostFile => {
                let Some(first) = entries.first() else {
                    return Err(
                        self.bad("$.entries", "a ghost file image needs its ghost_file_entry")
                    );
                };
                let (bytes, extra) = self.entry("ghost_file_entry", first, "$.entries[0]")?;
                if varint_field(&bytes, 9).unwrap_or(0) != 0 {
                    for (i, e) in entries.iter().enumerate().skip(1) {
                        let path = format!("$.entries[{i}]");
                        let (cb, extra) = self.entry("ghost_chunk_entry", e, &path)?;
                        let data = self.b64(extra, &path, varint_field(&cb, 1).unwrap_or(0))?;
                        self.w.write_payload(&data)?;
                    }
                } else {
                    if entries.len() > 1 {
                        return Err(
                            self.bad("$.entries", "a ghost file without chunks has one entry")
                        );
                    }
                    let data = match extra {
                        Some(Value::String(s)) => {
                            py::decodebytes(s).map_err(|e| self.bad("$.entries[0].extra", e))?
                        }
                        None => Vec::new(),
                        Some(_) => {
                            return Err(self.bad("$.entries[0].extra", "expected base64 text"));
                        }
                    };
                    self.w.write_payload(&data)?;
                }
            }
            _ => {
                for (i, e) in entries.iter().enumerate() {
                    let path = format!("$.entries[{i}]");
                    let (bytes, extra) = self.entry(kind.entry_message(), e, &path)?;
                    let field = |n| varint_field(&bytes, n).unwrap_or(0);
                    let xpath = format!("{path}.extra");
                    match kind.payload() {
                        Payload::None | Payload::GhostFile => {
                            if extra.is_some() {
                                return Err(self.bad(
                                    &xpath,
                                    format!("{} entries have no payload", kind.name()),
                                ));
                            }
                        }
                        Payload::PipeData | Payload::SkQueue => {
                            let data = self.b64(extra, &xpath, field(2))?;
                            self.w.write_payload(&data)?;
                        }
                        Payload::BpfmapData => {
                            let data =
                                self.b64(extra, &xpath, field(2).saturating_add(field(3)))?;
                            self.w.write_payload(&data)?;
                        }
                        Payload::TcpStream => {
                            let (inq, outq) = match extra {
                                Some(Value::Object(q)) => (q.get("inq"), q.get("outq")),
                                None => (None, None),
                                Some(_) => {
                                    return Err(
                                        self.bad(&xpath, "expected {\"inq\": ..., \"outq\": ...}")
                                    );
                                }
                            };
                            let inq = self.b64(inq, &format!("{xpath}.inq"), field(1))?;
                            let outq = self.b64(outq, &format!("{xpath}.outq"), field(3))?;
                            self.w.write_payload(&inq)?;
                            self.w.write_payload(&outq)?;
                        }
                        Payload::IpcSem => {
                            let n = field(2);
                            let sems = match extra {
                                Some(Value::Array(a)) => a.as_slice(),
                                None if n == 0 => &[],
                                _ => {
                                    return Err(
                                        self.bad(&xpath, "expected a list of semaphore values")
                                    );
                                }
                            };
                            if sems.len() as u64 != n {
                                return Err(self.bad(
                                    &xpath,
                                    format!("{} values for {n} semaphores", sems.len()),
                                ));
                            }
                            let mut data = Vec::with_capacity(sems.len() * 2 + 8);
                            for s in sems {
                                let v = s.as_u64().and_then(|v| u16::try_from(v).ok()).ok_or_else(
                                    || self.bad(&xpath, format!("{s} is not a semaphore value")),
                                )?;
                                data.extend_from_slice(&v.to_le_bytes());
                            }
                            data.resize(data.len().next_multiple_of(8), 0);
                            self.w.write_payload(&data)?;
                        }
                        Payload::IpcShm if field(3) != 0 => {}
                        Payload::IpcShm => {
                            let mut data = self.b64(extra, &xpath, field(2))?;
                            data.resize(data.len().next_multiple_of(4), 0);
                            self.w.write_payload(&data)?;
                        }
                        Payload::IpcMsg => {
                            let n = field(3);
                            let msgs = match extra {
                                Some(Value::Array(a)) => a.as_slice(),
                                None if n == 0 => &[],
                                _ => {
                                    return Err(self.bad(
                                        &xpath,
                                        "expected a list of messages and their data",
                                    ));
                                }
                            };
                            if msgs.len() as u64 != 2 * n {
                                return Err(self.bad(
                                    &xpath,
                                    format!("{} items for {n} messages", msgs.len()),
                                ));
                            }
                            for (j, pair) in msgs.chunks(2).enumerate() {
                                let mpath = format!("{xpath}[{}]", 2 * j);
                                let (mb, _) = self.entry("ipc_msg", &pair[0], &mpath)?;
                                let size = varint_field(&mb, 2).unwrap_or(0);
                                let mut data = self.b64(
                                    Some(&pair[1]),
                                    &format!("{xpath}[{}]", 2 * j + 1),
                                    size,
                                )?;
                                data.resize(data.len().next_multiple_of(8), 0);
                                self.w.write_payload(&data)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
