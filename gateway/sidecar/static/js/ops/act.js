// Operator actions: POST with an idempotency reference that is kept until the action is answered, so a retry
// (a double click, a dropped connection) is the same request and the gateway does it once.

import { api, ApiError } from "../api.js";

/**
 * @typedef {{ id: number, created_at: string, operator_wallet: string, action: string, reference: string,
 *   account_id: number | null, key_id: number | null, params: Record<string, any>, reason: string,
 *   result: Record<string, any>, replayed: boolean }} AuditEntry what an action answers, a row of GET /ops/audit
 */

/** @type {Map<string, string>} */
const pending = new Map(); // what the action is about -> its reference

/**
 * POST `body` + {reference} to /ops`path`; `what` names the action and its target (one reference each).
 * @param {string} what
 * @param {string} path
 * @param {Record<string, unknown>} body
 * @returns {Promise<AuditEntry>}
 */
export async function act(what, path, body) {
  if (!pending.has(what)) pending.set(what, `ops-${crypto.randomUUID()}`);
  try {
    const { data } = await api(`/ops${path}`, { method: "POST", body: { ...body, reference: pending.get(what) } });
    pending.delete(what);
    return data;
  } catch (error) {
    // answered (a refusal): a new attempt is a new request; unreachable or 5xx: retry with the same reference
    if (error instanceof ApiError && error.status >= 400 && error.status < 500) pending.delete(what);
    throw error;
  }
}
