//! `thingkit firmware`: generate keys, sign SUIT envelopes, verify and inspect them.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use thingkit_firmware::{
    EnvelopeBuilder, EnvelopeLimits, ImageVerifier, KeyType, ManifestBuilder, PublicKey,
    SigningKey, TrustAnchors, Uuid, Verifier, inspect,
};

use crate::Failure;

/// Key algorithms for `keygen`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyAlg {
    /// ECDSA P-256 with SHA-256 (COSE ES256).
    Es256,
    /// Ed25519 (COSE EdDSA).
    Ed25519,
}

/// Firmware subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Generate a signing key: the PKCS#8 PEM private key goes to FILE (mode 0600), the SPKI PEM
    /// public key to FILE.pub.
    Keygen {
        /// Key algorithm.
        #[arg(long, value_enum)]
        alg: KeyAlg,
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a SUIT manifest for an image and write a signed envelope.
    Sign {
        /// A PKCS#8 PEM private key; repeat to add signatures.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// The firmware image (its SHA-256 and size go into the manifest).
        #[arg(long)]
        image: PathBuf,
        /// The manifest sequence number (must increase with every release).
        #[arg(long)]
        sequence: u64,
        /// Vendor identifier (UUID).
        #[arg(long)]
        vendor_id: Uuid,
        /// Class identifier (UUID).
        #[arg(long)]
        class_id: Uuid,
        /// Where devices fetch the image.
        #[arg(long)]
        uri: Option<String>,
        /// Where to write the envelope.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an envelope (and optionally an image); exit 0 when every check passes, 1 with a
    /// one-line reason otherwise.
    Verify {
        /// The SUIT envelope.
        #[arg(long)]
        envelope: PathBuf,
        /// A trusted SPKI PEM public key; repeat for several.
        #[arg(long = "trust", required = true)]
        trust: Vec<PathBuf>,
        /// Distinct trusted keys that must have signed (default 1).
        #[arg(long, default_value_t = 1)]
        threshold: usize,
        /// The image to check against the manifest's digest and size.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Sequence number installed on the device: the envelope's must be greater.
        #[arg(long)]
        installed_sequence: Option<u64>,
        /// The device's vendor identifier (requires --class-id).
        #[arg(long, requires = "class_id")]
        vendor_id: Option<Uuid>,
        /// The device's class identifier (requires --vendor-id).
        #[arg(long, requires = "vendor_id")]
        class_id: Option<Uuid>,
    },
    /// Print an envelope's contents as JSON, WITHOUT authenticating it.
    Inspect {
        /// The SUIT envelope.
        #[arg(long)]
        envelope: PathBuf,
    },
}

/// Runs a firmware subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    match args {
        Args::Keygen { alg, out } => keygen(alg, &out),
        Args::Sign {
            keys,
            image,
            sequence,
            vendor_id,
            class_id,
            uri,
            out,
        } => sign(&keys, &image, sequence, vendor_id, class_id, uri, &out),
        Args::Verify {
            envelope,
            trust,
            threshold,
            image,
            installed_sequence,
            vendor_id,
            class_id,
        } => verify(
            &envelope,
            &trust,
            threshold,
            image.as_deref(),
            installed_sequence,
            vendor_id.zip(class_id),
        ),
        Args::Inspect { envelope } => inspect_cmd(&envelope),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

fn read_text(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

fn pub_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), Failure> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let mut f = opts
            .open(path)
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        // An existing file keeps its old mode on open: tighten it explicitly.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .and_then(|()| f.write_all(data))
            .map_err(|e| Failure(format!("{}: {e}", path.display())))
    }
    #[cfg(not(unix))]
    {
        let mut f = opts
            .open(path)
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        f.write_all(data)
            .map_err(|e| Failure(format!("{}: {e}", path.display())))
    }
}

fn keygen(alg: KeyAlg, out: &Path) -> Result<(), Failure> {
    let kt = match alg {
        KeyAlg::Es256 => KeyType::P256,
        KeyAlg::Ed25519 => KeyType::Ed25519,
    };
    let key = SigningKey::generate(kt)?;
    write_private(out, key.to_pkcs8_pem().as_bytes())?;
    let pub_out = pub_path(out);
    std::fs::write(&pub_out, key.public_key().to_spki_pem())
        .map_err(|e| Failure(format!("{}: {e}", pub_out.display())))?;
    println!(
        "{}",
        json!({
            "algorithm": key.algorithm().name(),
            "key_id": key.public_key().key_id().to_string(),
            "private_key": out.display().to_string(),
            "public_key": pub_out.display().to_string(),
        })
    );
    Ok(())
}

fn sign(
    keys: &[PathBuf],
    image: &Path,
    sequence: u64,
    vendor: Uuid,
    class: Uuid,
    uri: Option<String>,
    out: &Path,
) -> Result<(), Failure> {
    let keys = keys
        .iter()
        .map(|p| {
            SigningKey::from_pkcs8_pem(&read_text(p)?)
                .map_err(|e| Failure(format!("{}: {e}", p.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let file = File::open(image).map_err(|e| Failure(format!("{}: {e}", image.display())))?;
    let (digest, size) = thingkit_firmware::SuitDigest::of_reader(BufReader::new(file))
        .map_err(|e| Failure(format!("{}: {e}", image.display())))?;
    let mut b = ManifestBuilder::new(sequence)
        .vendor_id(vendor)
        .class_id(class)
        .image_digest(digest, size);
    if let Some(uri) = uri {
        b = b.uri(uri);
    }
    let refs: Vec<&SigningKey> = keys.iter().collect();
    let envelope = EnvelopeBuilder::new(b.build()?).sign(&refs)?;
    std::fs::write(out, &envelope).map_err(|e| Failure(format!("{}: {e}", out.display())))?;
    Ok(())
}

fn verify(
    envelope: &Path,
    trust: &[PathBuf],
    threshold: usize,
    image: Option<&Path>,
    installed_sequence: Option<u64>,
    identity: Option<(Uuid, Uuid)>,
) -> Result<(), Failure> {
    let keys = trust
        .iter()
        .map(|p| {
            PublicKey::from_spki_pem(&read_text(p)?)
                .map_err(|e| Failure(format!("{}: {e}", p.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let anchors = TrustAnchors::new(0, threshold, keys)?;
    let bytes = read(envelope)?;
    let verified = Verifier::new(anchors).verify(&bytes)?;
    if let Some(installed) = installed_sequence {
        verified.check_sequence(installed)?;
    }
    if let Some((vendor, class)) = identity {
        verified.check_identity(&vendor, &class)?;
    }
    let mut image_ok = Value::Null;
    if let Some(path) = image {
        let req = verified.image_requirement(u64::MAX)?;
        let mut v = ImageVerifier::new(req);
        let mut f = File::open(path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            v.update(&buf[..n])?;
        }
        let done = v.finish()?;
        image_ok = json!({ "digest": done.digest.to_string(), "size": done.size });
    }
    println!(
        "{}",
        json!({
            "verified": true,
            "sequence_number": verified.sequence_number,
            "manifest_digest": verified.manifest_digest().to_string(),
            "signers": verified.signers().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "image": image_ok,
        })
    );
    Ok(())
}

fn inspect_cmd(envelope: &Path) -> Result<(), Failure> {
    let bytes = read(envelope)?;
    let i = inspect(&bytes, &EnvelopeLimits::default())?;
    let p = &i.parameters;
    let out = json!({
        "authenticated": false,
        "sequence_number": i.sequence_number,
        "manifest_digest": i.manifest_digest.to_string(),
        "manifest_digest_matches": i.manifest_digest_matches,
        "components": i.components,
        "vendor_id": p.vendor_id.map(|u| u.to_string()),
        "class_id": p.class_id.map(|u| u.to_string()),
        "image_digest": p.image_digest.map(|d| d.to_string()),
        "image_size": p.image_size,
        "uri": p.uri,
        "signatures": i.signatures.iter().map(|(alg, kid)| json!({
            "algorithm": alg.name(),
            "cose_alg": alg.cose_id(),
            "key_id": kid.as_deref().map(hex::encode),
        })).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
