// API keys: the list, creating one (its raw key shown once, with a copy button) and revoking one (confirmed).

import { api } from "./api.js";
import { $, el, show } from "./dom.js";
import { formatTime } from "./format.js";
import { announce, guarded } from "./messages.js";

/** Show a raw key once: a read-only field, a copy button and the warning; "I have saved it" forgets it. */
export function showNewKey(key, title) {
  $("newkey-title").textContent = title;
  $("newkey-value").value = key.key;
  $("newkey-copied").textContent = "";
  show($("newkey"), true);
  $("newkey-value").focus();
  $("newkey-value").select();
}

async function copyKey() {
  const field = $("newkey-value");
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
  $("newkey-value").value = "";
  show($("newkey"), false);
  $("key-label").focus();
}

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

export function createKeys(afterChange) {
  let revoking = null;
  const dialog = $("revoke-dialog");

  async function load() {
    const { data } = await api("/keys");
    const body = $("keys-body");
    const focused = body.contains(document.activeElement) ? document.activeElement.dataset.keyId : undefined;
    body.replaceChildren(...data.data.map((k) => keyRow(k, askRevoke)));
    if (focused) body.querySelector(`[data-key-id="${focused}"]`)?.focus(); // a refresh keeps keyboard focus
  }

  function askRevoke(key) {
    revoking = key;
    $("revoke-text").textContent =
      `Key ${key.prefix}…${key.label ? ` (“${key.label}”)` : ""} will stop working within seconds, for every ` +
      "program that uses it. This cannot be undone.";
    dialog.showModal();
  }

  $("revoke-cancel").onclick = () => dialog.close();
  $("revoke-confirm").onclick = guarded(async () => {
    dialog.close();
    const key = revoking;
    revoking = null;
    await api(`/keys/${key.id}`, { method: "DELETE" });
    announce(`Key ${key.prefix}… revoked.`);
    await afterChange();
  });
  $("key-form").onsubmit = guarded(async (event) => {
    event.preventDefault();
    const label = $("key-label").value.trim();
    const { data } = await api("/keys", { method: "POST", body: { label } });
    $("key-label").value = "";
    showNewKey(data, "Your new API key");
    await afterChange();
  });
  $("newkey-copy").onclick = copyKey;
  $("newkey-done").onclick = hideNewKey;
  return { load };
}
