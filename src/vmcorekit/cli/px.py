"""`vmcorekit px DUMP EXPR`: crash's `px`, an expression's value with integers in hexadecimal."""
from __future__ import annotations

from .p import make_command

command = make_command("px", "hex", "Print the value of an expression, integers in hexadecimal (crash's px).")
