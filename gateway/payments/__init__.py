"""USDC top-ups on chain: the JSON-RPC client and confirming and crediting transfers once. The chain watcher
and reconcile, which run these over the whole chain and the whole books, are jobs (gateway/jobs/)."""
