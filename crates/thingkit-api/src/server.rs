//! The HTTPS server (feature `server`): axum on tokio, TLS by rustls. Every request, whatever
//! its method and path, goes to [`ControlPlane::handle`] on the blocking pool (a registry
//! commit is an fsync; creating keys is CPU work), and its [`AuditRecord`] to the audit sink.
//!
//! TLS handshakes run in their own tasks with a deadline, so a client that opens a connection
//! and sends nothing holds no one else up.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use thingkit_provision::RegistryStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::service::{ApiRequest, AuditRecord, ControlPlane};

/// Where audit records go (a log file, `tracing`, both).
pub type AuditSink = Arc<dyn Fn(&AuditRecord) + Send + Sync>;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections whose TLS handshake completed, as an axum listener.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop ended (shutdown): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts TCP connections and completes their handshakes concurrently.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "api: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "api: TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "api: TLS handshake timed out"),
            }
        });
    }
}

/// Serves `plane` over HTTPS on `listener` with `tls` until `shutdown` completes, sending each
/// request's audit record to `audit`.
///
/// # Errors
///
/// The listener's address cannot be read.
pub async fn serve<S: RegistryStore + Send + Sync + 'static>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    plane: Arc<ControlPlane<S>>,
    audit: AuditSink,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_routes(listener, tls, plane, audit, axum::Router::new(), shutdown).await
}

/// [`serve`], with `extra` routes answered before the control plane (which answers every other
/// request): the hook `thingkit serve` adds its `/dashboard` pages with. The extra routes do
/// their own authentication; they are not audited.
///
/// # Errors
///
/// The listener's address cannot be read.
pub async fn serve_with_routes<S: RegistryStore + Send + Sync + 'static>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    plane: Arc<ControlPlane<S>>,
    audit: AuditSink,
    extra: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(64);
    let accept = tokio::spawn(accept_loop(listener, TlsAcceptor::from(tls), tx));
    let max_body = plane.limits.max_body_len;
    let app = extra.fallback(move |request: Request<Body>| {
        let plane = plane.clone();
        let audit = audit.clone();
        async move { answer(plane, audit, request, max_body).await }
    });
    let served = axum::serve(TlsListener { rx, local }, app)
        .with_graceful_shutdown(shutdown)
        .await;
    accept.abort();
    served
}

async fn answer<S: RegistryStore + Send + Sync + 'static>(
    plane: Arc<ControlPlane<S>>,
    audit: AuditSink,
    request: Request<Body>,
    max_body: usize,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    // One byte over the limit is enough for the control plane to refuse it with AWS's error.
    let body = match axum::body::to_bytes(body, max_body.saturating_add(1)).await {
        Ok(b) => b.to_vec(),
        Err(_) => vec![0; max_body.saturating_add(1)],
    };
    let request = ApiRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .chain(
                // HTTP/1.1 carries Host as a header; keep it for SigV4 even if hyper moved it.
                parts
                    .uri
                    .authority()
                    .filter(|_| !parts.headers.contains_key("host"))
                    .map(|a| ("host".to_string(), a.as_str().to_string())),
            )
            .collect(),
        body,
    };
    let answered =
        tokio::task::spawn_blocking(move || plane.handle(&request, SystemTime::now())).await;
    let (response, record) = match answered {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "api: a request handler panicked");
            let mut r = Response::new(Body::from(
                r#"{"message":"Internal failure"}"#.as_bytes().to_vec(),
            ));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r.headers_mut().insert(
                "x-amzn-ErrorType",
                HeaderValue::from_static("InternalFailureException"),
            );
            return r;
        }
    };
    audit(&record);
    let mut r = Response::new(Body::from(response.body));
    *r.status_mut() = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    for (k, v) in response.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}
