"""A receiver that reports each notification in the agent's log and, when
its config has a `url`, POSTs it there as Alertmanager webhook JSON.

The same receiver exists in C, JavaScript and Python under examples/plugins/:
one `info` line "notification" per call, with the fields lang, instance,
receiver, status, alerts (the count) and alertnames (comma-separated, in
order). A notification whose common labels have `fail` is refused with a
permanent failure, so the agent's error path can be seen too.

Build: `wasmon plugin build examples/plugins/python-receiver` (componentize-py,
with the `wasmon` package for HTTP over wasi:http).
"""

import json

import wit_world
from componentize_py_types import Err
from wasmon import alertmanager, http
from wit_world.imports import config, log, types


class WitWorld(wit_world.WitWorld):
    def notify(self, notification: types.Notification) -> None:
        fail = alertmanager.label(notification.common_labels, "fail")
        if fail is not None:
            raise Err(types.Failure_Permanent("asked to fail: " + fail))
        names = [alertmanager.label(a.labels, "alertname") or "" for a in notification.alerts]
        log.log(
            log.Level.INFO,
            "notification",
            [
                ("lang", "python"),
                ("instance", config.instance_name()),
                ("receiver", notification.receiver),
                ("status", alertmanager.status(notification.status)),
                ("alerts", str(len(notification.alerts))),
                ("alertnames", ",".join(names)),
            ],
        )
        url = json.loads(config.get()).get("url")
        if url is not None:
            # No answer (refused, or not in allow_hosts) raises http.HttpError,
            # which the agent sees as a retryable failure with its message.
            http.post_json(url, alertmanager.webhook_v4(notification)).raise_for_status()
