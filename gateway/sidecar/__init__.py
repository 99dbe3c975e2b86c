"""The sidecar: a FastAPI app (SIWE sign-in, keys, credits, history) over the domain services.

An adapter only: routes translate HTTP to calls of `gateway.siwe_auth`, `gateway.keys`, `gateway.ledger`
and `gateway.history`. Start it with `gateway.sidecar.app.serve(settings)` or `gateway sidecar`.
"""
