//! A strict, bounded PEM codec (RFC 7468) for certificates, CSRs, keys and CRLs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::error::{Error, Result};

/// Returns the DER inside the first PEM block of `input` if it is PEM text (starts with
/// `-----BEGIN`, after optional whitespace) and the label is one of `labels`; otherwise returns
/// `input` unchanged as DER.
pub(crate) fn decode_if_pem(input: &[u8], labels: &[&str]) -> Result<Vec<u8>> {
    let trimmed = input.trim_ascii_start();
    if !trimmed.starts_with(b"-----BEGIN") {
        return Ok(input.to_vec());
    }
    let text = std::str::from_utf8(trimmed).map_err(|_| Error::Pem("not UTF-8".into()))?;
    let blocks = decode_blocks(text)?;
    let Some((label, der)) = blocks.into_iter().next() else {
        return Err(Error::Pem("no PEM block".into()));
    };
    if !labels.contains(&label.as_str()) {
        return Err(Error::Pem(format!(
            "label {label:?}, expected {}",
            labels.join(" or ")
        )));
    }
    Ok(der)
}

/// Decodes every PEM block in `text`, in order, as `(label, der)` pairs. Text outside blocks is
/// ignored (RFC 7468 §2 explanatory text).
pub fn decode_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let line = line.trim_end();
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut b64 = String::new();
        let mut closed = false;
        for (_, body) in lines.by_ref() {
            let body = body.trim();
            if body == end {
                closed = true;
                break;
            }
            b64.push_str(body);
        }
        if !closed {
            return Err(Error::Pem(format!(
                "block {label:?} opened on line {} is not closed",
                n + 1
            )));
        }
        out.push((label.to_owned(), base64_decode(&b64)?));
    }
    Ok(out)
}

/// Encodes DER as a PEM block with 64-character lines and a trailing newline.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut s = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    s.push_str("-----BEGIN ");
    s.push_str(label);
    s.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("-----END ");
    s.push_str(label);
    s.push_str("-----\n");
    s
}

fn base64_encode(data: &[u8]) -> String {
    BASE64.encode(data)
}

/// Standard alphabet, canonical padding required, non-zero trailing bits refused.
fn base64_decode(s: &str) -> Result<Vec<u8>> {
    BASE64
        .decode(s)
        .map_err(|e| Error::Pem(format!("invalid base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pem_round_trips_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let text = encode("CERTIFICATE", &data);
            let blocks = decode_blocks(&text).unwrap();
            prop_assert_eq!(blocks, vec![("CERTIFICATE".to_string(), data)]);
        }

        #[test]
        fn pem_decoder_never_panics(text in "\\PC{0,300}") {
            let _ = decode_blocks(&text);
        }
    }

    #[test]
    fn rejects_unclosed_block_and_bad_padding() {
        assert!(decode_blocks("-----BEGIN X-----\nAAAA\n").is_err());
        assert!(decode_blocks("-----BEGIN X-----\nA=AA\n-----END X-----\n").is_err());
        assert!(decode_blocks("-----BEGIN X-----\nAA==AAAA\n-----END X-----\n").is_err());
    }

    #[test]
    fn decode_if_pem_refuses_the_wrong_label() {
        let text = encode("PRIVATE KEY", b"abc");
        assert!(decode_if_pem(text.as_bytes(), &["CERTIFICATE REQUEST"]).is_err());
        assert_eq!(decode_if_pem(b"\x30\x00", &["X"]).unwrap(), b"\x30\x00");
    }
}
