//! PromQL's side of the storage contract ([`crate::storage`]): the
//! parser's label matchers as the store's.

use super::error::EvalError;
use crate::storage::{MatchOp, Matcher};

/// Converts promql-parser's matcher (whose regex is not `(?s)`); a regex
/// the store cannot compile fails the query with the store's words.
pub fn matcher_from_parser(m: &promql_parser::label::Matcher) -> Result<Matcher, EvalError> {
    use promql_parser::label::MatchOp as P;
    let op = match m.op {
        P::Equal => MatchOp::Equal,
        P::NotEqual => MatchOp::NotEqual,
        P::Re(_) => MatchOp::Regex,
        P::NotRe(_) => MatchOp::NotRegex,
    };
    Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| EvalError::Eval(format!("{e:#}")))
}
