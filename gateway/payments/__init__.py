"""USDC top-ups on chain: the JSON-RPC client, confirming and crediting transfers once, the chain watcher,
and reconcile (the books against themselves and the chain)."""
