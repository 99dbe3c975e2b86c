"""Who is signed in: Sign-In with Ethereum (EIP-4361) message checks, single-use nonces, server-side sessions."""
