//! Provisioning templates (to be written).

/// The provisioning templates.
#[derive(Debug, Default)]
pub struct TemplateStore {}
