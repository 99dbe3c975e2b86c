// What the page tells people: the notice (role=alert) with optional actions, a polite status line, and the
// text of every error message, in one place.

import { ApiError } from "./api.js";
import { $, el, show } from "./dom.js";
import { formatUsd } from "./format.js";

/** @type {Record<number, string>} */
const CHAINS = {
  1: "Ethereum", 10: "OP Mainnet", 137: "Polygon", 8453: "Base", 84532: "Base Sepolia", 42161: "Arbitrum",
};

/** @param {number} id */
export function chainName(id) {
  return CHAINS[id] ? `${CHAINS[id]} (chain ${id})` : `chain ${id}`;
}

export const text = {
  noWallet: () =>
    "No Ethereum wallet was found in this browser. Install a wallet extension (for example MetaMask, Rabby or " +
    "Coinbase Wallet), then reload this page.",
  connectRejected: () => "You declined the connection request in your wallet. Press “Connect wallet” to try again.",
  signatureRejected: () =>
    "You declined the sign-in signature, so you are not signed in. Signing costs nothing and sends nothing. " +
    "Press “Connect wallet” to try again.",
  walletError: (/** @type {Error} */ error) => `Your wallet reported an error: ${error.message}`,
  txRejected: () => "You rejected the transaction in your wallet. No USDC was sent and nothing was charged.",
  wrongNetwork: (/** @type {number} */ current, /** @type {number} */ wanted) =>
    `Your wallet is on ${chainName(current)}. This gateway signs in and takes USDC on ${chainName(wanted)} only: ` +
    "switch networks to continue.",
  switchRejected: (/** @type {number} */ wanted) =>
    `The network switch was declined. Switch your wallet to ${chainName(wanted)} yourself, then try again.`,
  unknownChain: (/** @type {number} */ wanted) =>
    `Your wallet does not know ${chainName(wanted)}. Add that network to your wallet, then try again.`,
  otherAccount: (/** @type {string} */ walletAddress, /** @type {string} */ sessionAddress) =>
    `Your wallet is using ${walletAddress}, but you are signed in as ${sessionAddress}. Switch to that account ` +
    "in your wallet, or sign out and sign in with this one.",
  notEnoughUsdc: (/** @type {bigint} */ have, /** @type {bigint} */ need, /** @type {number} */ chain) =>
    `Not enough USDC: this wallet holds ${formatUsd(have).slice(1)} USDC on ${chainName(chain)}, and this top-up ` +
    `needs ${formatUsd(need).slice(1)} USDC. Add USDC to the wallet or choose a smaller amount.`,
  paymentRefused: (/** @type {string} */ reason) =>
    `The gateway refused this payment: ${reason}. No credits were added. Keep the transaction hash if you ` +
    "contact the operator.",
  rpcDown: (/** @type {number} */ seconds) =>
    "The gateway cannot reach the blockchain right now, so it cannot check your payment yet. Your transfer is " +
    `safe on chain; this page tries again in ${seconds} s.`,
  unavailable: () => "The gateway is temporarily unavailable. Try again in a moment.",
  unreachable: () => "The gateway could not be reached. Check your connection, then try again.",
  rateLimited: (/** @type {number} */ seconds) => `Too many requests: please wait ${seconds} s, then try again.`,
  sessionExpired: () => "Your session has expired. Connect your wallet to sign in again.",
  wrongSite: (/** @type {string} */ domain) =>
    `This page must be opened at ${domain} (the gateway's SIWE_DOMAIN) to sign in: open it there.`,
  paymentsOff: () => "This gateway does not take top-ups at the moment (payments are not configured).",
};

/**
 * The message for an ApiError, in the words of the request that failed.
 * @param {ApiError} error
 */
export function apiErrorText(error) {
  if (error.status === 429) return text.rateLimited(error.retryAfter ?? 60);
  if (error.status === 401) return text.sessionExpired();
  if (error.status === 0) return text.unreachable();
  if (error.code === "chain_unavailable") return text.rpcDown(error.retryAfter ?? 5);
  if (error.status === 503) return text.unavailable();
  return `The gateway answered: ${error.message}`;
}

/**
 * Show `message` in the notice; `actions` are [label, handler] buttons; `tone` is "error" or "info".
 * @param {string} message
 * @param {{ actions?: Array<[string, () => unknown]>, tone?: "error" | "info" }} [options]
 */
export function notify(message, { actions = [], tone = "error" } = {}) {
  const box = $("notice");
  announce(""); // what was under way has ended: the notice says how
  box.dataset.tone = tone;
  $("notice-text").textContent = message;
  $("notice-actions").replaceChildren(
    ...actions.map(([label, handler]) =>
      el("button", { type: "button", className: "secondary", onclick: handler }, label)),
  );
  show(box, true);
}

export function clearNotice() {
  show($("notice"), false);
  $("notice-text").textContent = "";
  $("notice-actions").replaceChildren();
}

/**
 * A polite, screen-reader-announced line about what is happening now.
 * @param {string} message
 */
export function announce(message) {
  $("status").textContent = message;
}

/**
 * `fn` as an event handler: an ApiError becomes its message (401: the "session-expired" event), not a crash.
 * @template {unknown[]} A
 * @template R
 * @param {(...args: A) => Promise<R>} fn
 * @returns {(...args: A) => Promise<R | undefined>}
 */
export function guarded(fn) {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) document.dispatchEvent(new Event("session-expired"));
      else notify(apiErrorText(error));
    }
  };
}
