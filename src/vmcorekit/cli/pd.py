"""`vmcorekit pd DUMP EXPR`: crash's `pd`, an expression's value with integers in decimal."""
from __future__ import annotations

from .p import make_command

command = make_command("pd", "dec", "Print the value of an expression, integers in decimal (crash's pd).")
