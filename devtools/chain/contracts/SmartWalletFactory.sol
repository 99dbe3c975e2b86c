// SPDX-License-Identifier: MIT
// Test-only CREATE2 factory of SmartWallets, for counterfactual (ERC-6492) wallets:
// a wallet's address is known, and can sign, before it is deployed.
pragma solidity ^0.8.20;

import "SmartWallet.sol";

contract SmartWalletFactory {
    function deploy(address owner, bytes32 salt) external returns (address) {
        return address(new SmartWallet{salt: salt}(owner));
    }

    function addressOf(address owner, bytes32 salt) external view returns (address) {
        bytes32 codeHash = keccak256(abi.encodePacked(type(SmartWallet).creationCode, abi.encode(owner)));
        return address(uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), address(this), salt, codeHash)))));
    }
}
