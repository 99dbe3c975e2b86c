"""Short-lived shared state: the link to Redis (bounded, with a breaker) and the TTL caches in front of it."""
