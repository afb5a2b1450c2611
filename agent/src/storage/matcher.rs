//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus semantics.
//!
//! Regexes are fully anchored (`^(?s:re)$`, so `.` also matches a newline as
//! in Prometheus), and a label that is absent reads as the empty string: a
//! matcher that matches `""` also selects series without the label.

use std::fmt;

use anyhow::Context as _;
use regex::Regex;

use crate::model::Labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One label matcher. Build it with [`Matcher::new`], which compiles the
/// regex once.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

impl Matcher {
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> anyhow::Result<Matcher> {
        let (name, value) = (name.into(), value.into());
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?s:{value})$"))
                    .with_context(|| format!("invalid regex {value:?} for label {name:?}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    /// `name="value"`, which cannot fail.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
        }
    }

    /// Does the label value `v` (empty = label absent) satisfy the matcher?
    pub fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            // Unreachable through the constructors; fail closed.
            (_, None) => false,
        }
    }

    /// Does the series with these labels match? (An absent label reads as
    /// `""`.)
    pub fn matches_labels(&self, l: &Labels) -> bool {
        self.matches(l.get(&self.name).unwrap_or(""))
    }

    /// The matcher with the opposite result for every value.
    pub fn inverse(&self) -> Matcher {
        let op = match self.op {
            MatchOp::Equal => MatchOp::NotEqual,
            MatchOp::NotEqual => MatchOp::Equal,
            MatchOp::Regex => MatchOp::NotRegex,
            MatchOp::NotRegex => MatchOp::Regex,
        };
        Matcher {
            name: self.name.clone(),
            op,
            value: self.value.clone(),
            re: self.re.clone(),
        }
    }

    /// For `=~` with a plain alternation of literals (`a|b|c`), the literals:
    /// lets the index look values up instead of scanning them all.
    pub fn set_matches(&self) -> Option<Vec<String>> {
        if self.op != MatchOp::Regex {
            return None;
        }
        let special = |c: char| "\\.+*?()[]{}^$".contains(c);
        if self.value.chars().any(special) {
            return None;
        }
        Some(self.value.split('|').map(str::to_owned).collect())
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_regex() {
        let m = Matcher::new(MatchOp::Regex, "a", "foo|bar").unwrap();
        assert!(m.matches("foo") && m.matches("bar"));
        assert!(!m.matches("foobar") && !m.matches("xfoo") && !m.matches(""));
        let m = Matcher::new(MatchOp::Regex, "a", "a.*").unwrap();
        assert!(m.matches("a\nb"));
        assert!(Matcher::new(MatchOp::Regex, "a", "(").is_err());
    }

    #[test]
    fn absent_labels_read_as_empty() {
        let l = Labels::from_pairs([("a", "x\ny")]);
        let m = |op, n, v| Matcher::new(op, n, v).unwrap().matches_labels(&l);
        assert!(m(MatchOp::Regex, "a", "x.y"));
        assert!(!m(MatchOp::Regex, "a", "x"));
        assert!(m(MatchOp::Equal, "b", ""));
        assert!(m(MatchOp::Regex, "b", ".*"));
        assert!(!m(MatchOp::NotEqual, "b", ""));
    }

    #[test]
    fn set_matches() {
        let m = Matcher::new(MatchOp::Regex, "a", "x|y|").unwrap();
        assert_eq!(m.set_matches().unwrap(), ["x", "y", ""]);
        assert!(Matcher::new(MatchOp::Regex, "a", "x.*")
            .unwrap()
            .set_matches()
            .is_none());
    }
}
