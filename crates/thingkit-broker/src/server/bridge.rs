//! Routing between servers: the broker offers every message it routes to a [`Bridge`], which
//! carries it to the other servers of a cluster; a message that arrives from another server
//! enters through [`super::BrokerPublisher::publish_remote`].
//!
//! ```text
//! server A                                            server B
//! PUBLISH / will / service / rules republish
//!   -> route_message_from: retained store, local subscribers, rules engine
//!   -> Bridge::offer (queue, never waits) ---- NATS ---> BrokerPublisher::publish_remote
//!                                                        -> retained store, local subscribers
//!                                                           (iot:Receive per subscriber)
//!                                                        (no rules, no Bridge::offer: no loops)
//! ```
//!
//! **Durability.** [`Bridge::offer`] may return a [`Confirmation`]: the server then answers
//! the publisher (PUBACK, or the return of [`super::BrokerPublisher::publish`]) only once the
//! bridge confirmed that the message is durable on its way to the other servers, and refuses
//! the publish (MQTT 5 PUBACK 0x80; 3.1.1: the connection closes, so the client sends it
//! again) when the bridge reports a failure or drops the confirmation. Messages nobody
//! acknowledges (wills, lifecycle events, service replies, rules republishes) are not waited
//! for.
//!
//! The bridge is offered a message once, by the server that accepted it, after that server
//! stored (if retained) and routed it; a message the server refused (a retained message over
//! the quota, a store failure) is not offered. Messages that came from another server are never
//! offered, so a message crosses the bridge at most once whatever the topology, and the rules
//! engine runs for it once, on the server that accepted it.

use std::sync::Arc;

use thingkit_mqtt::TopicFilter;

use crate::Message;

/// The bridge's answer to one offered message, which the publisher's acknowledgement waits for
/// (see the module docs); made with [`Confirmation::new`].
#[derive(Debug)]
pub struct Confirmation(tokio::sync::oneshot::Receiver<Result<(), String>>);

/// The bridge's side of a [`Confirmation`]: [`Confirmer::confirm`] or [`Confirmer::fail`]
/// once; dropping it unanswered counts as a failure.
#[derive(Debug)]
pub struct Confirmer(tokio::sync::oneshot::Sender<Result<(), String>>);

impl Confirmation {
    /// A confirmation, and the confirmer that answers it.
    pub fn new() -> (Confirmer, Confirmation) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Confirmer(tx), Confirmation(rx))
    }

    /// Waits for the bridge's answer.
    ///
    /// # Errors
    ///
    /// The bridge failed (its reason), or dropped the message without an answer.
    pub async fn wait(self) -> Result<(), String> {
        self.await
    }
}

/// Awaiting a confirmation by reference (it is `Unpin`) leaves it in place until it resolves.
impl std::future::Future for Confirmation {
    type Output = Result<(), String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|answer| {
            answer.unwrap_or_else(|_| Err("the message was dropped before it was durable".into()))
        })
    }
}

impl Confirmer {
    /// The message is durable: the publisher may be answered.
    pub fn confirm(self) {
        let _ = self.0.send(Ok(()));
    }

    /// The message could not be made durable, because of `reason`: the publish is refused.
    pub fn fail(self, reason: impl Into<String>) {
        let _ = self.0.send(Err(reason.into()));
    }
}

/// Carries the messages this broker routes to the other servers of a cluster (installed with
/// [`super::BrokerBuilder::bridge`]; `thingkit-cluster`'s NATS bridge is one).
///
/// [`Bridge::offer`] runs on the publisher's path (a connection task, a service, a will timer):
/// it must not block or wait. Queue the message (it is an `Arc`: cloning it copies nothing) and
/// send it from a task of your own; when the queue is full, drop and count.
pub trait Bridge: Send + Sync + 'static {
    /// Offered every message this broker accepted and routed: PUBLISHes from clients, wills,
    /// lifecycle events, service and [`super::BrokerPublisher::publish`] messages and rules
    /// republishes. Never offered a message that came in through
    /// [`super::BrokerPublisher::publish_remote`]. Returns `Some` to make the publisher's
    /// acknowledgement wait until the message is durable (see the module docs), `None` when
    /// there is nothing to wait for.
    fn offer(&self, message: &Arc<Message>) -> Option<Confirmation>;

    /// This server's sessions began (`subscribed`) or stopped being interested in `filter`:
    /// the first subscription to it was made, or the last one went (UNSUBSCRIBE, or the end of
    /// its session); a shared subscription counts for its inner filter. Called at start for
    /// every filter of the restored sessions, then on every change, in order. A bridge may use
    /// it to receive from the other servers only what this server's sessions want; the broker
    /// still matches every message it is given against each subscription itself.
    ///
    /// Runs under the router's lock: it must not block or call into the broker. The default
    /// ignores it (a bridge that receives everything).
    fn interest(&self, filter: &TopicFilter, subscribed: bool) {
        let _ = (filter, subscribed);
    }

    /// Whether this bridge delivers shared subscriptions cluster-wide: then the broker never
    /// delivers a message to a shared subscription itself (neither one it accepted nor one
    /// from another server); it tells the bridge which shared subscriptions have members here
    /// ([`Bridge::shared`]), and the bridge hands each message to one server per shared
    /// subscription, which delivers it to one of its members
    /// ([`super::BrokerPublisher::publish_shared`]). Default `false`: each server delivers to
    /// its own members of a group.
    fn routes_shared(&self) -> bool {
        false
    }

    /// The shared subscription `$share/{group}/{filter}` gained its first member on this
    /// server (`subscribed`) or lost its last. Called at start for those the restored sessions
    /// have, then on every change, in order, under the router's lock (must not block); only
    /// when [`Bridge::routes_shared`].
    fn shared(&self, group: &str, filter: &TopicFilter, subscribed: bool) {
        let _ = (group, filter, subscribed);
    }
}
