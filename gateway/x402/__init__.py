"""x402 pay-per-call: an agent with a wallet pays for one call with a signed USDC authorization, no key needed.

The gateway is its own facilitator (no hosted service): `protocol` reads and writes the x402 v2 wire format,
`eip3009` encodes USDC's `transferWithAuthorization`, `verify` checks a payment against the chain,
`gas` sends the operator's transactions, and `settle` moves the money on chain and credits the payer's
account before the provider is called. No FastAPI or LiteLLM here: `gateway.proxy.x402_gate` is the adapter.
"""
