"""Execution on Ray: job runner, training and search tasks, device agent (not built yet: issues 4, 5, 7)."""
