"""Package namespaces that import a submodule when one of its names is first used.

A package's `__init__` names its public API (`from annotation_pipelines.aggregation import
aggregate` keeps working), but importing one submodule, e.g. the CLI's `aggregation.command`,
no longer imports every sibling and their stacks (SciPy, pandas, statsforecast).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`__all__`, `__getattr__` and `__dir__` for `package` exporting `{module: names}`.

    Modules are relative to the package (`"api"` is `package.api`).
    """
    home = {name: f"{package}.{module}" for module, names in exports.items() for name in names}
    namespace = vars(importlib.import_module(package))

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home[name]), name)
        namespace[name] = value  # later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(home))

    return sorted(home), __getattr__, __dir__
