//! The rule engine's errors. Their texts are Prometheus' (a rule's
//! `lastError` in `/api/v1/rules`, promtool's unit-test report); the types
//! say what failed, for callers that branch.

use crate::promql::{EvalError, ParseError};

/// A rule definition that cannot be built: its expression does not parse.
/// (Rule files are checked by `rulefmt` first, which reports the same
/// parse error with the file's line; this is the check of a definition
/// that did not come through it.)
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("group {group:?}, rule {rule:?}: could not parse expression: {error}")]
pub struct BuildError {
    pub group: String,
    pub rule: String,
    pub error: ParseError,
}

/// Why one evaluation of a rule failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleEvalError {
    /// The query failed (timeout, too many samples, storage, ...).
    #[error(transparent)]
    Query(#[from] EvalError),
    /// The expression returned a range vector or a string.
    #[error("rule result is not a vector or scalar")]
    NotVector,
    /// Two results had the same labels once the rule's labels were
    /// applied; `by` is `rule` (recording) or `alert` (alerting), as
    /// Prometheus words it.
    #[error("vector contains metrics with the same labelset after applying {by} labels")]
    DuplicateLabelset { by: &'static str },
    /// More results than the group's `limit`; `what` is `series` or `alerts`.
    #[error("exceeded limit of {limit} with {got} {what}")]
    Limit {
        limit: usize,
        got: usize,
        what: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::alerting::sink::NoopSink;
    use crate::model::Labels;
    use crate::promql::{Engine, EngineOpts};
    use crate::rules::group::{EvalCtx, Group, RuleOpts};
    use crate::rules::recording::RecordingRule;
    use crate::rules::rulefmt::{parse, ParseOpts};
    use crate::storage::MemStorage;

    /// A definition that did not come through rulefmt's check names its
    /// group and rule, and keeps the parse error's position.
    #[test]
    fn a_bad_expression_names_group_rule_and_position() {
        let text = "groups:\n- name: g\n  rules:\n  - record: r\n    expr: up\n";
        let mut rg = parse(text, "t.yml", &ParseOpts::default()).unwrap();
        rg.groups[0].rules[0].expr = "sum(".into();
        let store = Arc::new(MemStorage::new());
        let opts = RuleOpts::new(store.clone(), store, Arc::new(NoopSink));
        let err = Group::new("t.yml", &rg.groups[0], 60_000, Arc::new(opts), true).unwrap_err();
        assert_eq!((err.group.as_str(), err.rule.as_str()), ("g", "r"));
        assert_eq!((err.error.line, err.error.column), (1, 5));
        assert_eq!(
            err.to_string(),
            "group \"g\", rule \"r\": could not parse expression: 1:5: parse error: unclosed left parenthesis"
        );
    }

    /// Evaluation failures are told apart by type; their texts stay
    /// Prometheus'.
    #[test]
    fn evaluation_failures_are_typed() {
        let store = MemStorage::new();
        for job in ["a", "b"] {
            store.append(
                Labels::from_pairs([("__name__", "up"), ("job", job)]),
                0,
                1.0,
            );
        }
        let engine = Engine::new(EngineOpts::default());
        let ctx = EvalCtx {
            engine: &engine,
            queryable: &store,
            external_labels: &Labels::new(),
            external_url: "",
        };
        let rule = |expr: &str| RecordingRule::new("r", expr, BTreeMap::new()).unwrap();
        let err = rule("up").eval(&ctx, 0, 0, 1).unwrap_err();
        assert_eq!(
            err,
            RuleEvalError::Limit {
                limit: 1,
                got: 2,
                what: "series"
            }
        );
        assert_eq!(err.to_string(), "exceeded limit of 1 with 2 series");
        let err = rule("up[5m]").eval(&ctx, 0, 0, 0).unwrap_err();
        assert_eq!(err, RuleEvalError::NotVector);
        let relabeled = RecordingRule::new("r", "up", BTreeMap::from([("job".into(), "x".into())]));
        let err = relabeled.unwrap().eval(&ctx, 0, 0, 0).unwrap_err();
        assert_eq!(err, RuleEvalError::DuplicateLabelset { by: "rule" });
        assert_eq!(
            err.to_string(),
            "vector contains metrics with the same labelset after applying rule labels"
        );
        let err = rule("label_replace(up, \"job\", \"x\", \"\", \"\")")
            .eval(&ctx, 0, 0, 0)
            .unwrap_err();
        assert!(matches!(err, RuleEvalError::Query(_)), "{err:?}");
    }
}
