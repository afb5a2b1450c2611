"""Written by `wasmon plugin build`: the component's entry (componentize-py's
app). Its `WitWorld` is app.py's, with `{{EXPORT}}` (world {{WORLD}}) wrapped
so that an uncaught exception becomes a retryable failure carrying its type,
message and where app.py raised it, so the agent retries the call and its
log says why. Left alone, it makes the interpreter trap, and the agent
learns nothing but `unreachable`."""

import traceback as _traceback

import app as _app
from componentize_py_types import Err as _Err
from wit_world.imports import types as _types

if not hasattr(_app, "WitWorld"):
    raise RuntimeError("app.py must define class WitWorld(wit_world.WitWorld) with method {{EXPORT}}")


def _describe(e):
    frames = _traceback.extract_tb(e.__traceback__)
    where = ""
    for frame in reversed(frames):
        if "/wasmon/" not in frame.filename:
            where = " (%s:%d)" % (frame.filename.rsplit("/", 1)[-1], frame.lineno)
            break
    hint = ""
    if isinstance(e, ImportError):
        # componentize-py snapshots the interpreter after importing app.py;
        # at run time there is no filesystem to import anything else from.
        hint = " (import every module at the top of app.py: nothing can be imported during a call)"
    return "%s: %s%s%s" % (type(e).__name__, e, where, hint)


class WitWorld(_app.WitWorld):
    def {{EXPORT}}(self, arg):
        try:
            return super().{{EXPORT}}(arg)
        except _Err:
            raise
        except Exception as e:
            raise _Err(_types.Failure_Retryable("uncaught " + _describe(e))) from None
