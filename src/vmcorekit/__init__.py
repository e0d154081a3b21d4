"""vmcorekit: Linux kernel crash dumps from the dump alone."""
from .dump import open_dump
from .errors import VmcorekitError
from .program import Program, open_program
from .vmcoreinfo import VmcoreInfo

__version__ = "0.1.0"
__all__ = ["Program", "VmcoreInfo", "VmcorekitError", "open_dump", "open_program", "__version__"]
