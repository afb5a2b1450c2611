"""{{name}}: a wasmon rollback action (world `rollback-action` of wit/plugin.wit).

It asks the deployment API at config.url to go back to the stable version: a
JSON POST, with `Authorization: Bearer <config.token>` when a token is
configured.
"""

import json

import wit_world
from componentize_py_types import Err
from wasmon import http
from wit_world.imports import config, types


class WitWorld(wit_world.WitWorld):
    def rollback(self, request: types.RollbackRequest) -> types.RollbackOutcome:
        settings = json.loads(config.get())
        url = settings.get("url")
        if not isinstance(url, str):
            raise Err(types.Failure_Permanent("config.url: missing (the deployment API to call)"))
        if request.stable_version == "":
            raise Err(types.Failure_Permanent("no stable version to return to"))
        headers = {"authorization": "Bearer " + settings["token"]} if settings.get("token") else {}
        response = http.post_json(
            url,
            {
                "rollout": request.rollout,
                "target": request.target,
                "version": request.stable_version,
                "failedVersion": request.failed_version,
                "reason": request.reason,
            },
            headers=headers,
        )
        response.raise_for_status()
        return types.RollbackOutcome(
            message="%s back to %s: %s answered %d"
            % (request.target, request.stable_version, url, response.status),
            current_version=request.stable_version,
        )
