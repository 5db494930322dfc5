//! AWS IoT MQTT-based file delivery ("streams"), sans-IO: the server side ([`handle_request`]
//! over a [`StreamCatalog`]) and the device side ([`Download`]).
//!
//! A device downloads a file of a stream in blocks over MQTT (AWS IoT Developer Guide,
//! "Using AWS IoT MQTT-based file delivery in devices",
//! <https://docs.aws.amazon.com/iot/latest/developerguide/mqtt-based-file-delivery-in-devices.html>,
//! and the reserved-topics page). Topics, with `{enc}` one of `json` or `cbor`:
//!
//! | direction | topic | message |
//! |---|---|---|
//! | device → service | `$aws/things/{thing}/streams/{streamId}/get/{enc}` | GetStream request |
//! | service → device | `$aws/things/{thing}/streams/{streamId}/data/{enc}` | one data block |
//! | device → service | `$aws/things/{thing}/streams/{streamId}/describe/{enc}` | DescribeStream request |
//! | service → device | `$aws/things/{thing}/streams/{streamId}/description/{enc}` | DescribeStream response |
//! | service → device | `$aws/things/{thing}/streams/{streamId}/rejected/{enc}` | error response |
//!
//! Messages (JSON field names; CBOR uses the same text keys with byte strings where JSON uses
//! base64). Requests accept the short keys below and the long forms in parentheses:
//!
//! - GetStream request: `c` (clientToken, at most 64 bytes), `s` (streamVersion), `f` (fileId),
//!   `l` (blockSize), `o` (blockOffset), `n` (numberOfBlocks), `b` (bitmap).
//! - Data response: `c`, `f`, `l` (this block's length), `i` (block id), `p` (payload).
//! - DescribeStream request: `c`. Response: `c`, `s` (version), `d` (description),
//!   `r` (files: `[{f: fileId, z: size}]`).
//! - Rejected: `o` (error code), `m` (message), `c`.
//!
//! ## Readings where the documentation is silent or was not verified here
//!
//! - **Block selection.** Without a bitmap the request names blocks `o .. o + n` (`n` defaults to
//!   1). With a bitmap, bit `k` (byte `k / 8`, least significant bit first) requests block
//!   `o + k`; `n`, if present, caps how many of the set bits are served (in block order), as the
//!   FreeRTOS OTA agent sends it. Set bits past the last block are ignored (padding in the last
//!   bitmap byte); a request whose first block is past the end is `OffsetOutOfBounds`.
//! - **Bounds.** Block size 256..=131072 bytes, at most 98 blocks answered per request, a bitmap
//!   of at most 12,288 bytes: these are [`StreamLimits`] defaults, taken from the issue and AWS's
//!   published limits as we read them; all are configurable.
//! - **Error codes** follow AWS's names: `InvalidTopic`, `InvalidJson`, `InvalidCbor`,
//!   `InvalidRequest`, `VersionMismatch`, `ResourceNotFound`, `BlockSizeOutOfBounds`,
//!   `OffsetOutOfBounds`, `BlockCountLimitExceeded`, `BlockBitmapLimitExceeded`, plus
//!   `InternalError` when the caller's [`FileSource`] fails.
//! - **CBOR** requests are decoded with this crate's strict codec (shortest-form integers, no
//!   indefinite lengths; map keys may come in any order).
//!
//! ## Device side
//!
//! [`Download`] hands blocks to a sink **in order** (so an [`crate::ImageVerifier`] can hash the
//! image as it arrives). Blocks that arrive early are held, at most
//! [`Download::with_max_pending`] of them (default 32); further early blocks are dropped and
//! requested again. The durable state is therefore a prefix: [`DownloadCheckpoint`] stores the
//! number of blocks delivered, and blocks held in memory at a reboot are requested again.
//!
//! ```
//! use thingkit_firmware::stream::{
//!     Download, Encoding, StreamCatalog, StreamLimits, StreamSource, handle_request,
//! };
//!
//! # fn main() -> Result<(), thingkit_firmware::Error> {
//! let image: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
//! let mut catalog = StreamCatalog::default();
//! catalog.insert("fw-42", StreamSource::new(3, "release 42").with_file(0, image.clone()));
//!
//! let mut download = Download::new(0, image.len() as u64, 1024)?.with_stream_version(3);
//! let mut received = Vec::new();
//! while let Some(request) = download.next_request() {
//!     let topic = request.topic("sensor-1", "fw-42", Encoding::Cbor);
//!     let replies = handle_request(
//!         Some("sensor-1"),
//!         &topic,
//!         &request.encode(Encoding::Cbor),
//!         &catalog,
//!         &StreamLimits::default(),
//!     )
//!     .expect("a stream request topic");
//!     for reply in replies {
//!         download.accept_message(&reply.topic, &reply.payload, |block| {
//!             received.extend_from_slice(block);
//!             Ok(())
//!         })?;
//!     }
//! }
//! assert_eq!(received, image);
//! assert_eq!(download.status_receive(), "10/10");
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::cbor::{CborLimits, Value};
use crate::error::{Error, Result, structure};

/// Longest client token AWS accepts, in bytes.
pub const MAX_CLIENT_TOKEN: usize = 64;

/// Message encoding, the last topic level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `json`: binary fields are base64.
    Json,
    /// `cbor`: binary fields are byte strings.
    Cbor,
}

impl Encoding {
    /// The topic level (`json` or `cbor`).
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Cbor => "cbor",
        }
    }
}

/// The stream operations a device can request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// GetStream (`get`).
    Get,
    /// DescribeStream (`describe`).
    Describe,
}

/// A parsed stream request topic, borrowing the topic string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTopic<'a> {
    /// The thing name in the topic.
    pub thing: &'a str,
    /// The stream id in the topic.
    pub stream_id: &'a str,
    /// The operation.
    pub operation: Operation,
    /// The encoding.
    pub encoding: Encoding,
}

impl<'a> RequestTopic<'a> {
    /// Parses `$aws/things/{thing}/streams/{streamId}/{get|describe}/{json|cbor}`; `None` for any
    /// other topic.
    pub fn parse(topic: &'a str) -> Option<RequestTopic<'a>> {
        let rest = topic.strip_prefix("$aws/things/")?;
        let mut parts = rest.split('/');
        let thing = parts.next()?;
        if parts.next()? != "streams" {
            return None;
        }
        let stream_id = parts.next()?;
        let operation = match parts.next()? {
            "get" => Operation::Get,
            "describe" => Operation::Describe,
            _ => return None,
        };
        let encoding = match parts.next()? {
            "json" => Encoding::Json,
            "cbor" => Encoding::Cbor,
            _ => return None,
        };
        if parts.next().is_some() || thing.is_empty() || stream_id.is_empty() {
            return None;
        }
        Some(RequestTopic {
            thing,
            stream_id,
            operation,
            encoding,
        })
    }
}

/// `$aws/things/{thing}/streams/{stream_id}/{suffix}/{enc}`.
pub fn stream_topic(thing: &str, stream_id: &str, suffix: &str, encoding: Encoding) -> String {
    format!(
        "$aws/things/{thing}/streams/{stream_id}/{suffix}/{}",
        encoding.as_str()
    )
}

/// Bounds on what one request may ask for and what the service reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamLimits {
    /// Smallest block size accepted. Default 256 bytes.
    pub min_block_size: u32,
    /// Largest block size accepted. Default 131,072 bytes (128 KiB).
    pub max_block_size: u32,
    /// Most blocks answered for one request. Default 98.
    pub max_blocks_per_request: u32,
    /// Largest bitmap accepted, in bytes (decoded). Default 12,288.
    pub max_bitmap_bytes: usize,
    /// Largest request payload read, in bytes. Default 32 KiB (a 12,288-byte bitmap is 16,384
    /// base64 characters).
    pub max_request_size: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            min_block_size: 256,
            max_block_size: 128 * 1024,
            max_blocks_per_request: 98,
            max_bitmap_bytes: 12_288,
            max_request_size: 32 * 1024,
        }
    }
}

impl StreamLimits {
    /// This value with [`max_blocks_per_request`](Self::max_blocks_per_request) replaced.
    pub fn with_max_blocks_per_request(mut self, n: u32) -> Self {
        self.max_blocks_per_request = n;
        self
    }

    /// This value with [`min_block_size`](Self::min_block_size) and
    /// [`max_block_size`](Self::max_block_size) replaced.
    pub fn with_block_size_range(mut self, min: u32, max: u32) -> Self {
        self.min_block_size = min;
        self.max_block_size = max;
        self
    }
}

/// The bytes of one stream file, read at an offset. Implement it over a file, flash or object
/// store; `Vec<u8>` and `Arc<[u8]>` implement it in memory.
pub trait FileSource: Send + Sync + fmt::Debug {
    /// The file's size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; `offset + buf.len() <= size()` is guaranteed by the caller.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

fn read_slice(data: &[u8], offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let start = usize::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let src = start
        .checked_add(buf.len())
        .and_then(|end| data.get(start..end))
        .ok_or(std::io::ErrorKind::UnexpectedEof)?;
    buf.copy_from_slice(src);
    Ok(())
}

impl FileSource for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        read_slice(self, offset, buf)
    }
}

impl FileSource for Arc<[u8]> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        read_slice(self, offset, buf)
    }
}

/// One stream: a version, a description and files by file id (0..=255, as in AWS CreateStream).
#[derive(Debug, Clone)]
pub struct StreamSource {
    version: u64,
    description: String,
    files: BTreeMap<u8, Arc<dyn FileSource>>,
}

impl StreamSource {
    /// A stream without files.
    pub fn new(version: u64, description: impl Into<String>) -> StreamSource {
        StreamSource {
            version,
            description: description.into(),
            files: BTreeMap::new(),
        }
    }

    /// This stream with `file_id` served from `source` (replacing any file with that id).
    pub fn with_file(mut self, file_id: u8, source: impl FileSource + 'static) -> StreamSource {
        self.files.insert(file_id, Arc::new(source));
        self
    }

    /// The stream version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// `(file id, size)` of each file, by id.
    pub fn files(&self) -> impl Iterator<Item = (u8, u64)> + '_ {
        self.files.iter().map(|(id, f)| (*id, f.size()))
    }
}

/// The streams a service serves, by stream id.
#[derive(Debug, Clone, Default)]
pub struct StreamCatalog {
    streams: HashMap<String, StreamSource>,
}

impl StreamCatalog {
    /// Adds or replaces a stream.
    pub fn insert(&mut self, stream_id: impl Into<String>, stream: StreamSource) {
        self.streams.insert(stream_id.into(), stream);
    }

    /// Removes a stream.
    pub fn remove(&mut self, stream_id: &str) -> Option<StreamSource> {
        self.streams.remove(stream_id)
    }

    /// A stream by id.
    pub fn get(&self, stream_id: &str) -> Option<&StreamSource> {
        self.streams.get(stream_id)
    }

    /// Number of streams.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether there are no streams.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

/// A message to publish to the requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Decoded request fields (long or short keys).
#[derive(Debug, Default)]
struct Fields {
    c: Option<String>,
    s: Option<u64>,
    f: Option<u64>,
    l: Option<u64>,
    o: Option<u64>,
    n: Option<u64>,
    b: Option<Vec<u8>>,
}

struct Reject {
    code: &'static str,
    message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> Reject {
    Reject {
        code,
        message: message.into(),
    }
}

fn field_name(key: &str) -> Option<char> {
    Some(match key {
        "c" | "clientToken" => 'c',
        "s" | "streamVersion" => 's',
        "f" | "fileId" => 'f',
        "l" | "blockSize" => 'l',
        "o" | "blockOffset" => 'o',
        "n" | "numberOfBlocks" => 'n',
        "b" | "bitmap" => 'b',
        _ => return None,
    })
}

fn decode_request(
    payload: &[u8],
    encoding: Encoding,
    limits: &StreamLimits,
) -> Result<Fields, Reject> {
    let mut f = Fields::default();
    let invalid = |what: &str| reject("InvalidRequest", format!("{what} has the wrong type"));
    match encoding {
        Encoding::Json => {
            let v: serde_json::Value = if payload.iter().all(u8::is_ascii_whitespace) {
                serde_json::Value::Object(Default::default())
            } else {
                serde_json::from_slice(payload).map_err(|e| reject("InvalidJson", e.to_string()))?
            };
            let map = v
                .as_object()
                .ok_or_else(|| reject("InvalidJson", "the request must be a JSON object"))?;
            for (k, v) in map {
                match field_name(k) {
                    Some('c') => f.c = Some(v.as_str().ok_or_else(|| invalid(k))?.to_owned()),
                    Some('b') => {
                        let text = v.as_str().ok_or_else(|| invalid(k))?;
                        if text.len() > limits.max_bitmap_bytes.saturating_mul(4) / 3 + 4 {
                            return Err(reject("BlockBitmapLimitExceeded", "bitmap too large"));
                        }
                        f.b = Some(
                            BASE64
                                .decode(text)
                                .map_err(|_| reject("InvalidRequest", "bitmap is not base64"))?,
                        );
                    }
                    Some(c) => {
                        let n = v.as_u64().ok_or_else(|| invalid(k))?;
                        set_number(&mut f, c, n);
                    }
                    None => {}
                }
            }
        }
        Encoding::Cbor => {
            let limits = CborLimits::default()
                .with_max_depth(4)
                .with_max_items(64)
                .with_sorted_map_keys(false);
            let v = Value::decode(payload, &limits)
                .map_err(|e| reject("InvalidCbor", e.to_string()))?;
            let map = v
                .as_map()
                .ok_or_else(|| reject("InvalidCbor", "the request must be a CBOR map"))?;
            for (k, v) in map {
                let Some(k) = k.as_text() else { continue };
                match field_name(k) {
                    Some('c') => f.c = Some(v.as_text().ok_or_else(|| invalid(k))?.to_owned()),
                    Some('b') => f.b = Some(v.as_bytes().ok_or_else(|| invalid(k))?.to_vec()),
                    Some(c) => {
                        let n = v.as_u64().ok_or_else(|| invalid(k))?;
                        set_number(&mut f, c, n);
                    }
                    None => {}
                }
            }
        }
    }
    Ok(f)
}

fn set_number(f: &mut Fields, c: char, n: u64) {
    match c {
        's' => f.s = Some(n),
        'f' => f.f = Some(n),
        'l' => f.l = Some(n),
        'o' => f.o = Some(n),
        _ => f.n = Some(n),
    }
}

/// An encoder for a flat map of short keys, in JSON or CBOR.
struct Out {
    encoding: Encoding,
    json: serde_json::Map<String, serde_json::Value>,
    cbor: Vec<(Value, Value)>,
}

impl Out {
    fn new(encoding: Encoding) -> Out {
        Out {
            encoding,
            json: serde_json::Map::new(),
            cbor: Vec::new(),
        }
    }
    fn text(mut self, k: &str, v: &str) -> Out {
        self.json.insert(k.into(), v.into());
        self.cbor
            .push((Value::Text(k.into()), Value::Text(v.into())));
        self
    }
    fn opt_text(self, k: &str, v: Option<&str>) -> Out {
        match v {
            Some(v) => self.text(k, v),
            None => self,
        }
    }
    fn num(mut self, k: &str, v: u64) -> Out {
        self.json.insert(k.into(), v.into());
        self.cbor.push((Value::Text(k.into()), Value::Unsigned(v)));
        self
    }
    fn bytes(mut self, k: &str, v: &[u8]) -> Out {
        match self.encoding {
            Encoding::Json => {
                self.json.insert(k.into(), BASE64.encode(v).into());
            }
            Encoding::Cbor => self
                .cbor
                .push((Value::Text(k.into()), Value::Bytes(v.to_vec()))),
        }
        self
    }
    fn raw(mut self, k: &str, json: serde_json::Value, cbor: Value) -> Out {
        self.json.insert(k.into(), json);
        self.cbor.push((Value::Text(k.into()), cbor));
        self
    }
    fn finish(self) -> Vec<u8> {
        match self.encoding {
            Encoding::Json => serde_json::Value::Object(self.json)
                .to_string()
                .into_bytes(),
            Encoding::Cbor => Value::Map(self.cbor).to_vec(),
        }
    }
}

/// Answers one message published by a device on a stream request topic.
///
/// Returns `None` when `topic` is not a stream request topic
/// (`$aws/things/+/streams/+/{get,describe}/{json,cbor}`), else the messages to publish to the
/// requester: one `data` message per block served, one `description` message, or one `rejected`
/// message with an AWS error code. `requester`, when given, is the thing name the connection is
/// authorized as: a request on another thing's topic is rejected (`Unauthorized`). The function
/// reads the catalog's [`FileSource`]s, at most `max_blocks_per_request * max_block_size` bytes,
/// allocates only after the request passed [`StreamLimits`], and never panics on any input.
pub fn handle_request(
    requester: Option<&str>,
    topic: &str,
    payload: &[u8],
    catalog: &StreamCatalog,
    limits: &StreamLimits,
) -> Option<Vec<OutMessage>> {
    let t = RequestTopic::parse(topic)?;
    let reply = |suffix: &str| stream_topic(t.thing, t.stream_id, suffix, t.encoding);
    let result = serve(&t, requester, payload, catalog, limits);
    Some(match result {
        Ok(messages) => messages
            .into_iter()
            .map(|(suffix, payload)| OutMessage {
                topic: reply(suffix),
                payload,
            })
            .collect(),
        Err((rej, token)) => vec![OutMessage {
            topic: reply("rejected"),
            payload: Out::new(t.encoding)
                .text("o", rej.code)
                .text("m", &rej.message)
                .opt_text("c", token.as_deref())
                .finish(),
        }],
    })
}

type Served = Vec<(&'static str, Vec<u8>)>;

fn serve(
    t: &RequestTopic<'_>,
    requester: Option<&str>,
    payload: &[u8],
    catalog: &StreamCatalog,
    limits: &StreamLimits,
) -> Result<Served, (Reject, Option<String>)> {
    if payload.len() > limits.max_request_size {
        return Err((
            reject(
                "InvalidRequest",
                format!(
                    "request of {} bytes is above {}",
                    payload.len(),
                    limits.max_request_size
                ),
            ),
            None,
        ));
    }
    let f = decode_request(payload, t.encoding, limits).map_err(|r| (r, None))?;
    let token = f.c.clone();
    let fail = |r: Reject| (r, token.clone());
    if token.as_ref().is_some_and(|c| c.len() > MAX_CLIENT_TOKEN) {
        return Err((
            reject("InvalidRequest", "client token longer than 64 bytes"),
            None,
        ));
    }
    if requester.is_some_and(|r| r != t.thing) {
        return Err(fail(reject(
            "Unauthorized",
            "the topic names another thing than the requester",
        )));
    }
    let stream = catalog
        .get(t.stream_id)
        .ok_or_else(|| fail(reject("ResourceNotFound", "no such stream")))?;
    if let Some(s) = f.s
        && s != stream.version
    {
        return Err(fail(reject(
            "VersionMismatch",
            format!("stream version is {}, requested {s}", stream.version),
        )));
    }
    match t.operation {
        Operation::Describe => {
            let files: Vec<(u8, u64)> = stream.files().collect();
            let json = files
                .iter()
                .map(|(id, z)| serde_json::json!({"f": id, "z": z}))
                .collect();
            let cbor = files
                .iter()
                .map(|(id, z)| {
                    Value::Map(vec![
                        (Value::Text("f".into()), Value::Unsigned(u64::from(*id))),
                        (Value::Text("z".into()), Value::Unsigned(*z)),
                    ])
                })
                .collect();
            let body = Out::new(t.encoding)
                .opt_text("c", token.as_deref())
                .num("s", stream.version)
                .text("d", &stream.description)
                .raw("r", serde_json::Value::Array(json), Value::Array(cbor))
                .finish();
            Ok(vec![("description", body)])
        }
        Operation::Get => get_blocks(&f, stream, t.encoding, limits).map_err(fail),
    }
}

fn get_blocks(
    f: &Fields,
    stream: &StreamSource,
    encoding: Encoding,
    limits: &StreamLimits,
) -> Result<Served, Reject> {
    let file_id =
        f.f.ok_or_else(|| reject("InvalidRequest", "missing fileId (f)"))?;
    let file = u8::try_from(file_id)
        .ok()
        .and_then(|id| stream.files.get(&id))
        .ok_or_else(|| {
            reject(
                "ResourceNotFound",
                format!("no file {file_id} in the stream"),
            )
        })?;
    let block_size =
        f.l.ok_or_else(|| reject("InvalidRequest", "missing blockSize (l)"))?;
    if block_size < u64::from(limits.min_block_size)
        || block_size > u64::from(limits.max_block_size)
    {
        return Err(reject(
            "BlockSizeOutOfBounds",
            format!(
                "block size {block_size} is outside {}..={}",
                limits.min_block_size, limits.max_block_size
            ),
        ));
    }
    let size = file.size();
    let total = size.div_ceil(block_size);
    let offset = f.o.unwrap_or(0);
    if offset >= total {
        return Err(reject(
            "OffsetOutOfBounds",
            format!("block offset {offset} is past the last block ({total} blocks)"),
        ));
    }
    let max = u64::from(limits.max_blocks_per_request);
    if let Some(n) = f.n
        && (n == 0 || n > max)
    {
        return Err(reject(
            "BlockCountLimitExceeded",
            format!("number of blocks {n} is outside 1..={max}"),
        ));
    }
    let mut blocks: Vec<u64> = Vec::new();
    match &f.b {
        Some(bitmap) => {
            if bitmap.len() > limits.max_bitmap_bytes {
                return Err(reject(
                    "BlockBitmapLimitExceeded",
                    format!(
                        "bitmap of {} bytes is above {}",
                        bitmap.len(),
                        limits.max_bitmap_bytes
                    ),
                ));
            }
            let cap = f.n.unwrap_or(max);
            'bits: for (byte_index, byte) in bitmap.iter().enumerate() {
                for bit in 0..8u64 {
                    if byte & (1 << bit) == 0 {
                        continue;
                    }
                    let block = offset + byte_index as u64 * 8 + bit;
                    if block >= total || blocks.len() as u64 >= cap {
                        break 'bits;
                    }
                    blocks.push(block);
                }
            }
        }
        None => {
            let n = f.n.unwrap_or(1);
            blocks.extend(offset..total.min(offset + n));
        }
    }
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        let start = block * block_size;
        let len = block_size.min(size - start);
        let mut buf = vec![0; len as usize];
        file.read_at(start, &mut buf)
            .map_err(|e| reject("InternalError", format!("reading block {block}: {e}")))?;
        let body = Out::new(encoding)
            .opt_text("c", f.c.as_deref())
            .num("f", file_id)
            .num("l", len)
            .num("i", block)
            .bytes("p", &buf)
            .finish();
        out.push(("data", body));
    }
    Ok(out)
}

/// A GetStream request produced by a [`Download`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetStreamRequest {
    /// Client token (`c`), if the download has one.
    pub client_token: Option<String>,
    /// Stream version (`s`), if the download pins one.
    pub stream_version: Option<u64>,
    /// File id (`f`).
    pub file_id: u8,
    /// Block size (`l`).
    pub block_size: u32,
    /// First block the bitmap covers (`o`).
    pub block_offset: u64,
    /// Blocks requested (`n`): the number of bits set in the bitmap.
    pub number_of_blocks: u32,
    /// Bitmap (`b`): bit `k` (LSB first) requests block `block_offset + k`.
    pub bitmap: Vec<u8>,
}

impl GetStreamRequest {
    /// The topic to publish it on.
    pub fn topic(&self, thing: &str, stream_id: &str, encoding: Encoding) -> String {
        stream_topic(thing, stream_id, "get", encoding)
    }

    /// The payload in `encoding`.
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        let mut out = Out::new(encoding).opt_text("c", self.client_token.as_deref());
        if let Some(s) = self.stream_version {
            out = out.num("s", s);
        }
        out.num("f", u64::from(self.file_id))
            .num("l", u64::from(self.block_size))
            .num("o", self.block_offset)
            .num("n", u64::from(self.number_of_blocks))
            .bytes("b", &self.bitmap)
            .finish()
    }
}

/// A data block received by a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataBlock {
    /// Client token (`c`), if present.
    pub client_token: Option<String>,
    /// File id (`f`).
    pub file_id: u64,
    /// Declared block length (`l`).
    pub length: u64,
    /// Block id (`i`).
    pub block_id: u64,
    /// Payload (`p`).
    pub payload: Vec<u8>,
}

impl DataBlock {
    /// Decodes a data response. `max_block_size` bounds the payload (checked on the encoded size
    /// before decoding).
    pub fn decode(payload: &[u8], encoding: Encoding, max_block_size: u32) -> Result<DataBlock> {
        const S: &str = "GetStream data response";
        // base64 and the other fields: 4/3 of the block plus a little.
        let bound = (max_block_size as usize).saturating_mul(4) / 3 + 1024;
        if payload.len() > bound {
            return Err(Error::Limit {
                what: "data response size",
                limit: bound as u64,
                actual: payload.len() as u64,
            });
        }
        let (mut c, mut f, mut l, mut i, mut p) = (None, None, None, None, None);
        match encoding {
            Encoding::Json => {
                let v: serde_json::Value = serde_json::from_slice(payload)
                    .map_err(|e| structure(S, format!("invalid JSON: {e}")))?;
                let map = v
                    .as_object()
                    .ok_or_else(|| structure(S, "must be an object"))?;
                for (k, v) in map {
                    match k.as_str() {
                        "c" => c = v.as_str().map(str::to_owned),
                        "f" => f = v.as_u64(),
                        "l" => l = v.as_u64(),
                        "i" => i = v.as_u64(),
                        "p" => {
                            let text = v.as_str().ok_or_else(|| structure(S, "p must be text"))?;
                            p = Some(
                                BASE64
                                    .decode(text)
                                    .map_err(|_| structure(S, "p is not base64"))?,
                            );
                        }
                        _ => {}
                    }
                }
            }
            Encoding::Cbor => {
                let limits = CborLimits::default()
                    .with_max_depth(4)
                    .with_max_items(64)
                    .with_sorted_map_keys(false);
                let v = Value::decode(payload, &limits)?;
                let map = v.as_map().ok_or_else(|| structure(S, "must be a map"))?;
                for (k, v) in map {
                    match k.as_text() {
                        Some("c") => c = v.as_text().map(str::to_owned),
                        Some("f") => f = v.as_u64(),
                        Some("l") => l = v.as_u64(),
                        Some("i") => i = v.as_u64(),
                        Some("p") => {
                            p = Some(
                                v.as_bytes()
                                    .ok_or_else(|| structure(S, "p must be a bstr"))?
                                    .to_vec(),
                            )
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(DataBlock {
            client_token: c,
            file_id: f.ok_or_else(|| structure(S, "missing f"))?,
            length: l.ok_or_else(|| structure(S, "missing l"))?,
            block_id: i.ok_or_else(|| structure(S, "missing i"))?,
            payload: p.ok_or_else(|| structure(S, "missing p"))?,
        })
    }
}

/// Decodes a `rejected` response into [`Error::StreamRejected`] (code and message).
pub fn decode_rejected(payload: &[u8], encoding: Encoding) -> Error {
    let (mut code, mut message) = (String::from("unknown"), String::new());
    match encoding {
        Encoding::Json => {
            if let Ok(serde_json::Value::Object(map)) =
                serde_json::from_slice::<serde_json::Value>(payload)
            {
                if let Some(o) = map.get("o").and_then(|v| v.as_str()) {
                    code = o.to_owned();
                }
                if let Some(m) = map.get("m").and_then(|v| v.as_str()) {
                    message = m.to_owned();
                }
            }
        }
        Encoding::Cbor => {
            let limits = CborLimits::default().with_sorted_map_keys(false);
            if let Ok(v) = Value::decode(payload, &limits) {
                for (k, v) in v.as_map().unwrap_or(&[]) {
                    match (k.as_text(), v.as_text()) {
                        (Some("o"), Some(o)) => code = o.to_owned(),
                        (Some("m"), Some(m)) => message = m.to_owned(),
                        _ => {}
                    }
                }
            }
        }
    }
    Error::StreamRejected { code, message }
}

/// What [`Download::accept`] did with a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The block (and any held blocks it unlocked) went to the sink; the count delivered.
    Delivered(u64),
    /// The block arrived early and is held until the blocks before it arrive.
    Held,
    /// The block was already delivered or held; ignored.
    Duplicate,
    /// The block arrived early and the hold is full; it was dropped and will be requested again.
    Dropped,
}

/// The durable state of a [`Download`]: enough to resume after a reboot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DownloadCheckpoint {
    /// File id.
    pub file_id: u8,
    /// Stream version pinned, if any.
    pub stream_version: Option<u64>,
    /// File size in bytes.
    pub size: u64,
    /// Block size in bytes.
    pub block_size: u32,
    /// Blocks delivered to the sink, in order: the first `delivered` blocks are stored.
    pub delivered: u64,
}

/// The device side of a file download over MQTT, sans-IO and resumable. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    checkpoint: DownloadCheckpoint,
    blocks: u64,
    client_token: Option<String>,
    pending: BTreeMap<u64, Vec<u8>>,
    max_pending: usize,
    max_blocks_per_request: u32,
}

impl Download {
    /// A download of file `file_id` of `size` bytes in blocks of `block_size` bytes (at least 1;
    /// the service enforces its own range, 256..=131072 on AWS).
    pub fn new(file_id: u8, size: u64, block_size: u32) -> Result<Download> {
        Download::resume(DownloadCheckpoint {
            file_id,
            stream_version: None,
            size,
            block_size,
            delivered: 0,
        })
    }

    /// Resumes from a checkpoint; the next request starts after the delivered prefix.
    pub fn resume(checkpoint: DownloadCheckpoint) -> Result<Download> {
        if checkpoint.block_size == 0 {
            return Err(structure("Download", "block size must be at least 1"));
        }
        let blocks = checkpoint.size.div_ceil(u64::from(checkpoint.block_size));
        if checkpoint.delivered > blocks {
            return Err(Error::BlockOutOfRange {
                block: checkpoint.delivered,
                blocks,
            });
        }
        Ok(Download {
            checkpoint,
            blocks,
            client_token: None,
            pending: BTreeMap::new(),
            max_pending: 32,
            max_blocks_per_request: 98,
        })
    }

    /// Pins the stream version: the service answers `VersionMismatch` if the stream changed.
    pub fn with_stream_version(mut self, version: u64) -> Download {
        self.checkpoint.stream_version = Some(version);
        self
    }

    /// Sends this client token (at most 64 bytes) and refuses responses carrying another one.
    pub fn with_client_token(mut self, token: impl Into<String>) -> Download {
        self.client_token = Some(token.into());
        self
    }

    /// Most early blocks held in memory (default 32; 0 holds none, so only in-order blocks are
    /// kept). Memory is bounded by `max_pending * block_size`.
    pub fn with_max_pending(mut self, max_pending: usize) -> Download {
        self.max_pending = max_pending;
        self
    }

    /// Most blocks asked for per request (default 98, at least 1).
    pub fn with_max_blocks_per_request(mut self, n: u32) -> Download {
        self.max_blocks_per_request = n.max(1);
        self
    }

    /// The durable state to persist (after the sink has persisted the delivered blocks).
    pub fn checkpoint(&self) -> &DownloadCheckpoint {
        &self.checkpoint
    }

    /// Blocks received (delivered or held).
    pub fn received(&self) -> u64 {
        self.checkpoint.delivered + self.pending.len() as u64
    }

    /// Blocks in the file.
    pub fn total(&self) -> u64 {
        self.blocks
    }

    /// Whether every block was delivered.
    pub fn is_complete(&self) -> bool {
        self.checkpoint.delivered == self.blocks
    }

    /// Progress in the FreeRTOS OTA job `statusDetails` convention: `"received/total"`, the value
    /// of the `receive` key.
    pub fn status_receive(&self) -> String {
        format!("{}/{}", self.received(), self.blocks)
    }

    /// The next GetStream request: up to the per-request maximum of missing blocks, starting at
    /// the first one not delivered; `None` once complete.
    pub fn next_request(&self) -> Option<GetStreamRequest> {
        if self.is_complete() {
            return None;
        }
        let offset = self.checkpoint.delivered;
        let window = (self.blocks - offset).min(u64::from(self.max_blocks_per_request.max(1)));
        let mut bitmap = vec![0u8; window.div_ceil(8) as usize];
        let mut n = 0u32;
        for k in 0..window {
            if !self.pending.contains_key(&(offset + k)) {
                bitmap[(k / 8) as usize] |= 1 << (k % 8);
                n += 1;
            }
        }
        Some(GetStreamRequest {
            client_token: self.client_token.clone(),
            stream_version: self.checkpoint.stream_version,
            file_id: self.checkpoint.file_id,
            block_size: self.checkpoint.block_size,
            block_offset: offset,
            number_of_blocks: n,
            bitmap,
        })
    }

    fn expected_len(&self, block: u64) -> u64 {
        let bs = u64::from(self.checkpoint.block_size);
        bs.min(self.checkpoint.size - block * bs)
    }

    /// Accepts one data block. Refuses (with a typed error, state unchanged) a block of another
    /// file or client token, outside the file, or of the wrong length; ignores duplicates; hands
    /// in-order blocks (and the held blocks they unlock) to `sink`.
    pub fn accept(
        &mut self,
        block: &DataBlock,
        mut sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<Accepted> {
        if block.file_id != u64::from(self.checkpoint.file_id) {
            return Err(Error::StreamMismatch {
                field: "fileId",
                expected: self.checkpoint.file_id.to_string(),
                found: block.file_id.to_string(),
            });
        }
        if let (Some(want), Some(got)) = (&self.client_token, &block.client_token)
            && want != got
        {
            return Err(Error::StreamMismatch {
                field: "clientToken",
                expected: want.clone(),
                found: got.clone(),
            });
        }
        let id = block.block_id;
        if id >= self.blocks {
            return Err(Error::BlockOutOfRange {
                block: id,
                blocks: self.blocks,
            });
        }
        let expected = self.expected_len(id);
        let actual = block.payload.len() as u64;
        if actual != expected || block.length != actual {
            return Err(Error::BlockSize {
                block: id,
                expected,
                actual: if actual != expected {
                    actual
                } else {
                    block.length
                },
            });
        }
        if id < self.checkpoint.delivered || self.pending.contains_key(&id) {
            return Ok(Accepted::Duplicate);
        }
        if id > self.checkpoint.delivered {
            if self.pending.len() >= self.max_pending {
                return Ok(Accepted::Dropped);
            }
            self.pending.insert(id, block.payload.clone());
            return Ok(Accepted::Held);
        }
        sink(&block.payload)?;
        self.checkpoint.delivered += 1;
        let mut count = 1;
        while let Some(next) = self.pending.remove(&self.checkpoint.delivered) {
            sink(&next)?;
            self.checkpoint.delivered += 1;
            count += 1;
        }
        Ok(Accepted::Delivered(count))
    }

    /// Decodes and accepts a message received on a stream topic: a `data` message goes to
    /// [`Download::accept`], a `rejected` message becomes [`Error::StreamRejected`]; other
    /// topics are ignored (`Ok(None)`).
    pub fn accept_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<Option<Accepted>> {
        let mut levels = topic.rsplit('/');
        let encoding = match levels.next() {
            Some("json") => Encoding::Json,
            Some("cbor") => Encoding::Cbor,
            _ => return Ok(None),
        };
        match levels.next() {
            Some("data") => {
                let block = DataBlock::decode(payload, encoding, self.checkpoint.block_size)?;
                self.accept(&block, sink).map(Some)
            }
            Some("rejected") => Err(decode_rejected(payload, encoding)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(data: Vec<u8>) -> StreamCatalog {
        let mut c = StreamCatalog::default();
        c.insert("s1", StreamSource::new(7, "desc").with_file(3, data));
        c
    }

    fn rejected_code(out: &[OutMessage], enc: Encoding) -> String {
        assert_eq!(out.len(), 1);
        assert!(
            out[0]
                .topic
                .ends_with(&format!("/rejected/{}", enc.as_str()))
        );
        match decode_rejected(&out[0].payload, enc) {
            Error::StreamRejected { code, .. } => code,
            _ => unreachable!(),
        }
    }

    #[test]
    fn ignores_topics_that_are_not_stream_requests() {
        let c = catalog(vec![1; 10]);
        let l = StreamLimits::default();
        for t in [
            "$aws/things/t/streams/s1/data/json",
            "$aws/things/t/streams/s1/get/xml",
            "$aws/things/t/streams/s1/get/json/extra",
            "$aws/things//streams/s1/get/json",
            "a/b",
        ] {
            assert!(handle_request(None, t, b"{}", &c, &l).is_none(), "{t}");
        }
    }

    #[test]
    fn serves_blocks_by_offset_and_count_in_json() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let c = catalog(data.clone());
        let out = handle_request(
            Some("t"),
            "$aws/things/t/streams/s1/get/json",
            br#"{"c":"tok","s":7,"fileId":3,"l":256,"o":1,"n":5}"#,
            &c,
            &StreamLimits::default(),
        )
        .unwrap();
        assert_eq!(out.len(), 3);
        let b = DataBlock::decode(&out[2].payload, Encoding::Json, 256).unwrap();
        assert_eq!(out[2].topic, "$aws/things/t/streams/s1/data/json");
        assert_eq!((b.block_id, b.length), (3, 1000 - 768));
        assert_eq!(b.payload, data[768..]);
        assert_eq!(b.client_token.as_deref(), Some("tok"));
    }

    #[test]
    fn rejects_with_aws_error_codes() {
        let c = catalog(vec![0; 1000]);
        let l = StreamLimits::default();
        let get = "$aws/things/t/streams/s1/get/json";
        for (payload, code) in [
            (&br#"{"f":3,"l":256,"s":8}"#[..], "VersionMismatch"),
            (br#"{"f":4,"l":256}"#, "ResourceNotFound"),
            (br#"{"f":3,"l":255}"#, "BlockSizeOutOfBounds"),
            (br#"{"f":3,"l":256,"o":4}"#, "OffsetOutOfBounds"),
            (br#"{"f":3,"l":256,"n":99}"#, "BlockCountLimitExceeded"),
            (br#"{"f":3}"#, "InvalidRequest"),
            (br#"{"f":"3","l":256}"#, "InvalidRequest"),
            (b"{", "InvalidJson"),
        ] {
            let out = handle_request(Some("t"), get, payload, &c, &l).unwrap();
            assert_eq!(rejected_code(&out, Encoding::Json), code);
        }
        let out = handle_request(
            Some("t"),
            "$aws/things/t/streams/nope/get/cbor",
            &[0xff],
            &c,
            &l,
        )
        .unwrap();
        assert_eq!(rejected_code(&out, Encoding::Cbor), "InvalidCbor");
        let out = handle_request(Some("u"), get, br#"{"f":3,"l":256}"#, &c, &l).unwrap();
        assert_eq!(rejected_code(&out, Encoding::Json), "Unauthorized");
        let long = format!(r#"{{"c":"{}","f":3,"l":256}}"#, "x".repeat(65));
        let out = handle_request(Some("t"), get, long.as_bytes(), &c, &l).unwrap();
        assert_eq!(rejected_code(&out, Encoding::Json), "InvalidRequest");
    }

    #[test]
    fn describes_a_stream_in_cbor() {
        let c = catalog(vec![0; 1000]);
        let req = Value::Map(vec![(Value::Text("c".into()), Value::Text("x".into()))]).to_vec();
        let out = handle_request(
            None,
            "$aws/things/t/streams/s1/describe/cbor",
            &req,
            &c,
            &StreamLimits::default(),
        )
        .unwrap();
        assert_eq!(out[0].topic, "$aws/things/t/streams/s1/description/cbor");
        let v = Value::decode(
            &out[0].payload,
            &CborLimits::default().with_sorted_map_keys(false),
        )
        .unwrap();
        let map = v.as_map().unwrap();
        let get = |k: &str| {
            map.iter()
                .find(|(key, _)| key.as_text() == Some(k))
                .map(|e| &e.1)
        };
        assert_eq!(get("s").and_then(Value::as_u64), Some(7));
        assert_eq!(get("d").and_then(Value::as_text), Some("desc"));
        let files = get("r").and_then(Value::as_array).unwrap();
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn bitmap_selects_blocks_relative_to_the_offset_and_n_caps_them() {
        let c = catalog(vec![9; 256 * 20]);
        let req = serde_json::json!({"f": 3, "l": 256, "o": 2, "n": 2, "b": BASE64.encode([0b1010_0001u8, 0xff])});
        let out = handle_request(
            None,
            "$aws/things/t/streams/s1/get/json",
            req.to_string().as_bytes(),
            &c,
            &StreamLimits::default(),
        )
        .unwrap();
        let ids: Vec<u64> = out
            .iter()
            .map(|m| {
                DataBlock::decode(&m.payload, Encoding::Json, 256)
                    .unwrap()
                    .block_id
            })
            .collect();
        assert_eq!(ids, vec![2, 7]);
    }

    #[test]
    fn download_refuses_foreign_out_of_range_and_short_blocks() {
        let mut d = Download::new(1, 600, 256).unwrap().with_client_token("a");
        let block = |f, i, len: usize, c: Option<&str>| DataBlock {
            client_token: c.map(str::to_owned),
            file_id: f,
            length: len as u64,
            block_id: i,
            payload: vec![0; len],
        };
        let sink = |_: &[u8]| Ok(());
        assert!(matches!(
            d.accept(&block(2, 0, 256, None), sink),
            Err(Error::StreamMismatch {
                field: "fileId",
                ..
            })
        ));
        assert!(matches!(
            d.accept(&block(1, 0, 256, Some("b")), sink),
            Err(Error::StreamMismatch {
                field: "clientToken",
                ..
            })
        ));
        assert_eq!(
            d.accept(&block(1, 3, 256, None), sink),
            Err(Error::BlockOutOfRange {
                block: 3,
                blocks: 3
            })
        );
        assert_eq!(
            d.accept(&block(1, 2, 256, None), sink),
            Err(Error::BlockSize {
                block: 2,
                expected: 88,
                actual: 256
            })
        );
        assert_eq!(d.accept(&block(1, 2, 88, None), sink), Ok(Accepted::Held));
        assert_eq!(
            d.accept(&block(1, 2, 88, None), sink),
            Ok(Accepted::Duplicate)
        );
        assert_eq!(d.status_receive(), "1/3");
        let req = d.next_request().unwrap();
        assert_eq!(
            (req.block_offset, req.number_of_blocks, req.bitmap.clone()),
            (0, 2, vec![0b011])
        );
        assert_eq!(
            d.accept(&block(1, 0, 256, None), sink),
            Ok(Accepted::Delivered(1))
        );
        assert_eq!(
            d.accept(&block(1, 1, 256, None), sink),
            Ok(Accepted::Delivered(2))
        );
        assert!(d.is_complete() && d.next_request().is_none());
    }

    #[test]
    fn empty_file_is_complete_at_once() {
        let d = Download::new(0, 0, 256).unwrap();
        assert!(d.is_complete());
        assert_eq!(d.status_receive(), "0/0");
    }
}
