//! AWS IoT MQTT-based file delivery as a topic service; documented on [`StreamService`].

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use thingkit_firmware::stream::{StreamCatalog, StreamLimits, handle_request};
use thingkit_mqtt::{ReasonCode, TopicFilter};

use super::service::{ServiceReply, ServiceRequest, ServiceResponse, TopicService};

/// Serves MQTT-based file delivery ("streams", as AWS IoT does for OTA jobs) from a shared
/// in-memory [`StreamCatalog`].
///
/// Claims `$aws/things/+/streams/+/get/+` (GetStream) and `$aws/things/+/streams/+/describe/+`
/// (DescribeStream; AWS answers it on `.../description/{json,cbor}`, which devices subscribe
/// to and the service therefore does not claim). Answers — one `data` message per block, a
/// `description`, or a `rejected` with AWS's error code — go to the **requester only**
/// ([`ServiceResponse::consumed`]), as AWS delivers stream responses. The protocol itself is
/// [`thingkit_firmware::stream::handle_request`]; this type only adapts it to the broker.
///
/// Register streams through [`StreamService::catalog_mut`] (or keep the `Arc` passed to
/// [`StreamService::with_catalog`]) at any time; requests see the catalog as it is when they
/// arrive. Files can be any [`thingkit_firmware::stream::FileSource`], e.g. one reading a file
/// on disk at an offset.
#[derive(Debug, Clone)]
pub struct StreamService {
    catalog: Arc<RwLock<StreamCatalog>>,
    limits: StreamLimits,
    thing_is_client_id: bool,
}

impl Default for StreamService {
    fn default() -> Self {
        StreamService::new()
    }
}

impl StreamService {
    /// A service over an empty catalog with AWS's limits.
    pub fn new() -> Self {
        StreamService::with_catalog(Arc::default())
    }

    /// A service over a catalog the caller shares.
    pub fn with_catalog(catalog: Arc<RwLock<StreamCatalog>>) -> Self {
        StreamService {
            catalog,
            limits: StreamLimits::default(),
            thing_is_client_id: false,
        }
    }

    /// Replaces the limits (block size range, blocks per request, bitmap and request size).
    pub fn with_limits(mut self, limits: StreamLimits) -> Self {
        self.limits = limits;
        self
    }

    /// With `true`, a request on another thing's topic than the requester's MQTT client id is
    /// rejected (`Unauthorized`). Default `false`: the requester's policies (`iot:Publish` on
    /// the request topic) decide, as on AWS.
    pub fn with_thing_is_client_id(mut self, yes: bool) -> Self {
        self.thing_is_client_id = yes;
        self
    }

    /// The shared catalog.
    pub fn catalog(&self) -> &Arc<RwLock<StreamCatalog>> {
        &self.catalog
    }

    /// Read access to the catalog.
    pub fn catalog_read(&self) -> RwLockReadGuard<'_, StreamCatalog> {
        self.catalog.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Write access to the catalog, to register or remove streams.
    pub fn catalog_mut(&self) -> RwLockWriteGuard<'_, StreamCatalog> {
        self.catalog.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl TopicService for StreamService {
    fn name(&self) -> &'static str {
        "mqtt file delivery"
    }

    fn filters(&self) -> Vec<TopicFilter> {
        [
            "$aws/things/+/streams/+/get/+",
            "$aws/things/+/streams/+/describe/+",
        ]
        .into_iter()
        .map(super::service::filter)
        .collect()
    }

    fn blocking(&self) -> bool {
        // It may read files and encode up to max_blocks_per_request blocks.
        true
    }

    fn handle(&self, request: &ServiceRequest<'_>) -> ServiceResponse {
        let requester = self.thing_is_client_id.then_some(request.client_id);
        let answer = handle_request(
            requester,
            request.message.topic.as_str(),
            &request.message.payload,
            &self.catalog_read(),
            &self.limits,
        );
        match answer {
            Some(messages) => ServiceResponse::consumed(
                messages
                    .into_iter()
                    .map(|m| ServiceReply {
                        topic: m.topic,
                        payload: m.payload,
                    })
                    .collect(),
            ),
            None => ServiceResponse::refused(
                ReasonCode::TOPIC_NAME_INVALID,
                "not a stream request topic ($aws/things/{thing}/streams/{id}/{get|describe}/{json|cbor})",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use thingkit_firmware::stream::{Download, Encoding, StreamSource};
    use thingkit_mqtt::{PacketProperties, QoS, TopicName};
    use thingkit_provision::CertificateId;

    use super::*;
    use crate::Message;

    fn message(topic: &str, payload: Vec<u8>) -> Message {
        Message {
            topic: TopicName::new(topic).unwrap(),
            payload: Bytes::from(payload),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PacketProperties::default(),
            from: Some("dev-1".into()),
            received: Instant::now(),
        }
    }

    fn ask(
        service: &StreamService,
        client: &str,
        topic: &str,
        payload: Vec<u8>,
    ) -> ServiceResponse {
        let m = message(topic, payload);
        let cert = CertificateId::of_der(b"test");
        service.handle(&ServiceRequest {
            message: &m,
            client_id: client,
            certificate: &cert,
        })
    }

    #[test]
    fn downloads_a_registered_file_through_the_service() {
        let service = StreamService::new();
        let image: Vec<u8> = (0..5000u32).map(|i| (i % 241) as u8).collect();
        service.catalog_mut().insert(
            "fw-1",
            StreamSource::new(1, "fw").with_file(0, image.clone()),
        );
        let filters = service.filters();
        let topic = TopicName::new("$aws/things/dev-1/streams/fw-1/get/cbor").unwrap();
        assert!(filters.iter().any(|f| f.matches(&topic)));
        let mut d = Download::new(0, image.len() as u64, 1024).unwrap();
        let mut got = Vec::new();
        while let Some(req) = d.next_request() {
            let response = ask(
                &service,
                "dev-1",
                &req.topic("dev-1", "fw-1", Encoding::Cbor),
                req.encode(Encoding::Cbor),
            );
            assert_eq!(response.code, ReasonCode::SUCCESS);
            assert!(
                response.publishes.is_empty(),
                "answers go to the requester only"
            );
            for reply in response.replies {
                d.accept_message(&reply.topic, &reply.payload, |b| {
                    got.extend_from_slice(b);
                    Ok(())
                })
                .unwrap();
            }
        }
        assert_eq!(got, image);
    }

    #[test]
    fn describe_and_rejections_reply_to_the_requester() {
        let service = StreamService::new().with_thing_is_client_id(true);
        service
            .catalog_mut()
            .insert("s", StreamSource::new(4, "d").with_file(1, vec![0; 10]));
        let r = ask(
            &service,
            "dev-1",
            "$aws/things/dev-1/streams/s/describe/json",
            b"{}".to_vec(),
        );
        assert_eq!(r.replies.len(), 1);
        assert_eq!(
            r.replies[0].topic,
            "$aws/things/dev-1/streams/s/description/json"
        );
        let v: serde_json::Value = serde_json::from_slice(&r.replies[0].payload).unwrap();
        assert_eq!(v["s"], 4);
        assert_eq!(v["r"][0]["z"], 10);

        let r = ask(
            &service,
            "dev-2",
            "$aws/things/dev-1/streams/s/get/json",
            b"{}".to_vec(),
        );
        assert_eq!(
            r.replies[0].topic,
            "$aws/things/dev-1/streams/s/rejected/json"
        );
        let v: serde_json::Value = serde_json::from_slice(&r.replies[0].payload).unwrap();
        assert_eq!(v["o"], "Unauthorized");

        let r = ask(
            &service,
            "dev-1",
            "$aws/things/dev-1/streams/s/get/xml",
            b"{}".to_vec(),
        );
        assert_eq!(r.code, ReasonCode::TOPIC_NAME_INVALID);
    }
}
