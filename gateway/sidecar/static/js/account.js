// The account: balance, held and available credit, and the usage and ledger tables (paged).

import { loadActivity, showRunway } from "./activity.js";
import { $, show } from "./dom.js";
import { formatCount, formatCredits, formatTime, formatUsd } from "./format.js";
import { api } from "./api.js";
import { createPager } from "./pager.js";

/** @type {Record<string, string>} */
const REASONS = {
  onchain_payment: "USDC top-up",
  llm_usage: "Model call",
  admin_grant: "Grant",
  refund: "Refund",
  adjustment: "Adjustment",
};

/** @type {(micros: number) => string} */
const signedCredits = (micros) => (micros > 0 ? `+${formatCredits(micros)}` : formatCredits(micros));

/**
 * @typedef {import("./format.js").Micros} Micros
 * @typedef {{ created_at: string, model: string, prompt_tokens: number, completion_tokens: number,
 *   price_micros: Micros }} Call a row of GET /usage
 * @typedef {{ created_at: string, reason: string, amount_micros: number, balance_after_micros: Micros }} Entry
 *   a row of GET /credits/ledger
 */

/** @type {ReturnType<typeof createPager<Call>>} */
const usage = createPager("usage", "/usage", [
  ["Time", (r) => formatTime(r.created_at)],
  ["Model", (r) => r.model],
  ["Tokens in + out", (r) => `${formatCount(r.prompt_tokens)} + ${formatCount(r.completion_tokens)}`, "num"],
  ["Credits charged", (r) => formatCredits(r.price_micros), "num"],
], "No calls yet. Use one of your API keys with any OpenAI-compatible client.");

/** @type {ReturnType<typeof createPager<Entry>>} */
const ledger = createPager("ledger", "/credits/ledger", [
  ["Time", (r) => formatTime(r.created_at)],
  ["What", (r) => REASONS[r.reason] ?? r.reason],
  ["Credits", (r) => signedCredits(r.amount_micros), "num"],
  ["Balance after", (r) => formatCredits(r.balance_after_micros), "num"],
], "No entries yet. A top-up appears here once it is credited.");

export async function loadSummary() {
  const { data } = await api("/credits/summary");
  show($("frozen"), Boolean(data.frozen_at));
  $("bal-credits").textContent = formatCredits(data.balance_micros);
  $("bal-usd").textContent = `${formatUsd(data.balance_micros)} at 1,000 credits per USD`;
  $("bal-held").textContent = `${formatCredits(data.held_micros)} credits`;
  $("bal-available").textContent = `${formatCredits(data.available_micros)} credits`;
  return data;
}

/** Reload everything the account shows (the tables stay on the page they show). */
export async function refreshAccount() {
  const [summary, daily] = await Promise.all([loadSummary(), loadActivity(), usage.load(), ledger.load()]);
  showRunway(summary, daily);
}

export function resetAccount() {
  show($("frozen"), false);
  usage.reset();
  ledger.reset();
  for (const id of ["bal-credits", "bal-usd", "bal-held", "bal-available", "bal-runway"]) $(id).textContent = "";
}
