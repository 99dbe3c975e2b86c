// The EIP-4361 (Sign-In with Ethereum) message the page asks the wallet to sign, built by hand.
// https://eips.ethereum.org/EIPS/eip-4361 : the field order and line format below are the standard's.

import { isAddress, toChecksumAddress } from "./address.js";

const NONCE = /^[A-Za-z0-9]{8,}$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const VALIDITY_MS = 10 * 60 * 1000; // as long as the server's nonce lives

/**
 * @param {boolean} condition
 * @param {string} what
 */
function check(condition, what) {
  if (!condition) throw new TypeError(`invalid sign-in message field: ${what}`);
}

/**
 * The message text. `fields`: domain (host[:port]), address, statement, uri, version, chainId, nonce,
 * issuedAt and expirationTime (RFC 3339 strings; defaults: now and now + 10 minutes).
 * @param {{ domain: string, address: string, statement: string, uri: string, version?: string, chainId: number,
 *   nonce: string, now?: Date, issuedAt?: string, expirationTime?: string }} fields
 */
export function buildSiweMessage(fields) {
  const now = fields.now ?? new Date();
  const issuedAt = fields.issuedAt ?? now.toISOString();
  const expirationTime = fields.expirationTime ?? new Date(now.getTime() + VALIDITY_MS).toISOString();
  const { domain, address, statement, uri, version = "1", chainId, nonce } = fields;
  check(typeof domain === "string" && /^[^\s/?#@]+$/.test(domain), "domain");
  check(isAddress(address), "address");
  check(typeof statement === "string" && !/[\n\r]/.test(statement), "statement");
  check(typeof uri === "string" && /^[a-z][a-z0-9+.-]*:\S+$/i.test(uri), "uri");
  check(version === "1", "version");
  check(Number.isSafeInteger(chainId) && chainId > 0, "chainId");
  check(typeof nonce === "string" && NONCE.test(nonce), "nonce");
  check(RFC3339.test(issuedAt), "issuedAt");
  check(RFC3339.test(expirationTime), "expirationTime");
  return [
    `${domain} wants you to sign in with your Ethereum account:`,
    toChecksumAddress(address),
    "",
    statement,
    "",
    `URI: ${uri}`,
    `Version: ${version}`,
    `Chain ID: ${chainId}`,
    `Nonce: ${nonce}`,
    `Issued At: ${issuedAt}`,
    `Expiration Time: ${expirationTime}`,
  ].join("\n");
}
