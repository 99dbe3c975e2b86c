// The console's read-only views: the business over a range (the user page's chart module), the books,
// money in (top-ups, x402) and the audit trail.

import { api } from "../api.js";
import { chartTable, drawChart, legendItems } from "../chart.js";
import { $, el } from "../dom.js";
import { formatCount, formatTime, formatUsd } from "../format.js";
import { shortAddress } from "../address.js";
import { age, figures, fill } from "./table.js";

/**
 * @typedef {import("./act.js").AuditEntry} AuditEntry
 * @typedef {{ calls: number, prompt_tokens: number, completion_tokens: number, revenue_micros: number,
 *   charged_micros: number, provider_cost_micros: number, uncollected_micros: number, margin_micros: number }} Figures
 * @typedef {Figures & { model: string }} ModelFigures
 * @typedef {{ pending: number, posted: number, voided: number, expired: number }} HoldOutcomes
 * @typedef {{ first_day: string, last_day: string, note: string, models: ModelFigures[],
 *   days: Array<Figures & { day: string, holds: HoldOutcomes, models: ModelFigures[] }>,
 *   total: Figures & { holds: HoldOutcomes } }} Business what GET /ops/business answers
 * @typedef {{ ok: boolean, accounts: number, credited_payments: number, chain_checked: boolean,
 *   mismatch_count: number, mismatches: Array<{ check: string, account_id: number | null, detail: string }>,
 *   uncollected_micros: number, uncollected_calls: number }} ReconcileResult a reconcile audit entry's result
 * @typedef {{ id: number, status: string, amount_micros: number, payer: string, tx_hash: string | null,
 *   tx_url: string | null, age_seconds: number }} MoneyRow a row of GET /ops/topups or /ops/x402
 * @typedef {Record<string, { count: number, amount_micros: number }>} ByStatus
 * @typedef {{ by_status: ByStatus, data: MoneyRow[] }} MoneyIn what GET /ops/topups and /ops/x402 answer
 * @typedef {{ holds_open: number, holds_open_micros: number, oldest_open_hold_age_seconds: number | null,
 *   holds_open_past_ttl: number, holds_expired_unsettled: number, holds_expired_unsettled_micros: number,
 *   spool: { pending: number, failed: number } | null, last_reconcile: AuditEntry | null }} Books
 *   what GET /ops/books answers (the fields shown)
 */

/** @type {(micros: number) => string} */
const usd = (micros) => formatUsd(micros);
/** @type {Business | null} */
let lastBusiness = null;

/** @param {number} days */
function dayOffset(days) {
  return new Date(Date.now() - days * 86400000).toISOString().slice(0, 10);
}

export function initRange() {
  $("range-last", HTMLInputElement).value = dayOffset(0);
  $("range-first", HTMLInputElement).value = dayOffset(29);
}

export async function loadBusiness() {
  const query = new URLSearchParams({
    first_day: $("range-first", HTMLInputElement).value, last_day: $("range-last", HTMLInputElement).value,
  });
  /** @type {{ data: Business }} */
  const { data } = await api(`/ops/business?${query}`);
  lastBusiness = data;
  const t = data.total;
  figures($("business-totals"), [
    ["Revenue (user price)", usd(t.revenue_micros)], ["Charged", usd(t.charged_micros)],
    ["Provider cost", usd(t.provider_cost_micros)], ["Margin", usd(t.margin_micros)],
    ["Uncollected", usd(t.uncollected_micros)], ["Settled calls", formatCount(t.calls)],
  ]);
  $("business-totals").dataset.charged = String(t.charged_micros);
  drawBusiness();
  fill($("models-body"), data.models, [
    ["Model", (m) => m.model], ["Calls", (m) => formatCount(m.calls), "num"],
    ["Revenue", (m) => usd(m.revenue_micros), "num"], ["Charged", (m) => usd(m.charged_micros), "num"],
    ["Provider cost", (m) => usd(m.provider_cost_micros), "num"], ["Margin", (m) => usd(m.margin_micros), "num"],
    ["Uncollected", (m) => usd(m.uncollected_micros), "num"],
  ], "No settled calls in this range.");
  const h = t.holds;
  $("outcomes").textContent = `Calls by outcome (their holds): ${h.posted} settled, ${h.voided} released ` +
    `(failed, nothing charged), ${h.expired} expired (settle lost), ${h.pending} in flight. ${data.note}`;
}

export function drawBusiness() {
  if (!lastBusiness) return;
  const series = drawChart($("chart"), lastBusiness, (text) => { $("chart-detail").textContent = text; });
  $("chart-legend").replaceChildren(...legendItems(lastBusiness, series));
  $("chart-table").replaceChildren(chartTable(lastBusiness, series));
}

/**
 * What a reconcile found, as a paragraph and the list of its mismatches.
 * @param {AuditEntry} entry
 */
export function reconcileFindings(entry) {
  const r = /** @type {ReconcileResult} */ (entry.result);
  const head = el("p", {}, `${r.ok ? "Books agree" : `${r.mismatch_count} mismatches`} (${formatTime(entry.created_at)}` +
    `, ${r.accounts} accounts, ${r.chain_checked ? "ledger and chain" : "ledger only"}); uncollected ` +
    `${usd(r.uncollected_micros)} on ${r.uncollected_calls} calls.`);
  const list = el("ul", { className: "findings" },
    ...r.mismatches.map((m) => el("li", {}, `${m.check}${m.account_id ? ` (account ${m.account_id})` : ""}: ${m.detail}`)));
  return r.mismatches.length ? [head, list] : [head];
}

export async function loadBooks() {
  /** @type {{ data: Books }} */
  const { data } = await api("/ops/books");
  const spool = data.spool ? `${data.spool.pending} waiting, ${data.spool.failed} failed` : "no spool on this host";
  figures($("books-figures"), [
    ["Open holds", `${formatCount(data.holds_open)} (${usd(data.holds_open_micros)})`],
    ["Oldest open hold", age(data.oldest_open_hold_age_seconds)],
    ["Open past their TTL", formatCount(data.holds_open_past_ttl)],
    ["Expired, never settled", `${formatCount(data.holds_expired_unsettled)} (${usd(data.holds_expired_unsettled_micros)})`],
    ["Settle spool", spool],
    ["Last reconcile", data.last_reconcile ? formatTime(data.last_reconcile.created_at) : "never from here"],
  ]);
  $("reconcile-result").replaceChildren(...(data.last_reconcile ? reconcileFindings(data.last_reconcile) : []));
}

/** @param {MoneyRow} row */
function txCell(row) {
  if (!row.tx_hash) return "—";
  const text = `${row.tx_hash.slice(0, 10)}…${row.tx_hash.slice(-6)}`;
  return row.tx_url ? el("a", { href: row.tx_url, rel: "noopener noreferrer", target: "_blank", title: row.tx_hash }, text)
    : el("code", { title: row.tx_hash }, text);
}

/** @type {Array<import("./table.js").Column<MoneyRow>>} */
const MONEY_COLUMNS = [
  ["Status", (r) => r.status], ["Amount", (r) => usd(r.amount_micros), "num"],
  ["Payer", (r) => el("code", { title: r.payer }, shortAddress(r.payer))], ["Transaction", txCell],
  ["Age", (r) => age(r.age_seconds)],
];

/** @param {ByStatus} byStatus */
function summary(byStatus) {
  return Object.entries(byStatus).map(([s, f]) => `${s}: ${f.count} (${usd(f.amount_micros)})`).join(" · ");
}

export async function loadMoney() {
  const status = $("topup-status", HTMLSelectElement).value;
  /** @type {Array<{ data: MoneyIn }>} */
  const [topups, x402] = await Promise.all([
    api(`/ops/topups${status ? `?status=${status}` : ""}`), api("/ops/x402"),
  ]);
  $("topup-summary").textContent = summary(topups.data.by_status);
  fill($("topups-body"), topups.data.data, MONEY_COLUMNS, "No top-ups.");
  $("x402-summary").textContent = summary(x402.data.by_status);
  fill($("x402-body"), x402.data.data, MONEY_COLUMNS, "No x402 payments.");
}

/** @param {AuditEntry} a */
function target(a) {
  if (a.key_id) return `key ${a.key_id} (account ${a.account_id})`;
  if (a.account_id) return `account ${a.account_id}`;
  return "the books";
}

/** @type {Record<string, (a: AuditEntry) => string>} */
const ACTIONS = {
  grant: (a) => `grant ${usd(a.params.amount_micros)}`, revoke_key: () => "revoke key",
  set_key_limit: (a) => (a.params.limit_micros === null ? "clear key limit" : `key limit ${usd(a.params.limit_micros)}`),
  freeze: () => "freeze", unfreeze: () => "unfreeze",
  reconcile: (a) => (a.result.ok ? "reconcile: books agree" : `reconcile: ${a.result.mismatch_count} mismatches`),
};

export async function loadAudit() {
  /** @type {{ data: { data: AuditEntry[] } }} */
  const { data } = await api("/ops/audit?limit=50");
  fill($("audit-body"), data.data, [
    ["Time", (a) => formatTime(a.created_at)],
    ["Operator", (a) => el("code", { title: a.operator_wallet }, shortAddress(a.operator_wallet))],
    ["Action", (a) => (ACTIONS[a.action] ?? (() => a.action))(a)], ["Target", target], ["Why", (a) => a.reason],
  ], "No operator actions yet.");
}
