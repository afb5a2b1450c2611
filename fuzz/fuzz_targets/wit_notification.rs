//! The host-side conversion of a notification into the plugins' WIT types
//! (`plugins::notifier::wit_notification`), from any JSON that deserialises as a webhook
//! message: it must either convert faithfully or say what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmon::alerting::message::WebhookMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = serde_json::from_slice::<WebhookMessage>(data) else {
        return;
    };
    if let Ok(n) = wasmon::plugins::notifier::wit_notification(&msg) {
        // Nothing is lost or reordered on the way.
        assert_eq!(n.alerts.len(), msg.alerts.len());
        assert_eq!(n.group_key, msg.group_key);
        for (w, a) in n.alerts.iter().zip(&msg.alerts) {
            assert_eq!(w.labels.len(), a.labels.len());
            assert_eq!(w.fingerprint, a.fingerprint);
            assert!(w
                .labels
                .iter()
                .zip(&a.labels)
                .all(|(l, (k, v))| &l.name == k && &l.value == v));
        }
    }
});
