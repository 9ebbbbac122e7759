// REST and commands of the runtime (docs/protocol.md §8, §3, §4).
//
// The server is the origin that served this module, so a console opened through a
// page on another origin still talks to its own runtime. The bearer token lives in
// sessionStorage only (per tab, gone when the tab closes) and is sent as a header;
// only EventSource, which cannot send headers, gets it as ?access_token.

const TOKEN_KEY = "agent-runtime.token";

export const SERVER = new URL(import.meta.url).origin;

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

/** Forget the token and everything cached under it (event logs of its sessions). */
export function clearToken() {
  for (const key of Object.keys(sessionStorage)) {
    if (key.startsWith("agent-runtime.")) sessionStorage.removeItem(key);
  }
}

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/** A fresh command id (works outside secure contexts, unlike crypto.randomUUID). */
export function newId(prefix = "web") {
  const bytes = new Uint8Array(9);
  crypto.getRandomValues(bytes);
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(SERVER + path, init);
  } catch (error) {
    throw new ApiError(0, "network", `cannot reach ${SERVER}: ${error.message}`, null);
  }
  let json = null;
  const text = await response.text();
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!response.ok) {
    const error = (json && json.error) || {};
    throw new ApiError(
      response.status,
      error.code || "http_error",
      error.message || `${method} ${path}: HTTP ${response.status}`,
      json,
    );
  }
  return json;
}

const sid = (id) => encodeURIComponent(id);

export const api = {
  agents: () => request("GET", "/v1/agents"),
  models: () => request("GET", "/v1/models"),
  sessions: (limit = 20, cursor = null) =>
    request(
      "GET",
      `/v1/sessions?limit=${limit}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""),
    ),
  createSession: (body = {}) => request("POST", "/v1/sessions", body),
  session: (id) => request("GET", `/v1/sessions/${sid(id)}`),
  approvals: (id) => request("GET", `/v1/sessions/${sid(id)}/approvals`),
  events: (id, after = 0, limit = 1000) =>
    request("GET", `/v1/sessions/${sid(id)}/events?after=${after}&limit=${limit}`),
  /** Sends one command; resolves to its ack (a rejected ack throws an ApiError with .body.ack). */
  command: (id, command) =>
    request("POST", `/v1/sessions/${sid(id)}/commands`, { id: newId(command.type), ...command }),
};

/** The SSE URL of a session's events after *after* (the token as EventSource needs it). */
export function eventsUrl(id, after) {
  const token = encodeURIComponent(getToken() || "");
  return `${SERVER}/v1/sessions/${sid(id)}/events?stream=1&after=${after}&access_token=${token}`;
}
