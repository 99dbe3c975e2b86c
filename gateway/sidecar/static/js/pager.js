// A table of API rows read one page at a time (keyset cursors): Newer / Older buttons, a caption line.
// The pager moves to a page only once that page has loaded: a failed load leaves the page shown as it was
// and says why like every other action (a 401 asks to sign in again); only the newest load is drawn.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { guarded } from "./messages.js";

const PAGE_SIZE = 10;

/**
 * @template Row
 * @typedef {[string, (row: Row) => string, string?]} Column heading, the cell's text, its class
 */

/**
 * `path`: the list endpoint; `columns`: [[heading, row => text, className?], ...]; `empty`: the text when
 * there are no rows. Elements `<name>-body` (a tbody) and `<name>-pager` (the paging controls' place) must exist.
 * @template Row
 * @param {string} name
 * @param {string} path
 * @param {Array<Column<Row>>} columns
 * @param {string} empty
 */
export function createPager(name, path, columns, empty) {
  const body = $(`${name}-body`);
  const pager = $(`${name}-pager`);
  const button = (/** @type {string} */ label) => el("button", { type: "button", className: "secondary small" }, label);
  const newer = button("Newer");
  const older = button("Older");
  const where = el("span");
  pager.replaceChildren(newer, where, older);
  /** @type {Array<string | null>} */
  let cursors = [null]; // cursors[i] reads page i; the last one is the page shown
  /** @type {string | null} */
  let next = null;
  let loads = 0; // the newest load's number: an older one that answers late is not drawn

  /** @param {Row[]} rows */
  function render(rows) {
    if (rows.length === 0) {
      body.replaceChildren(el("tr", {}, el("td", { colSpan: columns.length, className: "empty" }, empty)));
    } else {
      body.replaceChildren(
        ...rows.map((row) =>
          el("tr", {}, ...columns.map(([heading, cell, className = ""]) =>
            el("td", { className, "data-label": heading }, cell(row)))),
        ),
      );
    }
    newer.disabled = cursors.length === 1;
    older.disabled = next === null;
    where.textContent = `Page ${cursors.length}`;
    pager.hidden = newer.disabled && older.disabled; // one page: nothing to page through
  }

  /**
   * Load the page `wanted` ends with, and show it (then it is the page shown).
   * @param {Array<string | null>} wanted
   */
  async function open(wanted) {
    const mine = ++loads;
    const cursor = wanted[wanted.length - 1];
    const query = `?limit=${PAGE_SIZE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const { data } = await api(path + query);
    if (mine !== loads) return;
    cursors = wanted;
    next = data.next_cursor;
    render(data.data);
  }

  /**
   * A paging button: disabled while its page loads, so a second click does not skip a page.
   * @param {() => Array<string | null>} wanted
   */
  const turn = (wanted) => guarded(async () => {
    newer.disabled = older.disabled = true;
    try {
      await open(wanted());
    } finally {
      newer.disabled = cursors.length === 1;
      older.disabled = next === null;
    }
  });
  newer.onclick = turn(() => cursors.slice(0, -1));
  older.onclick = turn(() => [...cursors, next]);
  return {
    load: () => open(cursors),
    reset() {
      loads++;
      cursors = [null];
      next = null;
      body.replaceChildren();
    },
  };
}
