//! Client IDs and persistent sessions across the servers of a cluster (the `nats` feature):
//! [`NatsHandover`] is the broker's [`Handover`].
//!
//! A CONNECT of client ID X on server B sends one control message on NATS subject
//! `thingkit-ctl.<cluster>.takeover` (outside the topic space `thingkit.<cluster>.…`, so no
//! MQTT client can publish or subscribe to it), with JSON `{"client_id", "server", "release",
//! "owner"}`. Every other server ends its connection with client ID X (MQTT 5: DISCONNECT 0x8E
//! Session taken over; 3.1.1: the network connection closes) [MQTT-3.1.4-3]:
//!
//! - **Takeover only** (no [`PgRouterStore`]: sessions stay per server): the other servers
//!   kick X's connection ([`BrokerPublisher::kick`]) and keep its session; B does not wait.
//! - **Sessions move** (with a [`PgRouterStore`] shared by the cluster): when PostgreSQL says
//!   another server A owns X's session and B does not hold it, the message asks A to
//!   *release* it: A ends X's connection (whose QoS 1 messages in flight are stored as for any
//!   persistent session), drops the session from memory without deleting it from the store
//!   ([`BrokerPublisher::release`]) and answers `released`. B waits for the
//!   answer at most [`NatsHandover::with_release_timeout`] (default 2 s: A may be dead), then
//!   claims the session in PostgreSQL ([`PgRouterStore::claim`]) and adopts it: its
//!   subscriptions and queued QoS 1 messages, CONNACK with Session Present = 1.
//!
//! What this does not guarantee: a message routed to X while its session moves (after A
//! released it, before B adopted it) reaches neither; and a server that lost its NATS
//! connection does not hear a takeover (B claims the session after the timeout while that
//! server still holds it in memory).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thingkit_broker::{Acquire, BrokerPublisher, Handover, HandoverFuture, StoreError};
use tokio::task::JoinHandle;

use crate::Error;
use crate::nats::NatsConfig;
use crate::postgres::PgRouterStore;

/// The root of the cluster's control subjects: `thingkit-ctl.<cluster>.…`.
pub const CONTROL_ROOT: &str = "thingkit-ctl";

/// The default [`NatsHandover::with_release_timeout`].
pub const DEFAULT_RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a released session's connection may take to end and store its QoS 1 messages in
/// flight before the release is answered anyway (within [`DEFAULT_RELEASE_TIMEOUT`]).
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// The answer of a server that released a session.
const RELEASED: &[u8] = b"released";

/// The control message (JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Takeover {
    /// The client ID that connected.
    client_id: String,
    /// The server it connected to.
    server: String,
    /// Whether the session moves (drop it from memory) or only the connection ends.
    release: bool,
    /// The server that owns the session in the store, which answers.
    owner: Option<String>,
}

/// The broker's [`Handover`] over NATS, with the sessions in a [`PgRouterStore`] (or without:
/// takeover only). See the module docs.
///
/// Clones share the connection.
#[derive(Debug, Clone)]
pub struct NatsHandover {
    inner: Arc<Inner>,
    release_timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    subject: String,
    server_id: String,
    store: Option<PgRouterStore>,
    publisher: OnceLock<BrokerPublisher>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl NatsHandover {
    /// Connects to the cluster's NATS (a connection of its own, with `no_echo`) as server
    /// `config.server_id`. With `store`, sessions move between servers; without, only
    /// connections are taken over. Install it with
    /// [`thingkit_broker::BrokerBuilder::handover`], then call [`NatsHandover::start`].
    ///
    /// # Errors
    ///
    /// [`Error::Nats`]: NATS could not be reached. [`Error::Config`]: the store's owner is
    /// not `config.server_id`.
    pub async fn connect(config: &NatsConfig, store: Option<PgRouterStore>) -> Result<Self, Error> {
        if let Some(store) = &store
            && store.owner() != config.server_id
        {
            return Err(Error::Config(format!(
                "the session store's owner {:?} is not the server id {:?}",
                store.owner(),
                config.server_id
            )));
        }
        let client = async_nats::ConnectOptions::new()
            .no_echo()
            .name(format!("thingkit {} control", config.server_id))
            .connect(config.url.as_str())
            .await
            .map_err(|e| Error::Nats(format!("connecting to {}: {e}", config.url)))?;
        let cluster = config
            .subjects
            .prefix()
            .strip_prefix("thingkit.")
            .unwrap_or(config.subjects.prefix());
        Ok(NatsHandover {
            inner: Arc::new(Inner {
                client,
                subject: format!("{CONTROL_ROOT}.{cluster}.takeover"),
                server_id: config.server_id.clone(),
                store,
                publisher: OnceLock::new(),
                task: std::sync::Mutex::new(None),
            }),
            release_timeout: DEFAULT_RELEASE_TIMEOUT,
        })
    }

    /// How long a CONNECT waits for the owner of its session to release it before claiming it
    /// anyway (the owner is taken for dead). Default [`DEFAULT_RELEASE_TIMEOUT`].
    pub fn with_release_timeout(mut self, value: Duration) -> Self {
        self.release_timeout = value;
        self
    }

    /// The control subject: `thingkit-ctl.<cluster>.takeover`.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// Answers the other servers' takeovers through `publisher` (the running broker). Returns
    /// once NATS has the subscription.
    ///
    /// # Errors
    ///
    /// [`Error::Nats`]: the subscription failed. [`Error::Config`]: started twice.
    pub async fn start(&self, publisher: BrokerPublisher) -> Result<(), Error> {
        if self.inner.publisher.set(publisher.clone()).is_err() {
            return Err(Error::Config("the handover is already started".into()));
        }
        let subscriber = self
            .inner
            .client
            .subscribe(self.inner.subject.clone())
            .await
            .map_err(|e| Error::Nats(format!("subscribing to {}: {e}", self.inner.subject)))?;
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| Error::Nats(format!("subscribing to {}: {e}", self.inner.subject)))?;
        let task = tokio::spawn(answer_loop(
            subscriber,
            self.inner.client.clone(),
            self.inner.server_id.clone(),
            publisher,
        ));
        *self.inner.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(())
    }

    /// Stops answering takeovers.
    pub fn stop(&self) {
        if let Some(task) = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }

    fn message(&self, client_id: &str, release: bool, owner: Option<String>) -> bytes::Bytes {
        let takeover = Takeover {
            client_id: client_id.to_owned(),
            server: self.inner.server_id.clone(),
            release,
            owner,
        };
        serde_json::to_vec(&takeover)
            .map(bytes::Bytes::from)
            .unwrap_or_default()
    }
}

fn backend(operation: &'static str) -> impl Fn(String) -> StoreError {
    move |detail| StoreError::Backend { operation, detail }
}

/// Runs a blocking store call off the runtime's threads.
async fn blocking<R: Send + 'static>(
    operation: &'static str,
    f: impl FnOnce() -> Result<R, Error> + Send + 'static,
) -> Result<R, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| backend(operation)(e.to_string())),
        Err(e) => Err(backend(operation)(e.to_string())),
    }
}

impl Handover for NatsHandover {
    fn acquire(&self, request: Acquire) -> HandoverFuture {
        let this = self.clone();
        Box::pin(async move { this.acquire_session(request).await })
    }
}

impl NatsHandover {
    async fn acquire_session(
        &self,
        request: Acquire,
    ) -> Result<Option<thingkit_broker::StoredSession>, StoreError> {
        let id = request.client_id.to_string();
        let Some(store) = self.inner.store.clone() else {
            self.announce(&id, false, None).await;
            return Ok(None);
        };
        if request.held {
            // This server owns the session: the others only end their connections.
            self.announce(&id, true, None).await;
            return Ok(None);
        }
        let owner = {
            let store = store.clone();
            let id = id.clone();
            blocking("session owner", move || store.owner_of(&id)).await?
        };
        match owner {
            Some(owner) if owner != self.inner.server_id => {
                let payload = self.message(&id, true, Some(owner.clone()));
                let asked = tokio::time::timeout(
                    self.release_timeout,
                    self.inner
                        .client
                        .request(self.inner.subject.clone(), payload),
                )
                .await;
                match asked {
                    Ok(Ok(answer)) if answer.payload.as_ref() == RELEASED => {
                        tracing::debug!(client = %id, from = %owner, "session released");
                    }
                    Ok(Ok(_)) => {
                        tracing::warn!(client = %id, from = %owner, "unexpected answer to a release");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(client = %id, from = %owner, error = %e, "no release: taking the session over");
                    }
                    Err(_) => {
                        tracing::warn!(client = %id, from = %owner, timeout = ?self.release_timeout,
                            "the session's server did not answer: taking the session over");
                    }
                }
            }
            Some(_) => self.announce(&id, true, None).await,
            None => {
                self.announce(&id, true, None).await;
                return Ok(None);
            }
        }
        blocking("session claim", move || store.claim(&id)).await
    }

    /// Tells every other server that `id` connected here; waits for nothing but NATS.
    async fn announce(&self, id: &str, release: bool, owner: Option<String>) {
        let payload = self.message(id, release, owner);
        if let Err(e) = self
            .inner
            .client
            .publish(self.inner.subject.clone(), payload)
            .await
        {
            tracing::warn!(client = %id, error = %e, "the takeover was not sent to the cluster");
            return;
        }
        if let Err(e) = self.inner.client.flush().await {
            tracing::warn!(client = %id, error = %e, "the takeover was not sent to the cluster");
        }
    }
}

async fn answer_loop(
    mut subscriber: async_nats::Subscriber,
    client: async_nats::Client,
    server_id: String,
    publisher: BrokerPublisher,
) {
    use futures_util::StreamExt;
    while let Some(message) = subscriber.next().await {
        let takeover: Takeover = match serde_json::from_slice(&message.payload) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(error = %e, "a malformed takeover was ignored");
                continue;
            }
        };
        if takeover.server == server_id {
            continue;
        }
        // One task per takeover: a release waits for its connection to end.
        let (client, server_id, publisher) = (client.clone(), server_id.clone(), publisher.clone());
        tokio::spawn(async move {
            let ended = if takeover.release {
                publisher.release(&takeover.client_id, RELEASE_WAIT).await
            } else {
                publisher.kick(&takeover.client_id)
            };
            if ended {
                tracing::info!(client = %takeover.client_id, to = %takeover.server,
                    release = takeover.release, "client taken over by another server");
            }
            if takeover.owner.as_deref() == Some(server_id.as_str())
                && let Some(reply) = message.reply
                && let Err(e) = client.publish(reply, RELEASED.into()).await
            {
                tracing::warn!(error = %e, "the release was not answered");
            }
        });
    }
    tracing::warn!(
        "the takeover subscription ended: other servers' CONNECTs no longer end connections here"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_message_round_trips() {
        let t = Takeover {
            client_id: "sensor-1".into(),
            server: "b".into(),
            release: true,
            owner: Some("a".into()),
        };
        let back: Takeover = serde_json::from_slice(&serde_json::to_vec(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
