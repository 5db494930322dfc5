//! [`RegistryFeed`]: the registry keys other servers changed, from PostgreSQL `LISTEN`.
//!
//! Every [`PgRegistryStore`](crate::PgRegistryStore) commit (with
//! [`PostgresConfig::registry_notify`], the default) calls `pg_notify` inside its transaction
//! with the keys it changed, as JSON arrays of at most [`MAX_PAYLOAD`] bytes each, on the
//! channel `<schema>.registry`. PostgreSQL delivers a notification only if the transaction
//! commits, after it commits, in commit order. A feed `LISTEN`s on its own connection and hands
//! each key list to a callback; a server uses it to drop cached things, certificates and
//! policies within a second of a change made through another server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::{Client, NoTls};

use super::config::PostgresConfig;
use super::connection::pg_error;
use crate::error::Error;

/// The largest `pg_notify` payload we send (PostgreSQL's limit is 8,000 bytes).
pub const MAX_PAYLOAD: usize = 7_900;

/// How often the feed's thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(200);

/// What a [`RegistryFeed`] tells its callback.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryChange {
    /// These keys were put or deleted by a committed batch (possibly one of this server's own:
    /// a feed sees every commit on the schema).
    Keys(Vec<String>),
    /// Notifications may have been missed (the feed's connection broke and was re-established,
    /// or a key was too long to notify): treat every cached record as changed.
    Resync,
}

/// The `LISTEN`/`NOTIFY` channel of `schema`'s registry.
pub(crate) fn channel(schema: &str) -> String {
    format!("{schema}.registry")
}

/// `keys` as `pg_notify` payloads: JSON arrays of at most [`MAX_PAYLOAD`] bytes, keys sorted
/// and without duplicates. A key that alone does not fit is sent as the payload `null`
/// (a [`RegistryChange::Resync`]).
pub(crate) fn payloads<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut keys: Vec<&str> = keys.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut size = 2;
    for key in keys {
        let encoded = serde_json::to_string(key).unwrap_or_default().len() + 1;
        if 2 + encoded > MAX_PAYLOAD {
            out.push("null".to_owned());
            continue;
        }
        if size + encoded > MAX_PAYLOAD {
            out.push(serde_json::to_string(&current).unwrap_or_default());
            current.clear();
            size = 2;
        }
        current.push(key);
        size += encoded;
    }
    if !current.is_empty() {
        out.push(serde_json::to_string(&current).unwrap_or_default());
    }
    out
}

fn parse(payload: &str) -> RegistryChange {
    match serde_json::from_str::<Vec<String>>(payload) {
        Ok(keys) => RegistryChange::Keys(keys),
        Err(_) => RegistryChange::Resync,
    }
}

/// Listens for registry commits on a schema and calls back with the changed keys.
///
/// The callback runs on the feed's own thread, one notification at a time, in commit order.
/// When the connection breaks the feed reconnects (every second until it succeeds), and then
/// calls back with [`RegistryChange::Resync`], since commits made meanwhile were not seen.
/// Dropping the feed stops its thread (within 200 ms).
pub struct RegistryFeed {
    listener: Listener,
}

impl std::fmt::Debug for RegistryFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryFeed")
            .field("channel", &self.listener.channel)
            .finish_non_exhaustive()
    }
}

impl RegistryFeed {
    /// Connects and `LISTEN`s before returning, so every commit after this returns is seen.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad URL or schema, [`Error::Postgres`] when the first connection
    /// or `LISTEN` fails.
    pub fn start(
        config: &PostgresConfig,
        mut on_change: impl FnMut(RegistryChange) + Send + 'static,
    ) -> Result<Self, Error> {
        let schema = config.checked_schema()?.to_owned();
        let listener = Listener::start(
            config,
            channel(&schema),
            "thingkit-pg-feed",
            move |payload| {
                on_change(match payload {
                    Some(p) => parse(p),
                    None => RegistryChange::Resync,
                })
            },
        )?;
        Ok(RegistryFeed { listener })
    }
}

/// A thread `LISTEN`ing on one channel on its own connection, handing each payload to a
/// callback (`None` after a reconnect: notifications may have been missed). Dropping it stops
/// the thread (within 200 ms).
pub(crate) struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub(crate) channel: String,
}

impl Listener {
    /// Connects and `LISTEN`s on `channel` before returning.
    pub(crate) fn start(
        config: &PostgresConfig,
        channel: String,
        thread_name: &str,
        mut on_payload: impl FnMut(Option<&str>) + Send + 'static,
    ) -> Result<Self, Error> {
        let pg = config.client_config()?;
        let listen = format!("LISTEN \"{channel}\"");
        let connect = move || -> Result<Client, Error> {
            let mut client = pg.connect(NoTls).map_err(|e| pg_error("connect", &e))?;
            client
                .batch_execute(&listen)
                .map_err(|e| pg_error("listen", &e))?;
            Ok(client)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        // The first connection is made on the feed's thread too: the blocking client runs a
        // runtime of its own, which panics when `start` is called inside the server's tokio
        // runtime. `start` waits for the outcome, so LISTEN is in place when it returns.
        let (ready_tx, ready) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || {
                let first = match connect() {
                    Ok(client) => {
                        let _ = ready_tx.send(Ok(()));
                        client
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut client = Some(first);
                while !stopped.load(Ordering::SeqCst) {
                    let Some(c) = client.as_mut() else {
                        match connect() {
                            Ok(c) => {
                                client = Some(c);
                                on_payload(None);
                            }
                            Err(_) => std::thread::sleep(Duration::from_secs(1)),
                        }
                        continue;
                    };
                    let next = c.notifications().timeout_iter(POLL).next();
                    match next {
                        Ok(Some(n)) => on_payload(Some(n.payload())),
                        Ok(None) if c.is_closed() => client = None,
                        Ok(None) => {}
                        Err(_) => client = None,
                    }
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the feed thread: {e}")))?;
        let listening = ready.recv().unwrap_or_else(|_| {
            Err(Error::Config(
                "the feed thread ended before it connected".into(),
            ))
        });
        if let Err(e) = listening {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Listener {
            stop,
            thread: Some(thread),
            channel,
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_sorted_deduplicated_json_arrays() {
        assert_eq!(
            payloads(["thing/b", "thing/a", "thing/b"]),
            [r#"["thing/a","thing/b"]"#]
        );
        assert_eq!(payloads([]), Vec::<String>::new());
    }

    #[test]
    fn payloads_are_split_below_postgresqls_limit_and_parse_back() {
        let keys: Vec<String> = (0..2000).map(|i| format!("thing/sensor-{i:05}")).collect();
        let out = payloads(keys.iter().map(String::as_str));
        assert!(out.len() > 1);
        let mut back = Vec::new();
        for p in &out {
            assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
            match parse(p) {
                RegistryChange::Keys(k) => back.extend(k),
                RegistryChange::Resync => panic!("a key list parses"),
            }
        }
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(back, sorted);
    }

    #[test]
    fn a_key_too_long_to_notify_becomes_a_resync() {
        let long = "k".repeat(MAX_PAYLOAD);
        let out = payloads([long.as_str(), "short"]);
        assert_eq!(out, ["null", r#"["short"]"#]);
        assert_eq!(parse(&out[0]), RegistryChange::Resync);
    }
}
