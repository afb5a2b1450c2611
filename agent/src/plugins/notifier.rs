//! The bridge from the dispatcher to receiver plugins: one plugin call per
//! notification, failures mapped to retryable or permanent, and the WIT
//! form of a webhook message. It lives with the plugins, not in `alerting`,
//! so that alerting knows only its `Notifier` trait and never the runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;

use super::bindings::types as wit;
use super::{Instance, PluginRuntime};
use crate::alerting::message::{MessageError, WebhookMessage};
use crate::alerting::notify::{Notifier, NotifyError};
use crate::config::Config;

/// Delivers notifications through the receiver instances of the current
/// config (swapped on reload).
pub struct PluginNotifier {
    pub plugins: Arc<PluginRuntime>,
    /// The prepared instances, by instance name.
    pub receivers: ArcSwap<BTreeMap<String, Instance>>,
    /// The receiver names that are not one instance of that name.
    pub groups: ArcSwap<ReceiverGroups>,
}

/// The receivers (the names routes use) that notify several instances or
/// none: an Alertmanager receiver with several integrations, or without
/// any. Every other receiver name is the one instance of that name.
#[derive(Debug, Default)]
pub struct ReceiverGroups {
    members: BTreeMap<String, Vec<Member>>,
    /// The instances that took a message whose other instances failed, by
    /// receiver and group, with the message's digest: the retry of that
    /// message skips them, so a broken integration does not make the
    /// others repeat themselves (Alertmanager retries each integration on
    /// its own). An entry lives until its message reaches every instance
    /// or another message of the group comes; the map is cleared past
    /// [`MAX_PARTIAL`] entries (at worst, a message sent twice).
    delivered: Mutex<HashMap<GroupKey, (u64, BTreeSet<String>)>>,
}

/// A receiver's name and a group's key.
type GroupKey = (String, String);

/// Most groups remembered as partly delivered.
const MAX_PARTIAL: usize = 4096;

/// One instance of a receiver group.
#[derive(Debug, Clone)]
struct Member {
    instance: String,
    send_resolved: bool,
}

impl ReceiverGroups {
    pub fn of(config: &Config) -> ReceiverGroups {
        let members = config
            .receiver_groups()
            .into_iter()
            .filter(|(name, members)| !matches!(&members[..], [one] if one.name() == name))
            .map(|(name, members)| {
                let members = members
                    .iter()
                    .map(|r| Member {
                        instance: r.name().to_string(),
                        send_resolved: r.send_resolved.unwrap_or(true),
                    })
                    .collect();
                (name, members)
            })
            .collect();
        ReceiverGroups {
            members,
            delivered: Mutex::default(),
        }
    }

    /// The instances that already took message `digest` of `key`.
    fn already(&self, key: &GroupKey, digest: u64) -> BTreeSet<String> {
        match self.delivered.lock().unwrap().get(key) {
            Some((d, done)) if *d == digest => done.clone(),
            _ => BTreeSet::new(),
        }
    }

    /// Records how message `digest` of `key` went: `ok` took it; `complete`
    /// when no instance is left to take it.
    fn record(&self, key: GroupKey, digest: u64, ok: Vec<String>, complete: bool) {
        let mut delivered = self.delivered.lock().unwrap();
        if complete {
            delivered.remove(&key);
            return;
        }
        if delivered.len() >= MAX_PARTIAL && !delivered.contains_key(&key) {
            delivered.clear();
        }
        let entry = delivered.entry(key).or_insert((digest, BTreeSet::new()));
        if entry.0 != digest {
            *entry = (digest, BTreeSet::new());
        }
        entry.1.extend(ok);
    }
}

/// Identifies a message among the retries of its group's notification.
fn digest(msg: &WebhookMessage) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    serde_json::to_vec(msg).unwrap_or_default().hash(&mut h);
    h.finish()
}

impl Notifier for PluginNotifier {
    fn notify(
        &self,
        receiver: &str,
        mut msg: WebhookMessage,
    ) -> BoxFuture<'static, Result<(), NotifyError>> {
        msg.receiver = receiver.to_string();
        let receivers = self.receivers.load();
        let groups = self.groups.load_full();
        let Some(members) = groups.members.get(receiver) else {
            let inst = receivers.get(receiver).cloned();
            return Box::pin(deliver(
                self.plugins.clone(),
                inst,
                receiver.to_string(),
                msg,
            ));
        };
        // Each integration hears of the group as Alertmanager's would: the
        // same message, without the resolved alerts when it does not want
        // them. They are sent at once; a retry skips those that took it.
        let key = (receiver.to_string(), msg.group_key.clone());
        let digest = digest(&msg);
        let done = groups.already(&key, digest);
        let sends: Vec<_> = members
            .iter()
            .filter(|m| !done.contains(&m.instance))
            .filter_map(|m| {
                let mut msg = msg.clone();
                if !m.send_resolved {
                    msg = firing_only(msg)?;
                }
                let inst = receivers.get(&m.instance).cloned();
                let name = m.instance.clone();
                let send = deliver(self.plugins.clone(), inst, name.clone(), msg);
                Some(async move { (name, send.await) })
            })
            .collect();
        Box::pin(async move {
            let mut ok = Vec::new();
            let mut errors = Vec::new();
            for (name, result) in futures::future::join_all(sends).await {
                match result {
                    Ok(()) => ok.push(name),
                    Err(e) => errors.push(e),
                }
            }
            groups.record(key, digest, ok, errors.is_empty());
            if errors.is_empty() {
                return Ok(());
            }
            let text = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            if errors.iter().any(|e| e.retryable) {
                Err(NotifyError::retryable(text))
            } else {
                Err(NotifyError::permanent(text))
            }
        })
    }
}

/// One instance's delivery of `msg` (`name` is the instance's, for errors
/// and logs).
async fn deliver(
    plugins: Arc<PluginRuntime>,
    inst: Option<Instance>,
    name: String,
    msg: WebhookMessage,
) -> Result<(), NotifyError> {
    let Some(inst) = inst else {
        return Err(NotifyError::permanent(format!(
            "no receiver named {name:?}"
        )));
    };
    let n = wit_notification(&msg).map_err(|e| NotifyError::permanent(e.to_string()))?;
    match plugins.notify(&inst, &n).await {
        Ok(info) => {
            tracing::info!(receiver = %name, group = %msg.group_key, status = %msg.status, alerts = msg.alerts.len(), ms = info.duration.as_secs_f64() * 1e3, "notification sent");
            Ok(())
        }
        Err(e) if e.is_retryable() => {
            Err(NotifyError::retryable(format!("receiver {name:?}: {e}")))
        }
        Err(e) => Err(NotifyError::permanent(format!("receiver {name:?}: {e}"))),
    }
}

/// The message without its resolved alerts (None: nothing fires), its
/// common labels and annotations taken over what is left.
fn firing_only(mut msg: WebhookMessage) -> Option<WebhookMessage> {
    msg.alerts.retain(|a| a.status == "firing");
    let first = msg.alerts.first()?;
    let common = |get: fn(&crate::alerting::message::WebhookAlert) -> &BTreeMap<String, String>| {
        let mut c = get(first).clone();
        c.retain(|k, v| msg.alerts.iter().all(|a| get(a).get(k) == Some(v)));
        c
    };
    msg.common_labels = common(|a| &a.labels);
    msg.common_annotations = common(|a| &a.annotations);
    msg.status = "firing".into();
    Some(msg)
}

/// The WIT notification of a message (what a receiver plugin is called with).
pub fn wit_notification(msg: &WebhookMessage) -> Result<wit::Notification, MessageError> {
    Ok(wit::Notification {
        receiver: msg.receiver.clone(),
        status: status(&msg.status).ok_or_else(|| MessageError::Status(msg.status.clone()))?,
        alerts: msg
            .alerts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                Ok(wit::Alert {
                    status: status(&a.status).ok_or_else(|| MessageError::AlertStatus {
                        index: i,
                        status: a.status.clone(),
                    })?,
                    labels: labels(&a.labels),
                    annotations: labels(&a.annotations),
                    starts_at: a.starts_at.clone(),
                    ends_at: a.ends_at.clone(),
                    generator_url: a.generator_url.clone(),
                    fingerprint: a.fingerprint.clone(),
                })
            })
            .collect::<Result<_, MessageError>>()?,
        group_labels: labels(&msg.group_labels),
        common_labels: labels(&msg.common_labels),
        common_annotations: labels(&msg.common_annotations),
        external_url: msg.external_url.clone(),
        group_key: msg.group_key.clone(),
        truncated_alerts: msg.truncated_alerts,
    })
}

fn status(s: &str) -> Option<wit::AlertStatus> {
    match s {
        "firing" => Some(wit::AlertStatus::Firing),
        "resolved" => Some(wit::AlertStatus::Resolved),
        _ => None,
    }
}

fn labels(m: &BTreeMap<String, String>) -> Vec<wit::Label> {
    m.iter()
        .map(|(n, v)| wit::Label {
            name: n.clone(),
            value: v.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::message::WebhookAlert;

    fn alert(status: &str, labels: &[(&str, &str)]) -> WebhookAlert {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        serde_json::from_value(serde_json::json!({"status": status, "labels": labels})).unwrap()
    }

    /// An integration without `send_resolved` gets the firing alerts only,
    /// their common labels recomputed; nothing when none fires.
    #[test]
    fn firing_only_keeps_what_fires() {
        let mut msg: WebhookMessage =
            serde_json::from_value(serde_json::json!({"status": "firing", "alerts": []})).unwrap();
        msg.alerts = vec![
            alert("firing", &[("a", "1"), ("b", "x")]),
            alert("resolved", &[("a", "1"), ("b", "y")]),
            alert("firing", &[("a", "1"), ("b", "x"), ("c", "z")]),
        ];
        let m = firing_only(msg.clone()).unwrap();
        assert_eq!(m.alerts.len(), 2);
        let common: Vec<(&str, &str)> = m
            .common_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(common, [("a", "1"), ("b", "x")]);
        let mut resolved = msg;
        resolved.alerts.retain(|a| a.status == "resolved");
        assert!(firing_only(resolved).is_none());
    }

    #[test]
    fn groups_list_only_names_that_are_not_one_instance() {
        let c = Config::parse(
            "[[receivers]]\nname = \"t/a\"\nreceiver = \"t\"\nplugin = \"webhook\"\nsend_resolved = false\n\n[[receivers]]\nname = \"t/b\"\nreceiver = \"t\"\nplugin = \"webhook\"\n\n[[receivers]]\nname = \"one\"\nplugin = \"webhook\"\n\n[[receivers]]\nname = \"none\"\n",
            "g.toml",
        )
        .unwrap();
        let g = ReceiverGroups::of(&c);
        let got: Vec<(&str, Vec<(&str, bool)>)> = g
            .members
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    v.iter()
                        .map(|m| (m.instance.as_str(), m.send_resolved))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [("none", vec![]), ("t", vec![("t/a", false), ("t/b", true)])]
        );
    }

    /// After a partial failure, the retry of the same message skips the
    /// instances that took it; a new message, or success, starts over.
    #[test]
    fn retries_skip_the_instances_that_took_the_message() {
        let g = ReceiverGroups::default();
        let key = ("team".to_string(), "{}:{a=\"1\"}".to_string());
        assert!(g.already(&key, 1).is_empty());
        g.record(key.clone(), 1, vec!["team/slack[0]".into()], false);
        assert_eq!(
            g.already(&key, 1).into_iter().collect::<Vec<_>>(),
            ["team/slack[0]"]
        );
        assert!(g.already(&key, 2).is_empty(), "another message");
        g.record(key.clone(), 1, vec!["team/email[0]".into()], false);
        assert_eq!(g.already(&key, 1).len(), 2);
        g.record(key.clone(), 1, vec![], true);
        assert!(g.already(&key, 1).is_empty(), "forgotten once complete");
        g.record(key.clone(), 1, vec!["a".into()], false);
        g.record(key.clone(), 2, vec!["b".into()], false);
        assert_eq!(g.already(&key, 2).into_iter().collect::<Vec<_>>(), ["b"]);
        // Bounded.
        for i in 0..MAX_PARTIAL + 10 {
            g.record(("r".into(), i.to_string()), 1, vec!["x".into()], false);
        }
        assert!(g.delivered.lock().unwrap().len() <= MAX_PARTIAL);
    }
}
