// Calls to the console's own routes: same-origin cookie session plus the page's CSRF token.
// Failures become a RequestError carrying the server's {code, message, message_zh}.
import { text } from "./text.js";

export class RequestError extends Error {
  constructor(status, { code, message, message_zh: messageZh }) {
    super(message);
    this.status = status;
    this.code = code;
    this.words = [messageZh, message];
  }
}

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

export async function requestJSON(url, options = {}) {
  let response;
  try {
    response = await fetch(url, {
      credentials: "same-origin",
      ...options,
      headers: { Accept: "application/json", "X-CSRF-Token": csrfToken(), ...options.headers },
    });
  } catch {
    const [messageZh, message] = text.network;
    throw new RequestError(0, { code: "network", message, message_zh: messageZh });
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const [messageZh, message] = text.unexpected(response.status);
    throw new RequestError(response.status, body?.message ? body : { code: `http_${response.status}`, message, message_zh: messageZh });
  }
  return body;
}
