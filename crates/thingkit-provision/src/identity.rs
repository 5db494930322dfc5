//! mTLS identity; documented on [`ServerConfigBuilder`].

use std::sync::{Arc, RwLock};

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs1KeyDer,
    PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use rustls::server::WebPkiClientVerifier;

use crate::certificate::CaStatus;
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::store::RegistryStore;

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

/// Builds [`ServerConfig`]s for a device-facing TLS endpoint from a registry.
///
/// mTLS identity: a rustls [`ServerConfig`] that requires client certificates chained to the
/// registry's ACTIVE CA certificates (CRLs honoured), and a handle to swap it when CAs or CRLs
/// change.
///
/// The TLS layer checks the chain, validity and CRLs; [`Registry::authenticate`] then maps the
/// verified end-entity certificate to a [`DeviceIdentity`](crate::DeviceIdentity) and
/// refuses certificates that are not ACTIVE. Use both: the handshake alone does not know the
/// registry's certificate statuses.
///
/// ```no_run
/// # fn demo(registry: &thingkit_provision::Registry,
/// #         chain_pem: &str, key_pem: &str) -> thingkit_provision::Result<()> {
/// use thingkit_provision::{ReloadableServerConfig, ServerConfigBuilder};
/// let builder = ServerConfigBuilder::from_pem(chain_pem, key_pem)?;
/// let configs = ReloadableServerConfig::new(builder.build(registry)?);
/// // Per accepted TCP connection: tokio_rustls::TlsAcceptor::from(configs.current()).
/// // After the handshake:
/// //   let peer = tls.get_ref().1.peer_certificates().unwrap_or_default();
/// //   let identity = registry.authenticate(peer, SystemTime::now())?;
/// // When a CA or a CRL changes:
/// configs.replace(builder.build(registry)?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ServerConfigBuilder {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    alpn: Vec<Vec<u8>>,
    require_crls: bool,
}

impl ServerConfigBuilder {
    /// The server's own certificate chain (end-entity first) and private key, as DER.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        ServerConfigBuilder {
            chain,
            key: Arc::new(key),
            crls: Vec::new(),
            alpn: Vec::new(),
            require_crls: false,
        }
    }

    /// The server's certificate chain and private key (`PRIVATE KEY`, `EC PRIVATE KEY` or
    /// `RSA PRIVATE KEY`) as PEM.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self> {
        let chain: Vec<CertificateDer<'static>> = crate::pem::decode_blocks(chain_pem)?
            .into_iter()
            .filter(|(label, _)| label == "CERTIFICATE")
            .map(|(_, der)| CertificateDer::from(der))
            .collect();
        if chain.is_empty() {
            return Err(Error::Pem(
                "no CERTIFICATE block in the server chain".into(),
            ));
        }
        let (label, der) = crate::pem::decode_blocks(key_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Pem("no private key block".into()))?;
        let key = match label.as_str() {
            "PRIVATE KEY" => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
            "EC PRIVATE KEY" => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
            "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
            other => return Err(Error::Pem(format!("label {other:?} is not a private key"))),
        };
        Ok(ServerConfigBuilder::new(chain, key))
    }

    /// Adds a CRL (DER). Certificates it lists are refused in the handshake.
    pub fn crl(mut self, der: Vec<u8>) -> Self {
        self.crls.push(CertificateRevocationListDer::from(der));
        self
    }

    /// Replaces all CRLs.
    pub fn set_crls(&mut self, crls: Vec<Vec<u8>>) {
        self.crls = crls
            .into_iter()
            .map(CertificateRevocationListDer::from)
            .collect();
    }

    /// ALPN protocols to offer (e.g. `x-amzn-mqtt-ca`, `mqtt`).
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// Require a CRL for every CA (refuse clients whose revocation status is unknown). Off by
    /// default: CAs without a CRL are trusted on the registry's status alone.
    pub fn require_crls(mut self, yes: bool) -> Self {
        self.require_crls = yes;
        self
    }

    /// Builds a configuration trusting exactly the registry's ACTIVE CA certificates.
    pub fn build<S: RegistryStore>(&self, registry: &Registry<S>) -> Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for (_, ca) in registry.ca_certificates() {
            if ca.status == CaStatus::Active {
                roots
                    .add(CertificateDer::from(ca.der.to_vec()))
                    .map_err(tls_err)?;
            }
        }
        if roots.is_empty() {
            return Err(Error::Tls("no ACTIVE CA certificate is registered".into()));
        }
        let mut verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .with_crls(self.crls.iter().cloned())
                .only_check_end_entity_revocation();
        if !self.require_crls {
            verifier = verifier.allow_unknown_revocation_status();
        }
        let verifier = verifier.build().map_err(tls_err)?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(tls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(tls_err)?;
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }
}

/// The current [`ServerConfig`], swappable without touching established connections.
///
/// Each accepted connection takes [`current`](Self::current) (an `Arc`), so replacing the
/// configuration affects only new handshakes; existing sessions keep theirs until the broker
/// disconnects them (e.g. on [`RegistryEvent`](crate::registry::RegistryEvent)).
#[derive(Debug)]
pub struct ReloadableServerConfig {
    current: RwLock<Arc<ServerConfig>>,
}

impl ReloadableServerConfig {
    /// Starts with `config`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        ReloadableServerConfig {
            current: RwLock::new(config),
        }
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the configuration for future handshakes.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        match self.current.write() {
            Ok(mut guard) => *guard = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }
}
