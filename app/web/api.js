// Calls to this gateway: the API key from the browser's storage, errors from the
// OpenAI envelope {"error": {"message", "type", "param", "code"}}.

const KEY_STORAGE = "orpheus-gateway.api-key";

export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled (private mode, policies): the page still works without a key
  }
}

export function setApiKey(value) {
  try {
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Nothing to do: without storage the key lasts only as long as the page.
  }
}

export class ApiError extends Error {
  constructor(message, { status = 0, code = null, type = null, requestId = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.type = type;
    this.requestId = requestId;
  }
}

export async function errorOf(response) {
  let message = `HTTP ${response.status} ${response.statusText}`.trim();
  let code = null;
  let type = null;
  try {
    const body = await response.json();
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code || null;
      type = body.error.type || null;
    }
  } catch {
    // Not JSON (a proxy's page): the status line is all there is.
  }
  return new ApiError(message, {
    status: response.status,
    code,
    type,
    requestId: response.headers.get("X-Request-ID"),
  });
}

// fetch() with the key; a non-2xx answer is thrown as an ApiError.
export async function apiFetch(path, init = {}) {
  const headers = new Headers(init.headers || {});
  const key = apiKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  let response;
  try {
    response = await fetch(path, { ...init, headers });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`The gateway could not be reached: ${err.message}`, { code: "network_error" });
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function getJson(path, init = {}) {
  const response = await apiFetch(path, init);
  return response.json();
}

// Body of a synthesis request from form values: empty fields are left to the gateway.
export function compact(fields) {
  const out = {};
  for (const [name, value] of Object.entries(fields)) {
    if (value !== "" && value !== null && value !== undefined && !Number.isNaN(value)) {
      out[name] = value;
    }
  }
  return out;
}

export function numberOrNull(input) {
  const text = input.value.trim();
  return text === "" ? null : Number(text);
}

export function randomSeed() {
  const buffer = new Uint32Array(1);
  crypto.getRandomValues(buffer);
  return buffer[0] & 0x7fffffff;
}

export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The download has taken its copy by the next tasks; a minute is generous.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export function showStatus(element, text, kind = "info") {
  element.textContent = text;
  element.dataset.kind = kind;
}

export function formatMs(seconds) {
  return seconds == null ? "–" : `${Math.round(seconds * 1000)} ms`;
}

export function formatSeconds(seconds) {
  return seconds == null ? "–" : `${seconds.toFixed(2)} s`;
}
