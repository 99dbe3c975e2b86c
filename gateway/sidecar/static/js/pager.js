// A table of API rows read one page at a time (keyset cursors): Newer / Older buttons, a caption line.

import { api } from "./api.js";
import { el } from "./dom.js";

const PAGE_SIZE = 10;

/**
 * `path`: the list endpoint; `columns`: [[heading, row => text, className?], ...]; `empty`: the text when
 * there are no rows. Elements (ids) `<name>-body`, `-newer`, `-older`, `-page` and `-pager` must exist.
 */
export function createPager(name, path, columns, empty) {
  const body = document.getElementById(`${name}-body`);
  const newer = document.getElementById(`${name}-newer`);
  const older = document.getElementById(`${name}-older`);
  const where = document.getElementById(`${name}-page`);
  const pager = document.getElementById(`${name}-pager`);
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
