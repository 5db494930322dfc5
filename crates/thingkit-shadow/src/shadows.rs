//! [`Shadows`]: the driver a broker uses — get, handle, put (durably, before anything is
//! published), publish.

use crate::error::{Error, StoreError};
use crate::request::{Limits, OutMessage, handle, rejection, write_get_document};
use crate::store::ShadowStore;
use crate::stored::Body;
use crate::topic::{ShadowKey, parse_request_topic};

/// A store and the limits, answering shadow requests.
#[derive(Debug)]
pub struct Shadows<S: ShadowStore> {
    store: S,
    limits: Limits,
}

impl<S: ShadowStore> Shadows<S> {
    /// Shadows kept in `store`, requests checked against `limits`.
    pub fn new(store: S, limits: Limits) -> Self {
        Shadows { store, limits }
    }

    /// Handles a PUBLISH to `topic`: `None` when `topic` is not a shadow request topic,
    /// otherwise the messages to publish, in order. The new value is stored (durably) before
    /// this returns; if the store fails, the answer is one `.../rejected` with code 500
    /// (`Internal service failure`) and nothing is written.
    pub fn request(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_unix_secs: u64,
    ) -> Option<Vec<OutMessage>> {
        let (key, op) = parse_request_topic(topic)?;
        let limits = self.limits;
        let internal = |e: StoreError| {
            let error = Error::Internal {
                detail: e.to_string(),
            };
            vec![rejection(
                &key,
                op,
                &error,
                token_for_error(payload, &limits).as_deref(),
                now_unix_secs,
            )]
        };
        let current = match self.store.get(&key) {
            Ok(current) => current,
            Err(e) => return Some(internal(e)),
        };
        let outcome = handle(
            current.as_ref(),
            &key,
            op,
            payload,
            now_unix_secs,
            &self.limits,
        );
        if let Some(value) = &outcome.write
            && let Err(e) = self.store.put(&key, value)
        {
            return Some(internal(e));
        }
        Some(outcome.publishes)
    }

    /// The GetThingShadow JSON of `key` at time `now_unix_secs` (its `timestamp`): state with
    /// delta, metadata, version; `None` if the shadow does not exist.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store fails.
    pub fn get_document(
        &self,
        key: &ShadowKey,
        now_unix_secs: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(match self.store.get(key)? {
            Some(stored) => match &stored.body {
                Body::Document(doc) => {
                    let mut out = Vec::with_capacity(256);
                    write_get_document(&mut out, doc, now_unix_secs, None);
                    Some(out)
                }
                Body::Deleted { .. } => None,
            },
            None => None,
        })
    }

    /// The names of `thing`'s named shadows (ListNamedShadowsForThing), sorted.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store fails.
    pub fn list_named(&self, thing: &str) -> Result<Vec<String>, StoreError> {
        self.store.list_named(thing)
    }

    /// The limits requests are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, giving up the driver.
    pub fn into_store(self) -> S {
        self.store
    }
}

/// The clientToken to echo in a 500, read leniently (the request was never judged).
fn token_for_error(payload: &[u8], limits: &Limits) -> Option<String> {
    if payload.len() > limits.max_payload_bytes {
        return None;
    }
    let text = std::str::from_utf8(payload).ok()?;
    let parsed = thingkit_json::parse(text, thingkit_json::Limits::default()).ok()?;
    let thingkit_json::Kind::Object(members) = parsed.root.kind else {
        return None;
    };
    members.into_iter().find_map(|m| match m.value.kind {
        thingkit_json::Kind::String(s)
            if m.key == "clientToken" && s.len() <= limits.max_client_token_bytes =>
        {
            Some(s.into_owned())
        }
        _ => None,
    })
}
