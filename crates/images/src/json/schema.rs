//! The compiled schema, flattened for the JSON codec: every message with
//! its fields in number order, their types and crit's `(criu)` options.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost_reflect::{Cardinality, DescriptorPool, FieldDescriptor, Kind as PKind, Value};

static IMAGES_FDS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/images.fds"));

/// A field's wire-level type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
    Enum,
    Message,
}

impl Ty {
    /// The wire type of one value.
    pub(crate) fn wire_type(self) -> u8 {
        match self {
            Ty::Double | Ty::Fixed64 | Ty::Sfixed64 => 1,
            Ty::Float | Ty::Fixed32 | Ty::Sfixed32 => 5,
            Ty::String | Ty::Bytes | Ty::Message => 2,
            _ => 0,
        }
    }

    /// Whether repeated values of it may be packed.
    pub(crate) fn packable(self) -> bool {
        self.wire_type() != 2
    }
}

/// crit's options on a field.
#[derive(Clone, Debug, Default)]
pub(crate) struct Opts {
    pub hex: bool,
    pub ipadd: bool,
    pub flags: Option<String>,
    pub dev: bool,
    pub odev: bool,
    pub dict: Option<String>,
    pub conv: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub name: String,
    pub number: u32,
    pub ty: Ty,
    pub repeated: bool,
    pub required: bool,
    pub packed: bool,
    /// The message type, for `Ty::Message`.
    pub message: usize,
    /// The enum's values, for `Ty::Enum`.
    pub values: Vec<(i32, String)>,
    pub opts: Opts,
}

#[derive(Debug)]
pub(crate) struct Msg {
    pub name: String,
    /// Sorted by number.
    pub fields: Vec<Field>,
}

impl Msg {
    pub(crate) fn field_named(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[derive(Debug)]
pub(crate) struct Schema {
    pub messages: Vec<Msg>,
    by_name: HashMap<String, usize>,
}

impl Schema {
    pub(crate) fn get() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            let pool = DescriptorPool::decode(IMAGES_FDS)
                .expect("the descriptor set compiled by build.rs decodes");
            Schema::build(&pool)
        })
    }

    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn msg(&self, index: usize) -> &Msg {
        &self.messages[index]
    }

    fn build(pool: &DescriptorPool) -> Schema {
        let descs: Vec<_> = pool
            .all_messages()
            .filter(|m| !m.full_name().starts_with("google."))
            .collect();
        let by_name: HashMap<String, usize> = descs
            .iter()
            .enumerate()
            .map(|(i, m)| (m.full_name().to_owned(), i))
            .collect();
        let criu = pool.get_extension_by_name("criu");
        let messages = descs
            .iter()
            .map(|m| {
                let mut fields: Vec<Field> = m
                    .fields()
                    .map(|f| field(&f, &by_name, criu.as_ref()))
                    .collect();
                fields.sort_by_key(|f| f.number);
                Msg {
                    name: m.full_name().to_owned(),
                    fields,
                }
            })
            .collect();
        Schema { messages, by_name }
    }
}

fn field(
    f: &FieldDescriptor,
    by_name: &HashMap<String, usize>,
    criu: Option<&prost_reflect::ExtensionDescriptor>,
) -> Field {
    let mut message = 0;
    let mut values = Vec::new();
    let ty = match f.kind() {
        PKind::Double => Ty::Double,
        PKind::Float => Ty::Float,
        PKind::Int32 => Ty::Int32,
        PKind::Int64 => Ty::Int64,
        PKind::Uint32 => Ty::Uint32,
        PKind::Uint64 => Ty::Uint64,
        PKind::Sint32 => Ty::Sint32,
        PKind::Sint64 => Ty::Sint64,
        PKind::Fixed32 => Ty::Fixed32,
        PKind::Fixed64 => Ty::Fixed64,
        PKind::Sfixed32 => Ty::Sfixed32,
        PKind::Sfixed64 => Ty::Sfixed64,
        PKind::Bool => Ty::Bool,
        PKind::String => Ty::String,
        PKind::Bytes => Ty::Bytes,
        PKind::Enum(e) => {
            values = e
                .values()
                .map(|v| (v.number(), v.name().to_owned()))
                .collect();
            Ty::Enum
        }
        PKind::Message(m) => {
            message = by_name[m.full_name()];
            Ty::Message
        }
    };
    let mut opts = Opts::default();
    if let Some(ext) = criu {
        let options = f.options();
        if options.has_extension(ext)
            && let Value::Message(o) = &*options.get_extension(ext)
        {
            for (d, v) in o.fields() {
                match (d.name(), v) {
                    ("hex", Value::Bool(b)) => opts.hex = *b,
                    ("ipadd", Value::Bool(b)) => opts.ipadd = *b,
                    ("dev", Value::Bool(b)) => opts.dev = *b,
                    ("odev", Value::Bool(b)) => opts.odev = *b,
                    ("flags", Value::String(s)) => opts.flags = Some(s.clone()),
                    ("dict", Value::String(s)) => opts.dict = Some(s.clone()),
                    ("conv", Value::String(s)) => opts.conv = Some(s.clone()),
                    _ => {}
                }
            }
        }
    }
    Field {
        name: f.name().to_owned(),
        number: f.number(),
        ty,
        repeated: f.cardinality() == Cardinality::Repeated,
        required: f.cardinality() == Cardinality::Required,
        packed: f.is_packed(),
        message,
        values,
        opts,
    }
}
