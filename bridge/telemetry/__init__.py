"""Logs, metrics and traces: what the bridge tells its operators."""
