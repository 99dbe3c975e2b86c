"""Metrics (Prometheus text, aggregated over worker processes) and structured logs, for every process."""
