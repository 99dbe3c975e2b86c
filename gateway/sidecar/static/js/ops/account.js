// One account found by wallet, and the operator's actions on it: freeze/unfreeze, grant, revoke a key, set or
// clear a key's limit. Every action needs a reason (kept in the audit trail) and reloads what it changed.

import { isAddress } from "../address.js";
import { api, ApiError } from "../api.js";
import { $, el, show } from "../dom.js";
import { formatCount, formatCredits, formatTime, formatUsd, parseUsd } from "../format.js";
import { announce, apiErrorText } from "../messages.js";
import { act } from "./act.js";
import { figures, fill } from "./table.js";

/**
 * @typedef {{ id: number, prefix: string, label: string, active: boolean, revoked_at: string | null,
 *   last_used_at: string | null, limit_micros: number | null, limit_reset: string, usage_micros: number }} OpsKey
 * @typedef {{ created_at: string, reason: string, reference: string, amount_micros: number,
 *   balance_after_micros: number }} LedgerRow
 * @typedef {{ created_at: string, model: string, prompt_tokens: number, completion_tokens: number,
 *   charged_micros: number, provider_cost_micros: number }} UsageRow
 * @typedef {{ account_id: number, wallet_address: string, balance_micros: number, held_micros: number,
 *   available_micros: number, frozen_at: string | null, last_activity_at: string | null, keys: OpsKey[],
 *   ledger: LedgerRow[], usage: UsageRow[] }} Account what GET /ops/accounts answers (the fields shown)
 */

/** @type {Account | null} */
let current = null; // the account shown
/** @type {() => Promise<unknown>} */
let afterAction = async () => {};

/** The account shown (the actions exist only while one is). */
function shown() {
  if (current === null) throw new Error("no account shown");
  return current;
}

function reason() {
  const text = $("action-reason", HTMLInputElement).value.trim();
  const ok = text.length >= 3;
  $("action-reason").setAttribute("aria-invalid", String(!ok));
  $("action-error").textContent = ok ? "" : "Give a reason (at least 3 characters): it is kept in the audit trail.";
  if (!ok) $("action-reason").focus();
  return ok ? text : null;
}

/**
 * Do an action on the account shown (after checking the reason), say `done` and reload what it changed.
 * @param {string} what
 * @param {string} path
 * @param {Record<string, unknown>} body
 * @param {string} done
 */
async function run(what, path, body, done) {
  const why = reason();
  if (why === null) return;
  try {
    await act(what, path, { ...body, reason: why });
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    $("action-error").textContent = apiErrorText(error);
    return;
  }
  announce(done);
  await showAccount(shown().wallet_address);
  await afterAction();
}

/**
 * A key's limit field and buttons (none for a revoked key).
 * @param {OpsKey} key
 */
function keyActions(key) {
  if (!key.active) return "";
  const limitInput = el("input", { type: "text", inputmode: "decimal", autocomplete: "off", className: "limit",
    "aria-label": `New limit in US dollars for key ${key.prefix} (empty: no limit)`,
    value: key.limit_micros === null ? "" : formatUsd(key.limit_micros).slice(1) });
  const setLimit = el("button", { type: "button", className: "secondary small", onclick: () => {
    let micros = null;
    try {
      if (limitInput.value.trim()) micros = Number(parseUsd(limitInput.value));
    } catch (error) {
      $("action-error").textContent = /** @type {Error} */ (error).message;
      return;
    }
    run(`limit:${key.id}:${micros}`, `/keys/${key.id}/limit`, { limit_micros: micros },
      micros === null ? `Limit of key ${key.prefix} cleared.` : `Limit of key ${key.prefix} set.`);
  } }, "Set limit");
  const revoke = el("button", { type: "button", className: "danger small",
    onclick: () => run(`revoke:${key.id}`, `/keys/${key.id}/revoke`, {}, `Key ${key.prefix} revoked.`) }, "Revoke");
  return el("div", { className: "row" }, limitInput, setLimit, revoke);
}

/** @param {Account} a */
function render(a) {
  $("account-wallet").textContent = a.wallet_address;
  $("account-frozen").textContent = a.frozen_at ? `Frozen since ${formatTime(a.frozen_at)}` : "";
  figures($("account-figures"), [
    ["Account", String(a.account_id)], ["Balance", `${formatCredits(a.balance_micros)} credits`],
    ["Held", `${formatCredits(a.held_micros)} credits`], ["Available", `${formatCredits(a.available_micros)} credits`],
    ["Last activity", formatTime(a.last_activity_at)],
  ]);
  $("account-figures").dataset.balance = String(a.balance_micros);
  show($("freeze"), !a.frozen_at);
  show($("unfreeze"), Boolean(a.frozen_at));
  fill($("keys-body"), a.keys, [
    ["Key", (k) => el("code", {}, `${k.prefix}…`)], ["Label", (k) => k.label || "—"],
    ["Status", (k) => (k.active ? "active" : `revoked ${formatTime(k.revoked_at)}`)],
    ["Limit", (k) => (k.limit_micros === null ? "none" : `${formatUsd(k.limit_micros)} ${k.limit_reset}`), "num"],
    ["Used", (k) => formatUsd(k.usage_micros), "num"], ["Last used", (k) => formatTime(k.last_used_at)],
    ["Actions", keyActions],
  ], "No keys.");
  fill($("ledger-body"), a.ledger, [
    ["Time", (r) => formatTime(r.created_at)], ["Reason", (r) => r.reason],
    ["Reference", (r) => el("code", {}, r.reference)], ["Amount", (r) => formatUsd(r.amount_micros), "num"],
    ["Balance after", (r) => formatUsd(r.balance_after_micros), "num"],
  ], "No ledger entries.");
  fill($("usage-body"), a.usage, [
    ["Time", (r) => formatTime(r.created_at)], ["Model", (r) => r.model],
    ["Tokens", (r) => `${formatCount(r.prompt_tokens)} + ${formatCount(r.completion_tokens)}`, "num"],
    ["Charged", (r) => formatUsd(r.charged_micros), "num"],
    ["Provider cost", (r) => formatUsd(r.provider_cost_micros), "num"],
  ], "No calls.");
}

/** @param {string} wallet */
async function showAccount(wallet) {
  /** @type {{ data: Account }} */
  const { data } = await api(`/ops/accounts?wallet=${encodeURIComponent(wallet)}`);
  current = data;
  render(data);
  show($("account"), true);
}

/** @param {SubmitEvent} event */
async function search(event) {
  event.preventDefault();
  const wallet = $("search-wallet", HTMLInputElement).value.trim();
  const bad = !isAddress(wallet);
  $("search-wallet").setAttribute("aria-invalid", String(bad));
  $("search-error").textContent = bad ? "Enter a wallet address: 0x followed by 40 hex digits." : "";
  if (bad) return;
  try {
    await showAccount(wallet);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    $("search-error").textContent = "No account for this wallet: it has never signed in, topped up or been granted.";
    show($("account"), false);
    return;
  }
  $("account-title").focus();
}

/**
 * Wire the search and the action buttons; `guard` wraps handlers, `onChange` reloads the views after an action.
 * @param {typeof import("../messages.js").guarded} guard
 * @param {() => Promise<unknown>} onChange
 */
export function initAccount(guard, onChange) {
  afterAction = onChange;
  $("search-form", HTMLFormElement).onsubmit = guard(search);
  $("freeze").onclick = guard(() => run(`freeze:${shown().account_id}`, `/accounts/${shown().account_id}/freeze`, {},
    "Account frozen: its calls are refused."));
  $("unfreeze").onclick = guard(() => run(`unfreeze:${shown().account_id}`,
    `/accounts/${shown().account_id}/unfreeze`, {}, "Account unfrozen."));
  $("grant-form", HTMLFormElement).onsubmit = guard(async (/** @type {SubmitEvent} */ event) => {
    event.preventDefault();
    let micros;
    try {
      micros = parseUsd($("grant-amount", HTMLInputElement).value);
      if (micros <= 0n) throw new RangeError("Enter an amount above zero.");
    } catch (error) {
      $("action-error").textContent = /** @type {Error} */ (error).message;
      return;
    }
    await run(`grant:${shown().wallet_address}:${micros}`, "/grants",
      { wallet: shown().wallet_address, amount_micros: Number(micros) }, `Granted ${formatUsd(micros)}.`);
  });
}

export async function reloadAccount() {
  if (current) await showAccount(current.wallet_address);
}
