//! AWS Signature Version 4 verification and signing ([`verify`], [`sign`]), byte for byte as
//! botocore signs.
//!
//! Only header authentication is accepted (`Authorization: AWS4-HMAC-SHA256 Credential=...,
//! SignedHeaders=..., Signature=...`); presigned URLs (`X-Amz-Signature` in the query) and
//! `UNSIGNED-PAYLOAD` are refused: the AWS CLI and boto3 sign the header and the payload of every
//! AWS IoT call, and a verifier that accepts less covers less.
//!
//! The canonical request is built as botocore's `SigV4Auth` builds it for every service but S3:
//!
//! * the path as received, with dot segments and empty segments removed, percent-encoded
//!   *again* (`%3A` becomes `%253A`; only `A-Za-z0-9-._~` and `/` stay as they are), `/` if empty;
//! * the query: each key and value percent-decoded then encoded (RFC 3986, upper-case hex, a
//!   space is `%20`, a `+` is a literal `+` and becomes `%2B`), sorted by key then value;
//! * the signed headers, in the order `SignedHeaders` lists them, each value trimmed with inner
//!   runs of white space collapsed to one space, repeated headers joined by `,`;
//! * the hex SHA-256 of the body (an `x-amz-content-sha256` header must equal it).
//!
//! The final comparison is `ring::hmac::verify`, which is constant-time. Nothing here panics on
//! any input, and every length is bounded before it is used ([`MAX_AUTHORIZATION_LEN`],
//! [`MAX_SIGNED_HEADERS`]).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use ring::{digest, hmac};

use crate::error::{ApiError, ApiResult};

/// The longest `Authorization` header accepted, in bytes.
pub const MAX_AUTHORIZATION_LEN: usize = 8 * 1024;
/// The most headers `SignedHeaders` may name.
pub const MAX_SIGNED_HEADERS: usize = 64;
/// The longest access key ID, region or service name in a credential scope.
pub const MAX_SCOPE_PART_LEN: usize = 128;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const TERMINATOR: &str = "aws4_request";

/// The parts of a request the signature covers.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    /// Method.
    pub method: &'a str,
    /// Path, raw (percent-encoded as received).
    pub path: &'a str,
    /// Query, raw, without `?`.
    pub query: &'a str,
    /// Headers, lower-case names, in the order received.
    pub headers: &'a [(String, String)],
    /// Body.
    pub body: &'a [u8],
}

/// A verified signature: who signed, for which region and service. The caller checks that the
/// region and service are its own (the service depends on the operation routed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The access key ID.
    pub access_key_id: String,
    /// The credential scope's region.
    pub region: String,
    /// The credential scope's service.
    pub service: String,
}

/// Why a signature was refused. [`ApiError`] renders each as AWS does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigV4Error {
    /// No `Authorization` header.
    #[error("Missing Authentication Token")]
    Missing,
    /// The header or its credential is malformed (AWS's message).
    #[error("{0}")]
    Incomplete(String),
    /// The access key is unknown.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The signature does not match.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
    /// The date is outside the allowed skew or disagrees with the scope, or the content hash
    /// header is not the body's (AWS's message).
    #[error("{0}")]
    Invalid(String),
}

impl From<SigV4Error> for ApiError {
    fn from(e: SigV4Error) -> ApiError {
        let message = e.to_string();
        match e {
            SigV4Error::Missing => ApiError::missing_authentication(message),
            SigV4Error::Incomplete(_) => ApiError::incomplete_signature(message),
            SigV4Error::UnknownKey => ApiError::unrecognized_client(message),
            SigV4Error::Mismatch | SigV4Error::Invalid(_) => ApiError::invalid_signature(message),
        }
    }
}

/// A parsed `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signed_headers_text: &'a str,
    signature: [u8; 32],
}

fn incomplete(message: impl Into<String>) -> SigV4Error {
    SigV4Error::Incomplete(message.into())
}

fn parse_authorization(header: &str) -> Result<Authorization<'_>, SigV4Error> {
    if header.len() > MAX_AUTHORIZATION_LEN {
        return Err(incomplete(format!(
            "The Authorization header is longer than {MAX_AUTHORIZATION_LEN} bytes."
        )));
    }
    let rest = header
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| incomplete("Unsupported Authorization Type"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for pair in rest.split(',') {
        let pair = pair.trim_matches(' ');
        let Some((key, value)) = pair.split_once('=') else {
            return Err(incomplete(format!(
                "'{pair}' not a valid key=value pair (missing equal-sign) in Authorization header: '{header}'."
            )));
        };
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => {
                return Err(incomplete(format!(
                    "'{key}' is not a parameter of the Authorization header: '{header}'."
                )));
            }
        };
        if slot.replace(value).is_some() {
            return Err(incomplete(format!(
                "Authorization header has the '{key}' parameter twice: '{header}'."
            )));
        }
    }
    let mut missing = String::new();
    for (name, v) in [
        ("Credential", &credential),
        ("Signature", &signature),
        ("SignedHeaders", &signed),
    ] {
        if v.is_none() {
            let _ = write!(
                missing,
                "Authorization header requires '{name}' parameter. "
            );
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(incomplete(format!("{missing}Authorization={header}")));
    };
    let mut parts = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some(term), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(incomplete(format!(
            "Credential should be <AccessKeyId>/<YYYYMMDD>/<region>/<service>/aws4_request, not '{credential}'."
        )));
    };
    if term != TERMINATOR {
        return Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{term}'. "
        )));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid date (YYYYMMDD), not '{date}'. "
        )));
    }
    for (what, v) in [
        ("an access key", access_key_id),
        ("a valid region", region),
        ("a valid service", service),
    ] {
        if v.is_empty() || v.len() > MAX_SCOPE_PART_LEN {
            return Err(incomplete(format!(
                "Credential should be scoped to {what}. "
            )));
        }
    }
    let signed_headers: Vec<&str> = signed.split(';').take(MAX_SIGNED_HEADERS + 1).collect();
    if signed_headers.len() > MAX_SIGNED_HEADERS {
        return Err(incomplete(format!(
            "SignedHeaders names more than {MAX_SIGNED_HEADERS} headers."
        )));
    }
    if signed_headers.iter().any(|h| {
        h.is_empty()
            || h.bytes()
                .any(|b| !b.is_ascii_graphic() || b.is_ascii_uppercase())
    }) {
        return Err(incomplete(format!(
            "SignedHeaders must be lower-case header names separated by ';', not '{signed}'."
        )));
    }
    if !signed_headers.contains(&"host") {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let mut sig = [0u8; 32];
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if signature.len() != 64
        || !signature.bytes().all(lower_hex)
        || hex::decode_to_slice(signature, &mut sig).is_err()
    {
        return Err(incomplete(format!(
            "Signature should be 64 lower-case hexadecimal digits, not '{signature}'."
        )));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signed_headers_text: signed,
        signature: sig,
    })
}

/// Seconds since the epoch of a basic ISO 8601 UTC time, `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = text.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let day = u8::try_from(num(6..8)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let t = time::Time::from_hms(
        u8::try_from(num(9..11)?).ok()?,
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(13..15)?).ok()?,
    )
    .ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// `secs` since the epoch as `YYYYMMDDTHHMMSSZ` (UTC), the form of an `x-amz-date` header; a
/// time outside the years 1..=9999 is returned as its decimal `secs`, which [`sign`] refuses.
pub fn format_amz_date(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(d) => format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => secs.to_string(),
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn skew_text(skew: Duration) -> String {
    let s = skew.as_secs();
    if s.is_multiple_of(60) {
        format!("{} min.", s / 60)
    } else {
        format!("{s} s.")
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> impl Iterator<Item = &'h str> {
    headers
        .iter()
        .filter(move |(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Verifies `request`'s signature at `now`, with the secret of an access key ID from `secret`.
///
/// Refusals, as AWS words them: no `Authorization` header is `MissingAuthenticationToken`; a
/// malformed one is `IncompleteSignature`; an unknown key is `UnrecognizedClient`; a wrong
/// signature, a date more than `max_skew` from `now`, or a scope date that is not the request's
/// date is `InvalidSignature`. The service and region of the scope are returned, not checked.
pub fn verify(
    request: &SignedRequest<'_>,
    secret: impl Fn(&str) -> Option<String>,
    now: SystemTime,
    max_skew: Duration,
) -> ApiResult<Verified> {
    verify_typed(request, secret, now, max_skew).map_err(ApiError::from)
}

/// [`verify`] with the typed error.
pub fn verify_typed(
    request: &SignedRequest<'_>,
    secret: impl Fn(&str) -> Option<String>,
    now: SystemTime,
    max_skew: Duration,
) -> Result<Verified, SigV4Error> {
    let mut auths = header(request.headers, "authorization");
    let Some(header_value) = auths.next() else {
        return Err(SigV4Error::Missing);
    };
    if auths.next().is_some() {
        return Err(incomplete(
            "The request has more than one Authorization header.",
        ));
    }
    let auth = parse_authorization(header_value)?;
    let amz_date = header(request.headers, "x-amz-date")
        .next()
        .or_else(|| header(request.headers, "date").next())
        .ok_or_else(|| {
            incomplete(format!(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={header_value}"
            ))
        })?;
    let Some(signed_at) = parse_amz_date(amz_date) else {
        return Err(incomplete(format!(
            "X-Amz-Date must be in the ISO8601 basic format YYYYMMDD'T'HHMMSS'Z', not '{amz_date}'."
        )));
    };
    if amz_date.get(..8) != Some(auth.date) {
        return Err(SigV4Error::Invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
            auth.date,
            amz_date.get(..8).unwrap_or_default()
        )));
    }
    for name in &auth.signed_headers {
        if header(request.headers, name).next().is_none() {
            return Err(incomplete(format!(
                "The header '{name}' is in SignedHeaders but not in the request."
            )));
        }
    }
    let key_secret = secret(auth.access_key_id).ok_or(SigV4Error::UnknownKey)?;
    let now_secs = unix_secs(now);
    let skew = i64::try_from(max_skew.as_secs()).unwrap_or(i64::MAX);
    if signed_at < now_secs.saturating_sub(skew) {
        return Err(SigV4Error::Invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - {})",
            format_amz_date(now_secs.saturating_sub(skew)),
            format_amz_date(now_secs),
            skew_text(max_skew)
        )));
    }
    if signed_at > now_secs.saturating_add(skew) {
        return Err(SigV4Error::Invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + {})",
            format_amz_date(now_secs.saturating_add(skew)),
            format_amz_date(now_secs),
            skew_text(max_skew)
        )));
    }
    let payload = payload_hash(request)?;
    let canonical = canonical_request(
        request,
        &auth.signed_headers,
        auth.signed_headers_text,
        &payload,
    );
    let key = signing_key(&key_secret, auth.date, auth.region, auth.service);
    let to_sign = string_to_sign(amz_date, auth.date, auth.region, auth.service, &canonical);
    hmac::verify(&key, to_sign.as_bytes(), &auth.signature).map_err(|_| SigV4Error::Mismatch)?;
    Ok(Verified {
        access_key_id: auth.access_key_id.to_string(),
        region: auth.region.to_string(),
        service: auth.service.to_string(),
    })
}

/// The payload line: the body's hex SHA-256, which `x-amz-content-sha256` must equal if sent.
fn payload_hash(request: &SignedRequest<'_>) -> Result<String, SigV4Error> {
    let hash = hex::encode(digest::digest(&digest::SHA256, request.body));
    if let Some(claimed) = header(request.headers, "x-amz-content-sha256").next() {
        if claimed.eq_ignore_ascii_case("UNSIGNED-PAYLOAD") || claimed.starts_with("STREAMING-") {
            return Err(incomplete(format!(
                "x-amz-content-sha256 '{claimed}' is not accepted: the payload must be signed."
            )));
        }
        if claimed != hash {
            return Err(SigV4Error::Invalid(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
                    .to_string(),
            ));
        }
    }
    Ok(hash)
}

/// The signing key: the HMAC chain `"AWS4" + secret`, date, region, service, `aws4_request`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut k = Vec::with_capacity(4 + secret.len());
    k.extend_from_slice(b"AWS4");
    k.extend_from_slice(secret.as_bytes());
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, &k);
    for part in [date, region, service, TERMINATOR] {
        let tag = hmac::sign(&key, part.as_bytes());
        key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
    }
    key
}

fn string_to_sign(
    amz_date: &str,
    date: &str,
    region: &str,
    service: &str,
    canonical: &str,
) -> String {
    let hash = hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes()));
    format!("{ALGORITHM}\n{amz_date}\n{date}/{region}/{service}/{TERMINATOR}\n{hash}")
}

/// Appends `bytes` percent-encoded: all but `A-Za-z0-9-._~` (and `/` if `keep_slash`) become
/// `%XX` with upper-case hex.
fn encode_into(out: &mut String, bytes: &[u8], keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays a literal `%`.
fn percent_decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|x| char::from(*x).to_digit(16)),
                b.get(i + 2).and_then(|x| char::from(*x).to_digit(16)),
            )
        {
            // Two hex digits make one byte: h * 16 + l <= 255.
            out.push(u8::try_from(h * 16 + l).unwrap_or(0));
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// botocore's `remove_dot_segments` (RFC 3986 §5.2.4, plus empty segments removed), then
/// encoded again; `/` if empty.
fn canonical_uri(out: &mut String, path: &str) {
    if path.is_empty() {
        out.push('/');
        return;
    }
    let mut segments: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    if path.starts_with('/') {
        out.push('/');
    }
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode_into(out, s.as_bytes(), true);
    }
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
}

fn canonical_query(out: &mut String, query: &str) {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let mut ek = String::with_capacity(k.len());
            encode_into(&mut ek, &percent_decode(k), false);
            let mut ev = String::with_capacity(v.len());
            encode_into(&mut ev, &percent_decode(v), false);
            (ek, ev)
        })
        .collect();
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
}

/// White space as Python's `str.split()` sees it (botocore trims header values with it).
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn canonical_request(
    request: &SignedRequest<'_>,
    signed_headers: &[&str],
    signed_headers_text: &str,
    payload: &str,
) -> String {
    let mut out = String::with_capacity(
        256 + request.path.len() * 2 + request.query.len() * 2 + signed_headers_text.len() * 2,
    );
    out.push_str(request.method);
    out.push('\n');
    canonical_uri(&mut out, request.path);
    out.push('\n');
    canonical_query(&mut out, request.query);
    out.push('\n');
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        for (i, value) in header(request.headers, name).enumerate() {
            if i > 0 {
                out.push(',');
            }
            for (j, word) in value
                .split(is_python_space)
                .filter(|w| !w.is_empty())
                .enumerate()
            {
                if j > 0 {
                    out.push(' ');
                }
                out.push_str(word);
            }
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers_text);
    out.push('\n');
    out.push_str(payload);
    out
}

/// Signs `request` as botocore's `SigV4Auth` does and returns the value of its `Authorization`
/// header: `AWS4-HMAC-SHA256 Credential=<access_key_id>/<YYYYMMDD>/<region>/<service>/aws4_request,
/// SignedHeaders=<names>, Signature=<64 hex digits>`.
///
/// * **Headers.** Every header in `request.headers` is signed, under its name as given (pass
///   lower-case names, as HTTP/2 and botocore's canonical form use), except an `authorization`
///   header, which is ignored. `SignedHeaders` lists the names sorted, each once; repeated
///   headers are joined with `,` in the order given. A client sends exactly these headers (its
///   HTTP library may add unsigned ones such as `user-agent` or `content-length`).
/// * **Required headers.** `host` (as the client will send it: `localhost:8443`, the port only if
///   not the scheme's default) and `x-amz-date` (`YYYYMMDDTHHMMSSZ`, UTC; [`format_amz_date`]
///   writes it). The signature is made for the time of `x-amz-date`: this function reads no
///   clock. Without either header, or with an `x-amz-date` that is not a valid time, the result
///   is `None`.
/// * **Path and query.** `request.path` is the path as it goes on the wire, each label already
///   percent-encoded (RFC 3986 unreserved characters kept, `/` inside a label as `%2F`);
///   `request.query` is the query without `?`. Both are canonicalized as in the module docs.
/// * **Payload.** The hex SHA-256 of `request.body` is signed; an `x-amz-content-sha256`
///   header, if sent, must hold the same value ([`content_sha256`]).
/// * **Scope.** `region` and `service` are the credential scope: the service's signing name
///   (`iot` for the control plane, `iotdata` for device shadows), not its endpoint prefix.
///
/// The result verifies with [`verify`] given the same secret, and is byte for byte the header
/// botocore computes for the same request, headers and time (the AWS SigV4 test suite and
/// boto3-signed requests in `tests/sigv4_vectors.rs` check both).
///
/// ```
/// use thingkit_api::sigv4::{SignedRequest, content_sha256, format_amz_date, sign};
///
/// let body = br#"{"state":{"desired":{"on":true}}}"#;
/// let headers = vec![
///     ("host".to_string(), "localhost:8443".to_string()),
///     ("x-amz-content-sha256".to_string(), content_sha256(body)),
///     ("x-amz-date".to_string(), format_amz_date(1_440_938_160)),
/// ];
/// let request = SignedRequest {
///     method: "POST",
///     path: "/things/lamp-1/shadow",
///     query: "",
///     headers: &headers,
///     body,
/// };
/// let auth = sign(&request, "AKIDEXAMPLE", "secret", "eu-central-1", "iotdata").unwrap();
/// assert!(auth.starts_with(
///     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-central-1/iotdata/aws4_request, \
///      SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
/// ));
/// ```
pub fn sign(
    request: &SignedRequest<'_>,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
) -> Option<String> {
    let amz_date = header(request.headers, "x-amz-date").next()?;
    parse_amz_date(amz_date)?;
    let date = amz_date.get(..8)?;
    let mut names: Vec<&str> = request
        .headers
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "authorization")
        .collect();
    names.sort_unstable();
    names.dedup();
    if !names.contains(&"host") {
        return None;
    }
    let text = names.join(";");
    let payload = content_sha256(request.body);
    let canonical = canonical_request(request, &names, &text, &payload);
    let key = signing_key(secret, date, region, service);
    let sig = hmac::sign(
        &key,
        string_to_sign(amz_date, date, region, service, &canonical).as_bytes(),
    );
    Some(format!(
        "{ALGORITHM} Credential={access_key_id}/{date}/{region}/{service}/{TERMINATOR}, SignedHeaders={text}, Signature={}",
        hex::encode(sig.as_ref())
    ))
}

/// The hex SHA-256 of `body` (lower-case): the value of an `x-amz-content-sha256` header, and
/// the payload line of the canonical request that [`sign`] and [`verify`] build.
pub fn content_sha256(body: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, body))
}

/// The physical floor of one verification, for the benchmark: the SHA-256 of `canonical`, the
/// five HMACs of the key chain and the signature.
#[doc(hidden)]
pub fn floor(secret: &str, canonical: &str) -> hmac::Tag {
    let key = signing_key(secret, "20150830", "us-east-1", "iot");
    let to_sign = string_to_sign(
        "20150830T123600Z",
        "20150830",
        "us-east-1",
        "iot",
        canonical,
    );
    hmac::sign(&key, to_sign.as_bytes())
}

/// The body hash of the floor, for the benchmark.
#[doc(hidden)]
pub fn floor_body_hash(body: &[u8]) -> digest::Digest {
    digest::digest(&digest::SHA256, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn at(amz: &str) -> SystemTime {
        let secs = parse_amz_date(amz).expect("test date");
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).expect("after 1970"))
    }

    fn headers(auth: Option<String>, date: &str) -> Vec<(String, String)> {
        let mut h = vec![
            ("host".to_string(), "example.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), date.to_string()),
        ];
        if let Some(a) = auth {
            h.push(("authorization".to_string(), a));
        }
        h
    }

    fn vanilla(h: &[(String, String)]) -> SignedRequest<'_> {
        SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: h,
            body: b"",
        }
    }

    fn key(id: &str) -> Option<String> {
        (id == "AKIDEXAMPLE").then(|| SECRET.to_string())
    }

    fn signed(date: &str, service: &str) -> Vec<(String, String)> {
        let h = headers(None, date);
        let auth = sign(&vanilla(&h), "AKIDEXAMPLE", SECRET, "us-east-1", service).expect("signs");
        headers(Some(auth), date)
    }

    const SKEW: Duration = Duration::from_secs(300);

    #[test]
    fn signs_get_vanilla_as_the_aws_test_suite() {
        let h = signed("20150830T123600Z", "service");
        assert!(h[2].1.ends_with(
            "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        ));
        let v = verify(&vanilla(&h), key, at("20150830T123600Z"), SKEW).expect("verifies");
        assert_eq!(v.service, "service");
        assert_eq!(v.region, "us-east-1");
    }

    #[test]
    fn accepts_exactly_five_minutes_of_skew_either_side() {
        let h = signed("20150830T123600Z", "iot");
        assert!(verify(&vanilla(&h), key, at("20150830T124100Z"), SKEW).is_ok());
        assert!(verify(&vanilla(&h), key, at("20150830T123100Z"), SKEW).is_ok());
    }

    #[test]
    fn refuses_expired_signature_with_aws_wording() {
        let h = signed("20150830T123600Z", "iot");
        let e = verify(&vanilla(&h), key, at("20150830T124601Z"), SKEW).expect_err("expired");
        assert_eq!(e.code, "InvalidSignatureException");
        assert_eq!(
            e.message,
            "Signature expired: 20150830T123600Z is now earlier than 20150830T124101Z (20150830T124601Z - 5 min.)"
        );
    }

    #[test]
    fn refuses_signature_from_the_future_with_aws_wording() {
        let h = signed("20150830T125600Z", "iot");
        let e = verify(&vanilla(&h), key, at("20150830T124600Z"), SKEW).expect_err("future");
        assert_eq!(
            e.message,
            "Signature not yet current: 20150830T125600Z is still later than 20150830T125100Z (20150830T124600Z + 5 min.)"
        );
    }

    #[test]
    fn refuses_unknown_key() {
        let h = signed("20150830T123600Z", "iot");
        let e = verify(&vanilla(&h), |_| None, at("20150830T123600Z"), SKEW).expect_err("unknown");
        assert_eq!(e.code, "UnrecognizedClientException");
        assert_eq!(
            e.message,
            "The security token included in the request is invalid."
        );
    }

    #[test]
    fn refuses_missing_header_as_missing_authentication_token() {
        let h = headers(None, "20150830T123600Z");
        let e = verify(&vanilla(&h), key, at("20150830T123600Z"), SKEW).expect_err("missing");
        assert_eq!(e.code, "MissingAuthenticationTokenException");
        assert_eq!(e.message, "Missing Authentication Token");
    }

    #[test]
    fn refuses_scope_date_other_than_request_date() {
        let mut h = signed("20150830T123600Z", "iot");
        h[2].1 = h[2].1.replace("/20150830/", "/20150831/");
        let e = verify(&vanilla(&h), key, at("20150830T123600Z"), SKEW).expect_err("date");
        assert_eq!(e.code, "InvalidSignatureException");
        assert!(
            e.message
                .starts_with("Date in Credential scope does not match"),
            "{}",
            e.message
        );
    }

    #[test]
    fn refuses_signed_headers_without_host() {
        let mut h = signed("20150830T123600Z", "iot");
        h[2].1 = h[2]
            .1
            .replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date");
        let e = verify(&vanilla(&h), key, at("20150830T123600Z"), SKEW).expect_err("host");
        assert_eq!(e.code, "IncompleteSignatureException");
    }

    #[test]
    fn refuses_signed_header_absent_from_request() {
        let mut h = signed("20150830T123600Z", "iot");
        h[2].1 = h[2].1.replace(
            "SignedHeaders=host;x-amz-date",
            "SignedHeaders=host;x-amz-date;x-extra",
        );
        let e = verify(&vanilla(&h), key, at("20150830T123600Z"), SKEW).expect_err("absent");
        assert_eq!(e.code, "IncompleteSignatureException");
    }

    #[test]
    fn reports_the_scope_service_without_checking_it() {
        let h = signed("20150830T123600Z", "execute-api");
        let v = verify(&vanilla(&h), key, at("20150830T123600Z"), SKEW).expect("verifies");
        assert_eq!(v.service, "execute-api");
    }

    #[test]
    fn names_each_missing_parameter() {
        let mut h = headers(None, "20150830T123600Z");
        h.push((
            "authorization".into(),
            "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date".into(),
        ));
        let e = verify(&vanilla(&h), key, at("20150830T123600Z"), SKEW).expect_err("incomplete");
        assert_eq!(e.code, "IncompleteSignatureException");
        assert!(e.message.starts_with(
            "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. "
        ), "{}", e.message);
    }

    #[test]
    fn refuses_unsigned_payload_and_a_wrong_content_hash() {
        for claimed in ["UNSIGNED-PAYLOAD", "00"] {
            let mut h = headers(None, "20150830T123600Z");
            h.push(("x-amz-content-sha256".into(), claimed.into()));
            let auth =
                sign(&vanilla(&h), "AKIDEXAMPLE", SECRET, "us-east-1", "iot").expect("signs");
            h.push(("authorization".into(), auth));
            assert!(
                verify(&vanilla(&h), key, at("20150830T123600Z"), SKEW).is_err(),
                "{claimed}"
            );
        }
    }

    #[test]
    fn joins_repeated_headers_with_commas_and_collapses_spaces() {
        let mut h = headers(None, "20150830T123600Z");
        h.push(("x-multi".into(), "  a   b ".into()));
        h.push(("x-multi".into(), "c".into()));
        let r = vanilla(&h);
        let names = ["host", "x-amz-date", "x-multi"];
        let c = canonical_request(&r, &names, "host;x-amz-date;x-multi", "p");
        assert!(c.contains("\nx-multi:a b,c\n"), "{c}");
    }

    #[test]
    fn canonical_uri_encodes_the_received_path_again() {
        let mut s = String::new();
        canonical_uri(&mut s, "/things/my%3Athing/./x/../y//");
        assert_eq!(s, "/things/my%253Athing/y/");
        let mut s = String::new();
        canonical_uri(&mut s, "");
        assert_eq!(s, "/");
    }

    #[test]
    fn canonical_query_sorts_decoded_then_encoded_pairs() {
        let mut s = String::new();
        canonical_query(&mut s, "b=2&a=%7e+x&a=1&c&%zz=%20");
        assert_eq!(s, "%25zz=%20&a=1&a=~%2Bx&b=2&c=");
    }
}
