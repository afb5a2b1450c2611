"""{{name}}: a wasmon health check (world `health-check` of wit/plugin.wit)."""

import wit_world
from wit_world.imports import log, types


class WitWorld(wit_world.WitWorld):
    def check(self, request: types.CheckRequest) -> types.CheckResult:
        log.log(log.Level.DEBUG, "checking " + request.target, [])
        return types.CheckResult(
            ok=request.target != "",
            message=request.check + " has a target",
            value=None,
            samples=[],
        )
