// Ethereum addresses: shape check, EIP-55 checksum (EIP-4361 requires it in the message) and a short form.

import { keccak256Hex } from "./keccak.js";

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/**
 * @param {unknown} value
 * @returns {value is string}
 */
export function isAddress(value) {
  return typeof value === "string" && ADDRESS.test(value);
}

/**
 * The EIP-55 mixed-case form of an address given in any case.
 * @param {string} address
 */
export function toChecksumAddress(address) {
  if (!isAddress(address)) throw new TypeError(`not an Ethereum address: ${address}`);
  const lower = address.slice(2).toLowerCase();
  const hash = keccak256Hex(new TextEncoder().encode(lower));
  let out = "0x";
  for (let i = 0; i < 40; i++) out += parseInt(hash[i], 16) >= 8 ? lower[i].toUpperCase() : lower[i];
  return out;
}

/**
 * @param {string} a
 * @param {string} b
 */
export function sameAddress(a, b) {
  return isAddress(a) && isAddress(b) && a.toLowerCase() === b.toLowerCase();
}

/**
 * 0x1234…AbCd (checksummed): enough to recognise a wallet at a glance.
 * @param {string} address
 */
export function shortAddress(address) {
  const mixed = toChecksumAddress(address);
  return `${mixed.slice(0, 6)}…${mixed.slice(-4)}`;
}
