//! Compares the schema in `proto/` with another set of .proto files (a
//! CRIU checkout's `images/`), message by message and field by field:
//! names, numbers, labels, types, defaults and crit's `(criu)` options.
//!
//! `cargo run -p rcriu-images --example schema_diff -- /path/to/criu/images`

use std::collections::BTreeMap;
use std::path::Path;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, Value};

fn compile(dir: &Path) -> DescriptorPool {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("reading the proto directory")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.ends_with(".proto").then_some(name)
        })
        .collect();
    files.sort();
    let mut compiler = protox::Compiler::new([dir]).expect("creating the compiler");
    compiler.include_imports(true);
    compiler.open_files(&files).expect("compiling the schema");
    compiler.descriptor_pool()
}

fn options(pool: &DescriptorPool, f: &FieldDescriptor) -> String {
    let Some(ext) = pool.get_extension_by_name("criu") else {
        return String::new();
    };
    let opts = f.options();
    if !opts.has_extension(&ext) {
        return String::new();
    }
    match &*opts.get_extension(&ext) {
        Value::Message(m) => {
            let mut parts: Vec<String> = m
                .fields()
                .map(|(d, v)| format!("{}={v:?}", d.name()))
                .collect();
            parts.sort();
            parts.join(",")
        }
        other => format!("{other:?}"),
    }
}

fn describe(pool: &DescriptorPool, f: &FieldDescriptor) -> String {
    let kind = match f.kind() {
        Kind::Message(m) => format!("message {}", m.full_name()),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
        k => format!("{k:?}"),
    };
    let default = f
        .field_descriptor_proto()
        .default_value
        .clone()
        .unwrap_or_default();
    format!(
        "{} {:?} {} default={:?} packed={} opts=[{}]",
        f.name(),
        f.cardinality(),
        kind,
        default,
        f.is_packed(),
        options(pool, f)
    )
}

fn summary(pool: &DescriptorPool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for m in pool.all_messages() {
        if m.full_name().starts_with("google.") {
            continue;
        }
        out.insert(format!("message {}", m.full_name()), String::new());
        for f in m.fields() {
            out.insert(
                format!("field {}#{}", m.full_name(), f.number()),
                describe(pool, &f),
            );
        }
    }
    for e in pool.all_enums() {
        if e.full_name().starts_with("google.") {
            continue;
        }
        for v in e.values() {
            out.insert(
                format!("enum {}#{}", e.full_name(), v.number()),
                v.name().to_owned(),
            );
        }
    }
    for x in pool.all_extensions() {
        out.insert(
            format!("extension {}", x.full_name()),
            format!("{} on {}", x.number(), x.containing_message().full_name()),
        );
    }
    out
}

fn main() {
    let theirs = std::env::args()
        .nth(1)
        .expect("usage: schema_diff CRIU_IMAGES_DIR");
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let a = summary(&compile(Path::new(&theirs)));
    let b = summary(&compile(&ours));
    let mut differences = 0;
    for (k, v) in &a {
        match b.get(k) {
            None => {
                println!("only in {theirs}: {k} {v}");
                differences += 1;
            }
            Some(w) if w != v => {
                println!("differs: {k}\n   theirs: {v}\n   ours:   {w}");
                differences += 1;
            }
            _ => {}
        }
    }
    for (k, v) in &b {
        if !a.contains_key(k) {
            println!("only in proto/: {k} {v}");
            differences += 1;
        }
    }
    println!("{} items compared, {differences} differences", a.len());
    if differences > 0 {
        std::process::exit(1);
    }
}
