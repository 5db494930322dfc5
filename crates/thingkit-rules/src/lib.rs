//! The AWS IoT SQL rules engine, sans-IO. (Crate docs: to be written with the engine.)

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod ast;
mod convert;
pub mod decimal;
mod error;
mod eval;
mod functions;
mod json;
mod lexer;
mod operator;
pub mod parser;
pub mod printer;
pub mod rule;
pub mod template;
pub mod topic_rule;
pub mod value;

pub use ast::{SqlVersion, Statement};
pub use decimal::Decimal;
pub use error::Error;
pub use parser::{parse, parse_expression};
pub use rule::{Environment, Limits, Message, Output, Rule, Variables};
pub use template::{Template, TemplatePart, parse_template};
pub use value::{Object, Value};
