"""Entry points LiteLLM loads by dotted path from litellm_config.yaml. No logic here: see gateway.proxy."""
