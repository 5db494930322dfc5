//! The firmware job document: a signed SUIT envelope and where its image is, carried in an
//! ordinary job document so the jobs engine stays payload-agnostic (digest §B.5, J-21), and
//! the `statusDetails` a device agent reports while it installs, following the conventions of
//! the AWS OTA agent (`receive`, `self_test`, `reason`, `updatedBy`).
//!
//! ```json
//! {"operation": "thingkit-firmware-update",
//!  "suit": {"envelope": "<base64 SUIT envelope>",
//!           "image": {"protocol": "MQTT", "streamId": "fw-1.0.1", "fileId": 0, "size": 123456}}}
//! ```
//!
//! Nothing in the document is trusted: the envelope is authenticated by the device
//! (`thingkit-firmware`'s `Verifier`) before any of it is used, the image is checked against the
//! digest and size inside the authenticated manifest, and the `size` here only sizes the
//! download (a mismatch with the manifest fails the job). The envelope is inline because the
//! job document limit (32,768 characters) holds any envelope with a few signatures, and an
//! inline envelope cannot be swapped by whoever serves the image.
//!
//! ```
//! use thingkit_jobs::ota::{FirmwareJob, ImageLocation};
//!
//! let job = FirmwareJob {
//!     envelope: vec![0xd8, 0x6b, 0xa2],
//!     image: ImageLocation::MqttStream { stream_id: "fw-2".into(), file_id: 0, size: 4096 },
//! };
//! let document = job.to_document();
//! assert_eq!(FirmwareJob::parse(&document)?, job);
//! # Ok::<(), thingkit_jobs::ota::OtaError>(())
//! ```

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::job::{MAX_JOB_DOCUMENT_CHARS, check_document};

/// The `operation` that marks a firmware job document.
pub const OPERATION: &str = "thingkit-firmware-update";

/// The longest stream id (AWS IoT `StreamId`: 1–128 of `[a-zA-Z0-9_-]`).
pub const MAX_STREAM_ID: usize = 128;

/// The largest `fileId` (AWS IoT `FileId`: 0–255).
pub const MAX_FILE_ID: u8 = u8::MAX;

/// Why a job document is not a firmware job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OtaError {
    /// Not a valid job document (length, JSON, duplicate keys, not an object).
    #[error("not a valid job document: {0}")]
    Document(String),
    /// A valid job document of another kind (`operation` is not [`OPERATION`]).
    #[error("not a firmware job (operation {0:?})")]
    NotFirmware(Option<String>),
    /// A member is missing or has the wrong type or range.
    #[error("firmware job document: {0}")]
    Invalid(&'static str),
}

/// Where the device fetches the image.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageLocation {
    /// AWS IoT MQTT-based file delivery: stream `stream_id`, file `file_id`, `size` bytes
    /// (`$aws/things/{thing}/streams/{streamId}/...`).
    MqttStream {
        /// The stream id (1–128 of `[a-zA-Z0-9_-]`).
        stream_id: String,
        /// The file within the stream.
        file_id: u8,
        /// The image size in bytes, to plan the download; the manifest's size decides.
        size: u64,
    },
}

/// A firmware job: the SUIT envelope (bytes) and where its image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareJob {
    /// The signed SUIT envelope, as built by `thingkit-firmware`'s `EnvelopeBuilder`.
    pub envelope: Vec<u8>,
    /// Where the image is.
    pub image: ImageLocation,
}

fn is_stream_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_STREAM_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl FirmwareJob {
    /// The job document (compact JSON). Its length is at most the job document limit for an
    /// envelope of up to about 24 KB.
    pub fn to_document(&self) -> String {
        let image = match &self.image {
            ImageLocation::MqttStream {
                stream_id,
                file_id,
                size,
            } => {
                json!({"protocol": "MQTT", "streamId": stream_id, "fileId": file_id, "size": size})
            }
        };
        json!({
            "operation": OPERATION,
            "suit": {
                "envelope": base64::engine::general_purpose::STANDARD.encode(&self.envelope),
                "image": image,
            }
        })
        .to_string()
    }

    /// Reads a firmware job document: the job document rules first (at most 32,768
    /// characters, strict JSON object, no duplicate keys), then the members. The envelope is
    /// only decoded from base64 here, never interpreted: the device's verifier does that.
    ///
    /// # Errors
    ///
    /// [`OtaError::Document`], [`OtaError::NotFirmware`], [`OtaError::Invalid`] naming the
    /// member.
    pub fn parse(document: &str) -> Result<Self, OtaError> {
        if document.len() > 4 * MAX_JOB_DOCUMENT_CHARS {
            return Err(OtaError::Document(
                "longer than the job document limit".into(),
            ));
        }
        check_document(document).map_err(|e| OtaError::Document(e.to_string()))?;
        let root: Map<String, Value> =
            serde_json::from_str(document).map_err(|e| OtaError::Document(e.to_string()))?;
        match root.get("operation") {
            Some(Value::String(op)) if op == OPERATION => {}
            Some(Value::String(op)) => return Err(OtaError::NotFirmware(Some(op.clone()))),
            _ => return Err(OtaError::NotFirmware(None)),
        }
        let suit = root
            .get("suit")
            .and_then(Value::as_object)
            .ok_or(OtaError::Invalid("suit must be an object"))?;
        let envelope = suit
            .get("envelope")
            .and_then(Value::as_str)
            .ok_or(OtaError::Invalid("suit.envelope must be a base64 string"))?;
        let envelope = base64::engine::general_purpose::STANDARD
            .decode(envelope)
            .map_err(|_| OtaError::Invalid("suit.envelope is not valid base64"))?;
        if envelope.is_empty() {
            return Err(OtaError::Invalid("suit.envelope is empty"));
        }
        let image = suit
            .get("image")
            .and_then(Value::as_object)
            .ok_or(OtaError::Invalid("suit.image must be an object"))?;
        let image = match image.get("protocol").and_then(Value::as_str) {
            Some("MQTT") => {
                let stream_id = image
                    .get("streamId")
                    .and_then(Value::as_str)
                    .filter(|s| is_stream_id(s))
                    .ok_or(OtaError::Invalid(
                        "suit.image.streamId must be 1-128 of [a-zA-Z0-9_-]",
                    ))?;
                let file_id = image
                    .get("fileId")
                    .and_then(Value::as_u64)
                    .and_then(|f| u8::try_from(f).ok())
                    .ok_or(OtaError::Invalid("suit.image.fileId must be 0-255"))?;
                let size = image
                    .get("size")
                    .and_then(Value::as_u64)
                    .filter(|s| *s > 0)
                    .ok_or(OtaError::Invalid(
                        "suit.image.size must be a positive integer",
                    ))?;
                ImageLocation::MqttStream {
                    stream_id: stream_id.to_owned(),
                    file_id,
                    size,
                }
            }
            _ => return Err(OtaError::Invalid("suit.image.protocol must be \"MQTT\"")),
        };
        Ok(FirmwareJob { envelope, image })
    }
}

/// `statusDetails` keys a firmware agent reports, as the AWS OTA agent does.
pub mod status {
    /// IN_PROGRESS while downloading: `"<blocks received>/<blocks total>"`.
    pub const RECEIVE: &str = "receive";
    /// IN_PROGRESS: `"ready"` (installed, rebooting to test) or `"active"` (running the new
    /// image, self-test under way).
    pub const SELF_TEST: &str = "self_test";
    /// SUCCEEDED or FAILED: why, in words (`"accepted 7"`, `"signature: ..."`).
    pub const REASON: &str = "reason";
    /// The sequence number of the firmware that was running when the report was made.
    pub const UPDATED_BY: &str = "updatedBy";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> FirmwareJob {
        FirmwareJob {
            envelope: (0..=255).collect(),
            image: ImageLocation::MqttStream {
                stream_id: "fw_1-2".into(),
                file_id: 3,
                size: 1 << 20,
            },
        }
    }

    #[test]
    fn a_document_round_trips() {
        let d = job().to_document();
        assert!(d.len() < MAX_JOB_DOCUMENT_CHARS);
        assert_eq!(FirmwareJob::parse(&d), Ok(job()));
    }

    #[test]
    fn other_documents_and_bad_members_are_refused_by_name() {
        assert_eq!(
            FirmwareJob::parse(r#"{"operation":"reboot"}"#),
            Err(OtaError::NotFirmware(Some("reboot".into())))
        );
        assert_eq!(FirmwareJob::parse("{}"), Err(OtaError::NotFirmware(None)));
        assert!(matches!(
            FirmwareJob::parse("[1]"),
            Err(OtaError::Document(_))
        ));
        let good = job().to_document();
        for (from, to, why) in [
            ("\"fileId\":3", "\"fileId\":256", "fileId"),
            ("\"fileId\":3", "\"fileId\":-1", "fileId"),
            (
                "\"streamId\":\"fw_1-2\"",
                "\"streamId\":\"a/b\"",
                "streamId",
            ),
            ("\"streamId\":\"fw_1-2\"", "\"streamId\":\"\"", "streamId"),
            ("\"protocol\":\"MQTT\"", "\"protocol\":\"HTTP\"", "protocol"),
            ("\"size\":1048576", "\"size\":0", "size"),
        ] {
            let bad = good.replace(from, to);
            assert_ne!(bad, good, "{from}");
            let e = FirmwareJob::parse(&bad).expect_err(from).to_string();
            assert!(e.contains(why), "{e}");
        }
        let e = FirmwareJob::parse(&good.replace("\"envelope\":\"", "\"envelope\":\"!"))
            .expect_err("bad base64");
        assert!(e.to_string().contains("base64"), "{e}");
        let dup = good.replacen('{', r#"{"operation":"x","#, 1);
        assert!(matches!(
            FirmwareJob::parse(&dup),
            Err(OtaError::Document(_))
        ));
    }
}
