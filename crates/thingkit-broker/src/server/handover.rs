//! Sessions across the servers of a cluster: before a CONNECT attaches its session, the broker
//! asks its [`Handover`] (when one is installed) to free the client ID everywhere else, and to
//! bring the persistent session along if another server held it.
//!
//! ```text
//! server B (CONNECT of X)                                 server A (held X)
//! Handover::acquire(X) ---- "take X over" (NATS) ------>  BrokerPublisher::release(X)
//!                                                          (0x8E to X's connection; the
//!                                                           session leaves memory, not the
//!                                                           shared store)
//!                      <--- "released" ----------------
//! claims X in the shared store, returns it
//! Router::adopt(X), then attach, CONNACK Session Present = 1
//! ```
//!
//! The other side of the exchange is [`super::BrokerPublisher::release`] (end the local
//! connection of a client ID and let its session go) and [`super::BrokerPublisher::kick`] (end
//! it only, when the sessions stay per server).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::StoreError;
use crate::store::StoredSession;

/// What [`Handover::acquire`] returns: the session to adopt, when it moved here.
pub type HandoverFuture =
    Pin<Box<dyn Future<Output = Result<Option<StoredSession>, StoreError>> + Send>>;

/// What [`Handover::adopted`] returns.
pub type AdoptedFuture = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// One CONNECT about to attach its session, as [`Handover::acquire`] is told of it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Acquire {
    /// The client ID.
    pub client_id: Arc<str>,
    /// The CONNECT's Clean Start (3.1.1: Clean Session).
    pub clean_start: bool,
    /// Whether this server's router already holds a session for the client ID (then it owns
    /// it: nothing is to be brought over, only other servers' connections ended).
    pub held: bool,
}

impl Acquire {
    /// The request for a CONNECT of `client_id` with `clean_start`; `held`: whether this
    /// server's router holds a session for it.
    pub fn new(client_id: Arc<str>, clean_start: bool, held: bool) -> Self {
        Acquire {
            client_id,
            clean_start,
            held,
        }
    }
}

/// Frees a client ID on the other servers of a cluster before a CONNECT attaches it here
/// (installed with [`super::BrokerBuilder::handover`]).
///
/// Called on the connecting client's task after authentication and authorization, before the
/// CONNACK; the CONNECT waits for the future, so it must end (give up after a timeout when a
/// server does not answer).
pub trait Handover: Send + Sync + 'static {
    /// Ends the client ID's connections on every other server [MQTT-3.1.4-3] and, when its
    /// persistent session lives on, returns it to adopt ([`crate::Router::adopt`]).
    ///
    /// # Errors
    ///
    /// The session could not be claimed (the shared store failed): the CONNECT is refused.
    fn acquire(&self, request: Acquire) -> HandoverFuture;

    /// Called after every [`Handover::acquire`] that succeeded, once the session (if one came
    /// over) is adopted by this server's router and its subscriptions offered to the bridge
    /// ([`super::Bridge::interest`]), before the connection attaches to it. A cluster whose
    /// routes between servers are durable replays here what the session missed while it moved
    /// ([`super::BrokerPublisher::replay_to`]); the default does nothing.
    ///
    /// # Errors
    ///
    /// What the session missed could not be brought: the CONNECT is refused (the session stays
    /// here; the next CONNECT calls this again, and the handover should retry).
    fn adopted(&self, client_id: Arc<str>) -> AdoptedFuture {
        let _ = client_id;
        Box::pin(std::future::ready(Ok(())))
    }
}
