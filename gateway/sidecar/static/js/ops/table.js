// Rows into a stacked table body: one cell per column, labelled for the narrow layout; an empty line otherwise.

import { el } from "../dom.js";

/**
 * @template Row
 * @typedef {[string, (row: Row) => Node | string, string?]} Column heading, the cell's text or node, its class
 */

/**
 * `columns`: [[heading, row => text or node, className?], ...].
 * @template Row
 * @param {HTMLElement} body
 * @param {Row[]} rows
 * @param {Array<Column<Row>>} columns
 * @param {string} empty
 */
export function fill(body, rows, columns, empty) {
  if (rows.length === 0) {
    body.replaceChildren(el("tr", {}, el("td", { colSpan: columns.length, className: "empty" }, empty)));
    return;
  }
  body.replaceChildren(...rows.map((row) => el("tr", {}, ...columns.map(([heading, cell, className = ""]) =>
    el("td", { className, "data-label": heading }, cell(row))))));
}

/**
 * A <dl> of [label, value] pairs.
 * @param {HTMLElement} list
 * @param {Array<[string, string]>} pairs
 */
export function figures(list, pairs) {
  list.replaceChildren(...pairs.map(([label, value]) => el("div", {}, el("dt", {}, label), el("dd", {}, value))));
}

/**
 * A duration in seconds, in the largest fitting unit ("3 min", "2 h", "5 d").
 * @param {number | null | undefined} seconds
 */
export function age(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}
