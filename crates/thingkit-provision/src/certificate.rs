//! Certificate IDs, certificate statuses and the AWS IoT state machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
        const LIMIT: usize = 64 * 1024;
        if input.len() > LIMIT {
            return Err(Error::TooLarge {
                what: "certificate",
                actual: input.len(),
                limit: LIMIT,
            });
        }
        let der = crate::pem::decode_if_pem(input, &["CERTIFICATE"])?;
        match x509_parser::parse_x509_certificate(&der) {
            Ok(([], _)) => Ok(CertificateId::of_der(&der)),
            Ok((rest, _)) => Err(Error::Malformed {
                what: "certificate",
                detail: format!("{} trailing bytes", rest.len()),
            }),
            Err(e) => Err(Error::Malformed {
                what: "certificate",
                detail: e.to_string(),
            }),
        }
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
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 15)];
        }
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
        if s.len() != 64 {
            return Err(bad());
        }
        let mut id = [0u8; 32];
        for (slot, pair) in id.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let hi = hex_digit(pair[0]).ok_or_else(bad)?;
            let lo = hex_digit(pair[1]).ok_or_else(bad)?;
            *slot = hi << 4 | lo;
        }
        Ok(CertificateId(id))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

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
