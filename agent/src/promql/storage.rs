//! PromQL's side of the storage contract ([`crate::storage`]): the
//! parser's label matchers as the store's.

use crate::storage::{MatchOp, Matcher};

/// Converts promql-parser's matcher (whose regex is not `(?s)`).
pub fn matcher_from_parser(m: &promql_parser::label::Matcher) -> Result<Matcher, String> {
    use promql_parser::label::MatchOp as P;
    let op = match m.op {
        P::Equal => MatchOp::Equal,
        P::NotEqual => MatchOp::NotEqual,
        P::Re(_) => MatchOp::Regex,
        P::NotRe(_) => MatchOp::NotRegex,
    };
    Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| format!("{e:#}"))
}
