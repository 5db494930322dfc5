//! Basic Ingest: a PUBLISH to `$aws/rules/<rule name>/<topic>` goes to that rule only, never
//! to subscribers (AWS IoT's way to feed a rule without paying for messaging).

use std::sync::Arc;

use thingkit_mqtt::{ReasonCode, TopicFilter};

use super::{BASIC_INGEST_PREFIX, IngestRefusal, RulesEngine};
use crate::server::service::{Disposition, ServiceRequest, ServiceResponse, TopicService, filter};

/// The Basic Ingest topic service over a [`RulesEngine`]; the broker adds it when a rules
/// engine is installed (`BrokerBuilder::rules`). It claims `$aws/rules/#`.
///
/// The rule sees the whole topic (`topic()` strips the `$aws/rules/<name>/` prefix, as AWS
/// does); its FROM filter is not consulted. The PUBACK is sent once the message is queued for
/// the rule (MQTT 5: 0x00). A rule that does not exist or is disabled: AWS logs an error and
/// counts `RuleNotFound`; thingkit counts it too (`rule_not_found`), logs it, and answers
/// MQTT 5 PUBACK 0x10 No matching subscribers with a reason string (a success code: the
/// publish itself was valid; MQTT 3.1.1 gets a plain PUBACK). A full rules queue answers
/// 0x97 Quota exceeded. A topic with no rule name (`$aws/rules/`) is refused with 0x90
/// Topic name invalid.
pub struct BasicIngestService {
    engine: RulesEngine,
}

impl BasicIngestService {
    /// Basic Ingest into `engine`.
    pub fn new(engine: RulesEngine) -> Self {
        BasicIngestService { engine }
    }
}

/// The rule a Basic Ingest topic names, if any.
pub(crate) fn rule_of(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(BASIC_INGEST_PREFIX)?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

impl TopicService for BasicIngestService {
    fn name(&self) -> &'static str {
        "basic ingest"
    }

    fn filters(&self) -> Vec<TopicFilter> {
        vec![filter("$aws/rules/#")]
    }

    fn handle(&self, request: &ServiceRequest<'_>) -> ServiceResponse {
        let topic = request.message.topic.as_str();
        let Some(name) = rule_of(topic) else {
            return ServiceResponse::refused(
                ReasonCode::TOPIC_NAME_INVALID,
                "a Basic Ingest topic is $aws/rules/<rule name>/<topic>",
            );
        };
        let principal: Arc<str> = Arc::from(request.certificate.to_string());
        let message = Arc::new(request.message.clone());
        match self.engine.inner.ingest(name, message, Some(principal)) {
            Ok(()) => ServiceResponse::consumed(Vec::new()),
            Err(IngestRefusal::RuleNotFound) => {
                tracing::warn!(
                    client = request.client_id,
                    rule = name,
                    topic,
                    "basic ingest: RuleNotFound (no such rule, or disabled)"
                );
                ServiceResponse {
                    code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
                    reason: Some(format!("RuleNotFound: no enabled rule {name:?}")),
                    replies: Vec::new(),
                    publishes: Vec::new(),
                    disposition: Disposition::Consume,
                }
            }
            Err(IngestRefusal::QueueFull) => ServiceResponse::refused(
                ReasonCode::QUOTA_EXCEEDED,
                "the rules engine's queue is full",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rule_of;

    #[test]
    fn basic_ingest_topics_name_their_rule() {
        assert_eq!(rule_of("$aws/rules/my_rule/telemetry/a"), Some("my_rule"));
        assert_eq!(rule_of("$aws/rules/my_rule"), Some("my_rule"));
        assert_eq!(rule_of("$aws/rules/"), None);
        assert_eq!(rule_of("telemetry/a"), None);
    }
}
