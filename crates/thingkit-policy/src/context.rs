//! The facts about a connection that policy variables and condition keys read.

use std::collections::BTreeMap;

/// Everything the broker knows about the client making a request. Every field is optional: a
/// variable or condition key whose value is absent is *missing* (see the crate docs for what that
/// means for matching).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The MQTT client ID (`iot:ClientId`).
    pub client_id: Option<String>,
    /// The client's IP address as text (`aws:SourceIp`), e.g. `203.0.113.7` or `2001:db8::1`.
    pub source_ip: Option<String>,
    /// The domain name the client connected to (`iot:DomainName`).
    pub domain_name: Option<String>,
    /// The registry thing whose name is the client ID (`iot:Connection.Thing.*`). Its name, type
    /// and attributes resolve only when [`ThingContext::attached`] is true; otherwise they are missing,
    /// so a client cannot borrow the permissions of a thing its certificate is not attached to.
    pub thing: Option<ThingContext>,
    /// The client's X.509 certificate (`iot:CertificateId`, `iot:Certificate.*`).
    pub certificate: Option<CertificateContext>,
    /// MQTT 5 connect attributes (`iot:ConnectAttributes`), e.g. `PersistentConnect`, `LastWill`.
    pub connect_attributes: Vec<String>,
    /// The last-will topic of the CONNECT packet (`iot:LastWillTopic`).
    pub last_will_topic: Option<String>,
    /// The current time in seconds since the Unix epoch (`aws:CurrentTime`, `aws:EpochTime`).
    pub current_time: Option<i64>,
}

/// A registry thing (`iot:Connection.Thing.*`).
///
/// AWS IoT Core Developer Guide, *Thing policy variables*: the thing variables resolve only when
/// the thing is attached to the certificate the client connected with; "otherwise the variable
/// won't be resolved". So every key except `IsAttached` is missing while `attached` is false.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThingContext {
    /// `iot:Connection.Thing.ThingName`.
    pub name: String,
    /// `iot:Connection.Thing.ThingTypeName`.
    pub thing_type: Option<String>,
    /// `iot:Connection.Thing.Attributes[name]`.
    pub attributes: BTreeMap<String, String>,
    /// `iot:Connection.Thing.IsAttached`: whether the thing is attached to the certificate used.
    /// Read by `IsAttached` in any case; the other thing keys resolve only when it is true.
    pub attached: bool,
}

/// The client certificate's attributes (`iot:Certificate.*`).
///
/// Distinguished-name and alternative-name attributes are multi-valued lists, in certificate
/// order, keyed by the AWS attribute name: `Country`, `Organization`, `OrganizationalUnit`,
/// `DistinguishedNameQualifier`, `State`, `CommonName`, `SerialNumber`, `Title`, `Surname`,
/// `GivenName`, `Initials`, `Pseudonym`, `GenerationQualifier` for names; `DNSName`,
/// `RFC822Name`, `UniformResourceIdentifier`, `IPAddress` (as text, e.g. `1.2.3.4`) and
/// `DirectoryName` (as `cn=..,ou=..,o=..,c=..`) for alternative names. Only the first five values
/// of each list are visible to policies; a value containing `* $ + ? #` or longer than 1024
/// characters leaves its variable unresolved (AWS IoT Core Developer Guide, *X.509 certificate
/// policy variables*). `thingkit_provision::policy_certificate` builds one from a DER
/// certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateContext {
    /// `iot:CertificateId`: the certificate's ID (hex SHA-256 of its DER).
    pub id: Option<String>,
    /// `iot:Certificate.SerialNumber`: the serial number as a decimal integer, e.g.
    /// `10525622389124227206` for serial `92:12:85:cb:b7:a5:e0:86` (AWS: "the string
    /// representation of a decimal integer").
    pub serial_number: Option<String>,
    /// `iot:Certificate.Subject.<attribute>`.
    pub subject: BTreeMap<String, Vec<String>>,
    /// `iot:Certificate.Issuer.<attribute>`.
    pub issuer: BTreeMap<String, Vec<String>>,
    /// `iot:Certificate.Subject.AlternativeName.<attribute>` (the subject alternative name
    /// extension).
    pub subject_alternative_name: BTreeMap<String, Vec<String>>,
    /// `iot:Certificate.Issuer.AlternativeName.<attribute>` (the issuer alternative name
    /// extension).
    pub issuer_alternative_name: BTreeMap<String, Vec<String>>,
}

impl Context {
    /// A context with only a client ID.
    pub fn with_client_id(client_id: impl Into<String>) -> Context {
        Context {
            client_id: Some(client_id.into()),
            ..Context::default()
        }
    }
}

/// Looks an attribute up by exact name, then ASCII case-insensitively (no allocation).
pub(crate) fn attribute<'c, V>(map: &'c BTreeMap<String, V>, name: &str) -> Option<&'c V> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}
