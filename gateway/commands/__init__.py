"""Command functions grouped by concern; gateway/cli.py registers them on the `gateway` app."""
