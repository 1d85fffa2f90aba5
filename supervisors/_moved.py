"""Old import paths of modules that moved to the ``streamvisor`` package (release 0.2).

``supervisors.cli``, ``supervisors.top``, ``supervisors.metrics`` and ``supervisors.graph`` were the
command, the live view, the Prometheus metrics and the graph printer: not supervision, so they
now live in ``streamvisor``. For one release the old names still import, as the very same module
objects, with a ``DeprecationWarning`` that names the new path. ``install()`` puts the finder on
``sys.meta_path`` once; it answers only for the four names below.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED = {
    "supervisors.cli": "streamvisor.cli",
    "supervisors.top": "streamvisor.top",
    "supervisors.metrics": "streamvisor.metrics",
    "supervisors.graph": "streamvisor.graph",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old path is removed in release 0.3",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """The module is the new one, already executed."""


def install() -> None:
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
