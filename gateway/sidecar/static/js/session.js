// Connecting a wallet and signing in right after (EIP-6963 pick, chain check, SIWE), the session, sign-out.

import { api, ApiError } from "./api.js";
import { $, el, show } from "./dom.js";
import { announce, apiErrorText, chainName, clearNotice, notify, text } from "./messages.js";
import { buildSiweMessage } from "./siwe.js";
import * as state from "./state.js";
import * as wallet from "./wallet.js";

const REMEMBER = "cg.session"; // {wallet, rdns}: this browser had a session and which wallet made it

export function rememberedSession() {
  try {
    return JSON.parse(localStorage.getItem(REMEMBER) ?? "null");
  } catch {
    return null;
  }
}

/**
 * @param {state.Session} session
 * @param {state.WalletInfo} info
 */
function remember(session, info) {
  localStorage.setItem(REMEMBER, JSON.stringify({ wallet: session.wallet_address, rdns: info?.rdns ?? null }));
}

export function forget() {
  localStorage.removeItem(REMEMBER);
}

/**
 * Pick the wallet to use: the only one, the one this browser used last, or ask (returns null then).
 * @param {(chosen: state.Wallet) => unknown} onChoice
 * @returns {Promise<state.Wallet | null>}
 */
export async function chooseWallet(onChoice) {
  const found = await wallet.discoverWallets();
  if (found.length === 0) {
    notify(text.noWallet());
    return null;
  }
  const rdns = rememberedSession()?.rdns;
  const known = found.find((w) => w.info.rdns === rdns);
  if (found.length === 1 || known) return known ?? found[0];
  const list = $("wallet-list");
  list.replaceChildren(
    ...found.map((w) =>
      el(
        "button", { type: "button", className: "wallet", onclick: () => onChoice(w) },
        w.info.icon ? el("img", { src: w.info.icon, alt: "", width: 28, height: 28 }) : null,
        el("span", {}, w.info.name),
      ),
    ),
  );
  show($("wallet-pick"), true);
  list.querySelector("button")?.focus();
  return null;
}

/**
 * The wallet is on the configured chain; else offer the switch (then `retry`) and return false.
 * @param {state.Provider} provider
 * @param {() => Promise<unknown>} retry
 */
export async function ensureChain(provider, retry) {
  const wanted = state.config().chain_id;
  const current = await wallet.chainId(provider);
  if (current === wanted) return true;
  const doSwitch = async () => {
    clearNotice();
    try {
      await wallet.switchChain(provider, wanted);
      await retry();
    } catch (error) {
      if (!(error instanceof wallet.WalletError)) throw error;
      notify(error.unknownChain ? text.unknownChain(wanted) : text.switchRejected(wanted));
    }
  };
  notify(text.wrongNetwork(current, wanted), { actions: [[`Switch to ${chainName(wanted)}`, doSwitch]] });
  return false;
}

/**
 * Connect `chosen` (one of discoverWallets()) and sign in with it at once.
 * @param {state.Wallet} chosen
 * @param {(defaultKey: { key: string } | null | undefined) => Promise<unknown>} onSignedIn
 * @returns {Promise<void>}
 */
export async function connectAndSignIn(chosen, onSignedIn) {
  clearNotice();
  show($("wallet-pick"), false);
  const config = state.config();
  if (location.host !== config.siwe_domain) {
    notify(text.wrongSite(config.siwe_domain));
    return;
  }
  let signing = false; // a refusal before this is of the connection, after it of the signature
  try {
    announce("Waiting for your wallet…");
    const address = await wallet.requestAccount(chosen.provider);
    state.useWallet({ ...chosen, address });
    if (!(await ensureChain(chosen.provider, () => connectAndSignIn(chosen, onSignedIn)))) return;
    const { data: issued } = await api("/auth/nonce");
    const message = buildSiweMessage({
      domain: config.siwe_domain, address, statement: config.siwe_statement,
      uri: `${location.origin}/`, version: config.siwe_version, chainId: config.chain_id, nonce: issued.nonce,
    });
    announce("Sign the message in your wallet to sign in…");
    signing = true;
    const signature = await wallet.personalSign(chosen.provider, address, message);
    const { data } = await api("/auth/verify", { method: "POST", body: { message, signature } });
    remember(data, chosen.info);
    state.signIn(data);
    announce(""); // the header says who is signed in: the status line has said its part
    await onSignedIn(data.default_key);
  } catch (error) {
    announce("");
    if (error instanceof wallet.WalletError) {
      notify(error.rejected ? (signing ? text.signatureRejected() : text.connectRejected()) : text.walletError(error));
    } else if (error instanceof ApiError) notify(apiErrorText(error));
    else throw error;
  }
}

/**
 * The current session from the cookie, or null (401).
 * @returns {Promise<state.Session | null>}
 */
export async function loadSession() {
  try {
    return (await api("/auth/session")).data;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

export async function signOut() {
  try {
    await api("/auth/logout", { method: "POST" });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) throw error; // already over: fine
  }
  forget();
  state.signOut();
}
