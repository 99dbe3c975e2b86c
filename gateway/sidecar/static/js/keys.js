// API keys: the list, creating one (its raw key shown once, with a copy button) and revoking one (confirmed).

import { api } from "./api.js";
import { $, el, show } from "./dom.js";
import { formatTime } from "./format.js";
import { announce, guarded } from "./messages.js";

/**
 * Show a raw key once: a read-only field, a copy button and the warning; "I have saved it" forgets it.
 * @param {{ key: string }} key
 * @param {string} title
 */
export function showNewKey(key, title) {
  $("newkey-title").textContent = title;
  $("newkey-value", HTMLTextAreaElement).value = key.key;
  $("newkey-copied").textContent = "";
  show($("newkey"), true);
  $("newkey-value", HTMLTextAreaElement).focus();
  $("newkey-value", HTMLTextAreaElement).select();
}

async function copyKey() {
  const field = $("newkey-value", HTMLTextAreaElement);
  try {
    await navigator.clipboard.writeText(field.value);
    $("newkey-copied").textContent = "Copied to the clipboard.";
  } catch {
    field.focus();
    field.select();
    $("newkey-copied").textContent = "Copying is blocked here: the key is selected, press Ctrl+C (⌘C) to copy it.";
  }
}

function hideNewKey() {
  $("newkey-value", HTMLTextAreaElement).value = "";
  show($("newkey"), false);
  $("key-label", HTMLInputElement).focus();
}

/**
 * @typedef {{ id: number, prefix: string, label: string, active: boolean, created_at: string,
 *   last_used_at: string | null, revoked_at: string | null }} Key a key as GET /keys lists it
 */

/**
 * @param {Key} key
 * @param {(key: Key) => void} onRevoke
 */
function keyRow(key, onRevoke) {
  const status = key.active ? "Active" : `Revoked ${formatTime(key.revoked_at)}`;
  const action = key.active
    ? el("button", { type: "button", className: "danger small", onclick: () => onRevoke(key), "data-key-id": key.id,
      "aria-label": `Revoke key ${key.prefix}… ${key.label}`.trim() }, "Revoke")
    : "";
  return el("tr", {},
    el("td", { "data-label": "Key" }, el("code", {}, `${key.prefix}…`)),
    el("td", { "data-label": "Label" }, key.label || "—"),
    el("td", { "data-label": "Created" }, formatTime(key.created_at)),
    el("td", { "data-label": "Last used" }, key.last_used_at ? formatTime(key.last_used_at) : "Never"),
    el("td", { "data-label": "Status", className: key.active ? "ok" : "muted" }, status),
    el("td", { "data-label": "Action" }, action),
  );
}

/** @param {() => Promise<unknown>} afterChange */
export function createKeys(afterChange) {
  /** @type {Key | null} */
  let revoking = null;
  const dialog = $("revoke-dialog", HTMLDialogElement);

  async function load() {
    const { data } = await api("/keys");
    const body = $("keys-body");
    const active = document.activeElement;
    const focused = active instanceof HTMLElement && body.contains(active) ? active.dataset.keyId : undefined;
    body.replaceChildren(...data.data.map((/** @type {Key} */ k) => keyRow(k, askRevoke)));
    if (focused) /** @type {HTMLElement | null} */ (body.querySelector(`[data-key-id="${focused}"]`))?.focus(); // a refresh keeps keyboard focus
  }

  /** @param {Key} key */
  function askRevoke(key) {
    revoking = key;
    $("revoke-text").textContent =
      `Key ${key.prefix}…${key.label ? ` (“${key.label}”)` : ""} will stop working within seconds, for every ` +
      "program that uses it. This cannot be undone.";
    dialog.showModal();
  }

  $("revoke-cancel", HTMLButtonElement).onclick = () => dialog.close();
  $("revoke-confirm", HTMLButtonElement).onclick = guarded(async () => {
    dialog.close();
    const key = revoking;
    revoking = null;
    if (!key) return;
    await api(`/keys/${key.id}`, { method: "DELETE" });
    announce(`Key ${key.prefix}… revoked.`);
    await afterChange();
  });
  $("key-form", HTMLFormElement).onsubmit = guarded(async (/** @type {SubmitEvent} */ event) => {
    event.preventDefault();
    const label = $("key-label", HTMLInputElement).value.trim();
    const { data } = await api("/keys", { method: "POST", body: { label } });
    $("key-label", HTMLInputElement).value = "";
    showNewKey(data, "Your new API key");
    await afterChange();
  });
  $("newkey-copy", HTMLButtonElement).onclick = copyKey;
  $("newkey-done", HTMLButtonElement).onclick = hideNewKey;
  return { load };
}
