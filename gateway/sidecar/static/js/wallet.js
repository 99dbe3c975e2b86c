// Browser wallets: EIP-6963 discovery (window.ethereum as the fallback) and the EIP-1193 calls the page makes.

import { toChecksumAddress } from "./address.js";

/** @typedef {import("./state.js").Wallet} Wallet */
/** @typedef {import("./state.js").Provider} Provider */

const LEGACY = { uuid: "window.ethereum", name: "Browser wallet", icon: "", rdns: "window.ethereum" };
/** @type {Map<string, Wallet>} */
const announced = new Map(); // uuid -> { info, provider }
/** @type {Window & { ethereum?: Provider }} */
const browser = window;

window.addEventListener("eip6963:announceProvider", (event) => {
  const { info, provider } = /** @type {CustomEvent} */ (event).detail ?? {};
  if (info?.uuid && typeof provider?.request === "function") announced.set(info.uuid, { info, provider });
});

/**
 * The wallets in this browser: those that announce themselves (EIP-6963), else window.ethereum.
 * @returns {Promise<Wallet[]>}
 */
export async function discoverWallets(waitMs = 250) {
  window.dispatchEvent(new Event("eip6963:requestProvider"));
  await new Promise((resolve) => setTimeout(resolve, waitMs));
  if (announced.size > 0) return [...announced.values()];
  if (typeof browser.ethereum?.request === "function") return [{ info: LEGACY, provider: browser.ethereum }];
  return [];
}

/** A failed wallet request. `rejected`: the user said no (EIP-1193 4001); `unknownChain`: 4902. */
export class WalletError extends Error {
  /**
   * @param {number | undefined} code
   * @param {string | undefined} message
   */
  constructor(code, message) {
    super(message || "the wallet reported an error");
    this.code = code;
  }

  get rejected() {
    return this.code === 4001;
  }

  get unknownChain() {
    return this.code === 4902;
  }
}

/**
 * @param {Provider} provider
 * @param {string} method
 * @param {unknown[]} [params]
 */
async function call(provider, method, params = []) {
  try {
    return await provider.request({ method, params });
  } catch (error) {
    const failure = /** @type {{ code?: number, message?: string } | undefined} */ (error);
    throw new WalletError(failure?.code, failure?.message);
  }
}

/** @param {string} text */
function utf8Hex(text) {
  return `0x${[...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** @param {Provider} provider */
export async function requestAccount(provider) {
  const accounts = await call(provider, "eth_requestAccounts");
  if (!Array.isArray(accounts) || accounts.length === 0) throw new WalletError(4100, "the wallet shared no account");
  return toChecksumAddress(accounts[0]);
}

/** @param {Provider} provider */
export async function chainId(provider) {
  return Number(BigInt(await call(provider, "eth_chainId")));
}

/**
 * @param {Provider} provider
 * @param {number} id
 */
export function switchChain(provider, id) {
  return call(provider, "wallet_switchEthereumChain", [{ chainId: `0x${id.toString(16)}` }]);
}

/**
 * @param {Provider} provider
 * @param {string} address
 * @param {string} message
 * @returns {Promise<string>}
 */
export function personalSign(provider, address, message) {
  return call(provider, "personal_sign", [utf8Hex(message), address]);
}

/**
 * @param {Provider} provider
 * @param {{ from: string, to: string, data: string, value: string }} tx
 * @returns {Promise<string>} the transaction hash
 */
export function sendTransaction(provider, tx) {
  return call(provider, "eth_sendTransaction", [tx]);
}

/**
 * @param {Provider} provider
 * @param {string} to
 * @param {string} data
 * @returns {Promise<string>}
 */
export function ethCall(provider, to, data) {
  return call(provider, "eth_call", [{ to, data }, "latest"]);
}
