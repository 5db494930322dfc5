//! Context keys: the names used in policy variables (`${iot:ClientId}`) and condition blocks
//! (`"iot:Connection.Thing.IsAttached": "true"`), and how each reads a [`Context`].

use std::fmt;

use crate::context::{Context, attribute};

/// Which certificate name a `iot:Certificate.<Part>.<Attribute>` key reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertPart {
    /// `Subject` distinguished name.
    Subject,
    /// `Issuer` distinguished name.
    Issuer,
    /// `SubjectAltName`.
    SubjectAltName,
    /// `IssuerAltName`.
    IssuerAltName,
}

impl CertPart {
    fn name(self) -> &'static str {
        match self {
            CertPart::Subject => "Subject",
            CertPart::Issuer => "Issuer",
            CertPart::SubjectAltName => "SubjectAltName",
            CertPart::IssuerAltName => "IssuerAltName",
        }
    }
}

/// Which values of a multi-valued certificate attribute a key selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Select {
    /// The plain name: the first value.
    First,
    /// `.N`: the N-th value, 1-based.
    Index(usize),
    /// `.List`: all values (condition keys only).
    List,
}

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

    fn is_certificate(&self) -> bool {
        matches!(
            self,
            ContextKey::Certificate { .. }
                | ContextKey::CertificateId
                | ContextKey::CertificateSerialNumber
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
            ContextKey::ThingName => ctx
                .thing
                .as_ref()
                .map_or(Found::Missing, |t| Found::Str(&t.name)),
            ContextKey::ThingTypeName => ctx
                .thing
                .as_ref()
                .and_then(|t| t.thing_type.as_deref())
                .map_or(Found::Missing, Found::Str),
            ContextKey::ThingAttribute(a) => ctx
                .thing
                .as_ref()
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
                .map_or(Found::Missing, Found::Str),
            ContextKey::CertificateSerialNumber => ctx
                .certificate
                .as_ref()
                .and_then(|c| c.serial_number.as_deref())
                .map_or(Found::Missing, Found::Str),
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
                    CertPart::SubjectAltName => &cert.subject_alt_name,
                    CertPart::IssuerAltName => &cert.issuer_alt_name,
                };
                let Some(values) = attribute(map, attr) else {
                    return Found::Missing;
                };
                match select {
                    Select::List if values.is_empty() => Found::Missing,
                    Select::List => Found::List(values),
                    Select::First => values.first().map_or(Found::Missing, |v| Found::Str(v)),
                    Select::Index(n) => n
                        .checked_sub(1)
                        .and_then(|i| values.get(i))
                        .map_or(Found::Missing, |v| Found::Str(v)),
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
            Found::Missing | Found::List(_) | Found::Time(_) => return None,
        };
        if self.is_certificate()
            && (value.chars().count() > 1024 || value.contains(['*', '$', '+', '?', '#']))
        {
            return None;
        }
        if strict && self.is_client_controlled() && value.contains(['+', '#', '*', '?']) {
            return None;
        }
        Some(value)
    }
}

fn parse_certificate(rest: &str) -> Option<ContextKey> {
    let (part_name, tail) = rest.split_once('.')?;
    let part = [
        CertPart::Subject,
        CertPart::Issuer,
        CertPart::SubjectAltName,
        CertPart::IssuerAltName,
    ]
    .into_iter()
    .find(|p| p.name().eq_ignore_ascii_case(part_name))?;
    let (attr_name, select) = match tail.split_once('.') {
        None => (tail, Select::First),
        Some((a, s)) if s.eq_ignore_ascii_case("List") => (a, Select::List),
        Some((a, s)) => {
            let n: usize = s.parse().ok().filter(|n| *n >= 1)?;
            if !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (a, Select::Index(n))
        }
    };
    let table = match part {
        CertPart::Subject | CertPart::Issuer => DN_ATTRIBUTES,
        CertPart::SubjectAltName | CertPart::IssuerAltName => ALT_NAME_ATTRIBUTES,
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
    use crate::context::{Certificate, Thing};

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
            "iot:Certificate.Subject.CommonName.0",
            "iot:Connection.Thing.Attributes[]",
        ] {
            assert!(!ContextKey::parse(name).is_known(), "{name}");
        }
    }

    #[test]
    fn certificate_values_with_wildcards_or_too_long_are_not_substituted() {
        let mut cert = Certificate::default();
        cert.subject
            .insert("CommonName".into(), vec!["a*".into(), "ok".into()]);
        cert.subject.insert("Title".into(), vec!["x".repeat(1025)]);
        let ctx = Context {
            certificate: Some(cert),
            ..Context::default()
        };
        let cn1 = ContextKey::parse("iot:Certificate.Subject.CommonName");
        let cn2 = ContextKey::parse("iot:Certificate.Subject.CommonName.2");
        let title = ContextKey::parse("iot:Certificate.Subject.Title");
        assert_eq!(cn1.substitute(&ctx, false), None);
        assert_eq!(cn2.substitute(&ctx, false), Some("ok"));
        assert_eq!(title.substitute(&ctx, false), None);
    }

    #[test]
    fn strict_mode_refuses_wildcard_client_ids() {
        let ctx = Context {
            client_id: Some("+".into()),
            thing: Some(Thing {
                name: "#".into(),
                ..Thing::default()
            }),
            ..Context::default()
        };
        assert_eq!(ContextKey::ClientId.substitute(&ctx, false), Some("+"));
        assert_eq!(ContextKey::ClientId.substitute(&ctx, true), None);
        assert_eq!(ContextKey::ThingName.substitute(&ctx, true), None);
    }
}
