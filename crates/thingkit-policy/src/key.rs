//! Context keys: the names used in policy variables (`${iot:ClientId}`) and condition blocks
//! (`"iot:Connection.Thing.IsAttached": "true"`), and how each reads a [`Context`].

use std::fmt;

use crate::context::{Context, attribute};

/// Which certificate name a `iot:Certificate.<Part>.<Attribute>` key reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertPart {
    /// `Subject` distinguished name: `iot:Certificate.Subject.<attribute>`.
    Subject,
    /// `Issuer` distinguished name: `iot:Certificate.Issuer.<attribute>`.
    Issuer,
    /// The subject alternative name extension:
    /// `iot:Certificate.Subject.AlternativeName.<attribute>`.
    SubjectAlternativeName,
    /// The issuer alternative name extension:
    /// `iot:Certificate.Issuer.AlternativeName.<attribute>`.
    IssuerAlternativeName,
}

impl CertPart {
    /// The part as written in a key name, e.g. `Subject.AlternativeName`.
    pub fn name(self) -> &'static str {
        match self {
            CertPart::Subject => "Subject",
            CertPart::Issuer => "Issuer",
            CertPart::SubjectAlternativeName => "Subject.AlternativeName",
            CertPart::IssuerAlternativeName => "Issuer.AlternativeName",
        }
    }
}

/// Which values of a multi-valued certificate attribute a key selects.
///
/// AWS IoT exposes at most [`MAX_CERTIFICATE_VALUES`] values of an attribute: later values are
/// ignored, so `.5` and above never have a value and `.List` holds at most five values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Select {
    /// The plain name: the first value.
    First,
    /// `.N`: the value at 0-based position N — `.1` is the *second* value, as the guide's
    /// worked example states (`iot:Certificate.Subject.Country.1` "is replaced by the second
    /// country name"); `.0` is the first value, like the plain name.
    Index(usize),
    /// `.List`: all values (condition keys only).
    List,
}

/// How many values of a multi-valued certificate attribute AWS IoT exposes ("Certificate
/// attributes that contain arrays are limited to five items. Additional items are ignored.").
pub const MAX_CERTIFICATE_VALUES: usize = 5;

/// The longest certificate value AWS IoT substitutes, in characters.
pub const MAX_CERTIFICATE_VALUE_CHARS: usize = 1024;

/// The distinguished-name attributes AWS IoT exposes.
const DN_ATTRIBUTES: &[&str] = &[
    "Country",
    "Organization",
    "OrganizationalUnit",
    "DistinguishedNameQualifier",
    "State",
    "CommonName",
    "SerialNumber",
    "Title",
    "Surname",
    "GivenName",
    "Initials",
    "Pseudonym",
    "GenerationQualifier",
];

/// The alternative-name attributes AWS IoT exposes.
const ALT_NAME_ATTRIBUTES: &[&str] = &[
    "RFC822Name",
    "DNSName",
    "DirectoryName",
    "UniformResourceIdentifier",
    "IPAddress",
];

/// A context key, resolved from its (case-insensitive) name once, at compile time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContextKey {
    /// `iot:ClientId`.
    ClientId,
    /// `aws:SourceIp`.
    SourceIp,
    /// `iot:DomainName`.
    DomainName,
    /// `aws:CurrentTime`.
    CurrentTime,
    /// `aws:EpochTime`.
    EpochTime,
    /// `iot:Connection.Thing.ThingName`.
    ThingName,
    /// `iot:Connection.Thing.ThingTypeName`.
    ThingTypeName,
    /// `iot:Connection.Thing.Attributes[name]` (the name is case-sensitive).
    ThingAttribute(String),
    /// `iot:Connection.Thing.IsAttached`.
    ThingIsAttached,
    /// `iot:CertificateId`.
    CertificateId,
    /// `iot:Certificate.SerialNumber`.
    CertificateSerialNumber,
    /// `iot:Certificate.<part>.<attribute>[.N|.List]`.
    Certificate {
        /// Subject, issuer, or one of the alternative names.
        part: CertPart,
        /// The canonical attribute name, e.g. `CommonName`.
        attribute: String,
        /// Which values.
        select: Select,
    },
    /// `iot:ConnectAttributes` (multi-valued).
    ConnectAttributes,
    /// `iot:LastWillTopic`.
    LastWillTopic,
    /// A name AWS IoT does not document; it never has a value.
    Unknown(String),
}

/// A key's value(s) in a context, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found<'c> {
    Missing,
    /// A certificate attribute whose value (or one of whose first five values, for `.List`)
    /// contains `* $ + ? #` or is longer than 1024 characters: AWS IoT leaves the variable
    /// unreplaced. It is present (not `Null`) but equals no policy value.
    Unusable,
    Str(&'c str),
    List(&'c [String]),
    Bool(bool),
    Time(i64),
}

impl ContextKey {
    /// Resolves a key name (without `${}`), case-insensitively.
    pub fn parse(name: &str) -> ContextKey {
        let lower_eq = |s: &str| name.eq_ignore_ascii_case(s);
        if lower_eq("iot:ClientId") {
            return ContextKey::ClientId;
        }
        if lower_eq("aws:SourceIp") {
            return ContextKey::SourceIp;
        }
        if lower_eq("iot:DomainName") {
            return ContextKey::DomainName;
        }
        if lower_eq("aws:CurrentTime") {
            return ContextKey::CurrentTime;
        }
        if lower_eq("aws:EpochTime") {
            return ContextKey::EpochTime;
        }
        if lower_eq("iot:Connection.Thing.ThingName") {
            return ContextKey::ThingName;
        }
        if lower_eq("iot:Connection.Thing.ThingTypeName") {
            return ContextKey::ThingTypeName;
        }
        if lower_eq("iot:Connection.Thing.IsAttached") {
            return ContextKey::ThingIsAttached;
        }
        if lower_eq("iot:CertificateId") {
            return ContextKey::CertificateId;
        }
        if lower_eq("iot:Certificate.SerialNumber") {
            return ContextKey::CertificateSerialNumber;
        }
        if lower_eq("iot:ConnectAttributes") {
            return ContextKey::ConnectAttributes;
        }
        if lower_eq("iot:LastWillTopic") {
            return ContextKey::LastWillTopic;
        }
        const ATTR: &str = "iot:Connection.Thing.Attributes[";
        if let (Some(head), Some(rest)) = (name.get(..ATTR.len()), name.get(ATTR.len()..))
            && head.eq_ignore_ascii_case(ATTR)
            && let Some(attr) = rest.strip_suffix(']')
            && !attr.is_empty()
            && !attr.contains(['[', ']'])
        {
            return ContextKey::ThingAttribute(attr.to_owned());
        }
        const CERT: &str = "iot:Certificate.";
        if let (Some(head), Some(rest)) = (name.get(..CERT.len()), name.get(CERT.len()..))
            && head.eq_ignore_ascii_case(CERT)
            && let Some(key) = parse_certificate(rest)
        {
            return key;
        }
        ContextKey::Unknown(name.to_owned())
    }

    /// Whether AWS IoT documents this key.
    pub fn is_known(&self) -> bool {
        !matches!(self, ContextKey::Unknown(_))
    }

    /// Whether the key's value comes from the client (client ID or thing data), which the strict
    /// mode refuses to substitute when it contains MQTT or IAM wildcards.
    pub(crate) fn is_client_controlled(&self) -> bool {
        matches!(
            self,
            ContextKey::ClientId
                | ContextKey::ThingName
                | ContextKey::ThingTypeName
                | ContextKey::ThingAttribute(_)
        )
    }

    /// The key's value(s) in `ctx`.
    pub(crate) fn find<'c>(&self, ctx: &'c Context) -> Found<'c> {
        let s = |o: &'c Option<String>| o.as_deref().map_or(Found::Missing, Found::Str);
        match self {
            ContextKey::ClientId => s(&ctx.client_id),
            ContextKey::SourceIp => s(&ctx.source_ip),
            ContextKey::DomainName => s(&ctx.domain_name),
            ContextKey::CurrentTime | ContextKey::EpochTime => {
                ctx.current_time.map_or(Found::Missing, Found::Time)
            }
            // Thing values resolve only when the thing is attached to the certificate the
            // client connected with; otherwise they are missing (AWS: "won't be resolved").
            ContextKey::ThingName => {
                attached_thing(ctx).map_or(Found::Missing, |t| Found::Str(&t.name))
            }
            ContextKey::ThingTypeName => attached_thing(ctx)
                .and_then(|t| t.thing_type.as_deref())
                .map_or(Found::Missing, Found::Str),
            ContextKey::ThingAttribute(a) => attached_thing(ctx)
                .and_then(|t| t.attributes.get(a.as_str()))
                .map_or(Found::Missing, |v| Found::Str(v)),
            ContextKey::ThingIsAttached => ctx
                .thing
                .as_ref()
                .map_or(Found::Missing, |t| Found::Bool(t.attached)),
            ContextKey::CertificateId => ctx
                .certificate
                .as_ref()
                .and_then(|c| c.id.as_deref())
                .map_or(Found::Missing, certificate_value),
            ContextKey::CertificateSerialNumber => ctx
                .certificate
                .as_ref()
                .and_then(|c| c.serial_number.as_deref())
                .map_or(Found::Missing, certificate_value),
            ContextKey::Certificate {
                part,
                attribute: attr,
                select,
            } => {
                let Some(cert) = ctx.certificate.as_ref() else {
                    return Found::Missing;
                };
                let map = match part {
                    CertPart::Subject => &cert.subject,
                    CertPart::Issuer => &cert.issuer,
                    CertPart::SubjectAlternativeName => &cert.subject_alternative_name,
                    CertPart::IssuerAlternativeName => &cert.issuer_alternative_name,
                };
                let Some(values) = attribute(map, attr) else {
                    return Found::Missing;
                };
                // Values past the fifth are ignored.
                let values = values.get(..MAX_CERTIFICATE_VALUES).unwrap_or(values);
                match select {
                    Select::List if values.is_empty() => Found::Missing,
                    Select::List if values.iter().any(|v| !usable_certificate_value(v)) => {
                        Found::Unusable
                    }
                    Select::List => Found::List(values),
                    Select::First => values
                        .first()
                        .map_or(Found::Missing, |v| certificate_value(v)),
                    Select::Index(n) => values
                        .get(*n)
                        .map_or(Found::Missing, |v| certificate_value(v)),
                }
            }
            ContextKey::ConnectAttributes if ctx.connect_attributes.is_empty() => Found::Missing,
            ContextKey::ConnectAttributes => Found::List(&ctx.connect_attributes),
            ContextKey::LastWillTopic => s(&ctx.last_will_topic),
            ContextKey::Unknown(_) => Found::Missing,
        }
    }

    /// The single text value substituted for `${key}` in a pattern, or `None` when the variable
    /// has no usable value (which makes the pattern match nothing).
    ///
    /// Certificate values containing `*`, `$`, `+`, `?` or `#`, or longer than 1024 characters,
    /// are not substituted (AWS IoT rule). In `strict` mode client-controlled values (client ID,
    /// thing name, type and attributes) containing `+`, `#`, `*` or `?` are not substituted either.
    pub(crate) fn substitute<'c>(&self, ctx: &'c Context, strict: bool) -> Option<&'c str> {
        let value = match self.find(ctx) {
            Found::Str(s) => s,
            Found::Bool(true) => "true",
            Found::Bool(false) => "false",
            Found::Missing | Found::Unusable | Found::List(_) | Found::Time(_) => return None,
        };
        if strict && self.is_client_controlled() && value.contains(['+', '#', '*', '?']) {
            return None;
        }
        Some(value)
    }
}

/// The attached thing, if any: thing keys read nothing from a thing that is not attached to the
/// certificate the client connected with.
fn attached_thing(ctx: &Context) -> Option<&crate::context::ThingContext> {
    ctx.thing.as_ref().filter(|t| t.attached)
}

/// Whether AWS IoT substitutes a certificate value: no `* $ + ? #`, at most 1024 characters.
fn usable_certificate_value(v: &str) -> bool {
    !v.contains(['*', '$', '+', '?', '#']) && v.chars().count() <= MAX_CERTIFICATE_VALUE_CHARS
}

fn certificate_value(v: &str) -> Found<'_> {
    if usable_certificate_value(v) {
        Found::Str(v)
    } else {
        Found::Unusable
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|h| h.eq_ignore_ascii_case(prefix))
        .and_then(|_| s.get(prefix.len()..))
}

/// Parses `<Subject|Issuer>[.AlternativeName].<attribute>[.N|.List]` (after `iot:Certificate.`).
/// The undocumented `SubjectAltName.`/`IssuerAltName.` forms are not recognised.
fn parse_certificate(rest: &str) -> Option<ContextKey> {
    let (dn, alt, tail) = if let Some(t) = strip_prefix_ignore_case(rest, "Subject.") {
        (CertPart::Subject, CertPart::SubjectAlternativeName, t)
    } else if let Some(t) = strip_prefix_ignore_case(rest, "Issuer.") {
        (CertPart::Issuer, CertPart::IssuerAlternativeName, t)
    } else {
        return None;
    };
    let (part, tail) = match strip_prefix_ignore_case(tail, "AlternativeName.") {
        Some(t) => (alt, t),
        None => (dn, tail),
    };
    let (attr_name, select) = match tail.split_once('.') {
        None => (tail, Select::First),
        Some((a, s)) if s.eq_ignore_ascii_case("List") => (a, Select::List),
        Some((a, s)) => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: usize = s.parse().ok()?;
            (a, Select::Index(n))
        }
    };
    let table = match part {
        CertPart::Subject | CertPart::Issuer => DN_ATTRIBUTES,
        CertPart::SubjectAlternativeName | CertPart::IssuerAlternativeName => ALT_NAME_ATTRIBUTES,
    };
    let canonical = table.iter().find(|a| a.eq_ignore_ascii_case(attr_name))?;
    Some(ContextKey::Certificate {
        part,
        attribute: (*canonical).to_owned(),
        select,
    })
}

impl fmt::Display for ContextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextKey::ClientId => f.write_str("iot:ClientId"),
            ContextKey::SourceIp => f.write_str("aws:SourceIp"),
            ContextKey::DomainName => f.write_str("iot:DomainName"),
            ContextKey::CurrentTime => f.write_str("aws:CurrentTime"),
            ContextKey::EpochTime => f.write_str("aws:EpochTime"),
            ContextKey::ThingName => f.write_str("iot:Connection.Thing.ThingName"),
            ContextKey::ThingTypeName => f.write_str("iot:Connection.Thing.ThingTypeName"),
            ContextKey::ThingAttribute(a) => write!(f, "iot:Connection.Thing.Attributes[{a}]"),
            ContextKey::ThingIsAttached => f.write_str("iot:Connection.Thing.IsAttached"),
            ContextKey::CertificateId => f.write_str("iot:CertificateId"),
            ContextKey::CertificateSerialNumber => f.write_str("iot:Certificate.SerialNumber"),
            ContextKey::Certificate {
                part,
                attribute,
                select,
            } => {
                write!(f, "iot:Certificate.{}.{attribute}", part.name())?;
                match select {
                    Select::First => Ok(()),
                    Select::Index(n) => write!(f, ".{n}"),
                    Select::List => f.write_str(".List"),
                }
            }
            ContextKey::ConnectAttributes => f.write_str("iot:ConnectAttributes"),
            ContextKey::LastWillTopic => f.write_str("iot:LastWillTopic"),
            ContextKey::Unknown(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{CertificateContext, ThingContext};

    #[test]
    fn parses_names_case_insensitively() {
        assert_eq!(ContextKey::parse("IOT:clientid"), ContextKey::ClientId);
        assert_eq!(
            ContextKey::parse("iot:connection.thing.attributes[Floor]"),
            ContextKey::ThingAttribute("Floor".into())
        );
        assert_eq!(
            ContextKey::parse("iot:Certificate.subject.organization.list"),
            ContextKey::Certificate {
                part: CertPart::Subject,
                attribute: "Organization".into(),
                select: Select::List
            }
        );
        assert_eq!(
            ContextKey::parse("iot:Certificate.Issuer.CommonName.2").to_string(),
            "iot:Certificate.Issuer.CommonName.2"
        );
    }

    #[test]
    fn undocumented_names_are_unknown() {
        for name in [
            "iot:Thing.ThingName",
            "iot:Certificate.Subject.Nickname",
            "iot:Certificate.Subject.CommonName.-1",
            "iot:Certificate.Subject.CommonName.x",
            "iot:Connection.Thing.Attributes[]",
            // The pre-2019 spelling of the alternative names is not documented.
            "iot:Certificate.SubjectAltName.DNSName",
            "iot:Certificate.IssuerAltName.IPAddress",
            "iot:Certificate.Subject.AlternativeName.CommonName",
            "iot:Certificate.Subject.DNSName",
        ] {
            assert!(!ContextKey::parse(name).is_known(), "{name}");
        }
    }

    #[test]
    fn parses_documented_alternative_name_keys() {
        for (name, part, attribute) in [
            (
                "iot:Certificate.Subject.AlternativeName.DNSName",
                CertPart::SubjectAlternativeName,
                "DNSName",
            ),
            (
                "iot:certificate.issuer.alternativename.ipaddress",
                CertPart::IssuerAlternativeName,
                "IPAddress",
            ),
            (
                "iot:Certificate.Subject.AlternativeName.UniformResourceIdentifier",
                CertPart::SubjectAlternativeName,
                "UniformResourceIdentifier",
            ),
            (
                "iot:Certificate.Issuer.AlternativeName.RFC822Name",
                CertPart::IssuerAlternativeName,
                "RFC822Name",
            ),
            (
                "iot:Certificate.Subject.AlternativeName.DirectoryName",
                CertPart::SubjectAlternativeName,
                "DirectoryName",
            ),
        ] {
            let key = ContextKey::parse(name);
            assert_eq!(
                key,
                ContextKey::Certificate {
                    part,
                    attribute: attribute.into(),
                    select: Select::First
                },
                "{name}"
            );
            assert!(key.to_string().eq_ignore_ascii_case(name));
        }
        assert_eq!(
            ContextKey::parse("iot:Certificate.Subject.AlternativeName.DNSName.List").to_string(),
            "iot:Certificate.Subject.AlternativeName.DNSName.List"
        );
    }

    fn with_common_names(names: &[&str]) -> Context {
        let mut cert = CertificateContext::default();
        cert.subject.insert(
            "CommonName".into(),
            names.iter().map(|s| s.to_string()).collect(),
        );
        Context {
            certificate: Some(cert),
            ..Context::default()
        }
    }

    #[test]
    fn index_suffix_counts_from_zero_as_the_guides_example_shows() {
        let ctx = with_common_names(&["a", "b", "c"]);
        let get = |n: &str| ContextKey::parse(n).substitute(&ctx, false);
        assert_eq!(get("iot:Certificate.Subject.CommonName"), Some("a"));
        assert_eq!(get("iot:Certificate.Subject.CommonName.0"), Some("a"));
        assert_eq!(get("iot:Certificate.Subject.CommonName.1"), Some("b"));
        assert_eq!(get("iot:Certificate.Subject.CommonName.2"), Some("c"));
        assert_eq!(get("iot:Certificate.Subject.CommonName.3"), None);
    }

    #[test]
    fn only_the_first_five_values_are_visible() {
        let ctx = with_common_names(&["v0", "v1", "v2", "v3", "v4", "v5"]);
        let key = |n: &str| ContextKey::parse(n);
        assert_eq!(
            key("iot:Certificate.Subject.CommonName.4").substitute(&ctx, false),
            Some("v4")
        );
        assert_eq!(
            key("iot:Certificate.Subject.CommonName.5").substitute(&ctx, false),
            None
        );
        match key("iot:Certificate.Subject.CommonName.List").find(&ctx) {
            Found::List(l) => assert_eq!(l.len(), MAX_CERTIFICATE_VALUES),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_list_with_an_unusable_value_is_unusable_as_a_whole() {
        let ctx = with_common_names(&["ok", "bad#"]);
        let list = ContextKey::parse("iot:Certificate.Subject.CommonName.List");
        assert_eq!(list.find(&ctx), Found::Unusable);
        // ... unless the bad value is past the fifth, where it is ignored.
        let ctx = with_common_names(&["a", "b", "c", "d", "e", "bad#"]);
        assert!(matches!(list.find(&ctx), Found::List(_)));
    }

    #[test]
    fn thing_values_resolve_only_when_the_thing_is_attached() {
        let mut thing = ThingContext {
            name: "bulb".into(),
            thing_type: Some("Lamp".into()),
            ..ThingContext::default()
        };
        thing.attributes.insert("floor".into(), "3".into());
        let mut ctx = Context {
            thing: Some(thing),
            ..Context::default()
        };
        let keys = [
            ContextKey::ThingName,
            ContextKey::ThingTypeName,
            ContextKey::ThingAttribute("floor".into()),
        ];
        for k in &keys {
            assert_eq!(k.find(&ctx), Found::Missing, "{k}");
        }
        assert_eq!(ContextKey::ThingIsAttached.find(&ctx), Found::Bool(false));
        if let Some(t) = ctx.thing.as_mut() {
            t.attached = true;
        }
        assert_eq!(keys[0].substitute(&ctx, false), Some("bulb"));
        assert_eq!(keys[1].substitute(&ctx, false), Some("Lamp"));
        assert_eq!(keys[2].substitute(&ctx, false), Some("3"));
        assert_eq!(ContextKey::ThingIsAttached.find(&ctx), Found::Bool(true));
    }

    #[test]
    fn certificate_values_with_wildcards_or_too_long_are_not_substituted() {
        let mut cert = CertificateContext::default();
        cert.subject
            .insert("CommonName".into(), vec!["a*".into(), "ok".into()]);
        cert.subject.insert("Title".into(), vec!["x".repeat(1025)]);
        cert.subject
            .insert("Surname".into(), vec!["y".repeat(1024)]);
        let ctx = Context {
            certificate: Some(cert),
            ..Context::default()
        };
        let cn0 = ContextKey::parse("iot:Certificate.Subject.CommonName");
        let cn1 = ContextKey::parse("iot:Certificate.Subject.CommonName.1");
        let title = ContextKey::parse("iot:Certificate.Subject.Title");
        let surname = ContextKey::parse("iot:Certificate.Subject.Surname");
        assert_eq!(cn0.substitute(&ctx, false), None);
        assert_eq!(cn1.substitute(&ctx, false), Some("ok"));
        assert_eq!(title.substitute(&ctx, false), None);
        assert_eq!(surname.substitute(&ctx, false).map(str::len), Some(1024));
    }

    #[test]
    fn strict_mode_refuses_wildcard_client_ids() {
        let ctx = Context {
            client_id: Some("+".into()),
            thing: Some(ThingContext {
                name: "#".into(),
                attached: true,
                ..ThingContext::default()
            }),
            ..Context::default()
        };
        assert_eq!(ContextKey::ClientId.substitute(&ctx, false), Some("+"));
        assert_eq!(ContextKey::ClientId.substitute(&ctx, true), None);
        assert_eq!(ContextKey::ThingName.substitute(&ctx, false), Some("#"));
        assert_eq!(ContextKey::ThingName.substitute(&ctx, true), None);
    }
}
