"""Kernel helpers: one module per subsystem, each a set of small functions over a Program."""
