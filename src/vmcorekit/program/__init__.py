"""The program layer: one object ties a dump's memory, its VMCOREINFO, the architecture's
address space and (as they are found) symbols and types. Helpers and commands take a Program.
"""
from .core import Program, open_program

__all__ = ["Program", "open_program"]
