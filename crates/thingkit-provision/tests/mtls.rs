//! mTLS with rustls on both sides (in memory): the server configuration built from the registry
//! requires client certificates chained to ACTIVE registered CAs and honours CRLs;
//! `authenticate` then refuses certificates that are not ACTIVE.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use thingkit_provision::Registry;
use thingkit_provision::{CaKeyType, CaOptions, CertificateAuthority, KeysAndCertificate};
use thingkit_provision::{CaStatus, CertificateStatus};
use thingkit_provision::{ReloadableServerConfig, ServerConfigBuilder};

fn key_der(pem: &str) -> PrivateKeyDer<'static> {
    let (_, der) = thingkit_provision::decode_pem_blocks(pem)
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))
}

fn client_config(ca: &CertificateAuthority, device: &KeysAndCertificate) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.certificate_der().to_vec()))
        .unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(device.certificate.der.clone())],
                key_der(&device.private_key_pem),
            )
            .unwrap(),
    )
}

/// Runs a handshake in memory; returns the server connection if both sides succeeded.
fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> Result<(ServerConnection, ClientConnection), rustls::Error> {
    let mut s = ServerConnection::new(server)?;
    let mut c = ClientConnection::new(client, ServerName::try_from("localhost").unwrap())?;
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        let server_result = s.process_new_packets();
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        server_result?;
        c.process_new_packets()?;
        if !s.is_handshaking() && !c.is_handshaking() {
            return Ok((s, c));
        }
    }
    panic!("handshake did not finish");
}

struct Setup {
    ca: CertificateAuthority,
    registry: Registry,
    builder: ServerConfigBuilder,
}

fn setup() -> Setup {
    let ca = CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
        .unwrap();
    let mut registry = Registry::in_memory();
    registry
        .register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)
        .unwrap();
    let server = ca
        .create_server_certificate(&["localhost"], std::time::SystemTime::now())
        .unwrap();
    let builder =
        ServerConfigBuilder::from_pem(&server.certificate.pem(), &server.private_key_pem).unwrap();
    Setup {
        ca,
        registry,
        builder,
    }
}

#[test]
fn active_registered_certificate_completes_handshake_and_authenticates() {
    let mut s = setup();
    let device =
        s.ca.create_keys_and_certificate("dev", CaKeyType::P256, std::time::SystemTime::now())
            .unwrap();
    let id = s
        .registry
        .register_certificate(
            &device.certificate.der,
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )
        .unwrap();
    s.registry.create_thing("dev", None, &[]).unwrap();
    s.registry.attach_thing_principal("dev", &id, true).unwrap();
    let config = s.builder.build(&s.registry).unwrap();
    let (server, _) = handshake(config, client_config(&s.ca, &device)).unwrap();
    let identity = s
        .registry
        .authenticate(
            server.peer_certificates().unwrap(),
            std::time::SystemTime::now(),
        )
        .unwrap();
    assert_eq!(identity.certificate_id, id);
    assert_eq!(identity.thing.as_deref(), Some("dev"));
}

#[test]
fn inactive_certificate_passes_tls_but_authenticate_refuses_it() {
    let mut s = setup();
    let device =
        s.ca.create_keys_and_certificate("dev", CaKeyType::P384, std::time::SystemTime::now())
            .unwrap();
    s.registry
        .register_certificate(
            &device.certificate.der,
            CertificateStatus::Inactive,
            std::time::SystemTime::now(),
        )
        .unwrap();
    let config = s.builder.build(&s.registry).unwrap();
    let (server, _) = handshake(config, client_config(&s.ca, &device)).unwrap();
    assert!(
        s.registry
            .authenticate(
                server.peer_certificates().unwrap(),
                std::time::SystemTime::now()
            )
            .is_err()
    );
}

#[test]
fn revoked_certificate_in_crl_is_refused_in_the_handshake() {
    let mut s = setup();
    let device =
        s.ca.create_keys_and_certificate("dev", CaKeyType::P256, std::time::SystemTime::now())
            .unwrap();
    let id = s
        .registry
        .register_certificate(
            &device.certificate.der,
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )
        .unwrap();
    let ok =
        s.ca.create_keys_and_certificate("ok", CaKeyType::P256, std::time::SystemTime::now())
            .unwrap();
    s.registry
        .update_certificate(
            &id,
            CertificateStatus::Revoked,
            std::time::SystemTime::now(),
        )
        .unwrap();
    let ca_id = s.ca.id();
    let crl =
        s.ca.crl(
            &s.registry.revoked_serials(&ca_id),
            1,
            std::time::SystemTime::now(),
        )
        .unwrap();
    let config = s.builder.clone().crl(crl).build(&s.registry).unwrap();
    assert!(handshake(config.clone(), client_config(&s.ca, &device)).is_err());
    // Another certificate of the same CA is not affected by the CRL.
    assert!(handshake(config, client_config(&s.ca, &ok)).is_ok());
}

#[test]
fn certificate_from_unregistered_or_inactive_ca_is_refused_after_rebuild_without_dropping_sessions()
{
    let mut s = setup();
    let stranger_ca =
        CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
            .unwrap();
    let stranger = stranger_ca
        .create_keys_and_certificate("x", CaKeyType::P256, std::time::SystemTime::now())
        .unwrap();
    let device =
        s.ca.create_keys_and_certificate("dev", CaKeyType::P256, std::time::SystemTime::now())
            .unwrap();
    s.registry
        .register_certificate(
            &device.certificate.der,
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )
        .unwrap();
    let configs = ReloadableServerConfig::new(s.builder.build(&s.registry).unwrap());
    assert!(handshake(configs.current(), client_config(&s.ca, &stranger)).is_err());

    let (mut server, mut client) =
        handshake(configs.current(), client_config(&s.ca, &device)).unwrap();
    let ca_id = s.ca.id();
    s.registry
        .update_ca_certificate(&ca_id, CaStatus::Inactive, false)
        .unwrap();
    // No ACTIVE CA left: building fails, so the operator keeps the old config or registers one.
    assert!(s.builder.build(&s.registry).is_err());
    let other_ca =
        CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
            .unwrap();
    s.registry
        .register_ca_certificate(other_ca.certificate_der(), CaStatus::Active, false)
        .unwrap();
    configs.replace(s.builder.build(&s.registry).unwrap());
    assert!(handshake(configs.current(), client_config(&s.ca, &device)).is_err());

    // The session established before the rebuild still carries data.
    use std::io::{Read, Write};
    client.writer().write_all(b"still here").unwrap();
    let mut buf = Vec::new();
    client.write_tls(&mut buf).unwrap();
    server.read_tls(&mut buf.as_slice()).unwrap();
    server.process_new_packets().unwrap();
    let mut got = [0u8; 10];
    server.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"still here");
}
