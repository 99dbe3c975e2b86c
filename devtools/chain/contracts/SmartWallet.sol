// SPDX-License-Identifier: MIT
// Test-only ERC-1271 smart-contract wallet: a signature is valid iff it is the
// owner's ECDSA signature over exactly `hash` (SIWE verifiers pass the EIP-191
// personal_sign hash of the message). No replay protection: test only.
pragma solidity ^0.8.20;

contract SmartWallet {
    bytes4 internal constant MAGIC_VALUE = 0x1626ba7e;
    bytes4 internal constant INVALID = 0xffffffff;

    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != 65) return INVALID;
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := calldataload(signature.offset)
            s := calldataload(add(signature.offset, 32))
            v := byte(0, calldataload(add(signature.offset, 64)))
        }
        if (v < 27) v += 27;
        // Reject malleable (high-s) signatures, as OpenZeppelin's ECDSA does.
        if (uint256(s) > 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0) return INVALID;
        address signer = ecrecover(hash, v, r, s);
        if (signer != address(0) && signer == owner) return MAGIC_VALUE;
        return INVALID;
    }

    /// Lets the wallet hold ETH (tests may fund it).
    receive() external payable {}
}
