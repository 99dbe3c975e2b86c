// A table of API rows read one page at a time (keyset cursors): Newer / Older buttons, a caption line.

import { api } from "./api.js";
import { el } from "./dom.js";

const PAGE_SIZE = 10;

/**
 * `path`: the list endpoint; `columns`: [[heading, row => text, className?], ...]; `empty`: the text when
 * there are no rows. Elements `<name>-body` (a tbody) and `<name>-pager` (the paging controls' place) must exist.
 */
export function createPager(name, path, columns, empty) {
  const body = document.getElementById(`${name}-body`);
  const pager = document.getElementById(`${name}-pager`);
  const button = (label) => el("button", { type: "button", className: "secondary small" }, label);
  const newer = button("Newer");
  const older = button("Older");
  const where = el("span");
  pager.replaceChildren(newer, where, older);
  let cursors = [null]; // cursors[i] reads page i; the last one is the page shown
  let next = null;

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

  async function load() {
    const cursor = cursors[cursors.length - 1];
    const query = `?limit=${PAGE_SIZE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const { data } = await api(path + query);
    next = data.next_cursor;
    render(data.data);
  }

  newer.onclick = () => {
    cursors = cursors.slice(0, -1);
    return load();
  };
  older.onclick = () => {
    cursors = [...cursors, next];
    return load();
  };
  return {
    load,
    reset() {
      cursors = [null];
      next = null;
      body.replaceChildren();
    },
  };
}
