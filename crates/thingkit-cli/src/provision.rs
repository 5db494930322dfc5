//! `thingkit ca ...` and `thingkit cert ...`: a file-based CA and device certificates;
//! `thingkit provision template ...`: validate and render provisioning templates.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use serde_json::json;
use thingkit_provision::CertificateId;
use thingkit_provision::VerifiedCsr;
use thingkit_provision::{
    CaKeyType, CaOptions, CertificateAuthority, IssuanceProfile, IssueOptions,
};
use thingkit_provision::{ProvisioningTemplate, TEMPLATE_PSEUDO_PREFIX, TemplateLimits};

use crate::Failure;

/// `thingkit ca`: certificate authorities.
#[derive(Debug, Subcommand)]
pub enum CaArgs {
    /// Create a root CA: writes DIR/ca.pem and DIR/ca.key (mode 0600); refuses to overwrite.
    Init {
        /// Directory for ca.pem and ca.key (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// CA key type.
        #[arg(long, value_enum, default_value_t = KeyTypeArg::P256)]
        key_type: KeyTypeArg,
        /// Subject common name of the CA.
        #[arg(long, default_value = "thingkit CA")]
        common_name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
}

/// `thingkit cert`: device certificates.
#[derive(Debug, Subcommand)]
pub enum CertArgs {
    /// Issue a device certificate from a CSR (PEM or DER) with the strict issuance profile.
    Issue {
        /// Directory holding ca.pem and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The CSR file.
        #[arg(long)]
        csr: PathBuf,
        /// Validity in days (default 365, at most 825).
        #[arg(long)]
        days: Option<u32>,
        /// Write the PEM certificate here instead of stdout (then print its ID as JSON).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Create a key pair and a device certificate in one step (like CreateKeysAndCertificate).
    Create {
        /// Directory holding ca.pem and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Subject common name (e.g. the thing name).
        #[arg(long)]
        common_name: String,
        /// Where to write the PEM certificate.
        #[arg(long)]
        cert_out: PathBuf,
        /// Where to write the PKCS #8 PEM private key (mode 0600).
        #[arg(long)]
        key_out: PathBuf,
        /// Device key type.
        #[arg(long, value_enum, default_value_t = KeyTypeArg::P256)]
        key_type: KeyTypeArg,
    },
    /// Print the AWS certificate ID (lowercase hex SHA-256 of the DER) of a PEM or DER certificate.
    Id {
        /// The certificate file.
        file: PathBuf,
    },
}

/// Key types on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyTypeArg {
    /// ECDSA P-256.
    P256,
    /// ECDSA P-384.
    P384,
    /// Ed25519 (CA keys only).
    Ed25519,
}

impl From<KeyTypeArg> for CaKeyType {
    fn from(k: KeyTypeArg) -> Self {
        match k {
            KeyTypeArg::P256 => CaKeyType::P256,
            KeyTypeArg::P384 => CaKeyType::P384,
            KeyTypeArg::Ed25519 => CaKeyType::Ed25519,
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))
}

/// Writes a secret file with mode 0600, refusing to overwrite an existing file.
fn write_secret(path: &Path, contents: &str) -> Result<(), Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| Failure(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

fn write_public(path: &Path, contents: &str) -> Result<(), Failure> {
    std::fs::write(path, contents)
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

fn load_ca(dir: &Path) -> Result<CertificateAuthority, Failure> {
    let cert = String::from_utf8(read(&dir.join("ca.pem"))?)
        .map_err(|_| Failure("ca.pem is not text".into()))?;
    let key = String::from_utf8(read(&dir.join("ca.key"))?)
        .map_err(|_| Failure("ca.key is not text".into()))?;
    Ok(CertificateAuthority::from_pem(&cert, &key)?)
}

/// Runs `thingkit ca ...`.
pub fn run_ca(args: CaArgs) -> Result<(), Failure> {
    match args {
        CaArgs::Init {
            dir,
            key_type,
            common_name,
            days,
        } => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
            let cert_path = dir.join("ca.pem");
            let key_path = dir.join("ca.key");
            if cert_path.exists() || key_path.exists() {
                return Err(Failure(format!(
                    "{} already holds a CA; refusing to overwrite it",
                    dir.display()
                )));
            }
            let ca = CertificateAuthority::create_root(
                &CaOptions::default()
                    .with_key_type(key_type.into())
                    .with_common_name(common_name)
                    .with_validity_days(days),
                std::time::SystemTime::now(),
            )?;
            write_secret(&key_path, &ca.private_key_pem())?;
            write_public(&cert_path, &ca.certificate_pem())?;
            println!(
                "{}",
                json!({
                    "ca_certificate_id": ca.id().to_string(),
                    "certificate": cert_path.display().to_string(),
                    "private_key": key_path.display().to_string(),
                })
            );
            Ok(())
        }
    }
}

/// Runs `thingkit cert ...`.
pub fn run_cert(args: CertArgs) -> Result<(), Failure> {
    match args {
        CertArgs::Issue {
            ca_dir,
            csr,
            days,
            out,
        } => {
            let ca = load_ca(&ca_dir)?;
            let input = read(&csr)?;
            let verified = VerifiedCsr::parse(&input, &IssuanceProfile::default().csr_limits)?;
            let issued = ca.issue_verified(
                &verified,
                &IssueOptions::default()
                    .with_common_name(None)
                    .with_validity_days(days),
                std::time::SystemTime::now(),
            )?;
            match out {
                Some(path) => {
                    write_public(&path, &issued.pem())?;
                    println!("{}", json!({ "certificate_id": issued.id.to_string() }));
                }
                None => print!("{}", issued.pem()),
            }
            Ok(())
        }
        CertArgs::Create {
            ca_dir,
            common_name,
            cert_out,
            key_out,
            key_type,
        } => {
            let ca = load_ca(&ca_dir)?;
            if key_type == KeyTypeArg::Ed25519 {
                return Err(Failure(
                    "device keys must be p256 or p384 (AWS IoT does not accept Ed25519 device certificates)"
                        .into(),
                ));
            }
            let made = ca.create_keys_and_certificate(
                &common_name,
                key_type.into(),
                std::time::SystemTime::now(),
            )?;
            write_secret(&key_out, &made.private_key_pem)?;
            write_public(&cert_out, &made.certificate.pem())?;
            println!(
                "{}",
                json!({ "certificate_id": made.certificate.id.to_string() })
            );
            Ok(())
        }
        CertArgs::Id { file } => {
            let id = CertificateId::of_certificate(&read(&file)?)?;
            println!("{id}");
            Ok(())
        }
    }
}

/// `thingkit provision`: fleet provisioning tools.
#[derive(Debug, Subcommand)]
pub enum ProvisionArgs {
    /// Provisioning templates (AWS IoT template language).
    #[command(subcommand)]
    Template(TemplateArgs),
}

/// `thingkit provision template`.
#[derive(Debug, Subcommand)]
pub enum TemplateArgs {
    /// Validate a template: exit 0 and print its parameters as JSON, or exit 1 with the
    /// line:column and JSON path of the first error.
    Validate {
        /// The template file (JSON).
        file: PathBuf,
    },
    /// Render a template with parameters and print the resources it would create as JSON.
    /// Pseudo-parameters (`AWS::IoT::Certificate::Id`, ...) are given with --param too.
    Render {
        /// The template file (JSON).
        file: PathBuf,
        /// A parameter, `NAME=VALUE` (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
}

fn load_template(file: &Path) -> Result<ProvisioningTemplate, Failure> {
    let text = String::from_utf8(read(file)?)
        .map_err(|_| Failure(format!("{} is not UTF-8 text", file.display())))?;
    Ok(ProvisioningTemplate::parse(
        &text,
        &TemplateLimits::default(),
    )?)
}

/// Runs `thingkit provision ...`.
pub fn run_provision(args: ProvisionArgs) -> Result<(), Failure> {
    match args {
        ProvisionArgs::Template(TemplateArgs::Validate { file }) => {
            let template = load_template(&file)?;
            let parameters: serde_json::Map<String, serde_json::Value> = template
                .parameters()
                .iter()
                .map(|(name, p)| (name.clone(), json!({ "type": p.ty, "default": p.default })))
                .collect();
            println!("{}", json!({ "valid": true, "parameters": parameters }));
            Ok(())
        }
        ProvisionArgs::Template(TemplateArgs::Render { file, params }) => {
            let template = load_template(&file)?;
            let mut device = BTreeMap::new();
            let mut pseudo = BTreeMap::new();
            for p in params {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| Failure(format!("--param {p:?} is not NAME=VALUE")))?;
                let target = if k.starts_with(TEMPLATE_PSEUDO_PREFIX) {
                    &mut pseudo
                } else {
                    &mut device
                };
                if target.insert(k.to_owned(), v.to_owned()).is_some() {
                    return Err(Failure(format!("--param {k} is given twice")));
                }
            }
            let rendered = template.render(&device, &pseudo)?;
            println!("{}", serde_json::to_string_pretty(&rendered)?);
            Ok(())
        }
    }
}
