//! The routing tree (Alertmanager's `dispatch/route.go`): options inherited
//! down the tree, depth-first matching with `continue`, and the route keys
//! that name aggregation groups (`{}/{owner="team-A"}`).

use std::collections::BTreeSet;
use std::time::Duration;

use super::config::{ConfigError, RouteConfig};
use super::matcher::{MatchType, Matcher, Matchers};
use crate::model::Labels;

/// Options of a route after inheritance.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteOpts {
    pub receiver: String,
    /// Label names to group by (sorted).
    pub group_by: BTreeSet<String>,
    /// `group_by: ['...']`: every label is a grouping label.
    pub group_by_all: bool,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    /// Names of time intervals; not inherited (as in Alertmanager).
    pub mute_time_intervals: Vec<String>,
    pub active_time_intervals: Vec<String>,
    /// Escalation steps, ordered by delay (inherited).
    pub escalation: Vec<EscalationStep>,
}

/// A receiver notified `delay` after the group's first page attempt while
/// the group is firing and not acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationStep {
    pub receiver: String,
    pub delay: Duration,
}

impl Default for RouteOpts {
    fn default() -> RouteOpts {
        RouteOpts {
            receiver: String::new(),
            group_by: BTreeSet::new(),
            group_by_all: false,
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(5 * 60),
            repeat_interval: Duration::from_secs(4 * 3600),
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
            escalation: Vec::new(),
        }
    }
}

/// A node of the routing tree.
#[derive(Debug, Clone)]
pub struct Route {
    pub opts: RouteOpts,
    /// The node's matchers, sorted (legacy `match`/`match_re` included).
    pub matchers: Matchers,
    pub continue_matching: bool,
    pub routes: Vec<Route>,
    key: String,
    id: String,
}

impl Route {
    /// The tree for a root route config (validate the config first).
    pub fn new(root: &RouteConfig) -> Result<Route, ConfigError> {
        Route::build(root, None, 0)
    }

    fn build(
        cr: &RouteConfig,
        parent: Option<(&RouteOpts, &str)>,
        idx: usize,
    ) -> Result<Route, ConfigError> {
        cr.validate_node()?;
        let mut opts = parent.map(|(o, _)| o.clone()).unwrap_or_default();
        if let Some(r) = &cr.receiver {
            opts.receiver = r.clone();
        }
        if let Some(gb) = &cr.group_by {
            if gb.iter().any(|l| l == "...") {
                opts.group_by_all = true;
            } else {
                opts.group_by = gb.iter().cloned().collect();
                opts.group_by_all = false;
            }
        }
        if let Some(d) = cr.group_wait {
            opts.group_wait = d.as_std();
        }
        if let Some(d) = cr.group_interval {
            opts.group_interval = d.as_std();
        }
        if let Some(d) = cr.repeat_interval {
            opts.repeat_interval = d.as_std();
        }
        if let Some(steps) = &cr.escalation {
            opts.escalation = steps
                .iter()
                .map(|s| EscalationStep {
                    receiver: s.receiver.clone(),
                    delay: s.delay.as_std(),
                })
                .collect();
        }
        opts.mute_time_intervals = cr.mute_time_intervals.clone();
        opts.active_time_intervals = cr.active_time_intervals.clone();

        let mut ms: Vec<Matcher> = Vec::new();
        for (n, v) in &cr.match_eq {
            ms.push(Matcher::new(MatchType::Equal, n.clone(), v.clone())?);
        }
        for (n, v) in &cr.match_re {
            ms.push(Matcher::new(MatchType::Regexp, n.clone(), v.anchored())?);
        }
        ms.extend(cr.matchers.0.iter().cloned());
        let matchers = Matchers(ms).sorted();

        let key = match parent {
            Some((_, pk)) => format!("{pk}/{matchers}"),
            None => matchers.to_string(),
        };
        let id = if parent.is_some() {
            format!("{key}/{idx}")
        } else {
            key.clone()
        };
        let routes = cr
            .routes
            .iter()
            .enumerate()
            .map(|(i, c)| Route::build(c, Some((&opts, &key)), i))
            .collect::<Result<_, _>>()?;
        Ok(Route {
            opts,
            matchers,
            continue_matching: cr.continue_matching,
            routes,
            key,
            id,
        })
    }

    /// The matching leaves for `labels`, in order: depth first, a matching
    /// child stops the search among its siblings unless it has `continue`;
    /// a node none of whose children match is itself the match.
    pub fn match_labels(&self, labels: &Labels) -> Vec<&Route> {
        if !self.matchers.matches(labels) {
            return Vec::new();
        }
        let mut all = Vec::new();
        for cr in &self.routes {
            let m = cr.match_labels(labels);
            let matched = !m.is_empty();
            all.extend(m);
            if matched && !cr.continue_matching {
                break;
            }
        }
        if all.is_empty() {
            all.push(self);
        }
        all
    }

    /// The route's key: the parent's key, `/`, the sorted matchers.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A unique id: the key plus the index among siblings.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Every route, depth first.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Route)) {
        f(self);
        for r in &self.routes {
            r.walk(f);
        }
    }

    /// The labels of `labels` this route groups by.
    pub fn group_labels(&self, labels: &Labels) -> Labels {
        if self.opts.group_by_all {
            return labels.clone();
        }
        Labels::from_pairs(
            labels
                .iter()
                .filter(|l| self.opts.group_by.contains(&l.name))
                .map(|l| (l.name.clone(), l.value.clone())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherit_and_continue() {
        let cfg: RouteConfig = serde_norway::from_str(
            r#"
receiver: def
group_by: [a]
routes:
- matchers: [x="1"]
  receiver: one
  continue: true
  group_wait: 1m
- matchers: [x=~"1|2"]
  routes:
  - matchers: [y="z"]
    receiver: deep
    group_by: ['...']
"#,
        )
        .unwrap();
        let r = Route::new(&cfg).unwrap();
        let l = Labels::from_pairs([("x", "1"), ("y", "z")]);
        let m = r.match_labels(&l);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].opts.receiver, "one");
        assert_eq!(m[0].opts.group_wait, Duration::from_secs(60));
        assert_eq!(m[1].opts.receiver, "deep");
        assert!(m[1].opts.group_by_all);
        assert_eq!(m[1].key(), r#"{}/{x=~"1|2"}/{y="z"}"#);
        assert_eq!(m[1].id(), r#"{}/{x=~"1|2"}/{y="z"}/0"#);
        let l = Labels::from_pairs([("x", "2")]);
        let m = r.match_labels(&l);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].opts.receiver, "def");
        assert_eq!(
            m[0].group_labels(&Labels::from_pairs([("a", "b"), ("c", "d")]))
                .len(),
            1
        );
        let l = Labels::from_pairs([("x", "3")]);
        assert_eq!(r.match_labels(&l)[0].key(), "{}");
    }
}
