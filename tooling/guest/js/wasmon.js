// wasmon: helpers for wasmon plugins written in JavaScript (QuickJS engine).
//
//     import { http } from 'wasmon';
//     const r = http.postJson(config.url, { text: 'disk full' });
//     if (!r.ok) throw { tag: 'retryable', val: `hook answered ${r.status}` };
//
// `wasmon plugin build` provides this module; it ships inside the `wasmon`
// binary, so it always matches the agent it was built with. Requests are
// synchronous: the QuickJS engine runs a plugin's exports without an event
// loop, so there is no `fetch`, no `await` and no timers.
//
// Every request goes through the agent, which lets it out only to the hosts
// in the plugin instance's `allow_hosts`; any other host throws an
// `HttpError` whose `code` is 'HTTP-request-denied'. The host does TLS for
// https:// URLs. Bodies are sent with a Content-Length.
//
// The wasi:http version below is the build's label (see tooling/src/js.rs
// in the wasmon repository); the finished component imports a 0.2 release.
import * as types from 'wasi:http/types@{{WASI_VERSION}}';
import { handle } from 'wasi:http/outgoing-handler@{{WASI_VERSION}}';

// The most a response body may be before the request fails (the
// instance's memory_limit bounds the plugin anyway; this names the problem).
const MAX_BODY = 16 * 1024 * 1024;

const METHODS = ['get', 'head', 'post', 'put', 'delete', 'connect', 'options', 'trace', 'patch'];

/** A request that got no HTTP response: denied, refused, timed out, bad URL. */
export class HttpError extends Error {
  constructor(message, code) {
    super(message);
    this.name = 'HttpError';
    /** The wasi:http error code ('HTTP-request-denied', 'connection-refused', ...) or undefined. */
    this.code = code;
  }
}

/** UTF-8 only; QuickJS has no TextEncoder of its own. */
export function utf8Encode(s) {
  const out = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c < 0xe000) c = 0xfffd; // a lone surrogate
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

/** UTF-8 only; malformed sequences become U+FFFD. */
export function utf8Decode(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    let c = 0xfffd;
    let n = 1;
    if (b < 0x80) c = b;
    else if (b >= 0xc2 && b < 0xe0 && cont(bytes, i, 1)) { c = ((b & 31) << 6) | (bytes[i + 1] & 63); n = 2; }
    else if (b >= 0xe0 && b < 0xf0 && cont(bytes, i, 2)) {
      c = ((b & 15) << 12) | ((bytes[i + 1] & 63) << 6) | (bytes[i + 2] & 63);
      n = 3;
      if (c < 0x800 || (c >= 0xd800 && c < 0xe000)) c = 0xfffd;
    } else if (b >= 0xf0 && b < 0xf5 && cont(bytes, i, 3)) {
      c = ((b & 7) << 18) | ((bytes[i + 1] & 63) << 12) | ((bytes[i + 2] & 63) << 6) | (bytes[i + 3] & 63);
      n = 4;
      if (c < 0x10000 || c > 0x10ffff) c = 0xfffd;
    }
    s += String.fromCodePoint(c);
    i += n;
  }
  return s;
}

function cont(bytes, i, count) {
  for (let k = 1; k <= count; k++) {
    if (i + k >= bytes.length || (bytes[i + k] & 0xc0) !== 0x80) return false;
  }
  return true;
}

/** A response: status, headers ([name, value] pairs, names lowercase), body (Uint8Array). */
export class Response {
  constructor(status, headers, body) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }
  get ok() {
    return this.status >= 200 && this.status < 300;
  }
  header(name) {
    const lower = name.toLowerCase();
    const found = this.headers.find(([k]) => k === lower);
    return found === undefined ? undefined : found[1];
  }
  text() {
    return utf8Decode(this.body);
  }
  json() {
    return JSON.parse(this.text());
  }
  /**
   * The Alertmanager rule for this status, as a failure to throw: undefined
   * for 2xx, retryable for 429 and 5xx, permanent for anything else. The
   * message has the start of the body (services say there why they refuse).
   */
  failure() {
    if (this.ok) return undefined;
    const retry = this.status === 429 || (this.status >= 500 && this.status <= 599);
    const body = this.text().trim().slice(0, 200);
    return { tag: retry ? 'retryable' : 'permanent', val: `HTTP ${this.status}${body ? `: ${body}` : ''}` };
  }
}

/** A label list ([{ name, value }]) as an object; the last of equal names wins. */
export function labels(list) {
  const out = {};
  for (const { name, value } of list) out[name] = value;
  return out;
}

/**
 * The Alertmanager webhook v4 JSON of a notification: what Alertmanager's
 * webhook_config POSTs, so anything built for Alertmanager understands it.
 */
export function webhookV4(n) {
  return {
    version: '4',
    groupKey: n.groupKey,
    truncatedAlerts: n.truncatedAlerts,
    status: n.status,
    receiver: n.receiver,
    groupLabels: labels(n.groupLabels),
    commonLabels: labels(n.commonLabels),
    commonAnnotations: labels(n.commonAnnotations),
    externalURL: n.externalUrl,
    alerts: n.alerts.map((a) => ({
      status: a.status,
      labels: labels(a.labels),
      annotations: labels(a.annotations),
      startsAt: a.startsAt,
      endsAt: a.endsAt,
      generatorURL: a.generatorUrl,
      fingerprint: a.fingerprint,
    })),
  };
}

function split(url) {
  const m = /^(https?):\/\/([^/?#]*)([^#]*)/i.exec(String(url));
  if (m === null) {
    throw new HttpError(`${url}: only http:// and https:// URLs are supported`, 'HTTP-request-URI-invalid');
  }
  if (m[2] === '' || m[2].includes('@')) {
    throw new HttpError(`${url}: the URL needs a host (and no user:password@; send credentials in a header)`, 'HTTP-request-URI-invalid');
  }
  let path = m[3] === '' ? '/' : m[3];
  if (path[0] === '?') path = '/' + path;
  return { scheme: m[1].toLowerCase(), authority: m[2], path };
}

/** Headers as [name, value] pairs, from an object or a list of pairs. */
function headerPairs(headers) {
  if (headers === undefined || headers === null) return [];
  return Array.isArray(headers) ? headers : Object.entries(headers);
}

function drop(resource) {
  if (resource !== undefined && resource !== null && typeof resource[Symbol.dispose] === 'function') {
    resource[Symbol.dispose]();
  }
}

function tagOf(value) {
  return value !== null && typeof value === 'object' && 'tag' in value ? value.tag : undefined;
}

function describe(code, authority) {
  const tag = tagOf(code);
  if (tag === 'HTTP-request-denied') {
    return `HTTP-request-denied: ${authority} is not in this plugin instance's allow_hosts`;
  }
  if (tag === undefined) return 'the request failed';
  return code.val === undefined || code.val === null ? tag : `${tag} (${JSON.stringify(code.val)})`;
}

/**
 * Sends one request and reads the whole response.
 * options: { method = 'GET', headers = {} or [[name, value]], body (string | Uint8Array),
 * timeoutMs (for connecting and for the first response byte; none when absent or 0) }
 * Throws HttpError when no response arrives; an HTTP error status is a Response.
 */
export function request(url, options = {}) {
  const method = String(options.method ?? 'GET').toUpperCase();
  const where = `${method} ${url}`;
  const { scheme, authority, path } = split(url);
  let body = options.body;
  if (typeof body === 'string') body = utf8Encode(body);
  if (body !== undefined && body !== null && !(body instanceof Uint8Array)) {
    throw new TypeError(`${where}: body must be a string or a Uint8Array`);
  }

  const entries = [];
  for (const [name, value] of headerPairs(options.headers)) {
    const lower = String(name).toLowerCase();
    if (lower === 'content-length') continue; // set from the body below
    entries.push([lower, utf8Encode(String(value))]);
  }
  if (body) entries.push(['content-length', utf8Encode(String(body.length))]);
  let fields;
  try {
    fields = types.Fields.fromList(entries);
  } catch (e) {
    throw new HttpError(`${where}: a header was refused (${tagOf(e.payload) ?? e}): the host sets host, connection, transfer-encoding and the like itself`, 'header-error');
  }

  const req = new types.OutgoingRequest(fields);
  const lower = method.toLowerCase();
  req.setMethod(METHODS.includes(lower) ? { tag: lower } : { tag: 'other', val: method });
  req.setScheme({ tag: scheme === 'https' ? 'HTTPS' : 'HTTP' });
  req.setAuthority(authority);
  req.setPathWithQuery(path);
  const outgoing = req.body();

  let opts;
  if (options.timeoutMs > 0) {
    opts = new types.RequestOptions();
    // u64 nanoseconds: QuickJS passes 64-bit integers as numbers.
    const nanos = Math.round(options.timeoutMs) * 1e6;
    opts.setConnectTimeout(nanos);
    opts.setFirstByteTimeout(nanos);
  }

  const future = handle(req, opts);
  let writeError;
  try {
    const stream = outgoing.write();
    try {
      if (body) {
        for (let i = 0; i < body.length; i += 4096) {
          stream.blockingWriteAndFlush(body.subarray(i, i + 4096));
        }
      }
    } finally {
      drop(stream);
    }
    types.OutgoingBody.finish(outgoing, undefined);
  } catch (e) {
    // The host may have failed the request already (denied, refused): the
    // response future says why, better than the stream does.
    writeError = e;
  }

  let got;
  for (;;) {
    got = future.get();
    if (got !== undefined && got !== null) break;
    const ready = future.subscribe();
    ready.block();
    drop(ready);
  }
  drop(future);
  if (got.tag !== 'ok' || got.val.tag !== 'ok') {
    const code = got.tag === 'ok' ? got.val.val : undefined;
    throw new HttpError(`${where}: ${describe(code, authority)}`, tagOf(code));
  }
  if (writeError !== undefined) {
    throw new HttpError(`${where}: sending the body failed (${tagOf(writeError.payload) ?? writeError})`);
  }

  const response = got.val.val;
  const status = response.status();
  const headerFields = response.headers();
  const headers = headerFields.entries().map(([k, v]) => [k.toLowerCase(), utf8Decode(v)]);
  drop(headerFields);
  const incoming = response.consume();
  const stream = incoming.stream();
  const chunks = [];
  let size = 0;
  try {
    for (;;) {
      let chunk;
      try {
        chunk = stream.blockingRead(65536);
      } catch (e) {
        if (tagOf(e.payload) === 'closed') break;
        throw new HttpError(`${where}: reading the response failed (${tagOf(e.payload) ?? e})`);
      }
      size += chunk.length;
      if (size > MAX_BODY) throw new HttpError(`${where}: response body over ${MAX_BODY} bytes`);
      chunks.push(chunk);
    }
  } finally {
    drop(stream);
  }
  drop(types.IncomingBody.finish(incoming));
  drop(response);
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new Response(status, headers, all);
}

export const http = {
  request,
  get: (url, options = {}) => request(url, { ...options, method: 'GET' }),
  post: (url, body, options = {}) => request(url, { ...options, method: 'POST', body }),
  /** POSTs value as JSON (Content-Type: application/json). */
  postJson: (url, value, options = {}) => {
    const headers = [...headerPairs(options.headers)];
    if (!headers.some(([k]) => String(k).toLowerCase() === 'content-type')) {
      headers.unshift(['content-type', 'application/json']);
    }
    return request(url, { ...options, method: 'POST', headers, body: JSON.stringify(value) });
  },
};

export default http;
