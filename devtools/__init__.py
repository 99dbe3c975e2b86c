"""Development tools the tests and benchmarks share (never shipped): a fake OpenAI-compatible provider, a TCP
forwarder to cut connections, a real proxy process, PostgreSQL test databases and a local chain."""
