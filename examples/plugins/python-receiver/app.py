"""A receiver that reports each notification in the agent's log.

The same receiver exists in C, JavaScript and Python under examples/plugins/:
one `info` line "notification" per call, with the fields lang, instance,
receiver, status, alerts (the count) and alertnames (comma-separated, in
order). A notification whose common labels have `fail` is refused with a
permanent failure, so the agent's error path can be seen too.

Build: `wasmon plugin build examples/plugins/python-receiver`.
"""

import wit_world
from wit_world.imports import config, log, types
from componentize_py_types import Err


def label(labels, name):
    for entry in labels:
        if entry.name == name:
            return entry.value
    return None


class WitWorld(wit_world.WitWorld):
    def notify(self, notification: types.Notification) -> None:
        fail = label(notification.common_labels, "fail")
        if fail is not None:
            raise Err(types.Failure_Permanent("asked to fail: " + fail))
        names = [label(a.labels, "alertname") or "" for a in notification.alerts]
        status = "firing" if notification.status == types.AlertStatus.FIRING else "resolved"
        log.log(
            log.Level.INFO,
            "notification",
            [
                ("lang", "python"),
                ("instance", config.instance_name()),
                ("receiver", notification.receiver),
                ("status", status),
                ("alerts", str(len(notification.alerts))),
                ("alertnames", ",".join(names)),
            ],
        )
