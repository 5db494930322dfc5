//! `policy_certificate`: the `iot:Certificate.*` policy context of real X.509 certificates, made
//! with rcgen, checked against the worked example of the AWS IoT Core Developer Guide page
//! *Using X.509 certificate policy variables* and used in policy decisions.

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, Issuer, KeyPair, SerialNumber,
};
use thingkit_policy::{ArnPrefix, Context, Decision, PolicyDocument, PolicySet};
use thingkit_provision::CertificateId;
use thingkit_provision::policy_certificate;

/// A DER TLV with a short or one/two-byte long length.
fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match body.len() {
        n @ 0..=127 => out.push(n as u8),
        n @ 128..=255 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(body);
    out
}

/// A `Name` of single-attribute RDNs, e.g. `[(OID_C, "US"), (OID_CN, "x")]`.
fn name(rdns: &[(&[u8], &str)]) -> Vec<u8> {
    let mut seq = Vec::new();
    for (oid, value) in rdns {
        let atv = [tlv(0x06, oid), tlv(0x0c, value.as_bytes())].concat();
        seq.extend(tlv(0x31, &tlv(0x30, &atv)));
    }
    tlv(0x30, &seq)
}

const OID_C: &[u8] = &[0x55, 0x04, 0x06];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
const OID_OU: &[u8] = &[0x55, 0x04, 0x0b];
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

/// `GeneralNames` with a DNS name, an IPv4 address, a URI, an e-mail address and a directory
/// name (RFC 5280 §4.2.1.6 tags).
fn general_names(dns: &str, ip: [u8; 4], uri: &str, email: &str, dir: &[(&[u8], &str)]) -> Vec<u8> {
    let names = [
        tlv(0x82, dns.as_bytes()),
        tlv(0x87, &ip),
        tlv(0x86, uri.as_bytes()),
        tlv(0x81, email.as_bytes()),
        tlv(0xa4, &name(dir)),
    ]
    .concat();
    tlv(0x30, &names)
}

fn dn(entries: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (ty, value) in entries {
        dn.push(ty.clone(), *value);
    }
    dn
}

fn custom(oid: &[u64]) -> DnType {
    DnType::CustomDnType(oid.to_vec())
}

/// The guide's example certificate: its issuer, subject, serial `92:12:85:cb:b7:a5:e0:86` and
/// both alternative names.
fn guide_example_certificate() -> Vec<u8> {
    let ca_key = KeyPair::generate().expect("key generation");
    let mut ca = CertificateParams::default();
    ca.distinguished_name = dn(&[
        (DnType::CountryName, "US"),
        (DnType::OrganizationName, "IoT Devices"),
        (DnType::OrganizationalUnitName, "SmartHome"),
        (DnType::StateOrProvinceName, "WA"),
        (DnType::CommonName, "IoT Devices Primary CA"),
        (custom(&[2, 5, 4, 42]), "Primary CA1"),
        (custom(&[2, 5, 4, 43]), "XY"),
        (custom(&[2, 5, 4, 46]), "Example corp"),
        (custom(&[2, 5, 4, 4]), "SmartHome"),
        (custom(&[2, 5, 4, 12]), "CA1"),
        (custom(&[2, 5, 4, 65]), "Primary_CA"),
        (custom(&[2, 5, 4, 44]), "2"),
        (custom(&[2, 5, 4, 5]), "987"),
    ]);
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().expect("key generation");
    let mut p = CertificateParams::default();
    p.serial_number = Some(SerialNumber::from_slice(&[
        0x92, 0x12, 0x85, 0xcb, 0xb7, 0xa5, 0xe0, 0x86,
    ]));
    p.distinguished_name = dn(&[
        (DnType::CountryName, "US"),
        (DnType::OrganizationName, "IoT Devices"),
        (DnType::OrganizationalUnitName, "LightBulb"),
        (DnType::StateOrProvinceName, "NY"),
        (DnType::CommonName, "LightBulb Device Cert"),
        (custom(&[2, 5, 4, 42]), "Bulb"),
        (custom(&[2, 5, 4, 43]), "ZZ"),
        (custom(&[2, 5, 4, 46]), "Bulb001"),
        (custom(&[2, 5, 4, 4]), "Multi Color"),
        (custom(&[2, 5, 4, 12]), "RGB"),
        (custom(&[2, 5, 4, 65]), "RGB Device"),
        (custom(&[2, 5, 4, 44]), "4"),
        (custom(&[2, 5, 4, 5]), "123"),
        (DnType::LocalityName, "Brooklyn"),
    ]);
    p.custom_extensions = vec![
        CustomExtension::from_oid_content(
            &[2, 5, 29, 17],
            general_names(
                "example.com",
                [1, 2, 3, 4],
                "ResourceIdentifier001",
                "device1@example.com",
                &[
                    (OID_C, "US"),
                    (OID_O, "IoT"),
                    (OID_OU, "SmartHome"),
                    (OID_CN, "LightBulbCert"),
                ],
            ),
        ),
        CustomExtension::from_oid_content(
            &[2, 5, 29, 18],
            general_names(
                "issuer.com",
                [5, 6, 7, 8],
                "PrimarySignerCA",
                "primary@issuer.com",
                &[
                    (OID_C, "US"),
                    (OID_O, "Issuer"),
                    (OID_OU, "IoT Devices"),
                    (OID_CN, "Primary Issuer CA"),
                ],
            ),
        ),
    ];
    p.signed_by(&key, &issuer)
        .expect("certificate signs")
        .der()
        .to_vec()
}

fn one(map: &std::collections::BTreeMap<String, Vec<String>>, key: &str) -> Vec<String> {
    map.get(key).cloned().unwrap_or_default()
}

#[test]
fn fills_the_guides_worked_example_tables() {
    let der = guide_example_certificate();
    let c = policy_certificate(&der).expect("valid certificate");
    assert_eq!(c.id, Some(CertificateId::of_der(&der).to_string()));
    // "Serial Number: 92:12:85:cb:b7:a5:e0:86" → "iot:Certificate.SerialNumber = 10525622389124227206"
    assert_eq!(c.serial_number.as_deref(), Some("10525622389124227206"));
    for (attr, want) in [
        ("Country", "US"),
        ("Organization", "IoT Devices"),
        ("OrganizationalUnit", "SmartHome"),
        ("State", "WA"),
        ("CommonName", "IoT Devices Primary CA"),
        ("GivenName", "Primary CA1"),
        ("Initials", "XY"),
        ("DistinguishedNameQualifier", "Example corp"),
        ("Surname", "SmartHome"),
        ("Title", "CA1"),
        ("Pseudonym", "Primary_CA"),
        ("GenerationQualifier", "2"),
        ("SerialNumber", "987"),
    ] {
        assert_eq!(one(&c.issuer, attr), [want], "issuer {attr}");
    }
    for (attr, want) in [
        ("Country", "US"),
        ("Organization", "IoT Devices"),
        ("OrganizationalUnit", "LightBulb"),
        ("State", "NY"),
        ("CommonName", "LightBulb Device Cert"),
        ("GivenName", "Bulb"),
        ("Initials", "ZZ"),
        ("DistinguishedNameQualifier", "Bulb001"),
        ("Surname", "Multi Color"),
        ("Title", "RGB"),
        ("Pseudonym", "RGB Device"),
        ("GenerationQualifier", "4"),
        ("SerialNumber", "123"),
    ] {
        assert_eq!(one(&c.subject, attr), [want], "subject {attr}");
    }
    // Locality is not one of the guide's policy variables.
    assert_eq!(c.subject.len(), 13, "{:?}", c.subject.keys());
    for (attr, want) in [
        ("DNSName", "example.com"),
        ("IPAddress", "1.2.3.4"),
        ("UniformResourceIdentifier", "ResourceIdentifier001"),
        ("RFC822Name", "device1@example.com"),
        ("DirectoryName", "cn=LightBulbCert,ou=SmartHome,o=IoT,c=US"),
    ] {
        assert_eq!(one(&c.subject_alternative_name, attr), [want], "SAN {attr}");
    }
    for (attr, want) in [
        ("DNSName", "issuer.com"),
        ("IPAddress", "5.6.7.8"),
        ("UniformResourceIdentifier", "PrimarySignerCA"),
        ("RFC822Name", "primary@issuer.com"),
        (
            "DirectoryName",
            "cn=Primary Issuer CA,ou=IoT Devices,o=Issuer,c=US",
        ),
    ] {
        assert_eq!(one(&c.issuer_alternative_name, attr), [want], "IAN {attr}");
    }
}

/// A device certificate with a 20-byte serial and two organizational units (rcgen keeps one
/// value per type, so the second OU is written through its OID as a custom type).
fn device_certificate(cn: &str, serial: &[u8]) -> Vec<u8> {
    let key = KeyPair::generate().expect("key generation");
    let mut p =
        CertificateParams::new(vec!["bulb.devices.example".to_string()]).expect("valid SAN");
    p.serial_number = Some(SerialNumber::from_slice(serial));
    p.distinguished_name = dn(&[
        (DnType::OrganizationalUnitName, "Lighting"),
        (custom(&[2, 5, 4, 11]), "Floor 3"),
        (DnType::CommonName, cn),
    ]);
    p.self_signed(&key)
        .expect("certificate signs")
        .der()
        .to_vec()
}

const SERIAL_20: [u8; 20] = [
    0x7f, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5,
    0xa5, 0xa5, 0xa5, 0xa5,
];
/// `0x7fa5a5...a5` (20 bytes) in decimal.
const SERIAL_20_DECIMAL: &str = "728735880746337162799171894989506928458955335077";

#[test]
fn converts_a_twenty_byte_serial_and_keeps_multi_valued_attributes_in_order() {
    let c = policy_certificate(&device_certificate("bulb-1", &SERIAL_20)).expect("valid");
    assert_eq!(c.serial_number.as_deref(), Some(SERIAL_20_DECIMAL));
    assert_eq!(
        one(&c.subject, "OrganizationalUnit"),
        ["Lighting", "Floor 3"]
    );
    assert_eq!(one(&c.subject, "CommonName"), ["bulb-1"]);
    assert_eq!(
        one(&c.subject_alternative_name, "DNSName"),
        ["bulb.devices.example"]
    );
}

#[test]
fn keeps_at_most_five_values_of_an_alternative_name() {
    let key = KeyPair::generate().expect("key generation");
    let names: Vec<String> = (0..7).map(|i| format!("n{i}.example")).collect();
    let p = CertificateParams::new(names).expect("valid SANs");
    let der = p.self_signed(&key).expect("signs").der().to_vec();
    let c = policy_certificate(&der).expect("valid");
    assert_eq!(
        one(&c.subject_alternative_name, "DNSName"),
        [
            "n0.example",
            "n1.example",
            "n2.example",
            "n3.example",
            "n4.example"
        ]
    );
}

#[test]
fn refuses_garbage_trailing_bytes_and_oversized_input() {
    assert!(policy_certificate(b"not a certificate").is_err());
    let mut der = device_certificate("x", &[1]);
    der.push(0);
    assert!(policy_certificate(&der).is_err());
    assert!(policy_certificate(&vec![0x30; 70_000]).is_err());
}

#[test]
fn a_policy_decides_on_the_common_name_and_the_decimal_serial() {
    let policy = PolicyDocument::parse(
        r#"{"Version": "2012-10-17", "Statement": [
          {"Effect": "Allow", "Action": "iot:Connect",
           "Resource": "arn:aws:iot:us-east-1:123456789012:client/${iot:Certificate.SerialNumber}"},
          {"Effect": "Allow", "Action": "iot:Publish",
           "Resource": "arn:aws:iot:us-east-1:123456789012:topic/lights/${iot:Certificate.Subject.CommonName}/*",
           "Condition": {"ForAllValues:StringEquals": {
             "iot:Certificate.Subject.OrganizationalUnit.List": ["Lighting", "Floor 3"]}}}]}"#,
    )
    .expect("valid policy");
    let mut set = PolicySet::new();
    set.add("device", &policy).expect("unique name");
    let arn = ArnPrefix::new("aws", "us-east-1", "123456789012").expect("valid prefix");
    let certificate = policy_certificate(&device_certificate("bulb-1", &SERIAL_20)).expect("valid");
    let ctx = Context {
        client_id: Some(SERIAL_20_DECIMAL.to_string()),
        certificate: Some(certificate),
        ..Context::default()
    };
    assert_eq!(
        set.decide(&arn.connect(SERIAL_20_DECIMAL), &ctx),
        Decision::Allow
    );
    // The hex form of the serial is not the client ID the policy allows.
    assert_eq!(
        set.decide(
            &arn.connect("7fa5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"),
            &ctx
        ),
        Decision::ImplicitDeny
    );
    assert_eq!(
        set.decide(&arn.publish("lights/bulb-1/state", false), &ctx),
        Decision::Allow
    );
    assert_eq!(
        set.decide(&arn.publish("lights/bulb-2/state", false), &ctx),
        Decision::ImplicitDeny
    );
}
