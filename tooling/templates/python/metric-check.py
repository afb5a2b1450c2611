"""{{name}}: a wasmon metric check (world `metric-check` of wit/plugin.wit)."""

import wit_world
from componentize_py_types import Err
from wit_world.imports import query, types


class WitWorld(wit_world.WitWorld):
    def evaluate(self, request: types.MetricCheckRequest) -> types.CheckResult:
        try:
            samples = query.instant("sum(up)", request.time_ms)
        except Err as e:
            raise Err(types.Failure_Retryable(str(e.value)))
        up = samples[0].value if samples else 0.0
        return types.CheckResult(ok=up > 0, message=f"{up} targets up", value=up, samples=[])
