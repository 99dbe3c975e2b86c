"""The sidecar: a FastAPI app (SIWE sign-in, keys, credits, history, top-ups) over the domain services.

An adapter only: routes (one module per resource in routes/) translate HTTP to calls of `gateway.onboarding`,
`gateway.auth`, `gateway.accounts`, `gateway.ledger` and `gateway.payments`. Start it with
`gateway.sidecar.app.serve(settings)` or `gateway sidecar`.
"""
