// The page reads the /v1 API only, through get(): the tenant goes in the Waymark-Tenant
// header (none when the field is empty: a credential that holds one tenant needs none), the
// key or token as "Authorization: Bearer", kept in sessionStorage for this tab only.

const TOKEN = "waymark-token";

export function token() {
  return sessionStorage.getItem(TOKEN) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN, value);
  else sessionStorage.removeItem(TOKEN);
}

/** A refusal the reader can act on: 401 (sign in) or 403 (not allowed). */
export class AuthError extends Error {
  constructor(status, detail) {
    const what =
      status === 401
        ? "Sign in: the server needs an API key or token, and "
          + (token() ? "the one given was not accepted" : "none was given")
        : "The key or token given may not read this"
          + " (it lacks the reader role, this tenant or this dataset)";
    super(what + (detail ? ": " + detail : "") + " (" + status + ")");
    this.status = status;
  }
}

let tenantOf = () => "";

/** Where get() reads the tenant from (the tenant field). */
export function useTenant(read) {
  tenantOf = read;
}

/** The headers of a request for ``accept``: the tenant and the credential. */
export function headersFor(accept) {
  const headers = { Accept: accept };
  const tenant = tenantOf();
  if (tenant) headers["Waymark-Tenant"] = tenant;
  if (token()) headers.Authorization = "Bearer " + token();
  return headers;
}

/** A /v1 URL. */
export function v1(path, query) {
  return "/v1/" + path + (query ? "?" + new URLSearchParams(query) : "");
}

/** GET a /v1 path; its JSON, or null for 404. Throws AuthError on 401/403, Error else. */
export async function get(path, query) {
  const response = await fetch(v1(path, query), { headers: headersFor("application/json") });
  if (response.status === 404) return null;
  return answerOf(response);
}

/** An answer's JSON; AuthError on 401/403, Error on any other failure. */
export async function answerOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const detail = body && typeof body.detail === "string" ? body.detail : "";
  if (response.status === 401 || response.status === 403) {
    throw new AuthError(response.status, detail);
  }
  if (!response.ok) throw new Error(detail || response.status + " " + response.statusText);
  return body;
}

export function tracePath(traceId, suffix) {
  return "traces/" + encodeURIComponent(traceId) + (suffix || "");
}
