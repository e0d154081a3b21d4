"""Command-line faces: one module per command, all sharing main.py's error handling."""
