//! Every kind of image: an entry with every field set (nested, repeated,
//! bytes, payload) goes JSON → image → JSON → image unchanged, the prost
//! structs write the same bytes, and Debian's crit 3.17 (`/usr/bin/crit`,
//! package `criu`) reads the same values and writes the same bytes, but
//! for the fields its older schema lacks.

use std::path::Path;
use std::process::Command;

use prost::{Message, Name};
use serde_json::{Map, Value, json};

use super::schema::{Schema, Ty};
use super::{decode_bytes, encode_image};
use crate::framing::{ImageReader, ImageWriter};
use crate::kind::{Kind, Payload};
use crate::pb;

/// Fields of CRIU 4.2's schema that crit 3.17's does not have: (message,
/// field number). In pagemap_entry, 3.17 calls field 2 `nr_pages`. The
/// foundation issue lists the first twelve; Debian's 3.17 lacks the rest
/// too (found by listing its pycriu descriptors against proto/).
const UNKNOWN_TO_3_17: &[(&str, u32)] = &[
    ("pagemap_entry", 2),
    ("pagemap_entry", 5),
    ("inventory_entry", 12),
    ("inventory_entry", 13),
    ("inventory_entry", 14),
    ("task_core_entry", 21),
    ("task_core_entry", 22),
    ("thread_core_entry", 16),
    ("creds_entry", 18),
    ("creds_entry", 19),
    ("user_x86_xsave_entry", 9),
    ("file_entry", 22),
    ("core_entry", 12),
    ("core_entry", 13),
    ("thread_info_aarch64", 5),
    ("cg_controller_entry", 3),
    ("inet_sk_entry", 20),
    ("ip_opts_entry", 5),
    ("ip_opts_entry", 6),
    ("ip_opts_entry", 7),
    ("memfd_inode_entry", 9),
    ("netns_entry", 10),
];

/// rcriu's own fields (numbers from 1000), unknown to every crit.
const RCRIU_FIELDS: u32 = 1000;

/// Kinds crit 3.17 cannot open as images: their entries are checked with
/// its library (pycriu) message by message instead, but for pidfd_entry,
/// which 3.17 lacks altogether (as it lacks file_entry's field 22).
const NO_HANDLER_IN_3_17: &[Kind] = &[Kind::Signal, Kind::BinfmtMisc, Kind::Pidfd];

/// crit 3.17 cannot encode these payloads: it hands base64 text where
/// Python wants bytes (`base64.decodebytes(extra)`), and raises.
const CRIT_3_17_CANNOT_ENCODE: &[Kind] = &[Kind::IpcnsShm, Kind::BpfmapData];

fn crit() -> &'static str {
    const CRIT: &str = "/usr/bin/crit";
    assert!(
        Path::new(CRIT).exists(),
        "{CRIT} is missing: these tests compare with Debian's crit; install it with `apt-get install criu`"
    );
    CRIT
}

/// A value for every field of `msg`, repeated fields twice.
fn sample(schema: &Schema, msg: usize, depth: u32, salt: u64) -> Map<String, Value> {
    let m = schema.msg(msg);
    let mut out = Map::new();
    for f in &m.fields {
        if f.ty == Ty::Message && depth > 2 && !f.required {
            continue;
        }
        let one = |k: u64| -> Value {
            let n = u64::from(f.number) * 7 + k + salt;
            match f.ty {
                Ty::Message => Value::Object(sample(schema, f.message, depth + 1, n)),
                Ty::Bool => Value::Bool(true),
                Ty::String => Value::String(format!("{}.{}-{k}-é", m.name, f.name)),
                Ty::Bytes => {
                    let data: Vec<u8> = (0..(n % 70 + 3)).map(|i| (i * 37 + n) as u8).collect();
                    match f.opts.conv.as_deref() {
                        Some("unix_name") => {
                            let mut d = data;
                            d[0] = 0;
                            Value::String(super::py::qp_encode(&d))
                        }
                        _ => Value::String(super::py::encodebytes(&data)),
                    }
                }
                // The second value: not the default, and known to crit 3.17
                // (which lacks some of the last ones).
                Ty::Enum => Value::String(
                    f.values
                        .get(1)
                        .or(f.values.first())
                        .map(|v| v.1.clone())
                        .unwrap_or_default(),
                ),
                Ty::Int32 | Ty::Sint32 | Ty::Sfixed32 => json!(-(n as i64) * 1001),
                Ty::Int64 | Ty::Sint64 | Ty::Sfixed64 => json!(-(n as i64) * 0x1_0000_0001),
                Ty::Uint32 | Ty::Fixed32 => json!(n * 100_003 % 0xffff_ffff),
                Ty::Uint64 | Ty::Fixed64 => json!(0xf000_0000_0000_0000 | n),
                Ty::Double | Ty::Float => json!(1.5),
            }
        };
        let v = if f.repeated {
            Value::Array(vec![one(0), one(1)])
        } else {
            one(0)
        };
        out.insert(f.name.clone(), v);
    }
    out
}

fn entry(kind: Kind, message: &str, salt: u64) -> Map<String, Value> {
    let schema = Schema::get();
    let mut e = sample(schema, schema.index(message).unwrap(), 0, salt);
    let set = |e: &mut Map<String, Value>, k: &str, v: Value| {
        e.insert(k.into(), v);
    };
    let b64 = |data: &[u8]| Value::String(super::py::encodebytes(data));
    match kind.payload() {
        Payload::PipeData => {
            set(&mut e, "bytes", json!(100));
            set(&mut e, "extra", b64(&[7u8; 100]));
        }
        Payload::SkQueue => {
            set(&mut e, "length", json!(3));
            set(&mut e, "extra", b64(b"abc"));
        }
        Payload::TcpStream => {
            set(&mut e, "inq_len", json!(2));
            set(&mut e, "outq_len", json!(90));
            set(
                &mut e,
                "extra",
                json!({"inq": b64(b"in"), "outq": b64(&[9u8; 90])}),
            );
        }
        Payload::BpfmapData => {
            set(&mut e, "keys_bytes", json!(4));
            set(&mut e, "values_bytes", json!(6));
            set(&mut e, "extra", b64(b"0123456789"));
        }
        Payload::IpcSem => {
            set(&mut e, "nsems", json!(3));
            set(&mut e, "extra", json!([1, 65535, 3]));
        }
        Payload::IpcShm => {
            set(&mut e, "in_pagemaps", json!(false));
            set(&mut e, "size", json!(5));
            set(&mut e, "extra", b64(b"shm!!"));
        }
        Payload::IpcMsg => {
            set(&mut e, "qnum", json!(2));
            set(
                &mut e,
                "extra",
                json!([{"mtype": 1, "msize": 3}, b64(b"one"), {"mtype": 2, "msize": 9}, b64(b"second..!")]),
            );
        }
        Payload::None | Payload::GhostFile => {}
    }
    e
}

/// Sample images of `kind`, in JSON: one, or several variants.
fn samples(kind: Kind) -> Vec<Value> {
    let doc = |entries: Vec<Map<String, Value>>| json!({"magic": kind.name(), "entries": entries.into_iter().map(Value::Object).collect::<Vec<_>>()});
    match kind {
        Kind::Pagemap => vec![doc(vec![
            entry(kind, "pagemap_head", 0),
            entry(kind, "pagemap_entry", 1),
            entry(kind, "pagemap_entry", 2),
        ])],
        Kind::GhostFile => {
            let mut whole = entry(kind, "ghost_file_entry", 0);
            whole.insert("chunks".into(), json!(false));
            whole.insert(
                "extra".into(),
                Value::String(super::py::encodebytes(&[5u8; 200])),
            );
            let mut chunked = entry(kind, "ghost_file_entry", 0);
            chunked.insert("chunks".into(), json!(true));
            let mut chunks = vec![chunked];
            for (i, len) in [10u64, 0].into_iter().enumerate() {
                let mut c = entry(kind, "ghost_chunk_entry", i as u64);
                c.insert("len".into(), json!(len));
                c.insert(
                    "extra".into(),
                    Value::String(super::py::encodebytes(&vec![i as u8; len as usize])),
                );
                chunks.push(c);
            }
            vec![doc(vec![whole]), doc(chunks)]
        }
        Kind::IpcnsShm => {
            let mut in_pm = entry(kind, "ipc_shm_entry", 3);
            in_pm.insert("in_pagemaps".into(), json!(true));
            in_pm.remove("extra");
            vec![
                doc(vec![
                    entry(kind, "ipc_shm_entry", 0),
                    entry(kind, "ipc_shm_entry", 1),
                ]),
                doc(vec![in_pm]),
            ]
        }
        _ => vec![doc(vec![
            entry(kind, kind.entry_message(), 0),
            entry(kind, kind.entry_message(), 5),
        ])],
    }
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_image(v, "sample.img", &mut out).unwrap_or_else(|e| panic!("encoding {v}: {e}"));
    out
}

/// Re-writes the image's entries through the prost struct `M`.
fn through_prost<M: Message + Name + Default>(bytes: &[u8]) -> Vec<u8> {
    let mut r = ImageReader::new(bytes, "sample.img").unwrap();
    let mut w = ImageWriter::new(Vec::new(), r.kind(), "copy.img").unwrap();
    while let Some(m) = r.read_next::<M>().unwrap() {
        w.write(&m).unwrap();
    }
    w.finish().unwrap()
}

fn prost_copy(kind: Kind, bytes: &[u8]) -> Option<Vec<u8>> {
    macro_rules! by_kind {
        ($($k:ident => $t:ty),* $(,)?) => {
            match kind {
                $(Kind::$k => Some(through_prost::<$t>(bytes)),)*
                _ => None,
            }
        };
    }
    by_kind! {
        Inventory => pb::InventoryEntry, Pstree => pb::PstreeEntry, Fdinfo => pb::FdinfoEntry,
        Core => pb::CoreEntry, Ids => pb::TaskKobjIdsEntry, Vmas => pb::VmaEntry, Pipes => pb::PipeEntry,
        Fifo => pb::FifoEntry, Sigact => pb::SaEntry, Unixsk => pb::UnixSkEntry, Inetsk => pb::InetSkEntry,
        Packetsk => pb::PacketSockEntry, Itimers => pb::ItimerEntry, PosixTimers => pb::PosixTimerEntry,
        Utsns => pb::UtsnsEntry, Creds => pb::CredsEntry, IpcVar => pb::IpcVarEntry,
        RegFiles => pb::RegFileEntry, ExtFiles => pb::ExtFileEntry, Fs => pb::FsEntry, Mm => pb::MmEntry,
        RemapFpath => pb::RemapFilePathEntry, EventfdFile => pb::EventfdFileEntry,
        EventpollFile => pb::EventpollFileEntry, EventpollTfd => pb::EventpollTfdEntry,
        Signalfd => pb::SignalfdEntry, InotifyFile => pb::InotifyFileEntry, InotifyWd => pb::InotifyWdEntry,
        Mnts => pb::MntEntry, Netdev => pb::NetDeviceEntry, Netns => pb::NetnsEntry,
        TtyFiles => pb::TtyFileEntry, TtyInfo => pb::TtyInfoEntry, TtyData => pb::TtyDataEntry,
        FileLocks => pb::FileLockEntry, Rlimit => pb::RlimitEntry, FanotifyFile => pb::FanotifyFileEntry,
        FanotifyMark => pb::FanotifyMarkEntry, Signal => pb::SiginfoEntry, NetlinkSk => pb::NetlinkSkEntry,
        NsFiles => pb::NsFileEntry, Tunfile => pb::TunfileEntry, Cgroup => pb::CgroupEntry,
        Timerfd => pb::TimerfdEntry, Cpuinfo => pb::CpuinfoEntry, Userns => pb::UsernsEntry,
        Seccomp => pb::SeccompEntry, BinfmtMisc => pb::BinfmtMiscEntry, Autofs => pb::AutofsEntry,
        Files => pb::FileEntry, MemfdInode => pb::MemfdInodeEntry, Timens => pb::TimensEntry,
        Pidns => pb::PidnsEntry, BpfmapFile => pb::BpfmapFileEntry, Apparmor => pb::ApparmorEntry,
        Pidfd => pb::PidfdEntry, Stats => pb::StatsEntry, IrmapCache => pb::IrmapCacheEntry,
    }
}

/// Drops, everywhere in a decoded image, the fields crit 3.17 lacks.
fn without_unknown(kind: Kind, v: &Value, keep_compat: bool) -> Value {
    fn walk(
        schema: &Schema,
        msg: usize,
        obj: &Map<String, Value>,
        keep_compat: bool,
    ) -> Map<String, Value> {
        let m = schema.msg(msg);
        let mut out = Map::new();
        for (k, v) in obj {
            let Some(f) = m.field_named(k) else {
                out.insert(k.clone(), v.clone());
                continue;
            };
            let key = (m.name.as_str(), f.number);
            if f.number >= RCRIU_FIELDS
                || UNKNOWN_TO_3_17.contains(&key) && !(keep_compat && key == ("pagemap_entry", 2))
            {
                continue;
            }
            let v = match (f.ty, v) {
                (Ty::Message, Value::Object(o)) => {
                    Value::Object(walk(schema, f.message, o, keep_compat))
                }
                (Ty::Message, Value::Array(a)) => Value::Array(
                    a.iter()
                        .map(|x| match x {
                            Value::Object(o) => {
                                Value::Object(walk(schema, f.message, o, keep_compat))
                            }
                            other => other.clone(),
                        })
                        .collect(),
                ),
                _ => v.clone(),
            };
            out.insert(k.clone(), v);
        }
        out
    }
    let schema = Schema::get();
    let mut v = v.clone();
    if let Some(Value::Array(entries)) = v.get_mut("entries") {
        for (i, e) in entries.iter_mut().enumerate() {
            let message = match (kind, i) {
                (Kind::Pagemap, 0) => "pagemap_head",
                (Kind::GhostFile, i) if i > 0 => "ghost_chunk_entry",
                _ => kind.entry_message(),
            };
            if let Value::Object(o) = e {
                *e = Value::Object(walk(schema, schema.index(message).unwrap(), o, keep_compat));
            }
        }
    }
    v
}

/// Where two values first differ, if they do.
fn diff(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => {
                        if let Some(d) = diff(p, q, &format!("{path}.{k}")) {
                            return Some(d);
                        }
                    }
                    (p, q) => return Some(format!("{path}.{k}: {p:?} / {q:?}")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| diff(p, q, &format!("{path}[{i}]"))),
        _ => (a != b).then(|| format!("{path}: {a} / {b}")),
    }
}

fn assert_same(ours: &Value, theirs: &Value, what: &str) {
    if let Some(d) = diff(ours, theirs, "$") {
        panic!("{what}: values differ (ours / theirs) at {d}");
    }
}

fn run_crit(args: &[&str], input: &Path) -> Vec<u8> {
    let out = Command::new(crit())
        .args(args)
        .arg("-i")
        .arg(input)
        .output()
        .expect("running crit");
    assert!(
        out.status.success(),
        "crit {args:?} {} failed: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// What crit 3.17's library makes of one message's bytes.
fn pycriu_decode(message: &str, bytes: &[u8]) -> Value {
    let script = format!(
        "import sys, json\nfrom pycriu.images import pb, pb2dict\nm = pb.{message}()\nm.ParseFromString(sys.stdin.buffer.read())\nprint(json.dumps(pb2dict.pb2dict(m)))"
    );
    crit();
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running Debian's python3 for pycriu");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "pycriu could not decode a {message}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_kind_round_trips_and_matches_crit_3_17() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked_with_crit = 0;
    for &kind in Kind::ALL {
        for (n, doc) in samples(kind).into_iter().enumerate() {
            let what = format!("{} sample {n}", kind.name());
            let bytes = encode(&doc);
            let back = decode_bytes(&bytes, "sample.img", false).unwrap();
            assert_same(&back, &doc, &format!("{what}: decoding what was encoded"));
            assert_eq!(encode(&back), bytes, "{what}: not byte for byte");
            let pretty = decode_bytes(&bytes, "sample.img", true).unwrap();
            assert_eq!(
                encode(&pretty),
                bytes,
                "{what}: the pretty form does not encode back"
            );
            if kind.payload() == Payload::None
                && let Some(copy) = prost_copy(kind, &bytes)
            {
                assert_eq!(copy, bytes, "{what}: the prost structs write other bytes");
            }

            let reduced = without_unknown(kind, &back, false);
            if NO_HANDLER_IN_3_17.contains(&kind) {
                if kind == Kind::Pidfd {
                    continue;
                }
                let mut r = ImageReader::new(bytes.as_slice(), "sample.img").unwrap();
                let mut i = 0;
                while let Some((_, entry)) = r.next_raw().unwrap() {
                    let theirs = pycriu_decode(kind.entry_message(), entry);
                    assert_same(
                        &reduced["entries"][i],
                        &theirs,
                        &format!("{what}: pycriu 3.17"),
                    );
                    i += 1;
                }
                checked_with_crit += 1;
                continue;
            }
            if kind == Kind::IpcnsShm && n == 1 {
                // in_pagemaps (all CRIU 4.x writes): no payload, where crit
                // would read one.
                continue;
            }
            let img = dir.path().join(format!("{}-{n}.img", kind.name()));
            std::fs::write(&img, &bytes).unwrap();
            let theirs_raw: Value = serde_json::from_slice(&run_crit(&["decode"], &img)).unwrap();
            let theirs = if kind == Kind::Pagemap {
                let mut t = theirs_raw.clone();
                for e in t["entries"].as_array_mut().unwrap().iter_mut().skip(1) {
                    e.as_object_mut().unwrap().remove("nr_pages");
                }
                t
            } else {
                theirs_raw.clone()
            };
            assert_same(&reduced, &theirs, &format!("{what}: crit 3.17"));

            checked_with_crit += 1;
            if CRIT_3_17_CANNOT_ENCODE.contains(&kind) {
                continue;
            }
            let json_file = dir.path().join(format!("{}-{n}.json", kind.name()));
            std::fs::write(&json_file, theirs_raw.to_string()).unwrap();
            let crit_bytes = run_crit(&["encode"], &json_file);
            let ours = encode(&without_unknown(kind, &back, true));
            assert_eq!(crit_bytes, ours, "{what}: crit 3.17 encodes other bytes");
        }
    }
    assert!(
        checked_with_crit >= Kind::ALL.len(),
        "only {checked_with_crit} samples were checked with crit"
    );
}

#[test]
fn sample_sets_every_field() {
    // Negative control for the test above: a sample leaves nothing out.
    let schema = Schema::get();
    let core = schema.index("core_entry").unwrap();
    let s = sample(schema, core, 0, 0);
    assert_eq!(s.len(), schema.msg(core).fields.len());
    let tc = &s["tc"];
    assert!(
        tc.get("stop_signo").is_some()
            && tc.get("sigactions").unwrap().as_array().unwrap().len() == 2
    );
    let reduced = without_unknown(Kind::Core, &json!({"magic": "CORE", "entries": [s]}), false);
    assert!(reduced["entries"][0]["tc"].get("stop_signo").is_none());
    assert!(reduced["entries"][0]["tc"].get("comm").is_some());
}
