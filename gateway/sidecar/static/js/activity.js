// The activity card: spend over the last 30 UTC days (chart, legend, total and average, the numbers as a
// table), an empty state that says what to do, and "days of credit left at this rate" beside the balance.

import { api } from "./api.js";
import { $, el, show } from "./dom.js";
import { chartTable, drawChart, legendItems } from "./chart.js";
import { countOf, daysLeft, formatCredits, toMicros } from "./format.js";
import { config } from "./state.js";

const DAYS = 30;
/** @typedef {import("./chart.js").Daily} Daily */

/** @type {Daily | null} */
let shown = null; // the last data drawn, redrawn when the card changes width

/** @param {Daily} daily */
function summaryText(daily) {
  const total = toMicros(daily.total.charged_micros);
  return `${formatCredits(total)} credits in ${countOf(daily.total.calls, "call")} over the last ${DAYS} days` +
    ` · on average ${formatCredits(total / BigInt(DAYS))} credits a day`;
}

/** @param {Daily} daily */
function draw(daily) {
  const series = drawChart($("chart"), daily, (text) => {
    $("chart-detail").textContent = text;
  });
  $("chart-legend").replaceChildren(...legendItems(daily, series));
  $("chart-table").replaceChildren(chartTable(daily, series));
}

function emptyState() {
  const { price_list_url: prices, api_base_url: base } = config();
  const link = prices
    ? el("a", { href: prices, rel: "noopener" }, "the price list")
    : el("code", {}, `GET ${base}/models`);
  $("activity-empty").replaceChildren(
    el("p", {}, `No calls in the last ${DAYS} days yet. Use one of your API keys with any OpenAI-compatible ` +
      "client; each day's spend per model appears here."),
    el("p", {}, "What each model costs in credits: ", link, prices ? "." : " (with your key)."),
  );
}

/** Load and show the activity; returns the data for the runway line. */
export async function loadActivity() {
  const { data } = await api(`/usage/daily?days=${DAYS}`);
  const empty = data.total.calls === 0;
  show($("activity-empty"), empty);
  show($("activity-chart"), !empty);
  if (empty) {
    shown = null;
    emptyState();
  } else {
    shown = data;
    $("chart-summary").textContent = summaryText(data);
    draw(data);
  }
  return data;
}

/**
 * "At this rate, ... lasts about N days" from the available balance and the window's spend.
 * @param {{ available_micros: import("./format.js").Micros }} summary
 * @param {Daily} daily
 */
export function showRunway(summary, daily) {
  const days = daysLeft(summary.available_micros, daily.total.charged_micros, DAYS);
  const rate = `At your last-${DAYS}-day rate, this lasts`;
  if (days === null) $("bal-runway").textContent = `No spend in the last ${DAYS} days.`;
  else if (days > 3650n) $("bal-runway").textContent = `${rate} more than ten years.`;
  else $("bal-runway").textContent = `${rate} about ${countOf(days, "day")}.`;
}

new ResizeObserver(() => {
  if (shown && !$("activity-chart").hidden) draw(shown);
}).observe($("chart"));
