//! Access keys (to be written).

/// The access keys.
#[derive(Debug, Default)]
pub struct KeyStore {}

impl KeyStore {
    /// The secret of `id`.
    pub fn secret(&self, _id: &str) -> Option<String> {
        None
    }
}
