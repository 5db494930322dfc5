//! The crate's one error type.

/// Everything that can go wrong while decoding, verifying or applying an update.
///
/// Variants carry what an operator needs to act: the byte offset of a malformed CBOR item, the
/// limit that was exceeded, the SUIT or COSE rule that was broken, or the sequence numbers involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CBOR input is malformed or not in the strict form this crate accepts.
    #[error("CBOR at byte {offset}: {reason}")]
    Cbor {
        /// Byte offset of the offending item, relative to the decoded buffer.
        offset: usize,
        /// What was wrong (RFC 8949 rule).
        reason: CborError,
    },
    /// A configured limit was exceeded.
    #[error("{what} is {actual}, above the limit of {limit}")]
    Limit {
        /// Which quantity (e.g. "envelope size", "signatures").
        what: &'static str,
        /// The limit in force.
        limit: u64,
        /// The value found.
        actual: u64,
    },
    /// The data decoded as CBOR but does not have the shape the SUIT or COSE spec requires.
    #[error("malformed {structure}: {reason}")]
    Structure {
        /// The structure being decoded (e.g. "SUIT_Envelope").
        structure: &'static str,
        /// What was wrong, naming the spec rule where one applies.
        reason: String,
    },
    /// An algorithm this crate does not implement (or does not allow in that place).
    #[error("unsupported {kind} algorithm {id}")]
    UnsupportedAlgorithm {
        /// "signature" or "digest".
        kind: &'static str,
        /// The COSE algorithm identifier found.
        id: i64,
    },
    /// The manifest digest in the authentication wrapper does not match the manifest bytes.
    #[error(
        "manifest digest mismatch (draft-ietf-suit-manifest section 8.3: the digest covers the bstr-wrapped manifest)"
    )]
    ManifestDigestMismatch,
    /// Fewer distinct trusted keys signed than the threshold requires.
    #[error("{valid} valid signature(s) from distinct trusted keys, threshold is {threshold}")]
    BelowThreshold {
        /// Distinct trusted keys whose signatures verified.
        valid: usize,
        /// Required number of distinct keys.
        threshold: usize,
    },
    /// A severable element present in the envelope does not match the digest in the manifest.
    #[error("severable element {key} does not match its digest in the manifest")]
    SeverableDigestMismatch {
        /// Envelope key of the element (16 payload fetch, 20 install, 23 text).
        key: i64,
    },
    /// The manifest's sequence number is not above the installed one (anti-rollback,
    /// RFC 9124 REQ.SEC.SEQUENCE).
    #[error(
        "sequence number {offered} is not greater than the installed {installed} (rollback refused)"
    )]
    Rollback {
        /// Sequence number in the offered manifest.
        offered: u64,
        /// Sequence number installed on the device.
        installed: u64,
    },
    /// Vendor or class identifier does not match the device (RFC 9124 REQ.SEC.COMPATIBLE).
    #[error("{which} identifier {found} does not match the device's {expected}")]
    Incompatible {
        /// "vendor" or "class".
        which: &'static str,
        /// The identifier in the manifest (or "absent").
        found: String,
        /// The device's identifier.
        expected: String,
    },
    /// The manifest lacks a parameter the device needs.
    #[error("manifest has no {0} parameter for component 0")]
    MissingParameter(&'static str),
    /// The image is longer than the manifest declares (detected as the data arrives).
    #[error("image data beyond the declared size of {declared} bytes (at byte {offset})")]
    ImageTooLong {
        /// Declared image size.
        declared: u64,
        /// Offset at which the excess byte arrived.
        offset: u64,
    },
    /// The image ended before the declared size.
    #[error("image is {received} bytes, shorter than the declared {declared}")]
    ImageTooShort {
        /// Declared image size.
        declared: u64,
        /// Bytes received.
        received: u64,
    },
    /// The image's SHA-256 differs from the manifest's image digest.
    #[error("image digest mismatch")]
    ImageDigestMismatch,
    /// A resumed download's stored prefix differs from what was verified before the interruption.
    #[error("stored prefix of {received} bytes does not match the checkpoint")]
    CheckpointMismatch {
        /// Length of the stored prefix.
        received: u64,
    },
    /// A trust-anchor set was offered out of order.
    #[error("trust-anchor set version {offered} refused: {reason} (current version {current})")]
    TrustSetOrder {
        /// Version offered.
        offered: u64,
        /// Version currently applied.
        current: u64,
        /// "skip", "replay" or "rollback".
        reason: &'static str,
    },
    /// A key could not be parsed, generated or used.
    #[error("key: {0}")]
    Key(String),
    /// A state-machine event arrived in a state that does not accept it.
    #[error("update state machine: {event} is not allowed in state {state}")]
    InvalidTransition {
        /// The event.
        event: &'static str,
        /// The current phase.
        state: &'static str,
    },
    /// Reading the stored image prefix failed while resuming.
    #[error("reading stored image: {0}")]
    Io(String),
    /// A manifest or trust-anchor set is expired at the caller-supplied time (freeze attack
    /// refused). Expired means `now >= expires`.
    #[error("{what} expired at {expires} (unix seconds); now is {now}")]
    Expired {
        /// "envelope" or "trust-anchor set".
        what: &'static str,
        /// Its expiry, unix seconds.
        expires: u64,
        /// The time the caller supplied, unix seconds.
        now: u64,
    },
    /// The policy requires an expiry and the item carries none.
    #[error("{what} carries no expiry and the policy requires one")]
    MissingExpiry {
        /// "envelope" or "trust-anchor set".
        what: &'static str,
    },
    /// The item carries an expiry but was checked through an entry point that has no time
    /// (e.g. [`crate::Verifier::verify`]); use the `_at` variant with the current time.
    #[error("{what} carries an expiry: verify it with the current time (verify_at)")]
    TimeRequired {
        /// "envelope" or "trust-anchor set".
        what: &'static str,
    },
    /// A trust-anchor set cannot be rotated (it names no root keys) or mixes key roles.
    #[error("trust-anchor set: {0}")]
    KeyRole(&'static str),
    /// A file-delivery data block names a block outside the file.
    #[error("block {block} is outside the file ({blocks} blocks)")]
    BlockOutOfRange {
        /// The block id received.
        block: u64,
        /// Number of blocks in the file.
        blocks: u64,
    },
    /// A file-delivery data block has the wrong length for its position.
    #[error("block {block} has {actual} bytes, expected {expected}")]
    BlockSize {
        /// The block id received.
        block: u64,
        /// Expected length (the block size, or the remainder for the last block).
        expected: u64,
        /// Length received.
        actual: u64,
    },
    /// A file-delivery response belongs to another request, file or stream.
    #[error("stream response {field} is {found}, expected {expected}")]
    StreamMismatch {
        /// The mismatched field ("fileId", "clientToken", "blockSize").
        field: &'static str,
        /// What the download expected.
        expected: String,
        /// What the response carried.
        found: String,
    },
    /// The stream service rejected a request (an AWS `rejected` response).
    #[error("stream request rejected: {code}: {message}")]
    StreamRejected {
        /// The AWS error code (e.g. "ResourceNotFound").
        code: String,
        /// The message.
        message: String,
    },
}

/// The specific RFC 8949 rule a CBOR item broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ended inside an item.
    #[error("unexpected end of input")]
    Truncated,
    /// Bytes follow the single top-level item.
    #[error("trailing bytes after the item")]
    TrailingBytes,
    /// An argument was not encoded in its shortest form (RFC 8949 section 4.2.1).
    #[error("non-shortest encoding of an integer or length (RFC 8949 section 4.2.1)")]
    NonShortest,
    /// Indefinite-length items are refused (RFC 8949 section 4.2.1).
    #[error("indefinite length (RFC 8949 section 4.2.1)")]
    Indefinite,
    /// A map has the same key twice (RFC 8949 section 5.6).
    #[error("duplicate map key (RFC 8949 section 5.6)")]
    DuplicateKey,
    /// Map keys are not in bytewise lexicographic order of their encodings (RFC 8949 section 4.2.1).
    #[error("map keys not in deterministic order (RFC 8949 section 4.2.1)")]
    UnsortedKeys,
    /// A declared length is larger than the remaining input.
    #[error("declared length exceeds the remaining input")]
    LengthExceedsInput,
    /// Nesting is deeper than the configured limit.
    #[error("nesting deeper than the limit")]
    TooDeep,
    /// A reserved additional-information value (28..30) or simple value.
    #[error("reserved or unsupported encoding")]
    Reserved,
    /// Floating-point values are not used by SUIT or COSE here and are refused.
    #[error("floating-point values are not accepted")]
    Float,
    /// A text string is not valid UTF-8.
    #[error("text string is not valid UTF-8")]
    InvalidUtf8,
    /// An item of a different major type was expected.
    #[error("unexpected item type")]
    UnexpectedType,
    /// An integer does not fit the target type.
    #[error("integer out of range")]
    IntegerRange,
    /// The item count exceeds the configured limit.
    #[error("too many items")]
    TooManyItems,
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn structure(structure: &'static str, reason: impl Into<String>) -> Error {
    Error::Structure {
        structure,
        reason: reason.into(),
    }
}
