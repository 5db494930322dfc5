//! The SUIT manifest (draft-ietf-suit-manifest section 8.4) as typed data, its strict decoding,
//! its deterministic encoding, and a builder.
//!
//! Command sequences keep every command as `(code, argument)` so that a decoded manifest
//! re-encodes to exactly the bytes it came from; typed accessors ([`Parameters`],
//! [`Manifest::component_parameters`]) read what a device needs out of them.

use std::fmt;
use std::str::FromStr;

use crate::cbor::{self, CborLimits, Value};
use crate::error::{Error, Result, structure};

/// COSE algorithm id of SHA-256 (RFC 9054).
pub const SHA256: i64 = -16;

/// Manifest map keys (draft-ietf-suit-manifest section 11, "SUIT Manifest Elements").
pub mod element {
    /// suit-manifest-version
    pub const VERSION: i64 = 1;
    /// suit-manifest-sequence-number
    pub const SEQUENCE_NUMBER: i64 = 2;
    /// suit-common
    pub const COMMON: i64 = 3;
    /// suit-reference-uri
    pub const REFERENCE_URI: i64 = 4;
    /// suit-validate
    pub const VALIDATE: i64 = 7;
    /// suit-load
    pub const LOAD: i64 = 8;
    /// suit-invoke
    pub const INVOKE: i64 = 9;
    /// suit-payload-fetch (severable)
    pub const PAYLOAD_FETCH: i64 = 16;
    /// suit-install (severable)
    pub const INSTALL: i64 = 20;
    /// suit-text (severable)
    pub const TEXT: i64 = 23;
    /// thingkit-expires: the manifest's expiry, unix seconds (uint). A thingkit extension in the
    /// *Private Use* range (less than -255) of the IANA "SUIT Manifest Elements" registry
    /// (draft-ietf-suit-manifest section 11); the draft itself has no expiry member. It lives in
    /// the manifest, so the manifest digest, and therefore every signature, covers it.
    pub const THINGKIT_EXPIRES: i64 = -257;
    /// suit-components (in SUIT_Common)
    pub const COMPONENTS: i64 = 2;
    /// suit-shared-sequence (in SUIT_Common)
    pub const SHARED_SEQUENCE: i64 = 4;
}

/// Command codes (draft-ietf-suit-manifest section 11, "SUIT Commands").
pub mod command {
    /// suit-condition-vendor-identifier
    pub const CONDITION_VENDOR_IDENTIFIER: i64 = 1;
    /// suit-condition-class-identifier
    pub const CONDITION_CLASS_IDENTIFIER: i64 = 2;
    /// suit-condition-image-match
    pub const CONDITION_IMAGE_MATCH: i64 = 3;
    /// suit-condition-component-slot
    pub const CONDITION_COMPONENT_SLOT: i64 = 5;
    /// suit-directive-set-component-index
    pub const DIRECTIVE_SET_COMPONENT_INDEX: i64 = 12;
    /// suit-directive-try-each
    pub const DIRECTIVE_TRY_EACH: i64 = 15;
    /// suit-directive-override-parameters
    pub const DIRECTIVE_OVERRIDE_PARAMETERS: i64 = 20;
    /// suit-directive-fetch
    pub const DIRECTIVE_FETCH: i64 = 21;
    /// suit-directive-copy
    pub const DIRECTIVE_COPY: i64 = 22;
    /// suit-directive-invoke
    pub const DIRECTIVE_INVOKE: i64 = 23;
}

/// Parameter labels (draft-ietf-suit-manifest section 11, "SUIT Parameters").
pub mod parameter {
    /// suit-parameter-vendor-identifier
    pub const VENDOR_IDENTIFIER: i64 = 1;
    /// suit-parameter-class-identifier
    pub const CLASS_IDENTIFIER: i64 = 2;
    /// suit-parameter-image-digest
    pub const IMAGE_DIGEST: i64 = 3;
    /// suit-parameter-component-slot
    pub const COMPONENT_SLOT: i64 = 5;
    /// suit-parameter-image-size
    pub const IMAGE_SIZE: i64 = 14;
    /// suit-parameter-uri
    pub const URI: i64 = 21;
    /// suit-parameter-source-component
    pub const SOURCE_COMPONENT: i64 = 22;
}

/// How deeply suit-directive-try-each may nest (a try-each inside a branch of a try-each is
/// depth 2). Each level is a bstr-wrapped sequence decoded with its own [`CborLimits`], so this
/// bounds the work per input byte; the draft's examples need depth 1.
pub const MAX_TRY_EACH_DEPTH: usize = 4;

/// Reporting policy used by the builder for conditions: send records and system info on both
/// success and failure (`15`), as the draft's examples do.
pub const REPORT_ALL: u64 = 15;
/// Reporting policy used by the builder for directives: record on failure (`2`).
pub const REPORT_ON_FAILURE: u64 = 2;

/// A SHA-256 `SUIT_Digest` (draft-ietf-suit-manifest section 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SuitDigest(pub [u8; 32]);

impl SuitDigest {
    /// The SHA-256 of `data`.
    pub fn of(data: &[u8]) -> SuitDigest {
        let d = ring::digest::digest(&ring::digest::SHA256, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        SuitDigest(out)
    }

    /// The SHA-256 of everything `reader` yields, streamed in 64 KiB pieces, with the byte count.
    pub fn of_reader(mut reader: impl std::io::Read) -> std::io::Result<(SuitDigest, u64)> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            ctx.update(&buf[..n]);
            total += n as u64;
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Ok((SuitDigest(out), total))
    }

    /// `[-16, h'...']`.
    pub fn to_value(&self) -> Value {
        Value::Array(vec![Value::int(SHA256), Value::Bytes(self.0.to_vec())])
    }

    /// The encoded `SUIT_Digest`.
    pub fn to_cbor(&self) -> Vec<u8> {
        self.to_value().to_vec()
    }

    /// Reads a `SUIT_Digest` value; only SHA-256 is accepted.
    pub fn from_value(v: &Value) -> Result<SuitDigest> {
        const S: &str = "SUIT_Digest";
        let parts = v
            .as_array()
            .ok_or_else(|| structure(S, "must be an array"))?;
        let [alg, bytes] = parts else {
            return Err(structure(S, "must be [algorithm-id, digest-bytes]"));
        };
        let alg = alg
            .as_i64()
            .ok_or_else(|| structure(S, "algorithm-id must be an integer"))?;
        if alg != SHA256 {
            return Err(Error::UnsupportedAlgorithm {
                kind: "digest",
                id: alg,
            });
        }
        let bytes = bytes
            .as_bytes()
            .ok_or_else(|| structure(S, "digest-bytes must be a bstr"))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            structure(
                S,
                format!("SHA-256 digest must be 32 bytes, found {}", bytes.len()),
            )
        })?;
        Ok(SuitDigest(arr))
    }

    /// Decodes an encoded `SUIT_Digest`.
    pub fn from_cbor(bytes: &[u8], limits: &CborLimits) -> Result<SuitDigest> {
        SuitDigest::from_value(&cbor::decode(bytes, limits)?)
    }
}

impl fmt::Display for SuitDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// An RFC 9562 UUID, as SUIT vendor and class identifiers use (16 raw bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

impl FromStr for Uuid {
    type Err = Error;

    /// Parses the hyphenated form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case).
    fn from_str(s: &str) -> Result<Uuid> {
        let bad = || {
            structure(
                "UUID",
                format!("{s:?} is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"),
            )
        };
        let b = s.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return Err(bad());
        }
        let digits: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
        let mut out = [0u8; 16];
        hex::decode_to_slice(&digits, &mut out).map_err(|_| bad())?;
        Ok(Uuid(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// A `SUIT_Component_Identifier`: a list of byte strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ComponentId(pub Vec<Vec<u8>>);

impl ComponentId {
    fn to_value(&self) -> Value {
        Value::Array(self.0.iter().map(|p| Value::Bytes(p.clone())).collect())
    }

    fn from_value(v: &Value) -> Result<ComponentId> {
        const S: &str = "SUIT_Component_Identifier";
        let parts = v
            .as_array()
            .ok_or_else(|| structure(S, "must be an array"))?;
        if parts.is_empty() {
            return Err(structure(S, "must not be empty"));
        }
        parts
            .iter()
            .map(|p| {
                p.as_bytes()
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| structure(S, "elements must be bstr"))
            })
            .collect::<Result<Vec<_>>>()
            .map(ComponentId)
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(hex::encode).collect();
        write!(f, "[{}]", parts.join(","))
    }
}

/// One SUIT command: a condition or directive code and its argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The command code (see [`command`]).
    pub code: i64,
    /// Its argument: a reporting policy for most commands, a parameter map for
    /// override-parameters, a list of bstr-wrapped sequences for try-each, ...
    pub argument: Value,
}

/// A `SUIT_Command_Sequence`: `[+ (code, argument)]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandSequence(pub Vec<Command>);

impl CommandSequence {
    /// Decodes a command sequence from the content of its bstr wrapper.
    ///
    /// The argument of suit-directive-try-each is checked here too: two or more bstr-wrapped
    /// command sequences, optionally followed by `nil` (`SUIT_Directive_Try_Each_Argument` in
    /// the draft's CDDL), nested at most [`MAX_TRY_EACH_DEPTH`] deep.
    pub fn from_cbor(bytes: &[u8], limits: &CborLimits) -> Result<CommandSequence> {
        Self::from_cbor_at(bytes, limits, 0)
    }

    fn from_cbor_at(bytes: &[u8], limits: &CborLimits, depth: usize) -> Result<CommandSequence> {
        const S: &str = "SUIT_Command_Sequence";
        let v = cbor::decode(bytes, limits)?;
        let Value::Array(items) = v else {
            return Err(structure(S, "must be an array"));
        };
        if items.is_empty() || items.len() % 2 != 0 {
            return Err(structure(
                S,
                "must hold one or more (command, argument) pairs",
            ));
        }
        let mut cmds = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(code), Some(argument)) = (it.next(), it.next()) {
            let code = code
                .as_i64()
                .ok_or_else(|| structure(S, "command code must be an integer"))?;
            match code {
                command::DIRECTIVE_OVERRIDE_PARAMETERS => {
                    Parameters::from_value(&argument)?;
                }
                command::DIRECTIVE_TRY_EACH => try_each_branches(&argument, limits, depth)?,
                _ => {}
            }
            cmds.push(Command { code, argument });
        }
        Ok(CommandSequence(cmds))
    }

    /// The deterministic encoding (without the bstr wrapper).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut items = Vec::with_capacity(self.0.len() * 2);
        for c in &self.0 {
            items.push(Value::int(c.code));
            items.push(c.argument.clone());
        }
        Value::Array(items).to_vec()
    }

    /// The commands.
    pub fn commands(&self) -> &[Command] {
        &self.0
    }
}

/// Checks a `SUIT_Directive_Try_Each_Argument`: `[2* bstr .cbor SUIT_Command_Sequence, ? nil]`.
fn try_each_branches(argument: &Value, limits: &CborLimits, depth: usize) -> Result<()> {
    const S: &str = "SUIT_Directive_Try_Each_Argument";
    if depth >= MAX_TRY_EACH_DEPTH {
        return Err(Error::Limit {
            what: "suit-directive-try-each nesting depth",
            limit: MAX_TRY_EACH_DEPTH as u64,
            actual: depth as u64 + 1,
        });
    }
    let Value::Array(items) = argument else {
        return Err(structure(S, "must be an array"));
    };
    let branches = match items.split_last() {
        Some((Value::Null, rest)) => rest,
        _ => &items[..],
    };
    if branches.len() < 2 {
        return Err(structure(S, "must hold two or more command sequences"));
    }
    for b in branches {
        let bytes = b
            .as_bytes()
            .ok_or_else(|| structure(S, "each branch must be a bstr-wrapped command sequence"))?;
        CommandSequence::from_cbor_at(bytes, limits, depth + 1)?;
    }
    Ok(())
}

/// A parameter map (`SUIT_Parameters`), in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parameters(pub Vec<(i64, Value)>);

impl Parameters {
    fn from_value(v: &Value) -> Result<Parameters> {
        const S: &str = "SUIT_Parameters";
        let m = v.as_map().ok_or_else(|| structure(S, "must be a map"))?;
        let mut out = Vec::with_capacity(m.len());
        for (k, v) in m {
            let k = k
                .as_i64()
                .ok_or_else(|| structure(S, "labels must be integers"))?;
            out.push((k, v.clone()));
        }
        let p = Parameters(out);
        // Validate the typed parameters once, here at the boundary.
        p.typed()?;
        Ok(p)
    }

    fn to_value(&self) -> Value {
        Value::canonical_map(
            self.0
                .iter()
                .map(|(k, v)| (Value::int(*k), v.clone()))
                .collect(),
        )
    }

    fn get(&self, label: i64) -> Option<&Value> {
        self.0.iter().find(|(k, _)| *k == label).map(|(_, v)| v)
    }

    fn typed(&self) -> Result<ComponentParameters> {
        const S: &str = "SUIT_Parameters";
        let mut out = ComponentParameters::default();
        if let Some(v) = self.get(parameter::VENDOR_IDENTIFIER) {
            out.vendor_id = Some(uuid_param(v, "vendor-id")?);
        }
        if let Some(v) = self.get(parameter::CLASS_IDENTIFIER) {
            out.class_id = Some(uuid_param(v, "class-id")?);
        }
        if let Some(v) = self.get(parameter::IMAGE_DIGEST) {
            let wrapped = v
                .as_bytes()
                .ok_or_else(|| structure(S, "image-digest must be a bstr-wrapped SUIT_Digest"))?;
            out.image_digest = Some(SuitDigest::from_cbor(wrapped, &CborLimits::default())?);
        }
        if let Some(v) = self.get(parameter::IMAGE_SIZE) {
            out.image_size = Some(
                v.as_u64()
                    .ok_or_else(|| structure(S, "image-size must be an unsigned integer"))?,
            );
        }
        for (label, name) in [
            (parameter::COMPONENT_SLOT, "component-slot"),
            (parameter::SOURCE_COMPONENT, "source-component"),
        ] {
            if let Some(v) = self.get(label)
                && v.as_u64().is_none()
            {
                return Err(structure(S, format!("{name} must be an unsigned integer")));
            }
        }
        if let Some(v) = self.get(parameter::URI) {
            out.uri = Some(
                v.as_text()
                    .ok_or_else(|| structure(S, "uri must be a text string"))?
                    .to_owned(),
            );
        }
        Ok(out)
    }
}

fn uuid_param(v: &Value, name: &str) -> Result<Uuid> {
    let b = v
        .as_bytes()
        .ok_or_else(|| structure("SUIT_Parameters", format!("{name} must be a bstr")))?;
    let arr: [u8; 16] = b
        .try_into()
        .map_err(|_| structure("SUIT_Parameters", format!("{name} must be a 16-byte UUID")))?;
    Ok(Uuid(arr))
}

/// The parameters in effect for one component after the manifest's override-parameters
/// directives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComponentParameters {
    /// suit-parameter-vendor-identifier
    pub vendor_id: Option<Uuid>,
    /// suit-parameter-class-identifier
    pub class_id: Option<Uuid>,
    /// suit-parameter-image-digest
    pub image_digest: Option<SuitDigest>,
    /// suit-parameter-image-size
    pub image_size: Option<u64>,
    /// suit-parameter-uri
    pub uri: Option<String>,
}

impl ComponentParameters {
    fn merge(&mut self, other: ComponentParameters) {
        self.vendor_id = other.vendor_id.or(self.vendor_id);
        self.class_id = other.class_id.or(self.class_id);
        self.image_digest = other.image_digest.or(self.image_digest);
        self.image_size = other.image_size.or(self.image_size);
        if other.uri.is_some() {
            self.uri = other.uri;
        }
    }
}

/// A severable manifest member: present inline, or replaced by the digest of its bstr-wrapped
/// encoding (draft-ietf-suit-manifest section 8.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Severable<T> {
    /// The member itself.
    Inline(T),
    /// The member was severed; this digest authenticates it when it is supplied in the envelope.
    Digest(SuitDigest),
}

/// `SUIT_Common`: the components and the shared command sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// suit-components
    pub components: Vec<ComponentId>,
    /// suit-shared-sequence
    pub shared_sequence: Option<CommandSequence>,
}

/// A decoded SUIT manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// suit-manifest-sequence-number: monotonic, the anti-rollback counter.
    pub sequence_number: u64,
    /// suit-common
    pub common: Common,
    /// suit-reference-uri
    pub reference_uri: Option<String>,
    /// suit-validate
    pub validate: Option<CommandSequence>,
    /// suit-load
    pub load: Option<CommandSequence>,
    /// suit-invoke
    pub invoke: Option<CommandSequence>,
    /// suit-payload-fetch
    pub payload_fetch: Option<Severable<CommandSequence>>,
    /// suit-install
    pub install: Option<Severable<CommandSequence>>,
    /// suit-text (a map; kept as CBOR)
    pub text: Option<Severable<Value>>,
    /// thingkit-expires ([`element::THINGKIT_EXPIRES`]): unix seconds from which the manifest is
    /// expired (valid while `now < expires`). `None`: the manifest does not expire.
    pub expires: Option<u64>,
}

fn bstr_wrap(inner: Vec<u8>) -> Value {
    Value::Bytes(inner)
}

fn seq_from(v: &Value, what: &'static str, limits: &CborLimits) -> Result<CommandSequence> {
    let b = v.as_bytes().ok_or_else(|| {
        structure(
            "SUIT_Manifest",
            format!("{what} must be a bstr-wrapped command sequence"),
        )
    })?;
    CommandSequence::from_cbor(b, limits)
}

fn severable_seq(
    v: &Value,
    what: &'static str,
    limits: &CborLimits,
) -> Result<Severable<CommandSequence>> {
    match v {
        Value::Array(_) => Ok(Severable::Digest(SuitDigest::from_value(v)?)),
        _ => Ok(Severable::Inline(seq_from(v, what, limits)?)),
    }
}

impl Manifest {
    /// Decodes a manifest strictly from the content of the envelope's manifest bstr.
    ///
    /// This only parses; it authenticates nothing. Use [`crate::Verifier`] to obtain a
    /// [`crate::Verified`] manifest.
    pub fn from_cbor(bytes: &[u8], limits: &CborLimits) -> Result<Manifest> {
        const S: &str = "SUIT_Manifest";
        let mut v = cbor::decode(bytes, limits)?;
        if let Value::Tag(1070, inner) = v {
            v = *inner;
        }
        let map = v.as_map().ok_or_else(|| structure(S, "must be a map"))?;
        let mut version = None;
        let mut m = Manifest {
            sequence_number: 0,
            common: Common {
                components: Vec::new(),
                shared_sequence: None,
            },
            reference_uri: None,
            validate: None,
            load: None,
            invoke: None,
            payload_fetch: None,
            install: None,
            text: None,
            expires: None,
        };
        let mut have_seq = false;
        let mut have_common = false;
        for (k, val) in map {
            let k = k
                .as_i64()
                .ok_or_else(|| structure(S, "keys must be integers"))?;
            match k {
                element::VERSION => version = val.as_u64(),
                element::SEQUENCE_NUMBER => {
                    m.sequence_number = val.as_u64().ok_or_else(|| {
                        structure(S, "sequence number must be an unsigned integer")
                    })?;
                    have_seq = true;
                }
                element::COMMON => {
                    let b = val
                        .as_bytes()
                        .ok_or_else(|| structure(S, "common must be a bstr"))?;
                    m.common = Common::from_cbor(b, limits)?;
                    have_common = true;
                }
                element::REFERENCE_URI => {
                    m.reference_uri = Some(
                        val.as_text()
                            .ok_or_else(|| structure(S, "reference-uri must be text"))?
                            .to_owned(),
                    );
                }
                element::VALIDATE => m.validate = Some(seq_from(val, "validate", limits)?),
                element::LOAD => m.load = Some(seq_from(val, "load", limits)?),
                element::INVOKE => m.invoke = Some(seq_from(val, "invoke", limits)?),
                element::PAYLOAD_FETCH => {
                    m.payload_fetch = Some(severable_seq(val, "payload-fetch", limits)?)
                }
                element::INSTALL => m.install = Some(severable_seq(val, "install", limits)?),
                element::TEXT => {
                    m.text = Some(match val {
                        Value::Array(_) => Severable::Digest(SuitDigest::from_value(val)?),
                        Value::Bytes(b) => Severable::Inline(cbor::decode(b, limits)?),
                        _ => return Err(structure(S, "text must be a bstr or a SUIT_Digest")),
                    });
                }
                element::THINGKIT_EXPIRES => {
                    m.expires = Some(val.as_u64().ok_or_else(|| {
                        structure(S, "thingkit-expires (-257) must be an unsigned integer")
                    })?);
                }
                other => return Err(structure(S, format!("unknown manifest element {other}"))),
            }
        }
        if version != Some(1) {
            return Err(structure(S, "manifest-version must be 1 (section 8.4.1)"));
        }
        if !have_seq {
            return Err(structure(
                S,
                "missing manifest-sequence-number (section 8.4.2)",
            ));
        }
        if !have_common {
            return Err(structure(S, "missing common (section 8.4.5)"));
        }
        Ok(m)
    }

    /// The deterministic encoding (the content of the envelope's manifest bstr).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut entries = vec![
            (Value::int(element::VERSION), Value::Unsigned(1)),
            (
                Value::int(element::SEQUENCE_NUMBER),
                Value::Unsigned(self.sequence_number),
            ),
            (
                Value::int(element::COMMON),
                bstr_wrap(self.common.to_cbor()),
            ),
        ];
        if let Some(u) = &self.reference_uri {
            entries.push((Value::int(element::REFERENCE_URI), Value::Text(u.clone())));
        }
        for (k, s) in [
            (element::VALIDATE, &self.validate),
            (element::LOAD, &self.load),
            (element::INVOKE, &self.invoke),
        ] {
            if let Some(s) = s {
                entries.push((Value::int(k), bstr_wrap(s.to_cbor())));
            }
        }
        for (k, s) in [
            (element::PAYLOAD_FETCH, &self.payload_fetch),
            (element::INSTALL, &self.install),
        ] {
            match s {
                Some(Severable::Inline(s)) => entries.push((Value::int(k), bstr_wrap(s.to_cbor()))),
                Some(Severable::Digest(d)) => entries.push((Value::int(k), d.to_value())),
                None => {}
            }
        }
        match &self.text {
            Some(Severable::Inline(t)) => {
                entries.push((Value::int(element::TEXT), bstr_wrap(t.to_vec())))
            }
            Some(Severable::Digest(d)) => entries.push((Value::int(element::TEXT), d.to_value())),
            None => {}
        }
        if let Some(expires) = self.expires {
            entries.push((
                Value::int(element::THINGKIT_EXPIRES),
                Value::Unsigned(expires),
            ));
        }
        Value::canonical_map(entries).to_vec()
    }

    /// The parameters in effect for component `index` after the shared sequence and the given
    /// (resolved) install and payload-fetch sequences: override-parameters directives that
    /// apply to that component are merged in order. Try-each branches are not evaluated.
    pub fn component_parameters(
        &self,
        index: u64,
        extra: &[&CommandSequence],
    ) -> Result<ComponentParameters> {
        let mut out = ComponentParameters::default();
        let mut seqs: Vec<&CommandSequence> = Vec::new();
        if let Some(s) = &self.common.shared_sequence {
            seqs.push(s);
        }
        seqs.extend_from_slice(extra);
        for seq in seqs {
            let mut current: Option<u64> = Some(0);
            let mut all = false;
            for c in &seq.0 {
                match c.code {
                    command::DIRECTIVE_SET_COMPONENT_INDEX => match &c.argument {
                        Value::Unsigned(i) => {
                            current = Some(*i);
                            all = false;
                        }
                        Value::Bool(true) => all = true,
                        _ => {
                            current = None;
                            all = false;
                        }
                    },
                    command::DIRECTIVE_OVERRIDE_PARAMETERS if all || current == Some(index) => {
                        out.merge(Parameters::from_value(&c.argument)?.typed()?);
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

impl Common {
    fn from_cbor(bytes: &[u8], limits: &CborLimits) -> Result<Common> {
        const S: &str = "SUIT_Common";
        let v = cbor::decode(bytes, limits)?;
        let map = v.as_map().ok_or_else(|| structure(S, "must be a map"))?;
        let mut components = None;
        let mut shared_sequence = None;
        for (k, val) in map {
            match k.as_i64() {
                Some(element::COMPONENTS) => {
                    let arr = val
                        .as_array()
                        .ok_or_else(|| structure(S, "components must be an array"))?;
                    if arr.is_empty() {
                        return Err(structure(S, "components must not be empty"));
                    }
                    components = Some(
                        arr.iter()
                            .map(ComponentId::from_value)
                            .collect::<Result<Vec<_>>>()?,
                    );
                }
                Some(element::SHARED_SEQUENCE) => {
                    shared_sequence = Some(seq_from(val, "shared-sequence", limits)?);
                }
                _ => return Err(structure(S, "unknown element")),
            }
        }
        Ok(Common {
            components: components.ok_or_else(|| structure(S, "missing components (2)"))?,
            shared_sequence,
        })
    }

    fn to_cbor(&self) -> Vec<u8> {
        let mut entries = vec![(
            Value::int(element::COMPONENTS),
            Value::Array(self.components.iter().map(ComponentId::to_value).collect()),
        )];
        if let Some(s) = &self.shared_sequence {
            entries.push((Value::int(element::SHARED_SEQUENCE), bstr_wrap(s.to_cbor())));
        }
        Value::canonical_map(entries).to_vec()
    }
}

/// Builds a single-component manifest in the shape of the draft's examples 0 and 1: a shared
/// sequence that sets vendor ID, class ID, image digest and size and checks vendor and class;
/// a validate sequence that checks the image; an install sequence that fetches from the URI (when
/// one is given); and an invoke sequence.
#[derive(Debug, Clone)]
pub struct ManifestBuilder {
    sequence_number: u64,
    component: ComponentId,
    vendor_id: Option<Uuid>,
    class_id: Option<Uuid>,
    image: Option<(SuitDigest, u64)>,
    uri: Option<String>,
    invoke: bool,
    text: Option<String>,
    expires: Option<u64>,
}

impl ManifestBuilder {
    /// A builder for the given sequence number, component `[h'00']`.
    pub fn new(sequence_number: u64) -> ManifestBuilder {
        ManifestBuilder {
            sequence_number,
            component: ComponentId(vec![vec![0]]),
            vendor_id: None,
            class_id: None,
            image: None,
            uri: None,
            invoke: true,
            text: None,
            expires: None,
        }
    }

    /// Sets the component identifier.
    pub fn component(mut self, id: ComponentId) -> Self {
        self.component = id;
        self
    }

    /// Sets the vendor identifier (required).
    pub fn vendor_id(mut self, id: Uuid) -> Self {
        self.vendor_id = Some(id);
        self
    }

    /// Sets the class identifier (required).
    pub fn class_id(mut self, id: Uuid) -> Self {
        self.class_id = Some(id);
        self
    }

    /// Sets the image digest and size from the image bytes.
    pub fn image(self, image: &[u8]) -> Self {
        self.image_digest(SuitDigest::of(image), image.len() as u64)
    }

    /// Sets the image digest and size (required).
    pub fn image_digest(mut self, digest: SuitDigest, size: u64) -> Self {
        self.image = Some((digest, size));
        self
    }

    /// Sets the payload URI; adds an install sequence that fetches it.
    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = Some(uri.into());
        self
    }

    /// Whether to add an invoke sequence (default `true`).
    pub fn invoke(mut self, invoke: bool) -> Self {
        self.invoke = invoke;
        self
    }

    /// Adds a suit-text manifest description (text key 1).
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Sets the manifest's expiry (unix seconds; thingkit-expires, [`element::THINGKIT_EXPIRES`]).
    /// A device refuses the manifest from that second on ([`crate::Verifier::verify_at`]).
    pub fn expires(mut self, unix_seconds: u64) -> Self {
        self.expires = Some(unix_seconds);
        self
    }

    /// Builds the manifest; fails if vendor ID, class ID or image are missing.
    pub fn build(self) -> Result<Manifest> {
        let vendor = self.vendor_id.ok_or(Error::MissingParameter("vendor-id"))?;
        let class = self.class_id.ok_or(Error::MissingParameter("class-id"))?;
        let (digest, size) = self.image.ok_or(Error::MissingParameter("image-digest"))?;
        let params = Parameters(vec![
            (
                parameter::VENDOR_IDENTIFIER,
                Value::Bytes(vendor.0.to_vec()),
            ),
            (parameter::CLASS_IDENTIFIER, Value::Bytes(class.0.to_vec())),
            (parameter::IMAGE_DIGEST, Value::Bytes(digest.to_cbor())),
            (parameter::IMAGE_SIZE, Value::Unsigned(size)),
        ]);
        let cmd = |code: i64, argument: Value| Command { code, argument };
        let shared = CommandSequence(vec![
            cmd(command::DIRECTIVE_OVERRIDE_PARAMETERS, params.to_value()),
            cmd(
                command::CONDITION_VENDOR_IDENTIFIER,
                Value::Unsigned(REPORT_ALL),
            ),
            cmd(
                command::CONDITION_CLASS_IDENTIFIER,
                Value::Unsigned(REPORT_ALL),
            ),
        ]);
        let install = self.uri.map(|uri| {
            Severable::Inline(CommandSequence(vec![
                cmd(
                    command::DIRECTIVE_OVERRIDE_PARAMETERS,
                    Parameters(vec![(parameter::URI, Value::Text(uri))]).to_value(),
                ),
                cmd(command::DIRECTIVE_FETCH, Value::Unsigned(REPORT_ON_FAILURE)),
                cmd(command::CONDITION_IMAGE_MATCH, Value::Unsigned(REPORT_ALL)),
            ]))
        });
        Ok(Manifest {
            sequence_number: self.sequence_number,
            common: Common {
                components: vec![self.component],
                shared_sequence: Some(shared),
            },
            reference_uri: None,
            validate: Some(CommandSequence(vec![cmd(
                command::CONDITION_IMAGE_MATCH,
                Value::Unsigned(REPORT_ALL),
            )])),
            load: None,
            invoke: self.invoke.then(|| {
                CommandSequence(vec![cmd(
                    command::DIRECTIVE_INVOKE,
                    Value::Unsigned(REPORT_ON_FAILURE),
                )])
            }),
            payload_fetch: None,
            install,
            text: self
                .text
                .map(|t| Severable::Inline(Value::Map(vec![(Value::int(1), Value::Text(t))]))),
            expires: self.expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_parses_and_prints_hyphenated_form() {
        let u: Uuid = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe".parse().unwrap();
        assert_eq!(u.0[0], 0xfa);
        assert_eq!(u.to_string(), "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe");
        assert!("fa6b4a53d5ad5fdfbe9de663e4d41ffe".parse::<Uuid>().is_err());
        assert!(
            "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffg"
                .parse::<Uuid>()
                .is_err()
        );
        assert!(
            "fa6b4a53-d5ad-5fdf-be9d+e663e4d41ffe"
                .parse::<Uuid>()
                .is_err()
        );
    }

    #[test]
    fn builder_output_round_trips_and_exposes_parameters() {
        let m = ManifestBuilder::new(7)
            .vendor_id(Uuid([1; 16]))
            .class_id(Uuid([2; 16]))
            .image(b"firmware")
            .uri("coap://fw.example/1")
            .build()
            .unwrap();
        let bytes = m.to_cbor();
        let back = Manifest::from_cbor(&bytes, &CborLimits::default()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_cbor(), bytes);
        let Some(Severable::Inline(install)) = &back.install else {
            panic!("install inline")
        };
        let p = back.component_parameters(0, &[install]).unwrap();
        assert_eq!(p.vendor_id, Some(Uuid([1; 16])));
        assert_eq!(p.class_id, Some(Uuid([2; 16])));
        assert_eq!(p.image_digest, Some(SuitDigest::of(b"firmware")));
        assert_eq!(p.image_size, Some(8));
        assert_eq!(p.uri.as_deref(), Some("coap://fw.example/1"));
    }

    #[test]
    fn builder_requires_identity_and_image() {
        assert_eq!(
            ManifestBuilder::new(1)
                .class_id(Uuid([0; 16]))
                .image(b"x")
                .build(),
            Err(Error::MissingParameter("vendor-id"))
        );
    }

    #[test]
    fn rejects_manifest_without_version_or_with_unknown_element() {
        let lim = CborLimits::default();
        // {2: 0, 3: h'a1028181 4100'}
        assert!(Manifest::from_cbor(&crate::unhex("a202000346a10281814100"), &lim).is_err());
        // {1: 1, 2: 0, 3: ..., 6: 0}
        assert!(
            Manifest::from_cbor(&crate::unhex("a4010102000346a102818141000600"), &lim).is_err()
        );
        assert!(Manifest::from_cbor(&crate::unhex("a3010102000346a10281814100"), &lim).is_ok());
    }

    #[test]
    fn try_each_argument_is_checked_strictly() {
        let lim = CborLimits::default();
        let seq = |hex: &str| CommandSequence::from_cbor(&crate::unhex(hex), &lim);
        // [15, [<<[3, 15]>>, <<[3, 15]>>]] and the same with a trailing nil
        assert!(seq("820f824382030f4382030f").is_ok());
        assert!(seq("820f834382030f4382030ff6").is_ok());
        // one branch only; a branch that is not a bstr; a branch that is not a sequence; a map
        assert!(seq("820f814382030f").is_err());
        assert!(seq("820f824382030f82030f").is_err());
        assert!(seq("820f824382030f4103").is_err());
        assert!(seq("820fa0").is_err());
        // nil anywhere but last
        assert!(seq("820f83f64382030f4382030f").is_err());
        // component-slot and source-component must be unsigned
        assert!(seq("8214a10520").is_err());
        assert!(seq("8214a11620").is_err());
        assert!(seq("8214a1160a").is_ok());

        // Nesting: depth MAX_TRY_EACH_DEPTH is fine, one more is refused with the limit.
        let nest = |levels: usize| {
            let mut inner = crate::unhex("82030f");
            for _ in 0..levels {
                inner = Value::Array(vec![
                    Value::int(command::DIRECTIVE_TRY_EACH),
                    Value::Array(vec![Value::Bytes(inner.clone()), Value::Bytes(inner)]),
                ])
                .to_vec();
            }
            inner
        };
        assert!(CommandSequence::from_cbor(&nest(MAX_TRY_EACH_DEPTH), &lim).is_ok());
        assert!(matches!(
            CommandSequence::from_cbor(&nest(MAX_TRY_EACH_DEPTH + 1), &lim),
            Err(Error::Limit {
                what: "suit-directive-try-each nesting depth",
                ..
            })
        ));
    }

    #[test]
    fn rejects_digest_with_other_algorithm_or_length() {
        let lim = CborLimits::default();
        assert!(matches!(
            SuitDigest::from_cbor(&crate::unhex("82382b4100"), &lim),
            Err(Error::UnsupportedAlgorithm {
                kind: "digest",
                id: -44
            })
        ));
        assert!(SuitDigest::from_cbor(&crate::unhex("822f4100"), &lim).is_err());
    }
}
