// The operator console: sign in with the user page's flow, then the operator's views (403 page for any other
// wallet); the live views refresh after every action and every 30 s while the page is visible.

import { shortAddress, toChecksumAddress } from "../address.js";
import { api, ApiError } from "../api.js";
import { $, show } from "../dom.js";
import { announce, clearNotice, guarded, notify, text } from "../messages.js";
import * as session from "../session.js";
import * as state from "../state.js";
import { act } from "./act.js";
import { initAccount, reloadAccount } from "./account.js";
import {
  drawBusiness, initRange, loadAudit, loadBooks, loadBusiness, loadMoney, reconcileFindings,
} from "./views.js";

const REFRESH_MS = 30000;

/** The signed-in operator's wallet (the views that show it exist only after sign-in). */
function signedInWallet() {
  const current = state.session();
  if (current === null) throw new Error("no session");
  return current.wallet_address;
}

/** @param {"connect" | "forbidden" | "console"} view */
function showView(view) {
  show($("connect-view"), view === "connect");
  show($("forbidden-view"), view === "forbidden");
  show($("console-view"), view === "console");
  show($("who"), view === "console");
  if (view === "console") {
    $("who-wallet").textContent = shortAddress(signedInWallet());
    $("who-wallet").title = toChecksumAddress(signedInWallet());
  }
}

// the business (a range of every account's calls) reloads on demand; the rest also every 30 s
const refreshLive = guarded(() => Promise.all([loadBooks(), loadMoney(), loadAudit(), reloadAccount()]));
const refresh = guarded(() => Promise.all([loadBusiness(), refreshLive()]));

async function enter() {
  try {
    await api("/ops/me");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 403)) throw error;
    $("forbidden-wallet").textContent = toChecksumAddress(signedInWallet());
    showView("forbidden");
    $("forbidden-title").focus();
    return;
  }
  showView("console");
  $("console-title").focus();
  await refresh();
}

const connect = guarded(async () => {
  clearNotice();
  const chosen = await session.chooseWallet((w) => session.connectAndSignIn(w, enter));
  if (chosen) await session.connectAndSignIn(chosen, enter);
});

const signOut = guarded(async () => {
  await session.signOut();
  showView("connect");
  announce("Signed out.");
  $("connect").focus();
});

const reconcile = guarded(async () => {
  $("reconcile", HTMLButtonElement).disabled = true;
  announce("Reconciling the books…");
  try {
    const entry = await act("reconcile", "/reconcile", { reason: "run from the operator console" });
    $("reconcile-result").replaceChildren(...reconcileFindings(entry));
    announce(entry.result.ok ? "Reconcile done: the books agree." : "Reconcile done: mismatches found.");
    await Promise.all([loadBooks(), loadAudit()]);
  } finally {
    $("reconcile", HTMLButtonElement).disabled = false;
  }
});

document.addEventListener("session-expired", () => {
  if (!state.session()) return;
  session.forget();
  state.endSession();
  showView("connect");
  notify(text.sessionExpired(), { actions: [["Sign in again", connect]] });
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && !$("console-view").hidden) refreshLive();
});
setInterval(() => {
  if (document.visibilityState === "visible" && !$("console-view").hidden) refreshLive();
}, REFRESH_MS);
new ResizeObserver(() => drawBusiness()).observe($("chart"));

async function start() {
  $("connect").onclick = connect;
  $("signout").onclick = signOut;
  $("forbidden-signout").onclick = signOut;
  $("notice-close").onclick = clearNotice;
  $("refresh").onclick = refresh;
  $("reconcile").onclick = reconcile;
  $("range-form", HTMLFormElement).onsubmit = guarded(async (/** @type {SubmitEvent} */ event) => {
    event.preventDefault();
    await loadBusiness();
  });
  $("topup-status").onchange = guarded(loadMoney);
  initRange();
  initAccount(guarded, () => Promise.all([loadAudit(), loadBooks()]));
  state.configure((await api("/config")).data);
  const current = session.rememberedSession() ? await session.loadSession() : null;
  if (current) {
    state.signIn(current);
    await enter();
  } else {
    session.forget();
    showView("connect");
  }
  document.body.dataset.ready = "true";
}

guarded(start)();
