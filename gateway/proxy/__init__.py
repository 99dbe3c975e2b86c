"""The LiteLLM adapter: what hooks/ expose to the proxy (auth, hold, settle, release, header rewriting)."""
