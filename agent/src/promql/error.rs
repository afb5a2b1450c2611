//! Query errors. Typed where callers branch (the HTTP API maps `Timeout`
//! and `TooManySamples` to their own status codes); everything else carries
//! Prometheus' message text so clients see familiar errors.

/// A query text that does not parse, positioned as Prometheus reports it
/// (`2:5: parse error: unexpected end of input`; clients and tests match
/// these texts). Line and column are 1-based; columns count bytes.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{line}:{column}: parse error: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    /// Prometheus' (or promql-parser's) words, without the position.
    pub message: String,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum EvalError {
    /// The query text does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The deadline passed during evaluation.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The query was cancelled (`EngineOpts::cancel`).
    #[error("query was canceled in {0}")]
    Cancelled(&'static str),
    /// More samples than `EngineOpts::max_samples` would be loaded.
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The storage failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// A feature of the language this engine does not implement.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// An evaluation error with Prometheus' message.
    #[error("{0}")]
    Eval(String),
}

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError::Eval(msg.into()))
}
