// Talking to the server: the bearer token (kept in sessionStorage, so it ends with the tab), one
// fetch wrapper that sends it on every /api/ request and returns to the login form on a 401, the
// Server-Sent Events reader for the alert stream (fetch, because EventSource cannot send a header),
// and issue steps (through the issue events endpoint, or as the sync mutation any device pushes).

const TOKEN_KEY = 'rc.token';
const USER_KEY = 'rc.user';

let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export function setUnauthorizedHandler(f) {
  onUnauthorized = f;
}

export function session() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  let user = null;
  try {
    user = JSON.parse(sessionStorage.getItem(USER_KEY) || 'null');
  } catch {
    user = null;
  }
  return token && user ? { token, user } : null;
}

export function clearSession() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
}

export async function login(username, password) {
  const res = await fetch('/api/v1/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password, device_name: `dashboard (${navigator.platform || 'browser'})` }),
  });
  if (!res.ok) {
    const err = await errorOf(res);
    throw err;
  }
  const body = await res.json();
  sessionStorage.setItem(TOKEN_KEY, body.token);
  sessionStorage.setItem(USER_KEY, JSON.stringify(body.user));
  return body.user;
}

async function errorOf(res) {
  let e = {};
  try {
    e = (await res.json()).error || {};
  } catch {
    e = {};
  }
  return new ApiError(res.status, e.code, e.message, e.field);
}

/** The raw response of an authenticated request (401 ends the session). */
export async function request(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const s = session();
  if (!s) {
    onUnauthorized();
    throw new ApiError(401, 'unauthorized', 'not logged in');
  }
  const h = { ...headers, Authorization: `Bearer ${s.token}` };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: 'no-store',
  });
  if (res.status === 401) {
    onUnauthorized();
    throw new ApiError(401, 'unauthorized', 'session expired');
  }
  return res;
}

/** JSON of an authenticated request; a non-2xx answer throws an ApiError. */
export async function api(path, opts) {
  const res = await request(path, opts);
  if (!res.ok) throw await errorOf(res);
  return res.status === 204 ? null : res.json();
}

/** Like `api`, but an endpoint this server does not have (404) gives `null`. */
export async function optional(path, opts) {
  const res = await request(path, opts);
  if (res.status === 404) return null;
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

/** A photo's bytes as a blob URL (an <img> cannot send the token). The caller revokes it. */
export async function photoUrl(sha256) {
  const res = await request(`/api/v1/photos/${encodeURIComponent(sha256)}`);
  if (!res.ok) throw await errorOf(res);
  return URL.createObjectURL(await res.blob());
}

/** A UUIDv7 (the server wants device-made ids to be v7): 48 bits of milliseconds, then random. */
export function uuidv7() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  let ms = Date.now();
  for (let i = 5; i >= 0; i--) {
    b[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** This browser as a device: an id kept in localStorage and its own mutation sequence. */
function device() {
  let id = localStorage.getItem('rc.device');
  if (!id) {
    id = uuidv7();
    localStorage.setItem('rc.device', id);
  }
  const seq = Number(localStorage.getItem('rc.device_seq') || '0') + 1;
  localStorage.setItem('rc.device_seq', String(seq));
  return { id, seq };
}

// Whether this server takes issue steps at `POST /api/v1/issues/{id}/events` (answered at once, 409
// for a step the status does not allow). Older servers only know the `issue.event` mutation.
let eventsEndpoint = true;

/**
 * Adds an event to an issue (accept, dispatch, verify, reject, comment...). Resolves when the server
 * has taken it; a refusal throws an ApiError with the server's reason.
 */
export async function issueEvent(issueId, kind, { note, assignee } = {}) {
  const data = { event_id: uuidv7(), kind };
  if (note) data.note = note;
  if (assignee) data.assignee = assignee;
  if (eventsEndpoint) {
    const res = await request(`/api/v1/issues/${encodeURIComponent(issueId)}/events`, { method: 'POST', body: data });
    if (res.ok) return res.json();
    const err = await errorOf(res);
    if (!(res.status === 404 && /no such endpoint/.test(err.message)) && res.status !== 405) throw err;
    eventsEndpoint = false;
  }
  const d = device();
  const mutation = {
    id: uuidv7(), device_seq: d.seq, type: 'issue.event', at: new Date().toISOString(), data: { ...data, issue_id: issueId },
  };
  const body = await api('/api/v1/sync/push', { method: 'POST', body: { device_id: d.id, mutations: [mutation] } });
  const r = body.results && body.results[0];
  if (!r || r.status === 'rejected') {
    const e = (r && r.error) || {};
    throw new ApiError(422, e.code, e.message || 'rejected', e.field);
  }
  return r;
}

/**
 * Reads a Server-Sent Events stream with fetch (so that it carries the token), calling
 * `onEvent({id, event, data})` per event and `onState(live)` when the connection opens or drops.
 * Reconnects with `Last-Event-ID`, backing off to 30 s. Resolves `false` at once if the server has no
 * such stream (a 4xx other than 401 and 429), and `true` when `signal` aborts.
 */
export async function readEventStream(path, { onEvent, onState, signal }) {
  let lastId = null;
  let backoff = 1000;
  while (!signal.aborted) {
    try {
      const headers = { Accept: 'text/event-stream' };
      if (lastId) headers['Last-Event-ID'] = lastId;
      const res = await request(path, { headers, signal });
      // A server without the stream (404, or an older route answering 400/405): poll instead.
      if (res.status >= 400 && res.status < 500 && res.status !== 429) return false;
      if (!res.ok || !res.body) throw new ApiError(res.status, 'stream', `stream answered ${res.status}`);
      backoff = 1000;
      onState(true);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        buf = buf.replace(/\r\n|\r(?=.)/g, '\n');
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const ev = parseEvent(block);
          if (ev.id !== undefined) lastId = ev.id;
          if (ev.data !== undefined) onEvent(ev);
        }
      }
    } catch (e) {
      if (signal.aborted) return true;
      if (e instanceof ApiError && e.status === 401) return true;
    }
    onState(false);
    await new Promise((resolve) => setTimeout(resolve, backoff));
    backoff = Math.min(backoff * 2, 30000);
  }
  return true;
}

/** One SSE block: `id`, `event` (default "message") and the `data` lines joined. */
export function parseEvent(block) {
  const ev = { event: 'message' };
  const data = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'id') ev.id = value;
    else if (field === 'event') ev.event = value;
  }
  if (data.length) ev.data = data.join('\n');
  return ev;
}
