"""{{name}}: a wasmon health check (world `health-check` of wit/plugin.wit).

It GETs config.url (or the check's target) and passes on a 2xx answer.
"""

import json

import wit_world
from wasmon import http
from wit_world.imports import config, types


class WitWorld(wit_world.WitWorld):
    def check(self, request: types.CheckRequest) -> types.CheckResult:
        url = json.loads(config.get()).get("url") or request.target
        try:
            response = http.get(url, timeout=request.timeout_ms / 1000)
        except http.HttpError as e:
            # No answer at all (refused, timed out, not in allow_hosts): a failed check.
            return types.CheckResult(ok=False, message=str(e), value=None, samples=[])
        return types.CheckResult(
            ok=response.ok,
            message="%s answered %d" % (url, response.status),
            value=float(response.status),
            samples=[],
        )
