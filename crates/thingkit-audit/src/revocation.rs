//! Certificate revocation lists, read only after their signature checks out.

use std::collections::BTreeSet;

use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::error::Error;
use crate::key::trim_leading_zeros;

/// The largest CRL [`read_crl`] accepts by default: 1 MiB (about 30,000 entries).
pub const DEFAULT_MAX_CRL_BYTES: usize = 1 << 20;

/// The serial numbers a CA has revoked, from a CRL whose signature was verified with that CA's
/// key. It exists only after [`read_crl`] checked the signature and the issuer name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerials {
    ca_certificate_id: String,
    serials: BTreeSet<Vec<u8>>,
}

impl RevokedSerials {
    /// The CA that signed the CRL.
    pub fn ca_certificate_id(&self) -> &str {
        &self.ca_certificate_id
    }

    /// Whether a serial number (big-endian, leading zero bytes ignored) is revoked.
    pub fn contains(&self, serial_be: &[u8]) -> bool {
        self.serials.contains(trim_leading_zeros(serial_be))
    }

    /// The number of revoked serials.
    pub fn len(&self) -> usize {
        self.serials.len()
    }

    /// Whether the CRL revokes nothing.
    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }
}

/// Reads a DER CRL said to come from the CA `ca_der` (whose registry ID is
/// `ca_certificate_id`), in this order: size limit, DER parse (no trailing bytes), issuer name
/// equal to the CA's subject (RFC 5280 §6.3.3 (b)), signature verified with the CA's public key
/// (§6.3.3 (f)). Only then are the revoked serials read. `thisUpdate`/`nextUpdate` are not
/// checked: a revocation stays true in a stale CRL.
pub fn read_crl(
    crl_der: &[u8],
    ca_der: &[u8],
    ca_certificate_id: &str,
    max_bytes: usize,
) -> Result<RevokedSerials, Error> {
    let id = || ca_certificate_id.to_string();
    if crl_der.len() > max_bytes {
        return Err(Error::CrlTooLarge {
            ca_certificate_id: id(),
            len: crl_der.len(),
            limit: max_bytes,
        });
    }
    let (rest, ca) = X509Certificate::from_der(ca_der).map_err(|e| Error::Certificate {
        certificate_id: id(),
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(Error::Certificate {
            certificate_id: id(),
            reason: "trailing bytes after the certificate".into(),
        });
    }
    let (rest, crl) =
        CertificateRevocationList::from_der(crl_der).map_err(|e| Error::CrlParse {
            ca_certificate_id: id(),
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(Error::CrlParse {
            ca_certificate_id: id(),
            reason: "trailing bytes after the CRL".into(),
        });
    }
    if crl.issuer().as_raw() != ca.subject().as_raw() {
        return Err(Error::CrlIssuerMismatch {
            ca_certificate_id: id(),
        });
    }
    crl.verify_signature(ca.public_key())
        .map_err(|e| Error::CrlSignature {
            ca_certificate_id: id(),
            reason: e.to_string(),
        })?;
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| trim_leading_zeros(r.raw_serial()).to_vec())
        .collect();
    Ok(RevokedSerials {
        ca_certificate_id: id(),
        serials,
    })
}
