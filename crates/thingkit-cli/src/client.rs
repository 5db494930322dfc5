//! A client of the HTTPS API `thingkit serve` hosts (and of AWS IoT itself): requests signed with
//! SigV4 as the AWS CLI signs them ([`thingkit_api::sigv4::sign`]), sent with ureq over rustls
//! (ring) trusting only the roots of one CA bundle. `thingkit shadow ...` uses it; later
//! `thingkit iot ...` commands can too.
//!
//! Each call signs `host`, `x-amz-date` and `x-amz-content-sha256` (the body's SHA-256, which
//! the server checks against the body it received); ureq adds unsigned `user-agent`,
//! `accept-encoding` and `content-length` headers.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use thingkit_api::sigv4::{SignedRequest, content_sha256, format_amz_date, sign};
use ureq::Agent;
use ureq::http::{Request, Uri};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider, parse_pem};

use crate::Failure;

/// The largest response body read, in bytes (a shadow document is at most 8 KiB; a page of a
/// list a few KiB).
pub const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// How long one call may take, connection and TLS handshake included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// An access key, read from the environment as the AWS CLI reads it.
#[derive(Clone)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; both must be set and non-empty.
    pub fn from_env() -> Result<Credentials, Failure> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
                access_key_id,
                secret_access_key,
            }),
            (id, _) => Err(Failure(format!(
                "no credentials: set {} (an access key from `thingkit access-key create`)",
                if id.is_none() {
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                } else {
                    "AWS_SECRET_ACCESS_KEY"
                }
            ))),
        }
    }
}

/// Percent-encodes one path label or query value as botocore does: RFC 3986 unreserved
/// characters (`A-Za-z0-9-._~`) stay, every other byte (`/` included) becomes `%XX`.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Signed calls to one endpoint, in one region, with one access key.
pub struct ApiClient {
    agent: Agent,
    /// `https://host[:port]`, no trailing `/`.
    base: String,
    /// The `host` header: the endpoint's host, with its port unless it is 443.
    host: String,
    region: String,
    credentials: Credentials,
}

impl ApiClient {
    /// A client of `endpoint` (`https://host[:port]`) trusting only the certificates of the PEM
    /// file `ca_bundle`, signing for `region` with `credentials`.
    pub fn new(
        endpoint: &str,
        ca_bundle: &Path,
        region: &str,
        credentials: Credentials,
    ) -> Result<ApiClient, Failure> {
        let bad = |why: &str| Failure(format!("--endpoint {endpoint}: {why}"));
        let uri: Uri = endpoint
            .parse()
            .map_err(|_| bad("not a URL such as https://localhost:8443"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("the API is served over HTTPS: use an https:// URL"));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(bad("give the scheme, host and port only"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = match authority.port_u16() {
            Some(443) => authority.host().to_string(),
            _ => authority.as_str().to_string(),
        };
        let pem = std::fs::read(ca_bundle)
            .map_err(|e| Failure(format!("{}: {e}", ca_bundle.display())))?;
        let roots: Vec<Certificate<'static>> = parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| Failure(format!("{}: {e}", ca_bundle.display())))?;
        if roots.is_empty() {
            return Err(Failure(format!(
                "{}: no PEM certificate in the CA bundle",
                ca_bundle.display()
            )));
        }
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .build();
        let agent = Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(CALL_TIMEOUT))
            .build()
            .new_agent();
        Ok(ApiClient {
            agent,
            base: format!("https://{authority}"),
            host,
            region: region.to_string(),
            credentials,
        })
    }

    /// Calls `method path?query` with `body`, signed for `service` (the signing name: `iotdata`
    /// for shadows, `iot` for the control plane). `path` is already encoded (see [`encode`]);
    /// `query` pairs are encoded here. Returns the response's JSON body (`null` if empty); a
    /// refusal is a [`Failure`] naming the AWS error code, status and message.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: &[u8],
        service: &str,
    ) -> Result<Value, Failure> {
        let query = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let headers = vec![
            ("host".to_string(), self.host.clone()),
            ("x-amz-content-sha256".to_string(), content_sha256(body)),
            ("x-amz-date".to_string(), format_amz_date(unix_now())),
        ];
        let signed = SignedRequest {
            method,
            path,
            query: &query,
            headers: &headers,
            body,
        };
        let authorization = sign(
            &signed,
            &self.credentials.access_key_id,
            &self.credentials.secret_access_key,
            &self.region,
            service,
        )
        .ok_or_else(|| Failure("the request could not be signed (no valid x-amz-date)".into()))?;
        let uri = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let mut builder = Request::builder().method(method).uri(&uri);
        for (name, value) in &headers {
            builder = builder.header(name, value);
        }
        builder = builder.header("authorization", authorization);
        let sent = if body.is_empty() {
            builder.body(()).map(|r| self.agent.run(r))
        } else {
            builder.body(body).map(|r| self.agent.run(r))
        };
        let mut response = sent
            .map_err(|e| Failure(format!("{method} {uri}: {e}")))?
            .map_err(|e| Failure(format!("{method} {uri}: {e}")))?;
        let status = response.status();
        let code = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            // AWS may append `:<documentation URL>` to the code.
            .map(|v| v.split(':').next().unwrap_or(v).to_string());
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|e| Failure(format!("{method} {uri}: reading the response: {e}")))?;
        let json: Option<Value> = if text.trim().is_empty() {
            Some(Value::Null)
        } else {
            serde_json::from_str(&text).ok()
        };
        if status.is_success() {
            return json.ok_or_else(|| {
                Failure(format!(
                    "{method} {uri}: the response ({status}) is not JSON: {}",
                    text.chars().take(200).collect::<String>()
                ))
            });
        }
        let message = json
            .as_ref()
            .and_then(|j| j.get("message").or_else(|| j.get("Message")))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(Failure(format!(
            "{} ({}): {message}",
            code.as_deref().unwrap_or("error"),
            status.as_u16()
        )))
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_labels_as_botocore_keeping_only_unreserved_characters() {
        assert_eq!(encode("lamp-1_a.b~c"), "lamp-1_a.b~c");
        assert_eq!(encode("a/b c:d"), "a%2Fb%20c%3Ad");
        assert_eq!(encode("é"), "%C3%A9");
    }
}
