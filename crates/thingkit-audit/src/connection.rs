//! The two connection checks over the broker's connection log: one certificate used by
//! concurrent connections with different client IDs (`DEVICE_CERTIFICATE_SHARED_CHECK`), and one
//! client ID used by overlapping connections (`CONFLICTING_CLIENT_IDS_CHECK`).
//!
//! A record covers the half-open interval `[connected_at, disconnected_at)` (an open connection
//! runs to the end of the window), clipped to the check window. Two records overlap when their
//! clipped intervals share at least one second: `max(starts) < min(ends)`. For client IDs, an
//! older connection that ended *because* the newer one took its client ID
//! (`disconnect_reason = DUPLICATE_CLIENTID`, ending in the second the newer one started) also
//! conflicts, since log timestamps are whole seconds.

use std::collections::{BTreeMap, BTreeSet};

use crate::check::{CheckName, ReasonCode};
use crate::finding::{Draft, RelatedResource, ResourceIdentifier, ResourceType};
use crate::report::Tally;
use crate::snapshot::{ConnectionRecord, DUPLICATE_CLIENT_ID};

/// A certificate used by overlapping connections with different client IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCertificate {
    /// The certificate ID.
    pub certificate_id: String,
    /// Indexes (into the records given) of every connection that overlapped a connection of
    /// the same certificate with a different client ID, ascending.
    pub records: Vec<usize>,
}

/// A client ID used by overlapping connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictingClientId {
    /// The client ID.
    pub client_id: String,
    /// Indexes of every connection involved in a conflict, ascending.
    pub records: Vec<usize>,
}

/// A record's interval clipped to the window, or `None` if it misses the window.
fn clip(r: &ConnectionRecord, (start, end): (i64, i64)) -> Option<(i64, i64)> {
    let s = r.connected_at.max(start);
    let e = r.disconnected_at.unwrap_or(i64::MAX).min(end);
    (s < e).then_some((s, e))
}

/// Groups the in-window records by a key, each group sorted by clipped start.
fn groups<'r>(
    records: &'r [ConnectionRecord],
    window: (i64, i64),
    key: impl Fn(&'r ConnectionRecord) -> &'r str,
) -> BTreeMap<&'r str, Vec<(usize, i64, i64)>> {
    let mut out: BTreeMap<&str, Vec<(usize, i64, i64)>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        if let Some((s, e)) = clip(r, window) {
            out.entry(key(r)).or_default().push((i, s, e));
        }
    }
    for g in out.values_mut() {
        g.sort_by_key(|&(i, s, _)| (s, i));
    }
    out
}

/// The certificates shared by concurrent connections with different client IDs in `window`
/// (`[start, end)` Unix seconds), sorted by certificate ID.
pub fn shared_certificates(
    records: &[ConnectionRecord],
    window: (i64, i64),
) -> Vec<SharedCertificate> {
    let mut out = Vec::new();
    for (cert, group) in groups(records, window, |r| r.certificate_id.as_str()) {
        let mut involved = BTreeSet::new();
        for (a, &(i, _, ei)) in group.iter().enumerate() {
            // Sorted by start: every later record starting before this one ends overlaps it.
            for &(j, sj, _) in &group[a + 1..] {
                if sj >= ei {
                    break;
                }
                if records[i].client_id != records[j].client_id {
                    involved.insert(i);
                    involved.insert(j);
                }
            }
        }
        if !involved.is_empty() {
            out.push(SharedCertificate {
                certificate_id: cert.to_string(),
                records: involved.into_iter().collect(),
            });
        }
    }
    out
}

/// The client IDs used by overlapping connections in `window`, sorted by client ID.
pub fn conflicting_client_ids(
    records: &[ConnectionRecord],
    window: (i64, i64),
) -> Vec<ConflictingClientId> {
    let mut out = Vec::new();
    for (client, group) in groups(records, window, |r| r.client_id.as_str()) {
        let mut involved = BTreeSet::new();
        for (a, &(i, _, ei)) in group.iter().enumerate() {
            let taken_over = records[i].disconnect_reason.as_deref() == Some(DUPLICATE_CLIENT_ID);
            for &(j, sj, _) in &group[a + 1..] {
                let overlaps = sj < ei;
                let takeover =
                    taken_over && records[i].disconnected_at == Some(records[j].connected_at);
                if !overlaps && sj > ei {
                    break;
                }
                if overlaps || takeover {
                    involved.insert(i);
                    involved.insert(j);
                }
            }
        }
        if !involved.is_empty() {
            out.push(ConflictingClientId {
                client_id: client.to_string(),
                records: involved.into_iter().collect(),
            });
        }
    }
    out
}

fn times(r: &ConnectionRecord) -> BTreeMap<String, String> {
    let mut info = BTreeMap::new();
    info.insert("CONNECTION_TIME".to_string(), r.connected_at.to_string());
    if let Some(t) = r.disconnected_at {
        info.insert("DISCONNECTION_TIME".to_string(), t.to_string());
    }
    if !r.source.is_empty() {
        info.insert("SOURCE".to_string(), r.source.clone());
    }
    info
}

/// Runs the enabled connection checks.
pub(crate) fn run(
    records: &[ConnectionRecord],
    window: (i64, i64),
    shared: bool,
    conflicting: bool,
    tally: &mut Tally,
) {
    if shared {
        let certs: BTreeSet<&str> = records
            .iter()
            .filter(|r| clip(r, window).is_some())
            .map(|r| r.certificate_id.as_str())
            .collect();
        tally.total(CheckName::DeviceCertificateShared, certs.len());
        for s in shared_certificates(records, window) {
            let clients: BTreeSet<&str> = s
                .records
                .iter()
                .map(|&i| records[i].client_id.as_str())
                .collect();
            let mut draft = Draft::new(
                CheckName::DeviceCertificateShared,
                ResourceType::DeviceCertificate,
                ResourceIdentifier::device_certificate(&s.certificate_id),
                ReasonCode::CertificateSharedByMultipleDevices,
                format!(
                    "Certificate was used by {} concurrent connections with {} different client IDs",
                    s.records.len(),
                    clients.len()
                ),
            );
            draft.related = s
                .records
                .iter()
                .map(|&i| RelatedResource {
                    resource_type: ResourceType::ClientId,
                    resource_identifier: ResourceIdentifier::client_id(&records[i].client_id),
                    additional_info: times(&records[i]),
                })
                .collect();
            tally.push(draft);
        }
    }
    if conflicting {
        let clients: BTreeSet<&str> = records
            .iter()
            .filter(|r| clip(r, window).is_some())
            .map(|r| r.client_id.as_str())
            .collect();
        tally.total(CheckName::ConflictingClientIds, clients.len());
        for c in conflicting_client_ids(records, window) {
            let mut draft = Draft::new(
                CheckName::ConflictingClientIds,
                ResourceType::ClientId,
                ResourceIdentifier::client_id(&c.client_id),
                ReasonCode::DuplicateClientIdAcrossConnections,
                format!(
                    "{} overlapping connections used this client ID, disconnecting one another",
                    c.records.len()
                ),
            );
            draft.related = c
                .records
                .iter()
                .map(|&i| RelatedResource {
                    resource_type: ResourceType::DeviceCertificate,
                    resource_identifier: ResourceIdentifier::device_certificate(
                        &records[i].certificate_id,
                    ),
                    additional_info: times(&records[i]),
                })
                .collect();
            tally.push(draft);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(client: &str, cert: &str, s: i64, e: Option<i64>) -> ConnectionRecord {
        ConnectionRecord {
            client_id: client.into(),
            certificate_id: cert.into(),
            source: String::new(),
            connected_at: s,
            disconnected_at: e,
            disconnect_reason: None,
        }
    }

    const W: (i64, i64) = (0, 1000);

    #[test]
    fn overlapping_connections_with_different_client_ids_share_a_certificate() {
        let r = [rec("a", "c1", 10, Some(100)), rec("b", "c1", 50, None)];
        let s = shared_certificates(&r, W);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].records, vec![0, 1]);
    }

    #[test]
    fn back_to_back_connections_do_not_share() {
        let r = [rec("a", "c1", 10, Some(50)), rec("b", "c1", 50, Some(60))];
        assert!(shared_certificates(&r, W).is_empty());
    }

    #[test]
    fn overlap_outside_the_window_is_ignored() {
        let r = [rec("a", "c1", 10, Some(100)), rec("b", "c1", 50, Some(90))];
        assert!(shared_certificates(&r, (100, 1000)).is_empty());
        assert_eq!(shared_certificates(&r, (60, 1000)).len(), 1);
    }

    #[test]
    fn same_client_id_overlap_is_a_conflict_not_a_share() {
        let r = [rec("a", "c1", 10, Some(100)), rec("a", "c1", 50, None)];
        assert!(shared_certificates(&r, W).is_empty());
        assert_eq!(conflicting_client_ids(&r, W).len(), 1);
    }

    #[test]
    fn takeover_in_the_same_second_conflicts_but_a_reconnect_does_not() {
        let mut r = vec![rec("a", "c1", 10, Some(50)), rec("a", "c2", 50, None)];
        assert!(conflicting_client_ids(&r, W).is_empty());
        r[0].disconnect_reason = Some(DUPLICATE_CLIENT_ID.into());
        assert_eq!(conflicting_client_ids(&r, W)[0].records, vec![0, 1]);
    }
}
