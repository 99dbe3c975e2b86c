"""A local EVM for tests: anvil from npm and Solidity test contracts compiled with npm's solc."""
