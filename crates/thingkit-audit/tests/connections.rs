//! The connection checks against fleets built for them, and a proptest against an O(n²)
//! reference model.

mod support;

use proptest::prelude::*;
use support::*;
use thingkit_audit::connection::{conflicting_client_ids, shared_certificates};
use thingkit_audit::snapshot::DUPLICATE_CLIENT_ID;
use thingkit_audit::{
    AuditConfig, CheckName, CheckRunStatus, ConnectionRecord, ConnectionWindow, ReasonCode,
    ResourceType, run_audit,
};

const CERT_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const CERT_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[test]
fn device_certificate_shared_flags_one_certificate_on_two_concurrent_clients() {
    let mut s = snapshot();
    s.connections = vec![
        conn("sensor-1", CERT_A, NOW - 3 * DAY, Some(NOW - 2 * DAY)),
        conn(
            "sensor-2",
            CERT_A,
            NOW - 3 * DAY + 60,
            Some(NOW - 3 * DAY + 600),
        ),
        // CERT_B: two clients one after the other, never at once.
        conn("pump-1", CERT_B, NOW - 5 * DAY, Some(NOW - 4 * DAY)),
        conn("pump-2", CERT_B, NOW - 4 * DAY, None),
    ];
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    let found: Vec<_> = report
        .findings_for(CheckName::DeviceCertificateShared)
        .collect();
    assert_eq!(found.len(), 1);
    let f = found[0];
    assert_eq!(
        f.non_compliant_resource
            .resource_identifier
            .device_certificate_id
            .as_deref(),
        Some(CERT_A)
    );
    assert_eq!(
        f.reason_for_non_compliance_code,
        ReasonCode::CertificateSharedByMultipleDevices
    );
    let clients: Vec<_> = f
        .related_resources
        .iter()
        .map(|r| {
            assert_eq!(r.resource_type, ResourceType::ClientId);
            r.resource_identifier.client_id.clone().unwrap()
        })
        .collect();
    assert_eq!(clients, ["sensor-1", "sensor-2"]);
    assert_eq!(
        f.related_resources[1].additional_info["CONNECTION_TIME"],
        (NOW - 3 * DAY + 60).to_string()
    );
    let details = &report.checks[&CheckName::DeviceCertificateShared];
    assert_eq!(details.total_resources_count, 2);
    assert_eq!(details.non_compliant_resources_count, 1);
}

#[test]
fn connections_outside_the_on_demand_window_are_not_read() {
    let mut s = snapshot();
    s.connections = vec![
        // 40 days ago: before the 31-day window.
        conn("a", CERT_A, NOW - 40 * DAY, Some(NOW - 39 * DAY)),
        conn("b", CERT_A, NOW - 40 * DAY, Some(NOW - 39 * DAY)),
        // The last hour: after the window's end (2 hours before the run).
        conn("c", CERT_B, NOW - 3600, None),
        conn("d", CERT_B, NOW - 3000, None),
    ];
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    assert_eq!(
        report.checks[&CheckName::DeviceCertificateShared].check_run_status,
        CheckRunStatus::CompletedCompliant
    );
    // A scheduled audit whose previous run was 41 days ago reads the old overlap.
    let config = AuditConfig {
        connection_window: ConnectionWindow::Scheduled {
            previous_run: NOW - 41 * DAY,
        },
        ..AuditConfig::default()
    };
    assert_eq!(
        run_audit(&s, &config, NOW)
            .findings_for(CheckName::DeviceCertificateShared)
            .count(),
        1
    );
}

#[test]
fn conflicting_client_ids_flags_overlaps_and_takeovers_not_reconnects() {
    let mut s = snapshot();
    let mut takeover = conn("dup", CERT_A, NOW - 3 * DAY, Some(NOW - 2 * DAY));
    takeover.disconnect_reason = Some(DUPLICATE_CLIENT_ID.into());
    s.connections = vec![
        takeover,
        conn("dup", CERT_B, NOW - 2 * DAY, None),
        conn("clean", CERT_A, NOW - 5 * DAY, Some(NOW - 4 * DAY)),
        conn("clean", CERT_A, NOW - 4 * DAY, Some(NOW - 3 * DAY)),
    ];
    let report = run_audit(&s, &AuditConfig::default(), NOW);
    let found: Vec<_> = report
        .findings_for(CheckName::ConflictingClientIds)
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0]
            .non_compliant_resource
            .resource_identifier
            .client_id
            .as_deref(),
        Some("dup")
    );
    assert_eq!(found[0].related_resources.len(), 2);
    assert_eq!(
        found[0].reason_for_non_compliance_code,
        ReasonCode::DuplicateClientIdAcrossConnections
    );
    assert_eq!(
        report.checks[&CheckName::ConflictingClientIds].total_resources_count,
        2
    );
}

// ---- the reference model ----

const WINDOW: (i64, i64) = (100, 900);

fn clipped(r: &ConnectionRecord) -> Option<(i64, i64)> {
    let s = r.connected_at.max(WINDOW.0);
    let e = r.disconnected_at.unwrap_or(i64::MAX).min(WINDOW.1);
    (s < e).then_some((s, e))
}

/// Every pair, no sorting, no early exit.
fn shared_reference(records: &[ConnectionRecord]) -> Vec<(String, Vec<usize>)> {
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<usize>> =
        Default::default();
    for i in 0..records.len() {
        for j in 0..records.len() {
            let (a, b) = (&records[i], &records[j]);
            if i == j || a.certificate_id != b.certificate_id || a.client_id == b.client_id {
                continue;
            }
            if let (Some((sa, ea)), Some((sb, eb))) = (clipped(a), clipped(b))
                && sa.max(sb) < ea.min(eb)
            {
                out.entry(a.certificate_id.clone()).or_default().insert(i);
            }
        }
    }
    out.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

/// Every ordered pair: overlapping, or the first taken over in the second the other started.
fn conflicting_reference(records: &[ConnectionRecord]) -> Vec<(String, Vec<usize>)> {
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<usize>> =
        Default::default();
    for i in 0..records.len() {
        for j in 0..records.len() {
            let (a, b) = (&records[i], &records[j]);
            if i == j || a.client_id != b.client_id {
                continue;
            }
            if let (Some((sa, ea)), Some((sb, eb))) = (clipped(a), clipped(b)) {
                let takeover = a.disconnect_reason.as_deref() == Some(DUPLICATE_CLIENT_ID)
                    && a.disconnected_at == Some(b.connected_at);
                if sa.max(sb) < ea.min(eb) || takeover {
                    out.entry(a.client_id.clone()).or_default().extend([i, j]);
                }
            }
        }
    }
    out.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

fn record() -> impl Strategy<Value = ConnectionRecord> {
    (
        0..4usize,
        0..3usize,
        -50i64..1000,
        proptest::option::of(0i64..400),
        any::<bool>(),
    )
        .prop_map(|(client, cert, start, len, dup)| ConnectionRecord {
            client_id: format!("client-{client}"),
            certificate_id: format!("cert-{cert}"),
            source: String::new(),
            connected_at: start,
            disconnected_at: len.map(|l| start + l),
            disconnect_reason: dup.then(|| DUPLICATE_CLIENT_ID.to_string()),
        })
}

proptest! {
    #[test]
    fn shared_certificates_agree_with_the_pairwise_model(records in proptest::collection::vec(record(), 0..40)) {
        let fast: Vec<(String, Vec<usize>)> = shared_certificates(&records, WINDOW)
            .into_iter()
            .map(|s| (s.certificate_id, s.records))
            .collect();
        prop_assert_eq!(fast, shared_reference(&records));
    }

    #[test]
    fn conflicting_client_ids_agree_with_the_pairwise_model(records in proptest::collection::vec(record(), 0..40)) {
        let fast: Vec<(String, Vec<usize>)> = conflicting_client_ids(&records, WINDOW)
            .into_iter()
            .map(|c| (c.client_id, c.records))
            .collect();
        prop_assert_eq!(fast, conflicting_reference(&records));
    }

    #[test]
    fn random_connection_logs_never_panic(
        records in proptest::collection::vec(
            (any::<String>(), any::<String>(), any::<i64>(), proptest::option::of(any::<i64>()))
                .prop_map(|(client, cert, start, end)| ConnectionRecord {
                    client_id: client,
                    certificate_id: cert,
                    source: String::new(),
                    connected_at: start,
                    disconnected_at: end,
                    disconnect_reason: None,
                }),
            0..30),
        now in any::<i64>(),
        previous in proptest::option::of(any::<i64>()),
    ) {
        let mut s = snapshot();
        s.connections = records.clone();
        let config = AuditConfig {
            connection_window: match previous {
                Some(previous_run) => ConnectionWindow::Scheduled { previous_run },
                None => ConnectionWindow::OnDemand,
            },
            ..AuditConfig::default()
        };
        let report = run_audit(&s, &config, now);
        prop_assert!(report.checks.contains_key(&CheckName::DeviceCertificateShared));
        let _ = conflicting_client_ids(&records, (i64::MIN, i64::MAX));
    }
}
