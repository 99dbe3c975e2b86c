// The sidecar API from the page: same-origin JSON fetches, errors as ApiError (status, code, message, retry).

const BASE = "/api/v1";

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {number | null} [retryAfter]
   */
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status; // 0: the gateway could not be reached at all
    this.code = code;
    this.retryAfter = retryAfter; // seconds, from Retry-After on 429/503
  }
}

/** @param {Response} response */
function retryAfterOf(response) {
  const seconds = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}

/**
 * `{status, data}` of a call to `path` under /api/v1; throws ApiError unless it answered 2xx. `data` is the
 * JSON the endpoint documents (see /api/v1/openapi.json), read by the caller.
 * @param {string} path
 * @param {{ method?: string, body?: unknown }} [request]
 * @returns {Promise<{ status: number, data: any }>}
 */
export async function api(path, { method = "GET", body } = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  /** @type {RequestInit} */
  const init = { method, credentials: "same-origin", cache: "no-store", headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(BASE + path, init);
  } catch {
    throw new ApiError(0, "unreachable", "the gateway could not be reached");
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(
      response.status, error.code ?? `http_${response.status}`, error.message ?? response.statusText,
      retryAfterOf(response),
    );
  }
  return { status: response.status, data };
}
