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
//! The bridge is offered a message once, by the server that accepted it, after that server
//! stored (if retained) and routed it; a message the server refused (a retained message over
//! the quota, a store failure) is not offered. Messages that came from another server are never
//! offered, so a message crosses the bridge at most once whatever the topology, and the rules
//! engine runs for it once, on the server that accepted it.

use std::sync::Arc;

use thingkit_mqtt::TopicFilter;

use crate::Message;

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
    /// [`super::BrokerPublisher::publish_remote`].
    fn offer(&self, message: &Arc<Message>);

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
}
