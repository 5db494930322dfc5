//! The durable usage ledger; documented on [`Ledger`].

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::{Error, Result};
use crate::export::{self, ExportFormat};
use crate::meter::Meter;
use crate::rating::{Added, BillingRun};
use crate::usage::{UsageEvent, UsageLimits};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Ledger configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LedgerConfig {
    /// Events older than the newest accepted event minus this many seconds are refused (default
    /// 259,200 = 3 days).
    pub acceptance_window_secs: u64,
    /// Limits events must satisfy (checked again when reading records back).
    pub limits: UsageLimits,
}

impl LedgerConfig {
    /// This value with [`acceptance_window_secs`](Self::acceptance_window_secs) replaced.
    pub fn with_acceptance_window_secs(mut self, acceptance_window_secs: u64) -> Self {
        self.acceptance_window_secs = acceptance_window_secs;
        self
    }

    /// This value with [`limits`](Self::limits) replaced.
    pub fn with_limits(mut self, limits: UsageLimits) -> Self {
        self.limits = limits;
        self
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            acceptance_window_secs: 3 * 86_400,
            limits: UsageLimits::default(),
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored with this sequence number.
    New(u64),
    /// An event with the same id is already stored at this sequence number; nothing was written.
    Duplicate(u64),
}

/// A durable, append-only, idempotent usage ledger. `Sync`: appends from several threads are
/// serialized by redb's single writer; reads run concurrently with them.
///
/// The durable usage ledger: append-only usage events with idempotency keys, in redb.
///
/// Each [`Ledger::append`] is one redb write transaction that checks the event's idempotency key,
/// and for a new key writes the event, its key → sequence marker and the ledger metadata together,
/// then commits with redb's default immediate durability (fsync before `append` returns). So an
/// acknowledged event survives a crash, and the deduplication marker exists if and only if the
/// event does: a retried delivery after a crash is recognised as a duplicate, never stored twice.
///
/// Late events: the ledger remembers the newest event time it accepted and refuses events older
/// than that minus the acceptance window ([`LedgerConfig::acceptance_window_secs`], default 3
/// days) with [`Error::LateEvent`], so a closed billing period stops changing.
///
/// Replaying the ledger ([`Ledger::for_each`], [`Ledger::replay_into`]) reads events in append
/// order and reproduces the live totals exactly.
///
/// The database file is locked by redb: one process opens it at a time. Tables: `events`
/// (sequence → event JSON), `ids` (idempotency key → sequence), `meta` (`next_seq`, `newest`).
#[derive(Debug)]
pub struct Ledger {
    db: Database,
    config: LedgerConfig,
}

impl Ledger {
    /// Opens the ledger at `path`, creating it if needed.
    pub fn open(path: impl AsRef<Path>, config: LedgerConfig) -> Result<Ledger> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(EVENTS)?;
            txn.open_table(IDS)?;
            txn.open_table(META)?;
        }
        txn.commit()?;
        Ok(Ledger { db, config })
    }

    /// Appends one event durably, or reports it as a duplicate. Refuses late events.
    pub fn append(&self, event: &UsageEvent) -> Result<Appended> {
        let mut out = self.append_batch(std::slice::from_ref(event))?;
        out.pop().unwrap_or(Err(Error::Config {
            field: "ledger",
            reason: "batch of one produced no outcome",
        }))
    }

    /// Appends several events in one durable transaction (one fsync). The outcome of each event is
    /// reported separately: late events are refused individually, the rest are stored or
    /// recognised as duplicates (also of earlier events in the same batch).
    pub fn append_batch(&self, events: &[UsageEvent]) -> Result<Vec<Result<Appended>>> {
        let txn = self.db.begin_write()?;
        let mut outcomes = Vec::with_capacity(events.len());
        let mut wrote = false;
        {
            let mut table = txn.open_table(EVENTS)?;
            let mut ids = txn.open_table(IDS)?;
            let mut meta = txn.open_table(META)?;
            let mut next = meta.get("next_seq")?.map(|g| g.value()).unwrap_or(0);
            let mut newest = meta.get("newest")?.map(|g| g.value()).unwrap_or(0);
            for event in events {
                if let Some(seq) = ids.get(event.id())?.map(|g| g.value()) {
                    outcomes.push(Ok(Appended::Duplicate(seq)));
                    continue;
                }
                let window = self.config.acceptance_window_secs;
                if event.time().saturating_add(window) < newest {
                    outcomes.push(Err(Error::LateEvent {
                        id: event.id().to_owned(),
                        time: event.time(),
                        newest,
                        window_secs: window,
                    }));
                    continue;
                }
                let line = event.to_json_line();
                table.insert(next, line.as_bytes())?;
                ids.insert(event.id(), next)?;
                outcomes.push(Ok(Appended::New(next)));
                next += 1;
                newest = newest.max(event.time());
                wrote = true;
            }
            if wrote {
                meta.insert("next_seq", next)?;
                meta.insert("newest", newest)?;
            }
        }
        if wrote {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(outcomes)
    }

    /// Number of stored events.
    pub fn len(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(EVENTS)?.len()?)
    }

    /// Whether the ledger holds no event.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Whether an event with this idempotency key is stored.
    pub fn contains(&self, id: &str) -> Result<bool> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(IDS)?.get(id)?.is_some())
    }

    /// Calls `f` with every stored event and its sequence number, in append order, from one
    /// consistent snapshot.
    pub fn for_each(&self, mut f: impl FnMut(u64, UsageEvent) -> Result<()>) -> Result<()> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        let limits = self.config.limits;
        for row in table.iter()? {
            let (k, v) = row.map_err(Error::from)?;
            let seq = k.value();
            let event =
                UsageEvent::parse_line(v.value(), &limits).map_err(|e| Error::CorruptRecord {
                    seq,
                    reason: e.to_string(),
                })?;
            f(seq, event)?;
        }
        Ok(())
    }

    /// Exports every stored event, in append order, as JSON lines or CSV.
    pub fn export_usage(&self, out: &mut impl std::io::Write, format: ExportFormat) -> Result<u64> {
        let mut n = 0;
        if format == ExportFormat::Csv {
            export::write_usage_csv_header(out)?;
        }
        self.for_each(|_, e| {
            n += 1;
            match format {
                ExportFormat::JsonLines => export::write_usage_jsonl(out, [&e]),
                ExportFormat::Csv => export::write_usage_csv_row(out, &e),
            }
        })?;
        Ok(n)
    }

    /// Replays every stored event into `meter`.
    pub fn replay_into(&self, meter: &Meter) -> Result<u64> {
        let mut n = 0;
        self.for_each(|_, e| {
            n += 1;
            meter.record(&e)
        })?;
        Ok(n)
    }

    /// Replays every stored event into a billing run.
    pub fn bill_into(&self, run: &mut BillingRun) -> Result<u64> {
        let mut n = 0;
        self.for_each(|_, e| {
            if run.add(&e)? == Added::Counted {
                n += 1;
            }
            Ok(())
        })?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::Granularity;
    use crate::metering::{MeteringPolicy, PacketKind};

    fn ev(id: &str, time: u64) -> UsageEvent {
        UsageEvent::new(
            id,
            "acme",
            "d",
            PacketKind::Publish,
            time,
            &UsageLimits::default(),
        )
        .unwrap()
        .with_bytes(100)
    }

    #[test]
    fn repeated_ids_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path().join("l.redb"), LedgerConfig::default()).unwrap();
        assert_eq!(l.append(&ev("a", 10)).unwrap(), Appended::New(0));
        assert_eq!(l.append(&ev("b", 11)).unwrap(), Appended::New(1));
        assert_eq!(l.append(&ev("a", 12)).unwrap(), Appended::Duplicate(0));
        assert_eq!(l.len().unwrap(), 2);
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.redb");
        {
            let l = Ledger::open(&path, LedgerConfig::default()).unwrap();
            l.append(&ev("a", 10)).unwrap();
        }
        let l = Ledger::open(&path, LedgerConfig::default()).unwrap();
        assert!(l.contains("a").unwrap());
        assert_eq!(l.append(&ev("a", 10)).unwrap(), Appended::Duplicate(0));
        assert_eq!(l.append(&ev("c", 10)).unwrap(), Appended::New(1));
    }

    #[test]
    fn refuses_events_older_than_the_acceptance_window() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LedgerConfig {
            acceptance_window_secs: 100,
            ..LedgerConfig::default()
        };
        let l = Ledger::open(dir.path().join("l.redb"), cfg).unwrap();
        l.append(&ev("new", 1000)).unwrap();
        l.append(&ev("ok", 900)).unwrap();
        assert!(matches!(
            l.append(&ev("late", 899)),
            Err(Error::LateEvent { newest: 1000, .. })
        ));
        assert!(!l.contains("late").unwrap());
    }

    #[test]
    fn batch_reports_each_event_and_dedups_within_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path().join("l.redb"), LedgerConfig::default()).unwrap();
        let out = l
            .append_batch(&[ev("x", 1_000_000), ev("x", 1_000_000), ev("old", 1)])
            .unwrap();
        assert!(matches!(out[0], Ok(Appended::New(0))));
        assert!(matches!(out[1], Ok(Appended::Duplicate(0))));
        assert!(matches!(out[2], Err(Error::LateEvent { .. })));
    }

    #[test]
    fn replay_reproduces_live_totals() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path().join("l.redb"), LedgerConfig::default()).unwrap();
        let live = Meter::new("n", MeteringPolicy::aws(), Granularity::Day, 100).unwrap();
        for (i, t) in [5u64, 86_400, 86_401, 5].into_iter().enumerate() {
            let e = ev(&format!("e{}", i % 3), t);
            if let Appended::New(_) = l.append(&e).unwrap() {
                live.record(&e).unwrap();
            }
        }
        let replayed = Meter::new("n", MeteringPolicy::aws(), Granularity::Day, 100).unwrap();
        assert_eq!(l.replay_into(&replayed).unwrap(), 3);
        assert_eq!(replayed.totals(), live.totals());
    }

    #[test]
    fn exports_stored_events_once_each_in_append_order() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path().join("l.redb"), LedgerConfig::default()).unwrap();
        for id in ["b", "a", "b"] {
            l.append(&ev(id, 7)).unwrap();
        }
        let mut jsonl = Vec::new();
        assert_eq!(
            l.export_usage(&mut jsonl, ExportFormat::JsonLines).unwrap(),
            2
        );
        let text = String::from_utf8(jsonl).unwrap();
        let ids: Vec<_> = text
            .lines()
            .map(|line| UsageEvent::parse_line(line.as_bytes(), &UsageLimits::default()))
            .map(|e| e.unwrap().id().to_owned())
            .collect();
        assert_eq!(ids, ["b", "a"]);
        let mut csv = Vec::new();
        l.export_usage(&mut csv, ExportFormat::Csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.lines().count(), 3);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("b,acme,d,publish,100,0,7")
        );
    }

    #[test]
    fn second_open_of_a_locked_ledger_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.redb");
        let _l = Ledger::open(&path, LedgerConfig::default()).unwrap();
        assert!(matches!(
            Ledger::open(&path, LedgerConfig::default()),
            Err(Error::Storage(_))
        ));
    }
}
