// Top up with USDC: pick an amount, the wallet sends the ERC-20 transfer to the DAO wallet, the page confirms
// it with the gateway ("confirming n of N") until it is credited. The tx hash is kept in localStorage, so a
// reload (or a new sign-in of the same wallet) resumes confirming it.

import { sameAddress, shortAddress } from "./address.js";
import { api, ApiError } from "./api.js";
import { $, el, show, sleep } from "./dom.js";
import { balanceOfCallData, decodeUint256, transferCallData } from "./erc20.js";
import { formatCredits, formatUsd, parseUsd, toMicros } from "./format.js";
import { announce, apiErrorText, clearNotice, notify, text } from "./messages.js";
import { chooseWallet, ensureChain } from "./session.js";
import { config, connectedWallet, session, useWallet } from "./state.js";
import * as wallet from "./wallet.js";

const POLL_MS = 3000; // 20 confirms a minute: under RATE_LIMIT_PAYMENT_CONFIRM (30/minute)
const RPC_RETRY_S = 5;
let run = 0; // the tracker of an older run stops when this moves on
let tracking = false; // a top-up is being confirmed: no second one until it ends

const signedInAddress = () => /** @type {import("./state.js").Session} */ (session()).wallet_address;
const storageKey = () => `cg.topup.${signedInAddress().toLowerCase()}`;

/** @returns {PendingTopup | null} */
function pendingTopup() {
  try {
    return JSON.parse(localStorage.getItem(storageKey()) ?? "null");
  } catch {
    return null;
  }
}

/** @typedef {{ tx: string, micros: string }} PendingTopup a transfer sent and not yet credited (kept) */

/**
 * @param {string} message
 * @param {{ tx?: string, confirmations?: number, required?: number }} [figures]
 */
function progress(message, { tx, confirmations = 0, required } = {}) {
  show($("topup-progress"), true);
  $("topup-state").textContent = message;
  if (tx) {
    $("topup-tx").textContent = tx;
    $("topup-tx").title = tx;
  }
  const meter = $("topup-meter", HTMLProgressElement);
  show(meter, required !== undefined);
  if (required !== undefined) {
    meter.max = Math.max(required, 1);
    meter.value = Math.min(confirmations, required);
    meter.setAttribute("aria-valuetext", `${confirmations} of ${required} confirmations`);
  }
}

function amountMicros() {
  const input = $("topup-amount", HTMLInputElement);
  const low = toMicros(config().min_topup_micros);
  const high = toMicros(config().max_topup_micros);
  let micros = null;
  let problem = "";
  try {
    micros = parseUsd(input.value);
    if (micros < low || micros > high) problem = `Choose an amount from ${formatUsd(low)} to ${formatUsd(high)}.`;
  } catch (error) {
    problem = /** @type {RangeError} */ (error).message;
  }
  $("topup-error").textContent = problem;
  input.setAttribute("aria-invalid", problem ? "true" : "false");
  return problem ? null : micros;
}

function renderAmount() {
  const micros = amountMicros();
  $("topup-pay", HTMLButtonElement).textContent = micros === null ? "Pay in USDC" : `Pay ${formatUsd(micros).slice(1)} USDC`;
  for (const button of /** @type {HTMLCollectionOf<HTMLButtonElement>} */ ($("topup-presets").children)) {
    button.setAttribute("aria-pressed", String(micros !== null && button.dataset.micros === micros.toString()));
  }
}

/** The connected wallet for the signed-in account, connecting one if needed; null after a message. */
/**
 * @param {import("./state.js").Wallet} [picked] the wallet just chosen in the list, if any
 * @returns {Promise<import("./state.js").ConnectedWallet | null>}
 */
async function signedInWallet(picked) {
  const found = picked ?? connectedWallet() ?? (await chooseWallet((w) => pay(w)));
  if (!found) return null;
  // asked each time: the person may have switched accounts in the wallet since
  const chosen = { ...found, address: await wallet.requestAccount(found.provider) };
  useWallet(chosen);
  if (!sameAddress(chosen.address, signedInAddress())) {
    notify(text.otherAccount(shortAddress(chosen.address), shortAddress(signedInAddress())));
    return null;
  }
  return chosen;
}

/** @param {import("./state.js").Wallet} [picked] */
async function pay(picked) {
  clearNotice();
  const micros = amountMicros();
  if (micros === null) {
    $("topup-amount", HTMLInputElement).focus();
    return;
  }
  $("topup-pay", HTMLButtonElement).disabled = true; // one payment at a time: no double spend by a second click
  try {
    await send(micros, picked);
  } finally {
    $("topup-pay", HTMLButtonElement).disabled = tracking;
  }
}

/**
 * @param {bigint} micros
 * @param {import("./state.js").Wallet} [picked]
 */
async function send(micros, picked) {
  const { usdc_address: usdc, dao_wallet_address: dao, chain_id: chain } = config();
  try {
    const payer = await signedInWallet(picked);
    if (!payer || !(await ensureChain(payer.provider, () => pay()))) return;
    const balance = await wallet.ethCall(payer.provider, usdc, balanceOfCallData(payer.address))
      .then(decodeUint256, () => null); // a wallet that cannot read balances: let the transfer itself tell
    if (balance !== null && balance < micros) {
      notify(text.notEnoughUsdc(balance, micros, chain));
      return;
    }
    announce("Confirm the USDC transfer in your wallet…");
    const tx = await wallet.sendTransaction(payer.provider, {
      from: payer.address, to: usdc, data: transferCallData(dao, micros), value: "0x0",
    });
    announce("");
    localStorage.setItem(storageKey(), JSON.stringify({ tx, micros: micros.toString() }));
    track({ tx, micros: micros.toString() });
  } catch (error) {
    announce("");
    if (!(error instanceof wallet.WalletError)) throw error;
    notify(error.rejected ? text.txRejected() : text.walletError(error));
  }
}

/**
 * Ask the gateway to confirm `pending.tx` until it is credited or refused.
 * @param {PendingTopup} pending
 */
function track(pending) {
  const mine = ++run;
  tracking = true;
  $("topup-pay", HTMLButtonElement).disabled = true;
  return follow(pending, mine).finally(() => {
    if (mine !== run) return;
    tracking = false;
    $("topup-pay", HTMLButtonElement).disabled = false;
  });
}

/**
 * @param {PendingTopup} pending
 * @param {number} mine this run's number
 */
async function follow(pending, mine) {
  const amount = formatUsd(pending.micros).slice(1);
  progress(`Transfer of ${amount} USDC sent. Waiting for the gateway to see it on chain…`, { tx: pending.tx });
  while (mine === run) {
    let wait = POLL_MS;
    try {
      const body = { tx_hash: pending.tx };
      const { status, data } = await api("/payments/credits/confirm", { method: "POST", body });
      if (mine !== run) return;
      if (status === 200) {
        localStorage.removeItem(storageKey());
        progress(`Credited: ${formatCredits(data.credited_micros)} credits from ${amount} USDC.`, {
          confirmations: data.required, required: data.required,
        });
        clearNotice();
        document.dispatchEvent(new Event("account-changed"));
        return;
      }
      progress(`Confirming: ${data.confirmations} of ${data.required} confirmations.`, data);
      clearNotice();
    } catch (error) {
      if (!(error instanceof ApiError) || mine !== run) throw error;
      if (error.status === 404) {
        progress(`Transfer of ${amount} USDC sent. Waiting for it to be mined…`);
      } else if (error.status === 403 || error.status === 422) {
        localStorage.removeItem(storageKey());
        progress("This top-up was refused.");
        notify(text.paymentRefused(error.message));
        return;
      } else if (error.status === 401) {
        document.dispatchEvent(new Event("session-expired")); // the hash stays kept: resumed at sign-in
        return;
      } else {
        wait = 1000 * (error.retryAfter ?? RPC_RETRY_S);
        notify(error.status === 503 && error.code !== "chain_unavailable" ? text.unavailable() : apiErrorText(error));
      }
    }
    await sleep(wait);
  }
}

/** Build the top-up card from the config and resume a top-up this wallet left unconfirmed. */
export function initTopup() {
  const settings = config();
  if (!settings.payments_enabled) {
    show($("topup-form", HTMLFormElement), false);
    $("topup").append(el("p", {}, text.paymentsOff()));
    return;
  }
  $("topup-bounds").textContent = `${formatUsd(settings.min_topup_micros)} to ${formatUsd(settings.max_topup_micros)}`;
  $("topup-dao").textContent = settings.dao_wallet_address;
  $("topup-presets").replaceChildren(
    ...settings.topup_presets_micros.map((micros) =>
      el("button", {
        type: "button", className: "preset", "data-micros": String(micros), "aria-pressed": "false",
        onclick: () => {
          $("topup-amount", HTMLInputElement).value = formatUsd(micros).slice(1).replace(/\.00$/, "");
          renderAmount();
        },
      }, formatUsd(micros).replace(/\.00$/, ""))),
  );
  $("topup-amount", HTMLInputElement).oninput = renderAmount;
  $("topup-form", HTMLFormElement).onsubmit = (event) => {
    event.preventDefault();
    return pay();
  };
  renderAmount();
}

/** At sign-in (or reload): resume the top-up this wallet started, if any; stop a previous account's. */
export function resumeTopup() {
  stopTopup();
  show($("topup-progress"), false);
  const pending = session() && pendingTopup();
  if (pending) track(pending);
}

export function stopTopup() {
  run++;
  tracking = false;
  $("topup-pay", HTMLButtonElement).disabled = false;
}
