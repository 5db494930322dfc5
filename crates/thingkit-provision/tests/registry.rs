//! Registry rules: the certificate state machine, limits, policies, effective policies,
//! authentication, events, batches and reopening.

use std::sync::{Arc, Mutex};

use thingkit_provision::{AuthFailure, Error};
use thingkit_provision::{CaKeyType, CaOptions, CertificateAuthority};
use thingkit_provision::{CaStatus, CertificateId, CertificateStatus};
use thingkit_provision::{MemoryStore, RegistryStore, StoreOp};
use thingkit_provision::{PolicyTarget, Registry, RegistryEvent, RegistryLimits};

const ALLOW_CONNECT: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#;
const ALLOW_PUBLISH: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"*"}]}"#;

struct Fixture {
    ca: CertificateAuthority,
    registry: Registry,
    ca_id: CertificateId,
    events: Arc<Mutex<Vec<RegistryEvent>>>,
}

fn fixture() -> Fixture {
    let ca = CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
        .unwrap();
    let mut registry = Registry::in_memory();
    let ca_id = registry
        .register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    registry.subscribe(move |e| sink.lock().unwrap().push(e.clone()));
    Fixture {
        ca,
        registry,
        ca_id,
        events,
    }
}

impl Fixture {
    fn device(&mut self, name: &str, status: CertificateStatus) -> (CertificateId, Vec<u8>) {
        let c = self
            .ca
            .create_keys_and_certificate(name, CaKeyType::P256, std::time::SystemTime::now())
            .unwrap();
        let id = if status == CertificateStatus::PendingTransfer {
            let id = self
                .registry
                .register_certificate(
                    &c.certificate.der,
                    CertificateStatus::Inactive,
                    std::time::SystemTime::now(),
                )
                .unwrap();
            self.registry.transfer_certificate(&id).unwrap();
            id
        } else {
            self.registry
                .register_certificate(&c.certificate.der, status, std::time::SystemTime::now())
                .unwrap()
        };
        assert_eq!(self.registry.certificate(&id).unwrap().status, status);
        (id, c.certificate.der)
    }

    fn take_events(&self) -> Vec<RegistryEvent> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

#[test]
fn update_certificate_follows_the_aws_transition_table_for_every_pair() {
    let mut f = fixture();
    for from in CertificateStatus::ALL {
        for to in CertificateStatus::ALL {
            let (id, _) = f.device("d", from);
            f.take_events();
            let allowed = !matches!(
                from,
                CertificateStatus::Revoked | CertificateStatus::PendingTransfer
            ) && matches!(
                to,
                CertificateStatus::Active
                    | CertificateStatus::Inactive
                    | CertificateStatus::Revoked
            );
            let result = f
                .registry
                .update_certificate(&id, to, std::time::SystemTime::now());
            assert_eq!(result.is_ok(), allowed, "{from} -> {to}: {result:?}");
            let now = f.registry.certificate(&id).unwrap().status;
            if allowed {
                assert_eq!(now, to);
            } else {
                assert!(matches!(result, Err(Error::InvalidTransition { .. })));
                assert_eq!(now, from, "a refused transition changes nothing");
            }
            let events = f.take_events();
            if allowed && from == CertificateStatus::Active && to != CertificateStatus::Active {
                assert_eq!(
                    events,
                    vec![RegistryEvent::CertificateDeactivated {
                        certificate_id: id,
                        status: to
                    }]
                );
            } else {
                assert!(events.is_empty(), "{from} -> {to}: {events:?}");
            }
        }
    }
}

#[test]
fn transfers_need_an_inactive_detached_certificate_and_end_in_active_or_inactive() {
    let mut f = fixture();
    let (active, _) = f.device("a", CertificateStatus::Active);
    assert!(matches!(
        f.registry.transfer_certificate(&active),
        Err(Error::InvalidTransition { .. })
    ));
    let (inactive, _) = f.device("b", CertificateStatus::Inactive);
    f.registry
        .create_policy("p", ALLOW_CONNECT, std::time::SystemTime::now())
        .unwrap();
    f.registry
        .attach_policy("p", &PolicyTarget::Certificate(inactive))
        .unwrap();
    assert!(matches!(
        f.registry.transfer_certificate(&inactive),
        Err(Error::Conflict { .. })
    ));
    f.registry
        .detach_policy("p", &PolicyTarget::Certificate(inactive))
        .unwrap();
    f.registry.transfer_certificate(&inactive).unwrap();
    assert!(f.registry.transfer_certificate(&inactive).is_err());
    f.registry
        .accept_certificate_transfer(&inactive, true)
        .unwrap();
    assert_eq!(
        f.registry.certificate(&inactive).unwrap().status,
        CertificateStatus::Active
    );
    assert!(
        f.registry
            .accept_certificate_transfer(&inactive, true)
            .is_err()
    );

    let (c, _) = f.device("c", CertificateStatus::PendingTransfer);
    f.registry.reject_certificate_transfer(&c).unwrap();
    assert_eq!(
        f.registry.certificate(&c).unwrap().status,
        CertificateStatus::Inactive
    );
    let (d, _) = f.device("d", CertificateStatus::PendingTransfer);
    f.registry.cancel_certificate_transfer(&d).unwrap();
    assert_eq!(
        f.registry.certificate(&d).unwrap().status,
        CertificateStatus::Inactive
    );
    let (e, _) = f.device("e", CertificateStatus::PendingTransfer);
    f.registry.accept_certificate_transfer(&e, false).unwrap();
    assert_eq!(
        f.registry.certificate(&e).unwrap().status,
        CertificateStatus::Inactive
    );
}

#[test]
fn delete_certificate_requires_inactive_and_detached() {
    let mut f = fixture();
    let (id, _) = f.device("a", CertificateStatus::Active);
    f.registry.create_thing("a", None, &[]).unwrap();
    f.registry.attach_thing_principal("a", &id, false).unwrap();
    assert!(matches!(
        f.registry.delete_certificate(&id),
        Err(Error::Conflict { .. })
    ));
    f.registry
        .update_certificate(
            &id,
            CertificateStatus::Inactive,
            std::time::SystemTime::now(),
        )
        .unwrap();
    assert!(matches!(
        f.registry.delete_certificate(&id),
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        f.registry.delete_thing("a"),
        Err(Error::Conflict { .. })
    ));
    f.registry.detach_thing_principal("a", &id).unwrap();
    assert!(
        f.registry
            .certificate_pem(&id)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    f.registry.delete_certificate(&id).unwrap();
    assert!(f.registry.certificate(&id).is_none());
    assert!(f.registry.certificate_pem(&id).is_err());
    f.registry.delete_thing("a").unwrap();

    let (pending, _) = f.device("p", CertificateStatus::PendingTransfer);
    assert!(f.registry.delete_certificate(&pending).is_err());
    let (revoked, _) = f.device("r", CertificateStatus::Revoked);
    f.registry.delete_certificate(&revoked).unwrap();
}

#[test]
fn registration_refuses_duplicates_unknown_cas_pending_transfer_and_ca_certificates() {
    let mut f = fixture();
    let (_, der) = f.device("a", CertificateStatus::Active);
    assert!(matches!(
        f.registry.register_certificate(
            &der,
            CertificateStatus::Active,
            std::time::SystemTime::now()
        ),
        Err(Error::AlreadyExists { .. })
    ));
    let other =
        CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
            .unwrap();
    let stranger = other
        .create_keys_and_certificate("s", CaKeyType::P256, std::time::SystemTime::now())
        .unwrap();
    assert!(matches!(
        f.registry.register_certificate(
            &stranger.certificate.der,
            CertificateStatus::Active,
            std::time::SystemTime::now()
        ),
        Err(Error::NotFound { .. })
    ));
    // Without a CA it is accepted.
    let id = f
        .registry
        .register_certificate_without_ca(
            &stranger.certificate.pem().into_bytes(),
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )
        .unwrap();
    assert_eq!(f.registry.certificate(&id).unwrap().ca, None);
    let fresh =
        f.ca.create_keys_and_certificate("t", CaKeyType::P256, std::time::SystemTime::now())
            .unwrap();
    assert!(matches!(
        f.registry.register_certificate(
            &fresh.certificate.der,
            CertificateStatus::PendingTransfer,
            std::time::SystemTime::now()
        ),
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        f.registry.register_certificate_without_ca(
            other.certificate_der(),
            CertificateStatus::Active,
            std::time::SystemTime::now()
        ),
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        f.registry.register_certificate(
            b"not a certificate",
            CertificateStatus::Active,
            std::time::SystemTime::now()
        ),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn thing_names_attributes_and_types_follow_aws_limits() {
    let mut r = Registry::in_memory();
    assert!(matches!(
        r.create_thing("bad name", None, &[]),
        Err(Error::InvalidName { .. })
    ));
    r.create_thing("t1", None, &[("a", "1"), ("b", "2"), ("c", "3")])
        .unwrap();
    // Creating the identical thing again is a no-op; a different one is a conflict.
    r.create_thing("t1", None, &[("a", "1"), ("b", "2"), ("c", "3")])
        .unwrap();
    assert!(matches!(
        r.create_thing("t1", None, &[]),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        r.create_thing(
            "t2",
            None,
            &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]
        ),
        Err(Error::LimitExceeded { limit: 3, .. })
    ));
    assert!(matches!(
        r.update_thing("t1", None, &[("d", Some("4"))]),
        Err(Error::LimitExceeded { limit: 3, .. })
    ));
    assert!(matches!(
        r.create_thing("t2", Some("sensor"), &[]),
        Err(Error::NotFound { .. })
    ));
    r.create_thing_type("sensor", Some("temperature sensors"))
        .unwrap();
    let names: Vec<String> = (0..51).map(|i| format!("attr{i}")).collect();
    let fifty: Vec<(&str, &str)> = names.iter().take(50).map(|n| (n.as_str(), "v")).collect();
    r.create_thing("t2", Some("sensor"), &fifty).unwrap();
    assert_eq!(r.thing("t2").unwrap().attributes.len(), 50);
    assert!(matches!(
        r.update_thing("t2", None, &[("attr50", Some("v"))]),
        Err(Error::LimitExceeded { limit: 50, .. })
    ));
    // Removing the type with 50 attributes would exceed the limit of 3.
    assert!(r.update_thing("t2", Some(None), &[]).is_err());
    r.update_thing("t1", Some(Some("sensor")), &[("a", None)])
        .unwrap();
    let t1 = r.thing("t1").unwrap();
    assert_eq!(t1.thing_type.as_deref(), Some("sensor"));
    assert_eq!(t1.attributes.len(), 2);
    assert_eq!(t1.version, 2);

    assert!(matches!(
        r.delete_thing_type("sensor"),
        Err(Error::Conflict { .. })
    ));
    r.deprecate_thing_type("sensor", false).unwrap();
    assert!(matches!(
        r.create_thing("t3", Some("sensor"), &[]),
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        r.delete_thing_type("sensor"),
        Err(Error::Conflict { .. })
    ));
    r.delete_thing("t2").unwrap();
    r.update_thing("t1", Some(None), &[]).unwrap();
    r.delete_thing_type("sensor").unwrap();
    assert!(r.thing_type("sensor").is_none());
}

#[test]
fn group_hierarchy_is_at_most_seven_deep_and_a_thing_joins_at_most_ten_groups() {
    let mut r = Registry::in_memory();
    r.create_thing_group("g1", None).unwrap();
    for depth in 2..=7 {
        r.create_thing_group(&format!("g{depth}"), Some(&format!("g{}", depth - 1)))
            .unwrap();
    }
    assert_eq!(r.group_depth("g7").unwrap(), 7);
    assert!(matches!(
        r.create_thing_group("g8", Some("g7")),
        Err(Error::LimitExceeded { limit: 7, .. })
    ));
    assert!(matches!(
        r.create_thing_group("orphan", Some("missing")),
        Err(Error::NotFound { .. })
    ));

    r.create_thing("t", None, &[]).unwrap();
    for i in 0..11 {
        r.create_thing_group(&format!("flat{i}"), None).unwrap();
    }
    for i in 0..10 {
        r.add_thing_to_group("t", &format!("flat{i}")).unwrap();
    }
    r.add_thing_to_group("t", "flat0").unwrap();
    assert!(matches!(
        r.add_thing_to_group("t", "flat10"),
        Err(Error::LimitExceeded { limit: 10, .. })
    ));
    assert!(matches!(
        r.delete_thing_group("g6"),
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        r.delete_thing_group("flat0"),
        Err(Error::Conflict { .. })
    ));
    r.remove_thing_from_group("t", "flat0").unwrap();
    r.delete_thing_group("flat0").unwrap();
    r.delete_thing_group("g7").unwrap();
}

#[test]
fn policies_have_at_most_five_versions_and_keep_their_default() {
    let mut r = Registry::in_memory();
    assert!(matches!(
        r.create_policy(
            "bad",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Maybe"}]}"#,
            std::time::SystemTime::now()
        ),
        Err(Error::Policy { .. })
    ));
    assert!(matches!(
        r.create_policy("bad:name", ALLOW_CONNECT, std::time::SystemTime::now()),
        Err(Error::InvalidName { .. })
    ));
    r.create_policy("p", ALLOW_CONNECT, std::time::SystemTime::now())
        .unwrap();
    for v in 2..=5 {
        assert_eq!(
            r.create_policy_version("p", ALLOW_PUBLISH, false, std::time::SystemTime::now())
                .unwrap(),
            v
        );
    }
    assert!(matches!(
        r.create_policy_version("p", ALLOW_PUBLISH, false, std::time::SystemTime::now()),
        Err(Error::LimitExceeded { limit: 5, .. })
    ));
    assert!(matches!(
        r.delete_policy_version("p", 1),
        Err(Error::Conflict { .. })
    ));
    r.delete_policy_version("p", 2).unwrap();
    assert_eq!(
        r.create_policy_version("p", ALLOW_PUBLISH, true, std::time::SystemTime::now())
            .unwrap(),
        6
    );
    assert_eq!(r.policy("p").unwrap().default_version_id, 6);
    r.set_default_policy_version("p", 3).unwrap();
    assert!(r.set_default_policy_version("p", 2).is_err());
    assert!(matches!(
        r.delete_policy("p"),
        Err(Error::Conflict { kind: "policy", ref id, .. }) if id == "p"
    ));
    for v in [1, 4, 5, 6] {
        r.delete_policy_version("p", v).unwrap();
    }
    r.delete_policy("p").unwrap();
    assert!(r.policy("p").is_none());
}

#[test]
fn effective_policies_are_the_certificates_then_groups_and_ancestors_without_duplicates() {
    let mut f = fixture();
    let (id, der) = f.device("dev", CertificateStatus::Active);
    let r = &mut f.registry;
    for p in ["own", "site", "region", "fleet", "unrelated"] {
        r.create_policy(p, ALLOW_CONNECT, std::time::SystemTime::now())
            .unwrap();
    }
    r.create_thing_group("fleet", None).unwrap();
    r.create_thing_group("region", Some("fleet")).unwrap();
    r.create_thing_group("site", Some("region")).unwrap();
    r.create_thing_group("other", None).unwrap();
    r.attach_policy("own", &PolicyTarget::Certificate(id))
        .unwrap();
    r.attach_policy("site", &PolicyTarget::ThingGroup("site".into()))
        .unwrap();
    r.attach_policy("region", &PolicyTarget::ThingGroup("region".into()))
        .unwrap();
    r.attach_policy("fleet", &PolicyTarget::ThingGroup("fleet".into()))
        .unwrap();
    r.attach_policy("own", &PolicyTarget::ThingGroup("fleet".into()))
        .unwrap();
    r.attach_policy("unrelated", &PolicyTarget::ThingGroup("other".into()))
        .unwrap();
    r.create_thing("dev", None, &[]).unwrap();
    r.add_thing_to_group("dev", "site").unwrap();
    // Not attached to the thing yet: only the certificate's own policy.
    let names = |r: &Registry| -> Vec<String> {
        r.effective_policies(&id)
            .unwrap()
            .iter()
            .map(|p| p.name.to_string())
            .collect()
    };
    assert_eq!(names(r), ["own"]);
    r.attach_thing_principal("dev", &id, true).unwrap();
    assert_eq!(names(r), ["own", "site", "region", "fleet"]);

    // The default version is what is in effect.
    r.create_policy_version("site", ALLOW_PUBLISH, true, std::time::SystemTime::now())
        .unwrap();
    let identity = r
        .authenticate(&[&der], std::time::SystemTime::now())
        .unwrap();
    let site = identity
        .policies
        .iter()
        .find(|p| &*p.name == "site")
        .unwrap();
    assert_eq!(site.version.version_id, 2);
    assert_eq!(site.version.document.text(), ALLOW_PUBLISH);
    assert_eq!(identity.thing.as_deref(), Some("dev"));

    // A policy still attached somewhere cannot be deleted.
    assert!(matches!(
        r.delete_policy("fleet"),
        Err(Error::Conflict { .. })
    ));
}

#[test]
fn exclusive_thing_attachment_is_exclusive() {
    let mut f = fixture();
    let (id, _) = f.device("x", CertificateStatus::Active);
    let r = &mut f.registry;
    r.create_thing("a", None, &[]).unwrap();
    r.create_thing("b", None, &[]).unwrap();
    r.attach_thing_principal("a", &id, true).unwrap();
    r.attach_thing_principal("a", &id, true).unwrap();
    assert!(matches!(
        r.attach_thing_principal("b", &id, false),
        Err(Error::Conflict { .. })
    ));
    r.detach_thing_principal("a", &id).unwrap();
    r.attach_thing_principal("a", &id, false).unwrap();
    r.attach_thing_principal("b", &id, false).unwrap();
    assert!(matches!(
        r.attach_thing_principal("b", &id, true),
        Err(Error::Conflict { .. })
    ));
    assert_eq!(r.thing_principals("b"), &[id]);
}

#[test]
fn authenticate_refuses_unknown_inactive_and_inactive_ca_certificates() {
    let mut f = fixture();
    let (id, der) = f.device("dev", CertificateStatus::Active);
    let identity = f
        .registry
        .authenticate(&[&der], std::time::SystemTime::now())
        .unwrap();
    assert_eq!(identity.certificate_id, id);
    assert_eq!(identity.status, CertificateStatus::Active);
    assert_eq!(identity.ca_certificate_id, Some(f.ca_id));
    assert!(identity.thing.is_none());

    let none: [&[u8]; 0] = [];
    assert!(matches!(
        f.registry.authenticate(&none, std::time::SystemTime::now()),
        Err(Error::Unauthenticated(AuthFailure::NoCertificate))
    ));
    let stranger =
        f.ca.create_keys_and_certificate("s", CaKeyType::P256, std::time::SystemTime::now())
            .unwrap();
    assert!(matches!(
        f.registry
            .authenticate(&[&stranger.certificate.der], std::time::SystemTime::now()),
        Err(Error::Unauthenticated(AuthFailure::UnknownCertificate { id }))
            if id == stranger.certificate.id
    ));
    for status in [
        CertificateStatus::Inactive,
        CertificateStatus::PendingActivation,
        CertificateStatus::RegisterInactive,
        CertificateStatus::PendingTransfer,
        CertificateStatus::Revoked,
    ] {
        let (_, der) = f.device("x", status);
        assert!(
            matches!(
                f.registry.authenticate(&[&der], std::time::SystemTime::now()),
                Err(Error::Unauthenticated(AuthFailure::CertificateNotActive { status: s, .. }))
                    if s == status
            ),
            "{status}"
        );
    }
    f.take_events();
    f.registry
        .update_ca_certificate(&f.ca_id, CaStatus::Inactive, false)
        .unwrap();
    assert_eq!(
        f.take_events(),
        vec![RegistryEvent::CaDeactivated {
            ca_certificate_id: f.ca_id
        }]
    );
    assert!(matches!(
        f.registry
            .authenticate(&[&der], std::time::SystemTime::now()),
        Err(Error::Unauthenticated(AuthFailure::CaInactive { ca, .. })) if ca == f.ca_id
    ));
    f.registry
        .update_ca_certificate(&f.ca_id, CaStatus::Active, false)
        .unwrap();
    assert!(
        f.registry
            .authenticate(&[&der], std::time::SystemTime::now())
            .is_ok()
    );
}

#[test]
fn ca_deletion_needs_inactive_and_no_registered_certificates() {
    let mut f = fixture();
    let (id, _) = f.device("d", CertificateStatus::Inactive);
    assert!(matches!(
        f.registry.delete_ca_certificate(&f.ca_id),
        Err(Error::Conflict { .. })
    ));
    f.registry
        .update_ca_certificate(&f.ca_id, CaStatus::Inactive, false)
        .unwrap();
    assert!(matches!(
        f.registry.delete_ca_certificate(&f.ca_id),
        Err(Error::Conflict { .. })
    ));
    f.registry.delete_certificate(&id).unwrap();
    f.registry.delete_ca_certificate(&f.ca_id).unwrap();
    assert!(f.registry.ca_certificate(&f.ca_id).is_none());
}

#[test]
fn auto_registration_registers_pending_activation_only_when_enabled() {
    let mut f = fixture();
    let device =
        f.ca.create_keys_and_certificate("jitr", CaKeyType::P256, std::time::SystemTime::now())
            .unwrap();
    assert!(matches!(
        f.registry
            .auto_register(&[&device.certificate.der], std::time::SystemTime::now()),
        Err(Error::Unauthenticated(
            AuthFailure::AutoRegistrationDisabled { .. }
        ))
    ));
    f.registry
        .update_ca_certificate(&f.ca_id, CaStatus::Active, true)
        .unwrap();
    let id = f
        .registry
        .auto_register(&[&device.certificate.der], std::time::SystemTime::now())
        .unwrap();
    assert_eq!(
        f.registry.certificate(&id).unwrap().status,
        CertificateStatus::PendingActivation
    );
    assert!(
        f.registry
            .authenticate(&[&device.certificate.der], std::time::SystemTime::now())
            .is_err()
    );
    f.registry
        .update_certificate(&id, CertificateStatus::Active, std::time::SystemTime::now())
        .unwrap();
    assert!(
        f.registry
            .authenticate(&[&device.certificate.der], std::time::SystemTime::now())
            .is_ok()
    );
}

#[test]
fn revoked_serials_feed_the_crl_of_their_ca() {
    let mut f = fixture();
    let (id, der) = f.device("gone", CertificateStatus::Active);
    f.registry
        .update_certificate(
            &id,
            CertificateStatus::Revoked,
            std::time::SystemTime::now(),
        )
        .unwrap();
    let serials = f.registry.revoked_serials(&f.ca_id);
    assert_eq!(serials.len(), 1);
    let (_, cert) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<
        _,
    >>::from_der(&der)
    .unwrap();
    assert_eq!(serials[0].serial, cert.raw_serial());
}

#[test]
fn failed_batch_rolls_back_memory_and_writes_nothing() {
    let store = MemoryStore::new();
    let mut r = Registry::open(store.clone(), RegistryLimits::default()).unwrap();
    r.create_thing("keep", None, &[]).unwrap();
    let records = store.len();
    let result = r.batch(|r| {
        r.create_thing("a", None, &[])?;
        r.create_thing_group("g", None)?;
        r.add_thing_to_group("a", "g")?;
        r.update_thing("keep", None, &[("k", Some("v"))])?;
        r.create_thing("bad name", None, &[])
    });
    assert!(result.is_err());
    assert!(r.thing("a").is_none());
    assert!(r.thing_group("g").is_none());
    assert!(r.thing("keep").unwrap().attributes.is_empty());
    assert_eq!(store.len(), records);
    // The group can be deleted afterwards only if it existed; the counts were rolled back too.
    r.create_thing_group("g", None).unwrap();
    r.delete_thing_group("g").unwrap();
}

/// A store whose commits fail on demand (a full disk, say).
struct FlakyStore {
    inner: MemoryStore,
    fail: Arc<Mutex<bool>>,
}

impl RegistryStore for FlakyStore {
    fn for_each(
        &self,
        f: &mut dyn FnMut(&str, &[u8]) -> thingkit_provision::Result<()>,
    ) -> thingkit_provision::Result<()> {
        self.inner.for_each(f)
    }
    fn get(&self, key: &str) -> thingkit_provision::Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn commit(&mut self, ops: &[StoreOp]) -> thingkit_provision::Result<()> {
        if *self.fail.lock().unwrap() {
            return Err(Error::Store("disk full".into()));
        }
        self.inner.commit(ops)
    }
}

#[test]
fn store_failure_is_not_acknowledged_and_emits_no_event() {
    let ca = CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now())
        .unwrap();
    let fail = Arc::new(Mutex::new(false));
    let mut r = Registry::open(
        FlakyStore {
            inner: MemoryStore::new(),
            fail: fail.clone(),
        },
        RegistryLimits::default(),
    )
    .unwrap();
    let events = Arc::new(Mutex::new(0));
    let counter = events.clone();
    r.subscribe(move |_| *counter.lock().unwrap() += 1);
    r.register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)
        .unwrap();
    let c = ca
        .create_keys_and_certificate("d", CaKeyType::P256, std::time::SystemTime::now())
        .unwrap();
    let id = r
        .register_certificate(
            &c.certificate.der,
            CertificateStatus::Active,
            std::time::SystemTime::now(),
        )
        .unwrap();
    *fail.lock().unwrap() = true;
    let e = r
        .update_certificate(
            &id,
            CertificateStatus::Revoked,
            std::time::SystemTime::now(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
    // The store's own error is kept as the source, not flattened into a string.
    assert_eq!(
        std::error::Error::source(&e)
            .map(|s| s.to_string())
            .as_deref(),
        Some("disk full")
    );
    assert_eq!(
        r.certificate(&id).unwrap().status,
        CertificateStatus::Active
    );
    assert_eq!(*events.lock().unwrap(), 0);
    *fail.lock().unwrap() = false;
    r.update_certificate(
        &id,
        CertificateStatus::Revoked,
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert_eq!(*events.lock().unwrap(), 1);
}

#[test]
fn reopening_a_store_restores_every_record_and_index() {
    let mut f = fixture();
    let (id, der) = f.device("dev", CertificateStatus::Active);
    let r = &mut f.registry;
    r.create_thing_type("sensor", None).unwrap();
    r.create_thing("dev", Some("sensor"), &[("site", "x")])
        .unwrap();
    r.create_thing_group("fleet", None).unwrap();
    r.create_thing_group("site", Some("fleet")).unwrap();
    r.add_thing_to_group("dev", "site").unwrap();
    r.create_policy("p", ALLOW_CONNECT, std::time::SystemTime::now())
        .unwrap();
    r.create_policy_version("p", ALLOW_PUBLISH, true, std::time::SystemTime::now())
        .unwrap();
    r.attach_policy("p", &PolicyTarget::ThingGroup("fleet".into()))
        .unwrap();
    r.attach_thing_principal("dev", &id, true).unwrap();
    let before = r
        .authenticate(&[&der], std::time::SystemTime::now())
        .unwrap();

    let reopened = Registry::open(r.store().clone(), RegistryLimits::default()).unwrap();
    let after = reopened
        .authenticate(&[&der], std::time::SystemTime::now())
        .unwrap();
    assert_eq!(after.certificate_id, before.certificate_id);
    assert_eq!(after.things, before.things);
    assert_eq!(after.policies.len(), 1);
    assert_eq!(after.policies[0].version.version_id, 2);
    assert_eq!(reopened.thing("dev"), r.thing("dev"));
    assert_eq!(reopened.thing_principals("dev"), &[id]);
    let pem = reopened.certificate_pem(&id).unwrap();
    let blocks = thingkit_provision::decode_pem_blocks(&pem).unwrap();
    assert_eq!(blocks, vec![("CERTIFICATE".to_string(), der.clone())]);
}

#[test]
fn certificate_der_survives_status_changes_and_attachments_in_one_batch() {
    let mut f = fixture();
    let device =
        f.ca.create_keys_and_certificate("b", CaKeyType::P256, std::time::SystemTime::now())
            .unwrap();
    let der = device.certificate.der.clone();
    let r = &mut f.registry;
    r.create_policy("p", ALLOW_CONNECT, std::time::SystemTime::now())
        .unwrap();
    let id = r
        .batch(|r| {
            let id = r.register_certificate(
                &der,
                CertificateStatus::Inactive,
                std::time::SystemTime::now(),
            )?;
            r.attach_policy("p", &PolicyTarget::Certificate(id))?;
            r.update_certificate(&id, CertificateStatus::Active, std::time::SystemTime::now())?;
            Ok(id)
        })
        .unwrap();
    r.update_certificate(
        &id,
        CertificateStatus::Inactive,
        std::time::SystemTime::now(),
    )
    .unwrap();
    let reopened = Registry::open(r.store().clone(), RegistryLimits::default()).unwrap();
    assert_eq!(
        reopened.certificate(&id).unwrap().status,
        CertificateStatus::Inactive
    );
    assert_eq!(reopened.certificate(&id).unwrap().policies.len(), 1);
    let pem = reopened.certificate_pem(&id).unwrap();
    assert_eq!(
        thingkit_provision::decode_pem_blocks(&pem).unwrap()[0].1,
        der
    );
}

mod model {
    use proptest::prelude::*;
    use thingkit_provision::Registry;
    use thingkit_provision::{CaKeyType, CaOptions, CertificateAuthority};
    use thingkit_provision::{CaStatus, CertificateStatus as S};

    #[derive(Clone, Debug)]
    enum Op {
        Update(S),
        Transfer,
        Accept(bool),
        Reject,
        Cancel,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            proptest::sample::select(S::ALL.to_vec()).prop_map(Op::Update),
            Just(Op::Transfer),
            any::<bool>().prop_map(Op::Accept),
            Just(Op::Reject),
            Just(Op::Cancel),
        ]
    }

    /// The AWS rules written out independently of the implementation.
    fn model(status: S, op: &Op) -> Option<S> {
        match op {
            Op::Update(to) => {
                let user = matches!(to, S::Active | S::Inactive | S::Revoked);
                let stuck = matches!(status, S::Revoked | S::PendingTransfer);
                (user && !stuck).then_some(*to)
            }
            Op::Transfer => (status == S::Inactive).then_some(S::PendingTransfer),
            Op::Accept(active) => (status == S::PendingTransfer).then_some(if *active {
                S::Active
            } else {
                S::Inactive
            }),
            Op::Reject | Op::Cancel => (status == S::PendingTransfer).then_some(S::Inactive),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn certificate_status_follows_the_reference_model(
            start in proptest::sample::select(vec![S::Active, S::Inactive, S::Revoked, S::RegisterInactive, S::PendingActivation]),
            ops in proptest::collection::vec(op(), 0..16),
        ) {
            let ca = CertificateAuthority::create_root(&CaOptions::default(), std::time::SystemTime::now()).unwrap();
            let device = ca.create_keys_and_certificate("m", CaKeyType::P256, std::time::SystemTime::now()).unwrap();
            let mut r = Registry::in_memory();
            r.register_ca_certificate(ca.certificate_der(), CaStatus::Active, false).unwrap();
            let id = r.register_certificate(&device.certificate.der, start, std::time::SystemTime::now()).unwrap();
            let mut expected = start;
            for op in &ops {
                let result = match op {
                    Op::Update(to) => r.update_certificate(&id, *to, std::time::SystemTime::now()),
                    Op::Transfer => r.transfer_certificate(&id),
                    Op::Accept(a) => r.accept_certificate_transfer(&id, *a),
                    Op::Reject => r.reject_certificate_transfer(&id),
                    Op::Cancel => r.cancel_certificate_transfer(&id),
                };
                let want = model(expected, op);
                prop_assert_eq!(result.is_ok(), want.is_some(), "{:?} from {}", op, expected);
                if let Some(s) = want {
                    expected = s;
                }
                prop_assert_eq!(r.certificate(&id).unwrap().status, expected);
                prop_assert_eq!(r.authenticate(&[&device.certificate.der], std::time::SystemTime::now()).is_ok(), expected == S::Active);
            }
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Time is a parameter: every check and every timestamp follows the `now` passed in.

/// A fixed instant for the tests that drive time: 2030-01-01T00:00:00Z.
fn t0() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_893_456_000)
}

#[test]
fn authenticate_accepts_until_not_after_and_refuses_one_second_later() {
    use std::time::Duration;
    let now = t0();
    let ca = CertificateAuthority::create_root(&CaOptions::default(), now).unwrap();
    let mut registry = Registry::in_memory();
    registry
        .register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)
        .unwrap();
    let device = ca
        .create_keys_and_certificate("sensor", CaKeyType::P256, now)
        .unwrap();
    let id = registry
        .register_certificate(&device.certificate.der, CertificateStatus::Active, now)
        .unwrap();
    let not_after = registry.certificate(&id).unwrap().not_after;
    assert_eq!(not_after, device.certificate.not_after.unix_timestamp());
    let at = |secs: i64| std::time::UNIX_EPOCH + Duration::from_secs(secs as u64);
    let der = [&device.certificate.der];

    assert!(registry.authenticate(&der, at(not_after - 1)).is_ok());
    assert!(registry.authenticate(&der, at(not_after)).is_ok());
    let e = registry
        .authenticate(&der, at(not_after + 1))
        .expect_err("expired one second ago");
    assert!(
        matches!(
            &e,
            Error::Unauthenticated(AuthFailure::CertificateExpired { id: i, not_after: n })
                if *i == id && *n == not_after
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("has expired"), "{e}");
}

#[test]
fn issuance_revocation_and_policy_versions_are_dated_by_the_caller() {
    use std::time::Duration;
    let now = t0();
    let ca = CertificateAuthority::create_root(&CaOptions::default(), now).unwrap();
    let device = ca
        .create_keys_and_certificate("sensor", CaKeyType::P256, now)
        .unwrap();
    // The default profile: 365 days of validity from `now`.
    assert_eq!(
        device.certificate.not_after.unix_timestamp(),
        1_893_456_000 + 365 * 86_400
    );

    let mut registry = Registry::in_memory();
    registry
        .register_ca_certificate(ca.certificate_der(), CaStatus::Active, false)
        .unwrap();
    let id = registry
        .register_certificate(&device.certificate.der, CertificateStatus::Active, now)
        .unwrap();
    let later = now + Duration::from_secs(3600);
    registry
        .update_certificate(&id, CertificateStatus::Revoked, later)
        .unwrap();
    let revoked = registry.revoked_serials(&ca.id());
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].revoked_at.unix_timestamp(), 1_893_456_000 + 3600);

    registry.create_policy("p", ALLOW_CONNECT, now).unwrap();
    let v2 = registry
        .create_policy_version("p", ALLOW_PUBLISH, true, later)
        .unwrap();
    let policy = registry.policy("p").unwrap();
    assert_eq!(policy.version(1).unwrap().created_at, 1_893_456_000);
    assert_eq!(policy.version(v2).unwrap().created_at, 1_893_456_000 + 3600);
}

/// A second registry on the same store: what another server would hold.
fn second_registry(f: &Fixture) -> (Registry, Arc<Mutex<Vec<RegistryEvent>>>) {
    let mut other = Registry::open(f.registry.store().clone(), RegistryLimits::default()).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    other.subscribe(move |e| sink.lock().unwrap().push(e.clone()));
    (other, events)
}

#[test]
fn refresh_applies_another_writers_revocation_and_emits_its_event() {
    let mut f = fixture();
    let (id, der) = f.device("dev", CertificateStatus::Active);
    let (mut other, events) = second_registry(&f);
    let generation = other.generation();
    let before = generation.load(std::sync::atomic::Ordering::Acquire);
    assert!(
        other
            .authenticate(&[&der], std::time::SystemTime::now())
            .is_ok()
    );

    f.registry
        .update_certificate(
            &id,
            CertificateStatus::Revoked,
            std::time::SystemTime::now(),
        )
        .unwrap();
    // Not seen until refreshed: the store changed underneath, memory did not.
    assert!(
        other
            .authenticate(&[&der], std::time::SystemTime::now())
            .is_ok()
    );
    let key = format!("cert/{id}");
    assert_eq!(other.refresh([key.as_str()]).unwrap(), 1);
    assert!(matches!(
        other.authenticate(&[&der], std::time::SystemTime::now()),
        Err(Error::Unauthenticated(
            AuthFailure::CertificateNotActive { .. }
        ))
    ));
    assert_eq!(
        *events.lock().unwrap(),
        vec![RegistryEvent::CertificateDeactivated {
            certificate_id: id,
            status: CertificateStatus::Revoked,
        }]
    );
    assert!(generation.load(std::sync::atomic::Ordering::Acquire) > before);
    // A second refresh of the same key changes nothing and emits nothing.
    assert_eq!(other.refresh([key.as_str()]).unwrap(), 0);
    assert_eq!(events.lock().unwrap().len(), 1);
}

#[test]
fn refresh_follows_policy_versions_attachments_ca_status_and_deletions() {
    let mut f = fixture();
    let (id, der) = f.device("dev", CertificateStatus::Active);
    f.registry
        .create_policy("p", ALLOW_CONNECT, std::time::SystemTime::now())
        .unwrap();
    f.registry
        .attach_policy("p", &PolicyTarget::Certificate(id))
        .unwrap();
    f.registry.create_thing("gone", None, &[]).unwrap();
    let (mut other, events) = second_registry(&f);

    f.registry
        .create_policy_version("p", ALLOW_PUBLISH, true, std::time::SystemTime::now())
        .unwrap();
    f.registry.delete_thing("gone").unwrap();
    f.registry.create_thing("new", None, &[]).unwrap();
    f.registry
        .update_ca_certificate(&f.ca_id, CaStatus::Inactive, false)
        .unwrap();
    let changed = other
        .refresh([
            "policy/p",
            "thing/gone",
            "thing/new",
            &format!("ca/{}", f.ca_id),
        ])
        .unwrap();
    assert_eq!(changed, 4);
    assert!(other.thing("gone").is_none() && other.thing("new").is_some());
    assert_eq!(
        other
            .policy("p")
            .unwrap()
            .default_version()
            .unwrap()
            .version_id,
        2,
        "the new default version is in force"
    );
    assert_eq!(
        *events.lock().unwrap(),
        vec![RegistryEvent::CaDeactivated {
            ca_certificate_id: f.ca_id
        }]
    );
    assert!(
        other
            .authenticate(&[&der], std::time::SystemTime::now())
            .is_err()
    );
}

#[test]
fn refresh_all_makes_memory_equal_to_the_store_and_refuses_bad_keys() {
    let mut f = fixture();
    let (id, _) = f.device("dev", CertificateStatus::Active);
    f.registry.create_thing("a", None, &[]).unwrap();
    let (mut other, events) = second_registry(&f);
    f.registry.delete_thing("a").unwrap();
    f.registry.create_thing("b", None, &[]).unwrap();
    f.registry
        .update_certificate(
            &id,
            CertificateStatus::Inactive,
            std::time::SystemTime::now(),
        )
        .unwrap();
    assert_eq!(other.refresh_all().unwrap(), 3);
    assert!(other.thing("a").is_none() && other.thing("b").is_some());
    assert_eq!(events.lock().unwrap().len(), 1);
    assert_eq!(other.refresh_all().unwrap(), 0);
    assert!(matches!(other.refresh(["nonsense"]), Err(Error::Store(_))));
}
