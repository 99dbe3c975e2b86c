// Tiny DOM helpers. Text always goes in through textContent, never as HTML.

export const $ = (id) => document.getElementById(id);

/** A new element: `el("td", { className: "num" }, "12")`; props are element properties or data-/aria- attributes. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name.startsWith("data-") || name.startsWith("aria-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export function show(node, visible) {
  node.hidden = !visible;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
