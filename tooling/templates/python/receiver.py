"""{{name}}: a wasmon receiver (world `receiver` of wit/plugin.wit).

Built by `wasmon plugin build` with componentize-py. Raise
`Err(types.Failure_Retryable(msg))` or `Err(types.Failure_Permanent(msg))`
to fail a call.
"""

import json

import wit_world
from wit_world.imports import config, log, types


class WitWorld(wit_world.WitWorld):
    def notify(self, notification: types.Notification) -> None:
        settings = json.loads(config.get())
        log.log(
            log.Level.INFO,
            "notification",
            [
                ("receiver", notification.receiver),
                ("alerts", str(len(notification.alerts))),
                ("config", json.dumps(settings)),
            ],
        )
