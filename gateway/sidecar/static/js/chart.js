// The activity chart: credits charged per UTC day as stacked bars, one colour per model (the top five,
// the rest as "other"), drawn as inline SVG at the container's own width. One bar is in the tab order;
// arrow keys, Home and End move between days; hovering or focusing a day shows its figures.

import { el } from "./dom.js";
import { countOf, formatCredits, toMicros } from "./format.js";

/**
 * @typedef {import("./format.js").Micros} Micros
 * @typedef {{ model: string, charged_micros: Micros, calls: number }} ModelSpend
 * @typedef {{ day: string, calls: number, charged_micros: Micros, models: ModelSpend[] }} Day
 * @typedef {{ models: ModelSpend[], days: Day[], total: { charged_micros: Micros, calls: number } }} Daily
 *   what GET /api/v1/usage/daily returns
 * @typedef {{ name: string, colour: string }} Series
 * @typedef {{ day: string, calls: number, total: bigint, micros: bigint[] }} Stack
 */

const SVG = "http://www.w3.org/2000/svg";
// Okabe-Ito, a palette told apart with the common colour-vision deficiencies; grey for "other"
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7"];
/** @type {Series} */
export const OTHER = { name: "other", colour: "#6B7280" };
const TOP = PALETTE.length;
const HEIGHT = 200;
const PAD = { top: 12, right: 8, bottom: 26, left: 52 };
const LABEL_WIDTH = 40; // room for a day label ("Dec 14" at 11 px) and a gap

/**
 * @param {string} tag
 * @param {Record<string, string | number>} [attributes]
 * @param {...(Node | string)} children
 * @returns {SVGElement}
 */
function svg(tag, attributes = {}, ...children) {
  const node = /** @type {SVGElement} */ (document.createElementNS(SVG, tag));
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

/** @type {(iso: string, style?: "short" | "long") => string} */
const dayLabel = (iso, style = "short") =>
  new Intl.DateTimeFormat("en", { month: style, day: "numeric", timeZone: "UTC" }).format(new Date(`${iso}T00:00:00Z`));

/**
 * The chart's series: the window's five dearest models, then "other" for the rest (if any).
 * @param {Daily} daily
 * @returns {Series[]}
 */
export function seriesOf(daily) {
  const top = daily.models.slice(0, TOP).map((m, i) => ({ name: m.model, colour: PALETTE[i] }));
  return daily.models.length > TOP ? [...top, OTHER] : top;
}

/**
 * Each day's micros per series (BigInt), in the order of `series`.
 * @param {Daily} daily
 * @param {Series[]} series
 * @returns {Stack[]}
 */
export function stacksOf(daily, series) {
  const named = new Set(series.filter((s) => s !== OTHER).map((s) => s.name));
  return daily.days.map((day) => {
    const micros = series.map((s) => {
      const rows = day.models.filter((m) => (s === OTHER ? !named.has(m.model) : m.model === s.name));
      return rows.reduce((sum, m) => sum + toMicros(m.charged_micros), 0n);
    });
    return { day: day.day, calls: day.calls, total: toMicros(day.charged_micros), micros };
  });
}

/**
 * A round axis maximum (1, 2 or 5 x 10^n micros) at or above `micros`.
 * @param {bigint} micros
 */
function niceMax(micros) {
  let step = 1n;
  while (step * 10n < micros) step *= 10n;
  for (const factor of [1n, 2n, 5n, 10n]) if (step * factor >= micros) return step * factor;
  return step * 10n;
}

/**
 * @param {Stack} stack
 * @param {Series[]} series
 */
function describe(stack, series) {
  const parts = stack.micros
    .map((m, i) => (m > 0n ? `${series[i].name} ${formatCredits(m)}` : null))
    .filter(Boolean);
  return `${dayLabel(stack.day, "long")}: ${formatCredits(stack.total)} credits, ${countOf(stack.calls, "call")}` +
    (parts.length ? ` (${parts.join(", ")})` : "");
}

/**
 * The days whose date is written under the axis: the last (today, its label ending at the plot's edge) and
 * every n-th before it, as many as fit; a label that would run into the last one's is left out.
 * @param {number} days
 * @param {number} plotWidth
 * @returns {Set<number>} their indexes
 */
export function labelledDays(days, plotWidth) {
  const slot = plotWidth / days;
  const every = Math.ceil(days / Math.max(1, Math.floor(plotWidth / (LABEL_WIDTH + 4))));
  const lastStart = plotWidth - LABEL_WIDTH; // the last label is right-aligned to the plot's edge
  const labelled = new Set();
  for (let index = days - 1; index >= 0; index -= every) {
    const centre = (index + 0.5) * slot; // the others are centred on their bar
    if (index === days - 1 || centre + LABEL_WIDTH / 2 <= lastStart) labelled.add(index);
  }
  return labelled;
}

/**
 * Draw `daily` (GET /usage/daily) into `holder`; `show(text)` receives the figures of the day in focus.
 * @param {HTMLElement} holder
 * @param {Daily} daily
 * @param {(text: string) => void} show
 * @returns {Series[]}
 */
export function drawChart(holder, daily, show) {
  const width = Math.max(holder.clientWidth, 280);
  const series = seriesOf(daily);
  const stacks = stacksOf(daily, series);
  const top = niceMax(stacks.reduce((max, s) => (s.total > max ? s.total : max), 0n));
  const plotW = width - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotW / stacks.length;
  const y = (/** @type {bigint} */ micros) => PAD.top + plotH - (Number(micros) / Number(top)) * plotH;
  const chart = svg("svg", { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: "group",
    "aria-label": "Credits charged per day; use the arrow keys to move between days" });
  for (const tick of [0n, top / 2n, top]) {
    chart.append(
      svg("line", { x1: PAD.left, x2: width - PAD.right, y1: y(tick), y2: y(tick), class: "grid-line" }),
      svg("text", { x: PAD.left - 6, y: y(tick) + 4, "text-anchor": "end", class: "axis" }, formatCredits(tick)),
    );
  }
  const labelled = labelledDays(stacks.length, plotW);
  const bars = stacks.map((stack, index) => {
    const x = PAD.left + index * slot;
    const group = svg("g");
    let base = 0n;
    stack.micros.forEach((micros, i) => {
      if (micros === 0n) return;
      const y0 = y(base);
      base += micros;
      group.append(svg("rect", { x: x + slot * 0.15, width: slot * 0.7, y: y(base), height: Math.max(y0 - y(base), 1),
        fill: series[i].colour, class: "segment" }));
    });
    if (labelled.has(index)) {
      const last = index === stacks.length - 1; // ends at the plot's edge rather than past it
      group.append(svg("text", { x: last ? x + slot : x + slot / 2, y: HEIGHT - 8,
        "text-anchor": last ? "end" : "middle", class: "axis" }, dayLabel(stack.day)));
    }
    const hit = svg("rect", { x, y: PAD.top, width: slot, height: plotH, class: "hit", tabindex: -1, role: "img",
      "aria-label": describe(stack, series), "data-day": stack.day });
    const focus = () => {
      for (const other of chart.querySelectorAll(".hit")) other.setAttribute("tabindex", "-1");
      hit.setAttribute("tabindex", "0");
      show(describe(stack, series));
    };
    hit.addEventListener("focus", focus);
    hit.addEventListener("mouseenter", () => show(describe(stack, series)));
    group.append(hit);
    chart.append(group);
    return hit;
  });
  bars[bars.length - 1].setAttribute("tabindex", "0"); // today: where the keyboard enters
  chart.addEventListener("keydown", (event) => {
    const at = bars.indexOf(/** @type {SVGElement} */ (document.activeElement));
    /** @type {Record<string, number>} */
    const moves = { ArrowLeft: at - 1, ArrowRight: at + 1, Home: 0, End: bars.length - 1 };
    const to = moves[event.key];
    if (at < 0 || to === undefined) return;
    event.preventDefault();
    bars[Math.min(Math.max(to, 0), bars.length - 1)].focus();
  });
  holder.replaceChildren(chart);
  return series;
}

/**
 * The legend: a swatch and a name per series, with its total over the window.
 * @param {Daily} daily
 * @param {Series[]} series
 */
export function legendItems(daily, series) {
  const stacks = stacksOf(daily, series);
  return series.map((s, i) => {
    const total = stacks.reduce((sum, st) => sum + st.micros[i], 0n);
    return el("li", {},
      svg("svg", { width: 14, height: 14, "aria-hidden": "true" },
        svg("rect", { width: 14, height: 14, fill: s.colour })),
      el("span", { className: "series-name" }, s.name),
      el("span", { className: "num" }, `${formatCredits(total)} credits`));
  });
}

/**
 * The numbers of the chart as a table (for screen readers, and the tests): a row per day, a column per series.
 * @param {Daily} daily
 * @param {Series[]} series
 */
export function chartTable(daily, series) {
  const stacks = stacksOf(daily, series);
  /** @type {(tag: "th" | "td", text: string, props?: Record<string, string>) => HTMLElement} */
  const cell = (tag, text, props = {}) => el(tag, props, text);
  const totals = series.map((_, i) => stacks.reduce((sum, st) => sum + st.micros[i], 0n));
  return el("table", { className: "chart-table" },
    el("caption", {}, "Credits charged per UTC day and model"),
    el("thead", {}, el("tr", {}, cell("th", "Day", { scope: "col" }),
      ...series.map((s) => cell("th", s.name, { scope: "col" })), cell("th", "Total", { scope: "col" }))),
    el("tbody", {}, ...stacks.map((st) => el("tr", {}, cell("th", st.day, { scope: "row" }),
      ...st.micros.map((m) => cell("td", formatCredits(m))), cell("td", formatCredits(st.total))))),
    el("tfoot", {}, el("tr", {}, cell("th", "Total", { scope: "row" }),
      ...totals.map((m) => cell("td", formatCredits(m))),
      cell("td", formatCredits(toMicros(daily.total.charged_micros))))));
}
