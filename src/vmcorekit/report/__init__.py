"""Reports built from kernel helpers: the one-shot triage report and its pieces."""
