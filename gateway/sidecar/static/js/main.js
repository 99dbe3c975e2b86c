// The credits page: load the config, restore the session, switch between the connect and account views,
// and keep the account fresh (after every action, and every 15 s while the page is visible). One refresh
// runs at a time: a refresh asked for while one runs is done once, right after it (it may have started
// before the change it should show); the timer's is skipped.

import { shortAddress, toChecksumAddress } from "./address.js";
import { api } from "./api.js";
import { $, show } from "./dom.js";
import { refreshAccount, resetAccount } from "./account.js";
import { createKeys, showNewKey } from "./keys.js";
import { announce, clearNotice, guarded, notify, text } from "./messages.js";
import * as session from "./session.js";
import * as state from "./state.js";
import { initTopup, resumeTopup, stopTopup } from "./topup.js";

const REFRESH_MS = 15000;
const keys = createKeys(() => refresh());

const reload = guarded(() => Promise.all([refreshAccount(), keys.load()]));
/** @type {Promise<void> | null} */
let refreshing = null;
let again = false;

/** Reload the account now, or right after the reload under way. */
function refresh() {
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      again = false;
      await reload();
    } while (again && state.session());
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

function refreshIfIdle() {
  if (document.visibilityState === "visible" && state.session() && !refreshing) refresh();
}

/** @param {boolean} signedIn */
function showView(signedIn) {
  show($("connect-view"), !signedIn);
  show($("account-view"), signedIn);
  show($("who"), signedIn);
  if (signedIn) {
    const { wallet_address: address } = /** @type {state.Session} */ (state.session());
    $("who-wallet").textContent = shortAddress(address);
    $("who-wallet").title = toChecksumAddress(address);
  }
}

/** @param {{ key: string } | null | undefined} defaultKey the first key, shown once */
async function enterAccount(defaultKey) {
  showView(true);
  if (defaultKey) showNewKey(defaultKey, "Your first API key");
  else $("account-title").focus();
  resumeTopup();
  await refresh();
}

function leaveAccount() {
  stopTopup();
  resetAccount();
  show($("newkey"), false);
  $("newkey-value", HTMLTextAreaElement).value = "";
  showView(false);
}

const connect = guarded(async () => {
  clearNotice();
  const chosen = await session.chooseWallet((/** @type {state.Wallet} */ w) => session.connectAndSignIn(w, enterAccount));
  if (chosen) await session.connectAndSignIn(chosen, enterAccount);
});

const signOut = guarded(async () => {
  await session.signOut();
  leaveAccount();
  clearNotice();
  announce("Signed out.");
  $("connect", HTMLButtonElement).focus();
});

document.addEventListener("session-expired", () => {
  if (!state.session()) return;
  session.forget();
  state.endSession();
  leaveAccount();
  notify(text.sessionExpired(), { actions: [["Sign in again", connect]] });
});
document.addEventListener("account-changed", () => refresh());
document.addEventListener("visibilitychange", refreshIfIdle);
setInterval(refreshIfIdle, REFRESH_MS);

async function start() {
  $("connect", HTMLButtonElement).onclick = connect;
  $("signout", HTMLButtonElement).onclick = signOut;
  $("refresh", HTMLButtonElement).onclick = refresh;
  $("notice-close", HTMLButtonElement).onclick = clearNotice;
  state.configure((await api("/config")).data);
  $("api-base").textContent = state.config().api_base_url;
  $("price-list", HTMLAnchorElement).href = state.config().price_list_url;
  initTopup();
  // Only a browser that had a session asks for it, so a first visit makes no failing request.
  const current = session.rememberedSession() ? await session.loadSession() : null;
  if (current) {
    state.signIn(current);
    await enterAccount(null);
  } else {
    if (session.rememberedSession()) notify(text.sessionExpired(), { actions: [["Sign in again", connect]] });
    session.forget();
    showView(false);
  }
  document.body.dataset.ready = "true";
}

guarded(start)();
