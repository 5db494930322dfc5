//! Certificate IDs, certificate statuses and the AWS IoT state machine, and the policy view of a
//! certificate ([`policy_certificate`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thingkit_policy::MAX_CERTIFICATE_VALUES;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::x509::X509Name;

use crate::error::{Error, Result};

/// The AWS IoT certificate ID: the lowercase hex SHA-256 of the certificate's DER encoding.
///
/// It is stored as the 32 raw digest bytes; [`fmt::Display`] and [`FromStr`] use the 64-character
/// lowercase hex form that AWS prints.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertificateId([u8; 32]);

impl CertificateId {
    /// The ID of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut id = [0u8; 32];
        id.copy_from_slice(digest.as_ref());
        CertificateId(id)
    }

    /// The ID of a certificate given as PEM (`CERTIFICATE`) or DER, after checking that it
    /// parses as an X.509 certificate with nothing trailing. Input over 64 KiB is refused.
    pub fn of_certificate(input: &[u8]) -> Result<Self> {
        with_certificate(input, |der, _| Ok(CertificateId::of_der(der)))
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds an ID from 32 digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        CertificateId(bytes)
    }
}

impl CertificateId {
    /// The 64 lowercase hex digits, without allocating.
    pub fn to_hex(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        hex::encode_to_slice(self.0, &mut out)
            .expect("64 bytes of output hold the hex of 32 bytes of digest");
        out
    }
}

impl fmt::Display for CertificateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for CertificateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateId({self})")
    }
}

impl FromStr for CertificateId {
    type Err = Error;

    /// Parses exactly 64 lowercase hex digits, as AWS prints them.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidName {
            kind: "certificate ID",
            name: s.chars().take(80).collect(),
            rule: "must be 64 lowercase hex digits",
        };
        // `hex` accepts either case; AWS prints, and we accept, lowercase only.
        if s.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut id = [0u8; 32];
        hex::decode_to_slice(s, &mut id).map_err(|_| bad())?;
        Ok(CertificateId(id))
    }
}

impl Serialize for CertificateId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CertificateId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The six AWS IoT certificate statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    /// The certificate may connect.
    Active,
    /// Disabled by the operator; can be activated again.
    Inactive,
    /// Revoked: terminal, the certificate can never be used again.
    Revoked,
    /// Being transferred to another account; only accept/reject/cancel change it.
    PendingTransfer,
    /// Registered inactive (deprecated by AWS, accepted on registration).
    RegisterInactive,
    /// Registered by CA auto-registration on first connect; waits for the operator to activate it.
    PendingActivation,
}

impl CertificateStatus {
    /// All six statuses.
    pub const ALL: [CertificateStatus; 6] = [
        CertificateStatus::Active,
        CertificateStatus::Inactive,
        CertificateStatus::Revoked,
        CertificateStatus::PendingTransfer,
        CertificateStatus::RegisterInactive,
        CertificateStatus::PendingActivation,
    ];

    /// The AWS spelling, e.g. `PENDING_ACTIVATION`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Active => "ACTIVE",
            CertificateStatus::Inactive => "INACTIVE",
            CertificateStatus::Revoked => "REVOKED",
            CertificateStatus::PendingTransfer => "PENDING_TRANSFER",
            CertificateStatus::RegisterInactive => "REGISTER_INACTIVE",
            CertificateStatus::PendingActivation => "PENDING_ACTIVATION",
        }
    }

    /// Whether a user may request this status with `UpdateCertificate` (only ACTIVE, INACTIVE and
    /// REVOKED; the others are set by the service itself).
    pub fn user_settable(self) -> bool {
        matches!(
            self,
            CertificateStatus::Active | CertificateStatus::Inactive | CertificateStatus::Revoked
        )
    }

    /// Whether `UpdateCertificate` may move a certificate from `self` to `to`.
    ///
    /// The table: REVOKED is terminal; PENDING_TRANSFER only leaves through the transfer
    /// operations; a user may only request ACTIVE, INACTIVE or REVOKED; from ACTIVE, INACTIVE,
    /// REGISTER_INACTIVE and PENDING_ACTIVATION every user-settable status is allowed (setting the
    /// current status again is an allowed no-op).
    pub fn user_transition_allowed(self, to: CertificateStatus) -> bool {
        if !to.user_settable() {
            return false;
        }
        match self {
            CertificateStatus::Revoked | CertificateStatus::PendingTransfer => false,
            CertificateStatus::Active
            | CertificateStatus::Inactive
            | CertificateStatus::RegisterInactive
            | CertificateStatus::PendingActivation => true,
        }
    }

    /// Whether a certificate in this status may be deleted (AWS: not ACTIVE, not PENDING_TRANSFER).
    pub fn deletable(self) -> bool {
        !matches!(
            self,
            CertificateStatus::Active | CertificateStatus::PendingTransfer
        )
    }
}

impl fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertificateStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        CertificateStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::InvalidName {
                kind: "certificate status",
                name: s.chars().take(40).collect(),
                rule: "must be one of ACTIVE, INACTIVE, REVOKED, PENDING_TRANSFER, REGISTER_INACTIVE, PENDING_ACTIVATION",
            })
    }
}

/// The status of a registered CA certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaStatus {
    /// Certificates it signed may connect.
    Active,
    /// Certificates it signed are refused.
    Inactive,
}

impl fmt::Display for CaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaStatus::Active => "ACTIVE",
            CaStatus::Inactive => "INACTIVE",
        })
    }
}

/// The largest serial number [`policy_certificate`] converts, in bytes. RFC 5280 §4.1.2.2 allows
/// 20 octets; longer serials from non-conforming issuers are read up to this size.
pub const MAX_SERIAL_BYTES: usize = 64;

/// The distinguished-name attributes AWS IoT exposes as `iot:Certificate.Subject.<name>` and
/// `iot:Certificate.Issuer.<name>` (AWS IoT Core Developer Guide, *X.509 certificate policy
/// variables*), by attribute type OID (RFC 4519 / X.520).
const DN_ATTRIBUTES: &[(&str, &str)] = &[
    ("2.5.4.6", "Country"),
    ("2.5.4.10", "Organization"),
    ("2.5.4.11", "OrganizationalUnit"),
    ("2.5.4.46", "DistinguishedNameQualifier"),
    ("2.5.4.8", "State"),
    ("2.5.4.3", "CommonName"),
    ("2.5.4.5", "SerialNumber"),
    ("2.5.4.12", "Title"),
    ("2.5.4.4", "Surname"),
    ("2.5.4.42", "GivenName"),
    ("2.5.4.43", "Initials"),
    ("2.5.4.65", "Pseudonym"),
    ("2.5.4.44", "GenerationQualifier"),
];

/// RFC 4514 §3 attribute type names, lowercased as AWS prints them in `DirectoryName` values.
const RFC4514_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "cn"),
    ("2.5.4.7", "l"),
    ("2.5.4.8", "st"),
    ("2.5.4.10", "o"),
    ("2.5.4.11", "ou"),
    ("2.5.4.6", "c"),
    ("2.5.4.9", "street"),
    ("0.9.2342.19200300.100.1.25", "dc"),
    ("0.9.2342.19200300.100.1.1", "uid"),
];

/// The policy view of a client certificate: what AWS IoT policy variables and condition keys
/// (`iot:CertificateId`, `iot:Certificate.*`) read, for
/// [`thingkit_policy::Context::certificate`].
///
/// `input` is a DER or PEM (`CERTIFICATE`) certificate of at most 64 KiB with nothing trailing.
/// It fills, following the AWS IoT Core Developer Guide pages *X.509 certificate policy
/// variables* and *Using X.509 certificate policy variables*:
///
/// - `id`: the [`CertificateId`] (lowercase hex SHA-256 of the DER);
/// - `serial_number`: the serial as a decimal integer ("AWS IoT Core treats the certificate
///   serial number as the string representation of a decimal integer": serial
///   `92:12:85:cb:b7:a5:e0:86` is `10525622389124227206`), any length up to
///   [`MAX_SERIAL_BYTES`]; the DER integer's bytes are read as unsigned;
/// - `subject` and `issuer`: the thirteen attributes the guide lists (`Country`,
///   `Organization`, `OrganizationalUnit`, `DistinguishedNameQualifier`, `State`, `CommonName`,
///   `SerialNumber`, `Title`, `Surname`, `GivenName`, `Initials`, `Pseudonym`,
///   `GenerationQualifier`), each a list of values in certificate order. Other attributes
///   (locality, e-mail address, ...) are not policy variables and are left out, as are values
///   that are not strings;
/// - `subject_alternative_name` and `issuer_alternative_name`: `DNSName`, `RFC822Name`,
///   `UniformResourceIdentifier`, `IPAddress` (as text: `1.2.3.4`, `2001:db8::1`) and
///   `DirectoryName`, rendered as the guide shows (`DirName:/C=US/O=IoT/OU=SmartHome/CN=LightBulbCert`
///   becomes `cn=LightBulbCert,ou=SmartHome,o=IoT,c=US`: RFC 4514 order and escaping, lowercase
///   type names). Other name forms are left out.
///
/// Every list keeps at most [`MAX_CERTIFICATE_VALUES`] (five) values — "Certificate attributes
/// that contain arrays are limited to five items. Additional items are ignored." Values are
/// kept as written; the policy crate leaves a variable unresolved when its value contains
/// `* $ + ? #` or is longer than 1024 characters.
pub fn policy_certificate(input: &[u8]) -> Result<thingkit_policy::CertificateContext> {
    with_certificate(input, |der, cert| {
        let malformed = |detail: String| Error::Malformed {
            what: "certificate",
            detail,
        };
        let serial = cert.raw_serial();
        let serial_number = decimal(serial).ok_or_else(|| {
            malformed(format!(
                "the serial number is {} bytes, more than {MAX_SERIAL_BYTES}",
                serial.len()
            ))
        })?;
        let subject_alternative_name = match cert.subject_alternative_name() {
            Ok(Some(san)) => alternative_names(&san.value.general_names),
            Ok(None) => BTreeMap::new(),
            Err(e) => return Err(malformed(format!("subject alternative name: {e}"))),
        };
        Ok(thingkit_policy::CertificateContext {
            id: Some(CertificateId::of_der(der).to_string()),
            serial_number: Some(serial_number),
            subject: name_attributes(cert.subject()),
            issuer: name_attributes(cert.issuer()),
            subject_alternative_name,
            issuer_alternative_name: issuer_alternative_names(cert).map_err(malformed)?,
        })
    })
}

/// Runs `f` on a certificate given as PEM (`CERTIFICATE`) or DER, with its DER bytes, after
/// checking that it parses as X.509 with nothing trailing. Input over 64 KiB is refused.
fn with_certificate<T>(
    input: &[u8],
    f: impl FnOnce(&[u8], &x509_parser::certificate::X509Certificate<'_>) -> Result<T>,
) -> Result<T> {
    const LIMIT: usize = 64 * 1024;
    if input.len() > LIMIT {
        return Err(Error::TooLarge {
            what: "certificate",
            actual: input.len(),
            limit: LIMIT,
        });
    }
    let der = crate::pem::decode_if_pem(input, &["CERTIFICATE"])?;
    let malformed = |detail: String| Error::Malformed {
        what: "certificate",
        detail,
    };
    match x509_parser::parse_x509_certificate(&der) {
        Ok(([], cert)) => f(&der, &cert),
        Ok((rest, _)) => Err(malformed(format!("{} trailing bytes", rest.len()))),
        Err(e) => Err(malformed(e.to_string())),
    }
}

/// The unsigned big-endian integer `bytes` in decimal, or `None` when it is longer than
/// [`MAX_SERIAL_BYTES`] (after leading zero bytes).
fn decimal(bytes: &[u8]) -> Option<String> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let mut n: Vec<u8> = bytes.get(start..).unwrap_or_default().to_vec();
    if n.len() > MAX_SERIAL_BYTES {
        return None;
    }
    // Schoolbook division by 10^9, collecting base-10^9 limbs from the least significant.
    const BASE: u64 = 1_000_000_000;
    let mut limbs: Vec<u32> = Vec::new();
    while !n.is_empty() {
        let mut rem: u64 = 0;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u64::from(*b);
            *b = u8::try_from(cur / BASE).expect("quotient digit < 256: rem < BASE");
            rem = cur % BASE;
        }
        limbs.push(u32::try_from(rem).expect("remainder < 10^9"));
        let zeros = n.iter().take_while(|b| **b == 0).count();
        n.drain(..zeros);
    }
    let mut out = match limbs.pop() {
        Some(top) => top.to_string(),
        None => return Some("0".to_owned()),
    };
    for limb in limbs.iter().rev() {
        out.push_str(&format!("{limb:09}"));
    }
    Some(out)
}

fn oid_name(oid: &str, table: &[(&'static str, &'static str)]) -> Option<&'static str> {
    table.iter().find(|(o, _)| *o == oid).map(|(_, n)| *n)
}

fn push_limited(map: &mut BTreeMap<String, Vec<String>>, name: &str, value: String) {
    let values = map.entry(name.to_owned()).or_default();
    if values.len() < MAX_CERTIFICATE_VALUES {
        values.push(value);
    }
}

/// The AWS-named attributes of a distinguished name, multi-valued, in certificate order.
fn name_attributes(name: &X509Name<'_>) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for atv in name.iter_attributes() {
        let oid = atv.attr_type().to_id_string();
        if let (Some(aws), Ok(value)) = (oid_name(&oid, DN_ATTRIBUTES), atv.as_str()) {
            push_limited(&mut out, aws, value.to_owned());
        }
    }
    out
}

/// A directory name as AWS prints it: RFC 4514 (last RDN first, `,` between RDNs, `+` inside
/// one, special characters escaped), with lowercase type names (`cn=..,ou=..,o=..,c=..`).
/// Attribute types without an RFC 4514 name are written as their dotted OID; values that are not
/// strings are left out.
fn directory_name(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .filter_map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let value = atv.as_str().ok()?;
                    let ty = oid_name(&oid, RFC4514_NAMES).map_or(oid.clone(), str::to_owned);
                    Some(format!("{ty}={}", escape_dn_value(value)))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .filter(|rdn| !rdn.is_empty())
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 4514 §2.4 escaping; the guide lists the same characters (`, " \ + = < > ;`).
fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '"' | '\\' | '+' | '=' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The AWS-named values of an alternative-name extension, in certificate order.
fn alternative_names(names: &[GeneralName<'_>]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for name in names {
        let (key, value) = match name {
            GeneralName::DNSName(v) => ("DNSName", (*v).to_owned()),
            GeneralName::RFC822Name(v) => ("RFC822Name", (*v).to_owned()),
            GeneralName::URI(v) => ("UniformResourceIdentifier", (*v).to_owned()),
            GeneralName::IPAddress(bytes) => match *bytes {
                [a, b, c, d] => ("IPAddress", Ipv4Addr::new(*a, *b, *c, *d).to_string()),
                _ => match <[u8; 16]>::try_from(*bytes) {
                    Ok(v6) => ("IPAddress", Ipv6Addr::from(v6).to_string()),
                    Err(_) => continue,
                },
            },
            GeneralName::DirectoryName(dn) => ("DirectoryName", directory_name(dn)),
            _ => continue,
        };
        push_limited(&mut out, key, value);
    }
    out
}

/// The issuer alternative name extension (RFC 5280 §4.2.1.7), which must appear at most once.
fn issuer_alternative_names(
    cert: &X509Certificate<'_>,
) -> std::result::Result<BTreeMap<String, Vec<String>>, String> {
    let mut found = None;
    for ext in cert.extensions() {
        if let ParsedExtension::IssuerAlternativeName(ian) = ext.parsed_extension() {
            if found.is_some() {
                return Err("the issuer alternative name extension appears twice".to_owned());
            }
            found = Some(alternative_names(&ian.general_names));
        }
    }
    Ok(found.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers_convert_to_decimal_without_overflow() {
        // The guide's example: 92:12:85:cb:b7:a5:e0:86.
        let aws = [0x92, 0x12, 0x85, 0xcb, 0xb7, 0xa5, 0xe0, 0x86];
        assert_eq!(decimal(&aws).as_deref(), Some("10525622389124227206"));
        // The DER form carries a leading zero byte; it changes nothing.
        let with_zero = [&[0u8][..], &aws[..]].concat();
        assert_eq!(decimal(&with_zero).as_deref(), Some("10525622389124227206"));
        assert_eq!(decimal(&[]).as_deref(), Some("0"));
        assert_eq!(decimal(&[0, 0]).as_deref(), Some("0"));
        assert_eq!(decimal(&[1]).as_deref(), Some("1"));
        // Limb boundaries: 10^9 and 10^9 - 1.
        assert_eq!(
            decimal(&[0x3b, 0x9a, 0xca, 0x00]).as_deref(),
            Some("1000000000")
        );
        assert_eq!(
            decimal(&[0x3b, 0x9a, 0xc9, 0xff]).as_deref(),
            Some("999999999")
        );
        // 2^160 - 1: the largest 20-byte serial.
        assert_eq!(
            decimal(&[0xff; 20]).as_deref(),
            Some("1461501637330902918203684832716283019655932542975")
        );
        assert_eq!(
            decimal(&[0xff; MAX_SERIAL_BYTES]).map(|s| s.len()),
            Some(155)
        );
        assert_eq!(decimal(&[0xff; MAX_SERIAL_BYTES + 1]), None);
    }

    #[test]
    fn directory_name_values_are_escaped_as_rfc_4514_and_the_guide_say() {
        assert_eq!(escape_dn_value("a,b=c+d"), "a\\,b\\=c\\+d");
        assert_eq!(escape_dn_value("#x "), "\\#x\\ ");
        assert_eq!(escape_dn_value("plain"), "plain");
    }

    #[test]
    fn certificate_id_is_lowercase_hex_sha256_of_der() {
        // SHA-256("abc")
        let id = CertificateId::of_der(b"abc");
        assert_eq!(
            id.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(id.to_string().parse::<CertificateId>().unwrap(), id);
    }

    #[test]
    fn certificate_id_parse_rejects_uppercase_and_wrong_length() {
        assert!("AB".repeat(32).parse::<CertificateId>().is_err());
        assert!("ab".repeat(31).parse::<CertificateId>().is_err());
        assert!("zz".repeat(32).parse::<CertificateId>().is_err());
    }

    #[test]
    fn revoked_is_terminal_and_only_three_statuses_are_user_settable() {
        for to in CertificateStatus::ALL {
            assert!(!CertificateStatus::Revoked.user_transition_allowed(to));
            assert!(!CertificateStatus::PendingTransfer.user_transition_allowed(to));
        }
        let settable: Vec<_> = CertificateStatus::ALL
            .into_iter()
            .filter(|s| s.user_settable())
            .collect();
        assert_eq!(
            settable,
            [
                CertificateStatus::Active,
                CertificateStatus::Inactive,
                CertificateStatus::Revoked
            ]
        );
    }

    #[test]
    fn status_round_trips_through_aws_spelling() {
        for s in CertificateStatus::ALL {
            assert_eq!(s.as_str().parse::<CertificateStatus>().unwrap(), s);
        }
    }
}
