//! `thingkit serve --config FILE`: the server, configured by one TOML file (see `config`).

use std::path::PathBuf;

use crate::Failure;
use crate::config::ServeConfig;

/// `thingkit serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (`thingkit init DIR` writes DIR/thingkit.toml). Relative paths in
    /// it are relative to its directory.
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
}

/// Runs the server with a configuration that has been read and validated.
///
/// The broker's tokio driver is moving into thingkit-broker; until it is wired here, this only
/// reports that it is not.
pub fn serve(config: ServeConfig) -> Result<(), Failure> {
    let _ = config;
    Err(Failure("the broker driver is not wired yet".into()))
}
