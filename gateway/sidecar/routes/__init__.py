"""The sidecar's HTTP routes, one module per resource under /api/v1 (plus the health probes)."""
