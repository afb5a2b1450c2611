"""{{name}}: a wasmon receiver (world `receiver` of wit/plugin.wit).

It POSTs each notification as Alertmanager webhook JSON to config.url.
Built by `wasmon plugin build` with componentize-py, which also provides the
`wasmon` package (HTTP over wasi:http; the standard library's http.client
cannot work in a plugin). Import everything at the top of the module.
Raise `Err(types.Failure_Retryable(msg))` or `Err(types.Failure_Permanent(msg))`
to fail a call; any other exception is a retryable failure.
"""

import json

import wit_world
from componentize_py_types import Err
from wasmon import alertmanager, http
from wit_world.imports import config, types


class WitWorld(wit_world.WitWorld):
    def notify(self, notification: types.Notification) -> None:
        url = json.loads(config.get()).get("url")
        if not isinstance(url, str):
            raise Err(types.Failure_Permanent("config.url: missing (where to POST notifications)"))
        response = http.post_json(url, alertmanager.webhook_v4(notification))
        response.raise_for_status()  # 2xx: delivered; 429/5xx: retry; else give up
