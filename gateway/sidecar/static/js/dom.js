// Tiny DOM helpers. Text always goes in through textContent, never as HTML.

/**
 * The element with this id, which must exist (and be a `kind`, HTMLElement by default): a page without it is
 * a bug, found at once.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} [kind]
 * @returns {T}
 */
export function $(id, kind) {
  const node = document.getElementById(id);
  if (!(node instanceof (kind ?? HTMLElement))) throw new TypeError(`no element #${id} of the expected kind`);
  return /** @type {T} */ (node);
}

/**
 * A new element: `el("td", { className: "num" }, "12")`; props are element properties or data-/aria- attributes.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, any>} [props]
 * @param {...(Node | string | null | undefined)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name.startsWith("data-") || name.startsWith("aria-")) node.setAttribute(name, value);
    else /** @type {Record<string, any>} */ (node)[name] = value;
  }
  node.append(.../** @type {Array<Node | string>} */ (children.filter((c) => c !== null && c !== undefined)));
  return node;
}

/**
 * @param {HTMLElement} node
 * @param {boolean} visible
 */
export function show(node, visible) {
  node.hidden = !visible;
}

/** @type {(ms: number) => Promise<void>} */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
