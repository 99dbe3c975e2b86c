// Browser wallets: EIP-6963 discovery (window.ethereum as the fallback) and the EIP-1193 calls the page makes.

import { toChecksumAddress } from "./address.js";

const LEGACY = { uuid: "window.ethereum", name: "Browser wallet", icon: "", rdns: "window.ethereum" };
const announced = new Map(); // uuid -> { info, provider }

window.addEventListener("eip6963:announceProvider", (event) => {
  const { info, provider } = event.detail ?? {};
  if (info?.uuid && typeof provider?.request === "function") announced.set(info.uuid, { info, provider });
});

/** The wallets in this browser: those that announce themselves (EIP-6963), else window.ethereum. */
export async function discoverWallets(waitMs = 250) {
  window.dispatchEvent(new Event("eip6963:requestProvider"));
  await new Promise((resolve) => setTimeout(resolve, waitMs));
  if (announced.size > 0) return [...announced.values()];
  if (typeof window.ethereum?.request === "function") return [{ info: LEGACY, provider: window.ethereum }];
  return [];
}

/** A failed wallet request. `rejected`: the user said no (EIP-1193 4001); `unknownChain`: 4902. */
export class WalletError extends Error {
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

async function call(provider, method, params = []) {
  try {
    return await provider.request({ method, params });
  } catch (error) {
    throw new WalletError(error?.code, error?.message);
  }
}

function utf8Hex(text) {
  return `0x${[...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export async function requestAccount(provider) {
  const accounts = await call(provider, "eth_requestAccounts");
  if (!Array.isArray(accounts) || accounts.length === 0) throw new WalletError(4100, "the wallet shared no account");
  return toChecksumAddress(accounts[0]);
}

export async function chainId(provider) {
  return Number(BigInt(await call(provider, "eth_chainId")));
}

export function switchChain(provider, id) {
  return call(provider, "wallet_switchEthereumChain", [{ chainId: `0x${id.toString(16)}` }]);
}

export function personalSign(provider, address, message) {
  return call(provider, "personal_sign", [utf8Hex(message), address]);
}

export function sendTransaction(provider, tx) {
  return call(provider, "eth_sendTransaction", [tx]);
}

export function ethCall(provider, to, data) {
  return call(provider, "eth_call", [{ to, data }, "latest"]);
}
