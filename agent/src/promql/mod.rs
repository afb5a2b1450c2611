//! The PromQL engine: evaluates queries parsed by `promql-parser` against a
//! [`Queryable`](crate::storage::Queryable) store with Prometheus 3.x semantics (lookback delta,
//! staleness markers, left-open range windows, `offset`, `@`, subqueries).
//!
//! Layout: [`engine`] drives evaluation (selection, steps, subqueries);
//! `functions`, `aggregate`, `binary` and `histogram` implement the
//! operators; [`storage`] turns the parser's matchers into the store's; [`value`] the result
//! types; [`promqltest`] runs Prometheus' conformance script format.

pub mod engine;
pub mod error;
pub mod promqltest;
pub mod shared;
pub mod storage;
pub mod syntax;
pub mod value;

mod aggregate;
mod binary;
mod columnar;
mod functions;
mod grouping;
mod histogram;

pub use engine::{parse, parse_query, Engine, EngineOpts};
pub use error::{EvalError, ParseError};
pub use shared::SharedEngine;
pub use value::{Annotations, QueryResult, Sample, Series, Value};
