"""Variant T of `make bench`: LiteLLM's own per-key and per-callback work with nothing of ours behind it."""
