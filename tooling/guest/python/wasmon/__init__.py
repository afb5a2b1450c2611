"""wasmon: helpers for wasmon plugins written in Python.

    from wasmon import alertmanager, http

`wasmon plugin build` puts this package on the module path; it ships inside
the `wasmon` binary, so it always matches the agent it was built with.

Import what you use at the top of `app.py`: componentize-py snapshots the
interpreter after importing your module, and nothing can be imported later
(there is no filesystem at run time).
"""

from . import alertmanager, http

__all__ = ["alertmanager", "http"]
