"""Local-EVM test infrastructure: anvil node, test contracts, solc-js compile, fixtures."""
