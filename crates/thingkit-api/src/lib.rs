//! The AWS IoT control-plane API over the thingkit registry (to be documented).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod identity;
pub mod keys;
pub mod model;
mod ops;
#[cfg(feature = "server")]
pub mod server;
pub mod service;
pub mod sigv4;
pub mod templates;

pub use error::{ApiError, ApiResult};
pub use model::{Input, Model, Service};
pub use service::{
    ApiLimits, ApiRequest, ApiResponse, AuditRecord, Caller, ControlPlane, Ctx, DataProperties,
    DataPublish, Endpoints, Publisher,
};
