"""Pure rules, no I/O: money arithmetic (integer USD micros) and billing (what to hold for a call, what a call
costs at user prices, what a settle may collect). Imports nothing of the gateway's but `gateway.config`."""
