"""{{name}}: a wasmon rollback action (world `rollback-action` of wit/plugin.wit)."""

import wit_world
from componentize_py_types import Err
from wit_world.imports import log, types


class WitWorld(wit_world.WitWorld):
    def rollback(self, request: types.RollbackRequest) -> types.RollbackOutcome:
        log.log(log.Level.WARN, "rolling back " + request.target, [])
        if request.stable_version == "":
            raise Err(types.Failure_Permanent("no stable version to return to"))
        return types.RollbackOutcome(
            message=request.target + " back to " + request.stable_version,
            current_version=request.stable_version,
        )
