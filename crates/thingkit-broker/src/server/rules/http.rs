//! The HTTP action: POST of the output to a templated URL with templated headers, on the
//! action's own worker thread (ureq, blocking, with a timeout). 2xx is success; 5xx, 429 and
//! transport errors are retried; any other status fails at once. Redirects are not followed.
//! The body is the output (`content-type: application/json` unless a header sets it).
//!
//! Unlike AWS, there is no topic rule destination to confirm: `confirmationUrl` is accepted
//! and ignored, and the URL is called as soon as the rule exists. `https://` endpoints are
//! verified against [`super::RulesConfig::http_ca_certificates`] only (no system roots).

use std::sync::Arc;

use thingkit_rules::SqlVersion;
use thingkit_rules::topic_rule::HttpAction;
use ureq::Agent;
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};

use super::Inner;
use super::action::{AttemptError, Job, Performer};
use super::evaluation::Template;

/// Response bodies are read up to this many bytes (for the error message), then dropped.
const MAX_ERROR_BODY: u64 = 1024;

pub(crate) struct Http {
    agent: Agent,
    url: Template,
    headers: Vec<(String, Template)>,
}

impl Http {
    pub(crate) fn new(
        inner: &Arc<Inner>,
        action: &HttpAction,
        version: SqlVersion,
    ) -> Result<Http, String> {
        let limits = &inner.config.limits;
        let lower = action.url.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err(format!(
                "url {:?}: not an http:// or https:// URL",
                action.url
            ));
        }
        let url = Template::parse(&action.url, version, limits).map_err(|e| format!("url: {e}"))?;
        let mut headers = Vec::with_capacity(action.headers.len());
        for h in &action.headers {
            if h.key.is_empty() || !h.key.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(format!("header {:?}: not a header name", h.key));
            }
            let value = Template::parse(&h.value, version, limits)
                .map_err(|e| format!("header {}: {e}", h.key))?;
            headers.push((h.key.clone(), value));
        }
        let roots = inner
            .config
            .http_ca_certificates
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
            .collect::<Vec<_>>();
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .build();
        let agent = Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(inner.config.http_timeout))
            .max_redirects(0)
            .build()
            .new_agent();
        Ok(Http {
            agent,
            url,
            headers,
        })
    }
}

impl Performer for Http {
    fn perform(&mut self, job: &Job, inner: &Inner) -> Result<(), AttemptError> {
        let view = job.inbound.view();
        let url = self
            .url
            .render(&view, &inner.env, &job.variables)
            .map_err(|e| AttemptError::fatal(format!("url template: {e}")))?;
        let mut request = self.agent.post(&url);
        let mut has_type = false;
        for (key, value) in &self.headers {
            let value = value
                .render(&view, &inner.env, &job.variables)
                .map_err(|e| AttemptError::fatal(format!("header {key}: {e}")))?;
            has_type |= key.eq_ignore_ascii_case("content-type");
            request = request.header(key.as_str(), value.as_str());
        }
        if !has_type {
            let json = matches!(job.output.as_ref(), thingkit_rules::Output::Json(_));
            request = request.header(
                "content-type",
                if json {
                    "application/json"
                } else {
                    "application/octet-stream"
                },
            );
        }
        let response = request
            .send(&job.payload[..])
            .map_err(|e| AttemptError::retry(format!("POST {url}: {e}")))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let mut body = response.into_body();
        let text = body
            .with_config()
            .limit(MAX_ERROR_BODY)
            .read_to_string()
            .unwrap_or_default();
        let message = format!("POST {url}: HTTP {status} {}", text.trim());
        if status >= 500 || status == 429 {
            Err(AttemptError::retry(message))
        } else {
            Err(AttemptError::fatal(message))
        }
    }
}
