// The credits page: load the config, restore the session, switch between the connect and account views,
// and keep the account fresh (after every action, and every 15 s while the page is visible).

import { shortAddress, toChecksumAddress } from "./address.js";
import { api } from "./api.js";
import { $, show } from "./dom.js";
import { refreshAccount, resetAccount } from "./account.js";
import { createKeys, showNewKey } from "./keys.js";
import { announce, clearNotice, guarded, notify, text } from "./messages.js";
import * as session from "./session.js";
import { initTopup, resumeTopup, stopTopup } from "./topup.js";

const REFRESH_MS = 15000;
const { state } = session;
const keys = createKeys(() => refresh());

const refresh = guarded(() => Promise.all([refreshAccount(), keys.load()]));

function showView(signedIn) {
  show($("connect-view"), !signedIn);
  show($("account-view"), signedIn);
  show($("who"), signedIn);
  if (signedIn) {
    $("who-wallet").textContent = shortAddress(state.session.wallet_address);
    $("who-wallet").title = toChecksumAddress(state.session.wallet_address);
  }
}

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
  $("newkey-value").value = "";
  showView(false);
}

const connect = guarded(async () => {
  clearNotice();
  const chosen = await session.chooseWallet((w) => session.connectAndSignIn(w, enterAccount));
  if (chosen) await session.connectAndSignIn(chosen, enterAccount);
});

const signOut = guarded(async () => {
  await session.signOut();
  leaveAccount();
  clearNotice();
  announce("Signed out.");
  $("connect").focus();
});

document.addEventListener("session-expired", () => {
  if (!state.session) return;
  session.forget();
  state.session = null;
  leaveAccount();
  notify(text.sessionExpired(), { actions: [["Sign in again", connect]] });
});
document.addEventListener("account-changed", () => refresh());
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && state.session) refresh();
});
setInterval(() => {
  if (document.visibilityState === "visible" && state.session) refresh();
}, REFRESH_MS);

async function start() {
  $("connect").onclick = connect;
  $("signout").onclick = signOut;
  $("refresh").onclick = refresh;
  $("notice-close").onclick = clearNotice;
  state.config = (await api("/config")).data;
  $("api-base").textContent = state.config.api_base_url;
  initTopup();
  // Only a browser that had a session asks for it, so a first visit makes no failing request.
  const current = session.rememberedSession() ? await session.loadSession() : null;
  if (current) {
    state.session = current;
    await enterAccount(null);
  } else {
    if (session.rememberedSession()) notify(text.sessionExpired(), { actions: [["Sign in again", connect]] });
    session.forget();
    showView(false);
  }
  document.body.dataset.ready = "true";
}

guarded(start)();
