"""Loading an app: the one loader that ``streamvisor run``, ``streamvisor graph`` and every cluster
node use.

An app is a Python file (``examples/iot_cloud.py``) or a dotted module name that defines
``start(rt, options)`` (``streamvisor run``, cluster nodes) or ``graph() -> Graph``
(``streamvisor graph``). It lives here, in the lowest layer that needs it (a cluster node loads
the app it hosts), so that nothing imports it upward.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["load_app"]

_SIGNATURES = {"start": "start(rt, options)", "graph": "graph() -> Graph"}


def load_app(target: str, needs: str = "start") -> ModuleType:
    """Import APP: a path to a .py file or a dotted module name. ``SystemExit`` with a clear
    message when it cannot be found or has no ``needs`` function (``start(rt, options)``)."""
    if target.endswith(".py") or os.sep in target:
        path = Path(target)
        if not path.is_file():
            raise SystemExit(f"streamvisor: no such app file: {target}")
        spec = importlib.util.spec_from_file_location(f"streamvisor_app_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"streamvisor: cannot load app file: {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise SystemExit(f"streamvisor: cannot import app module {target!r}: {exc}") from exc
    if not callable(getattr(module, needs, None)):
        raise SystemExit(f"streamvisor: app {target} must define {_SIGNATURES.get(needs, needs)}")
    return module
