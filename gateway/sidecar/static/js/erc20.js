// ERC-20 call data encoded by hand: transfer(address,uint256) and balanceOf(address), per the Solidity ABI.

import { isAddress } from "./address.js";

const TRANSFER = "0xa9059cbb"; // first 4 bytes of keccak256("transfer(address,uint256)")
const BALANCE_OF = "0x70a08231"; // first 4 bytes of keccak256("balanceOf(address)")
const UINT256_MAX = (1n << 256n) - 1n;

/** @param {bigint} value */
function word(value) {
  return value.toString(16).padStart(64, "0");
}

/** @param {string} address */
function addressWord(address) {
  if (!isAddress(address)) throw new TypeError(`not an Ethereum address: ${address}`);
  return address.slice(2).toLowerCase().padStart(64, "0");
}

/**
 * Call data of `transfer(to, amount)`; `amount` is a BigInt of token base units, > 0.
 * @param {string} to
 * @param {bigint} amount
 */
export function transferCallData(to, amount) {
  if (typeof amount !== "bigint" || amount <= 0n || amount > UINT256_MAX) {
    throw new RangeError("a transfer amount is a positive uint256 (BigInt of base units)");
  }
  return TRANSFER + addressWord(to) + word(amount);
}

/** @param {string} owner */
export function balanceOfCallData(owner) {
  return BALANCE_OF + addressWord(owner);
}

/**
 * A uint256 return value (0x hex) as a BigInt.
 * @param {unknown} hex
 */
export function decodeUint256(hex) {
  if (typeof hex !== "string" || !/^0x[0-9a-fA-F]{1,64}$/.test(hex)) throw new TypeError(`not a uint256: ${hex}`);
  return BigInt(hex);
}
