"""The Alertmanager webhook v4 payload.

A notification carries exactly the fields of the message Alertmanager's
`webhook_config` POSTs, so a receiver that speaks to anything built for
Alertmanager sends `webhook_v4(notification)` as is. Label lists become
dicts; the last of two equal names wins.
"""

from wit_world.imports import types as _types

__all__ = ["webhook_v4", "labels", "label", "status"]


def status(value):
    """`firing` or `resolved`, as Alertmanager spells them."""
    return "firing" if value == _types.AlertStatus.FIRING else "resolved"


def labels(entries):
    """A label list as a dict."""
    return {entry.name: entry.value for entry in entries}


def label(entries, name):
    """The value of label `name`, or None."""
    for entry in reversed(entries):
        if entry.name == name:
            return entry.value
    return None


def webhook_v4(n):
    """The webhook v4 JSON (a dict) of notification `n`."""
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": n.truncated_alerts,
        "status": status(n.status),
        "receiver": n.receiver,
        "groupLabels": labels(n.group_labels),
        "commonLabels": labels(n.common_labels),
        "commonAnnotations": labels(n.common_annotations),
        "externalURL": n.external_url,
        "alerts": [
            {
                "status": status(a.status),
                "labels": labels(a.labels),
                "annotations": labels(a.annotations),
                "startsAt": a.starts_at,
                "endsAt": a.ends_at,
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            }
            for a in n.alerts
        ],
    }
