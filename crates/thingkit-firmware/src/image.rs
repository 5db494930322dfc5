//! Streaming image verification; documented on [`ImageVerifier`].

use std::io::Read;

use crate::envelope::ImageRequirement;
use crate::error::{Error, Result};
use crate::manifest::SuitDigest;

/// Persistable progress of an image download (a small serde struct).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageCheckpoint {
    /// What the image must match.
    pub requirement: ImageRequirement,
    /// Bytes verified so far.
    pub received: u64,
    /// SHA-256 of those bytes.
    pub prefix_digest: SuitDigest,
}

/// An image that matched its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifiedImage {
    /// The image's SHA-256 (equal to the manifest's image digest).
    pub digest: SuitDigest,
    /// Its size in bytes (equal to the declared size).
    pub size: u64,
    /// The manifest sequence number it belongs to.
    pub sequence_number: u64,
}

/// Incremental SHA-256 verification of an image against an [`ImageRequirement`].
///
/// Streaming image verification in constant memory, resumable after an interruption.
///
/// Feed the image in chunks of any size. Data beyond the declared size is refused as it arrives
/// (the offending chunk is not hashed, so the verifier stays usable for the correct bytes); at the
/// end, a short image or a digest mismatch is an error.
///
/// **Resuming.** `ring`'s SHA-256 state cannot be exported, so a [`ImageCheckpoint`] records how
/// many bytes were verified and the SHA-256 of that prefix. After a reboot,
/// [`ImageVerifier::resume`] re-reads the prefix from the device's *local* storage (the slot it
/// was being written to), checks it against the checkpoint, and continues — nothing is downloaded
/// again. This keeps the hot path at `ring`'s hash speed; the price is one local re-read of the
/// prefix per interruption (see ARCHITECTURE.md, Decisions).
#[derive(Clone)]
pub struct ImageVerifier {
    ctx: ring::digest::Context,
    requirement: ImageRequirement,
    received: u64,
}

impl std::fmt::Debug for ImageVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageVerifier")
            .field("requirement", &self.requirement)
            .field("received", &self.received)
            .finish()
    }
}

impl ImageVerifier {
    /// A verifier at byte 0.
    pub fn new(requirement: ImageRequirement) -> ImageVerifier {
        ImageVerifier {
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            requirement,
            received: 0,
        }
    }

    /// Hashes the next chunk. Fails with [`Error::ImageTooLong`] — without consuming the chunk —
    /// if it would take the image past its declared size.
    pub fn update(&mut self, chunk: &[u8]) -> Result<()> {
        let len = chunk.len() as u64;
        let end = self.received.saturating_add(len);
        if end > self.requirement.size {
            return Err(Error::ImageTooLong {
                declared: self.requirement.size,
                offset: self.requirement.size,
            });
        }
        self.ctx.update(chunk);
        self.received = end;
        Ok(())
    }

    /// Bytes verified so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.requirement.size - self.received
    }

    /// What the image must match.
    pub fn requirement(&self) -> &ImageRequirement {
        &self.requirement
    }

    /// A checkpoint to persist (costs one SHA-256 finalisation of a cloned state).
    pub fn checkpoint(&self) -> ImageCheckpoint {
        ImageCheckpoint {
            requirement: self.requirement.clone(),
            received: self.received,
            prefix_digest: to_digest(self.ctx.clone().finish()),
        }
    }

    /// Rebuilds a verifier from a checkpoint by re-reading the first `checkpoint.received` bytes
    /// from `stored` (local storage, not the network), in a fixed 8 KiB buffer. Fails with
    /// [`Error::CheckpointMismatch`] if the stored prefix changed.
    pub fn resume(checkpoint: &ImageCheckpoint, mut stored: impl Read) -> Result<ImageVerifier> {
        if checkpoint.received > checkpoint.requirement.size {
            return Err(Error::CheckpointMismatch {
                received: checkpoint.received,
            });
        }
        let mut v = ImageVerifier::new(checkpoint.requirement.clone());
        let mut buf = [0u8; 8192];
        let mut left = checkpoint.received;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = stored
                .read(&mut buf[..want])
                .map_err(|e| Error::Io(e.to_string()))?;
            if n == 0 {
                return Err(Error::CheckpointMismatch {
                    received: checkpoint.received,
                });
            }
            v.update(&buf[..n])?;
            left -= n as u64;
        }
        if to_digest(v.ctx.clone().finish()) != checkpoint.prefix_digest {
            return Err(Error::CheckpointMismatch {
                received: checkpoint.received,
            });
        }
        Ok(v)
    }

    /// Completes verification: the image must have exactly the declared size and digest.
    pub fn finish(self) -> Result<VerifiedImage> {
        if self.received != self.requirement.size {
            return Err(Error::ImageTooShort {
                declared: self.requirement.size,
                received: self.received,
            });
        }
        let digest = to_digest(self.ctx.finish());
        if digest != self.requirement.digest {
            return Err(Error::ImageDigestMismatch);
        }
        Ok(VerifiedImage {
            digest,
            size: self.received,
            sequence_number: self.requirement.sequence_number,
        })
    }
}

fn to_digest(d: ring::digest::Digest) -> SuitDigest {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    SuitDigest(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(image: &[u8]) -> ImageRequirement {
        ImageRequirement {
            sequence_number: 1,
            digest: SuitDigest::of(image),
            size: image.len() as u64,
            uri: None,
        }
    }

    fn image() -> Vec<u8> {
        (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn accepts_image_in_any_chunking() {
        let img = image();
        for chunk in [1, 7, 4096, 65536, img.len()] {
            let mut v = ImageVerifier::new(req(&img));
            for c in img.chunks(chunk) {
                v.update(c).unwrap();
            }
            assert_eq!(v.finish().unwrap().size, img.len() as u64);
        }
    }

    #[test]
    fn refuses_bytes_beyond_declared_size_as_they_arrive() {
        let img = image();
        let mut v = ImageVerifier::new(req(&img));
        v.update(&img[..img.len() - 10]).unwrap();
        assert_eq!(
            v.update(&[0u8; 11]),
            Err(Error::ImageTooLong {
                declared: img.len() as u64,
                offset: img.len() as u64
            })
        );
        // The refused chunk was not consumed; the right tail still verifies.
        v.update(&img[img.len() - 10..]).unwrap();
        v.finish().unwrap();
    }

    #[test]
    fn refuses_short_and_different_images() {
        let img = image();
        let mut v = ImageVerifier::new(req(&img));
        v.update(&img[..img.len() - 1]).unwrap();
        assert!(matches!(v.finish(), Err(Error::ImageTooShort { .. })));
        let mut other = img.clone();
        other[500] ^= 1;
        let mut v = ImageVerifier::new(req(&img));
        v.update(&other).unwrap();
        assert_eq!(v.finish(), Err(Error::ImageDigestMismatch));
    }

    #[test]
    fn resumes_from_checkpoint_without_redownloading() {
        let img = image();
        let mut v = ImageVerifier::new(req(&img));
        v.update(&img[..40_000]).unwrap();
        let cp = v.checkpoint();
        let json = serde_json::to_string(&cp).unwrap();
        drop(v);
        let cp: ImageCheckpoint = serde_json::from_str(&json).unwrap();
        let mut v = ImageVerifier::resume(&cp, &img[..40_000]).unwrap();
        v.update(&img[40_000..]).unwrap();
        v.finish().unwrap();
    }

    #[test]
    fn resume_detects_a_changed_or_truncated_stored_prefix() {
        let img = image();
        let mut v = ImageVerifier::new(req(&img));
        v.update(&img[..40_000]).unwrap();
        let cp = v.checkpoint();
        let mut tampered = img[..40_000].to_vec();
        tampered[123] ^= 0x80;
        assert!(matches!(
            ImageVerifier::resume(&cp, &tampered[..]),
            Err(Error::CheckpointMismatch { .. })
        ));
        assert!(matches!(
            ImageVerifier::resume(&cp, &img[..39_999]),
            Err(Error::CheckpointMismatch { .. })
        ));
    }
}
