"""credit-gateway: a crypto-prepaid, credit-metered gateway built on the LiteLLM proxy."""
