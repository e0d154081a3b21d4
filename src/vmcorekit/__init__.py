"""vmcorekit: Linux kernel crash dumps from the dump alone."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import VmcorekitError

if TYPE_CHECKING:
    from .dump import open_dump
    from .program import Program, open_program
    from .vmcoreinfo import VmcoreInfo

__version__ = "0.1.0"
__all__ = ["Program", "VmcoreInfo", "VmcorekitError", "open_dump", "open_program", "__version__"]

# Imported on first use (PEP 562): `import vmcorekit.cli.main` runs this file first, and the
# command line must be able to set up its environment before numpy loads.
_LAZY = {"open_dump": ".dump", "Program": ".program", "open_program": ".program", "VmcoreInfo": ".vmcoreinfo"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vmcorekit' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
