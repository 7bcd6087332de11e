/** The request head of the public front end, parsed as strictly as RFC 9112 asks (§2–§7): request line, fields, Host, framing; one pure function, no I/O. */
import { normalizePath } from "../lib/path.ts";
import { isTokenChar, lowerName } from "../lib/http.ts";

/** RequestLimits bound a head: its request line (414 past it), the whole head and the number of fields (431 past them). */
export type RequestLimits = { readonly maxLineBytes: number; readonly maxHeadBytes: number; readonly maxFields: number };

/** DEFAULT_LIMITS are the [limits] defaults of CONTRACT.md: a 16 KiB head, an 8 KiB request line, 100 fields (nginx allows about as many). */
export const DEFAULT_LIMITS: RequestLimits = { maxLineBytes: 8 * 1024, maxHeadBytes: 16 * 1024, maxFields: 100 };

/** Framing is how a request body is delimited (RFC 9112 §6.3): none, Content-Length, or chunked coding. */
export type Framing = "none" | "length" | "chunked";

/** RequestHead is a request head that passed every check. */
export type RequestHead = {
  readonly method: string;
  /** target is the request-target as sent; path and query are its origin-form parts (an absolute-form target's too; "*" for OPTIONS *). */
  readonly target: string;
  readonly path: string;
  readonly query: string;
  /** authority is the host[:port] of an absolute-form or authority-form (CONNECT) target, which wins over Host (RFC 9112 §3.2.2). */
  readonly authority: string | undefined;
  /** host is what the request is routed by: the target's authority, else the Host field ("" when an HTTP/1.0 request has neither). */
  readonly host: string;
  readonly version: "1.0" | "1.1";
  /** fields are the header fields in order, as [lowercased name, value] pairs, the value without surrounding whitespace. */
  readonly fields: readonly (readonly [string, string])[];
  readonly framing: Framing;
  /** length is the body's length with framing "length". */
  readonly length: number;
  /** keepAlive says whether the connection may carry another request after this one (HTTP/1.1 unless `close`; HTTP/1.0 only with `keep-alive`). */
  readonly keepAlive: boolean;
  /** expectContinue: the client waits for 100 Continue before it sends the body (RFC 9110 §10.1.1). */
  readonly expectContinue: boolean;
  /** upgrade is the Upgrade field when Connection names it (a WebSocket asks this way). */
  readonly upgrade: string | undefined;
  /** headBytes is the length of the head, the empty line included: where the body (or the next request) starts. */
  readonly headBytes: number;
};

/** HeadError is a head that must be refused: the status to answer (the connection is closed after it) and why, for the log (408 is the server's, when a head is late). */
export type HeadError = { readonly status: 400 | 408 | 414 | 431 | 501 | 505; readonly reason: string };

const fail = (status: HeadError["status"], reason: string): HeadError => ({ status, reason });
const CR = 13;
const LF = 10;
/** LEADING_EMPTY_LINES: RFC 9112 §2.2 asks a server to ignore at least one empty line before a request line; a few more are tolerated, not a stream of them. */
const LEADING_EMPTY_LINES = 4;

/** isHeadError tells a refusal from a parsed head. */
export function isHeadError(r: RequestHead | HeadError | undefined): r is HeadError {
  return r !== undefined && "status" in r;
}

/**
 * parseRequestHead reads the request head at the start of buf: undefined while it is incomplete (and within the limits), a HeadError when it must be refused,
 * else the head. It looks at each byte of the head once or twice and allocates a string per field.
 */
export function parseRequestHead(buf: Uint8Array, limits: RequestLimits = DEFAULT_LIMITS): RequestHead | HeadError | undefined {
  let start = 0;
  for (let n = 0; n < LEADING_EMPTY_LINES && buf[start] === CR && buf[start + 1] === LF; n++) start += 2;
  // The head ends at the first empty line; every LF in it must follow a CR and every CR precede an LF (RFC 9112 §2.2: no bare CR or LF).
  let lineEnd = -1; // the CR ending the request line
  let prev = -1; // the CR ending the last line seen
  let end = -1; // just past the empty line
  const scan = Math.min(buf.length, start + limits.maxHeadBytes + 4);
  for (let i = start; i < scan; i++) {
    const c = buf[i]!;
    if (c === LF) return fail(400, "a line ends with LF alone (CRLF is required)");
    if (c !== CR) continue;
    if (i + 1 >= buf.length) break; // its LF has not arrived yet
    if (buf[i + 1] !== LF) return fail(400, "a bare CR in the head");
    if (lineEnd < 0) lineEnd = i;
    else if (i === prev + 2) {
      end = i + 2;
      break;
    }
    prev = i;
    i++;
  }
  if (lineEnd < 0) {
    if (Math.min(buf.length, scan) - start > limits.maxLineBytes) return fail(414, `request line over ${limits.maxLineBytes} bytes`);
  } else if (lineEnd - start > limits.maxLineBytes) return fail(414, `request line over ${limits.maxLineBytes} bytes`);
  if (end < 0) return buf.length - start > limits.maxHeadBytes ? fail(431, `request head over ${limits.maxHeadBytes} bytes`) : undefined;
  if (end - start > limits.maxHeadBytes + 4) return fail(431, `request head over ${limits.maxHeadBytes} bytes`);
  const text = Buffer.from(buf.buffer, buf.byteOffset + start, end - start - 4).toString("latin1");
  const line = requestLine(text.slice(0, lineEnd - start));
  if ("status" in line) return line;
  return fields(text, lineEnd - start + 2, line, end, limits);
}

type Line = { readonly method: string; readonly target: string; readonly version: "1.0" | "1.1" };

/** requestLine checks method SP request-target SP HTTP-version (RFC 9112 §3): single spaces, a token method, a target of visible characters. */
function requestLine(line: string): Line | HeadError {
  const sp1 = line.indexOf(" ");
  const sp2 = sp1 < 0 ? -1 : line.indexOf(" ", sp1 + 1);
  if (sp1 <= 0 || sp2 < 0 || line.indexOf(" ", sp2 + 1) >= 0) return fail(400, "the request line is not method, target and version separated by single spaces");
  const method = line.slice(0, sp1);
  for (let i = 0; i < method.length; i++) if (!isTokenChar(method.charCodeAt(i))) return fail(400, "the method is not a token");
  const target = line.slice(sp1 + 1, sp2);
  if (target.length === 0) return fail(400, "an empty request target");
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return fail(400, "the request target has a character that must be percent-encoded");
  }
  const version = line.slice(sp2 + 1);
  if (version === "HTTP/1.1") return { method, target, version: "1.1" };
  if (version === "HTTP/1.0") return { method, target, version: "1.0" };
  if (/^HTTP\/\d\.\d$/.test(version)) return fail(505, `${version} is not supported (HTTP/1.0 and HTTP/1.1 are)`);
  return fail(400, "the request line does not end with an HTTP version");
}

type Target = { readonly path: string; readonly query: string; readonly authority: string | undefined };

/** splitTarget reads the four forms of request-target (RFC 9112 §3.2): origin, absolute (http and https), authority (CONNECT only), asterisk (OPTIONS only). */
function splitTarget(method: string, target: string): Target | HeadError {
  if (target.includes("#")) return fail(400, "a fragment in the request target");
  if (method === "CONNECT") {
    if (target.startsWith("/") || target.includes("/") || target.includes("@")) return fail(400, "CONNECT needs a host:port target");
    return { path: "", query: "", authority: target };
  }
  if (target === "*") return method === "OPTIONS" ? { path: "*", query: "", authority: undefined } : fail(400, "the * target is for OPTIONS only");
  let rest = target;
  let authority: string | undefined;
  if (target.charCodeAt(0) !== 47 /* / */) {
    const scheme = /^https?:\/\//i.exec(target);
    if (scheme === null) return fail(400, "the request target is neither a path nor an http(s) URL");
    const after = target.slice(scheme[0].length);
    let cut = after.length;
    for (let i = 0; i < after.length; i++) {
      const c = after.charCodeAt(i);
      if (c === 47 || c === 63) {
        cut = i;
        break;
      }
    }
    authority = after.slice(0, cut);
    // RFC 9110 §4.2.4: userinfo in an http(s) URI is an error; an empty host is invalid (§4.2.1).
    if (authority.length === 0 || authority.includes("@")) return fail(400, "the absolute-form target has no host, or has userinfo");
    rest = after.slice(cut);
    if (rest.charCodeAt(0) !== 47) rest = `/${rest}`;
  }
  const q = rest.indexOf("?");
  // What is routed, judged by policy and forwarded is the path in normal form (lib/path.ts): `/s/../admin` and `/%61dmin` are `/admin`.
  const path = normalizePath(q < 0 ? rest : rest.slice(0, q));
  if (path === null) return fail(400, "the path has an encoded slash, backslash or NUL, or a broken percent-encoding");
  return { path, query: q < 0 ? "" : rest.slice(q), authority };
}

/** fields parses the field lines after the request line and decides Host, framing and the connection's fate (RFC 9112 §5, §6, §9.3). */
function fields(text: string, pos: number, line: Line, headBytes: number, limits: RequestLimits): RequestHead | HeadError {
  const target = splitTarget(line.method, line.target);
  if ("status" in target) return target;
  const out: (readonly [string, string])[] = [];
  let host: string | undefined;
  let hosts = 0;
  let length = -1;
  let te: string | undefined;
  let connection = "";
  let upgrade: string | undefined;
  let expectContinue = false;
  while (pos < text.length) {
    let eol = text.indexOf("\r\n", pos);
    if (eol < 0) eol = text.length;
    if (out.length >= limits.maxFields) return fail(431, `more than ${limits.maxFields} header fields`);
    const first = text.charCodeAt(pos);
    if (first === 32 || first === 9) return fail(400, "a folded header line (obs-fold)");
    const colon = text.indexOf(":", pos);
    if (colon < 0 || colon > eol) return fail(400, "a header line without a colon");
    if (colon === pos) return fail(400, "a header field with an empty name");
    for (let i = pos; i < colon; i++) {
      const c = text.charCodeAt(i);
      if (isTokenChar(c)) continue;
      return fail(400, c === 32 || c === 9 ? "whitespace before the colon of a header field" : "a header field name that is not a token");
    }
    let vs = colon + 1;
    let ve = eol;
    while (vs < ve && (text.charCodeAt(vs) === 32 || text.charCodeAt(vs) === 9)) vs++;
    while (ve > vs && (text.charCodeAt(ve - 1) === 32 || text.charCodeAt(ve - 1) === 9)) ve--;
    for (let i = vs; i < ve; i++) {
      const c = text.charCodeAt(i);
      if ((c < 0x20 && c !== 9) || c === 0x7f) return fail(400, c === 0 ? "a NUL in a header field" : "a control character in a header field");
    }
    const name = lowerName(text.slice(pos, colon));
    const value = text.slice(vs, ve);
    pos = eol + 2;
    switch (name) {
      case "host":
        hosts++;
        host = value;
        break;
      case "content-length": {
        const n = contentLength(value);
        if (n < 0 || (length >= 0 && n !== length)) return fail(400, `an invalid or conflicting Content-Length ${JSON.stringify(value.slice(0, 40))}`);
        length = n;
        break;
      }
      case "transfer-encoding":
        te = te === undefined ? value : `${te},${value}`;
        break;
      case "connection":
        connection = connection === "" ? value.toLowerCase() : `${connection},${value.toLowerCase()}`;
        break;
      case "upgrade":
        upgrade = value;
        break;
      case "expect":
        if (value.toLowerCase() === "100-continue") expectContinue = true;
        break;
    }
    out.push([name, value]);
  }
  // RFC 9112 §3.2: exactly one Host in HTTP/1.1; an absolute-form authority wins, and a Host that names another authority is refused here.
  if (hosts > 1) return fail(400, "more than one Host field");
  if (hosts === 0 && line.version === "1.1") return fail(400, "an HTTP/1.1 request without Host");
  if (target.authority !== undefined && host !== undefined && line.method !== "CONNECT" && host.toLowerCase() !== target.authority.toLowerCase()) {
    return fail(400, "the Host field names another authority than the absolute-form target");
  }
  let framing: Framing = length >= 0 ? "length" : "none";
  if (te !== undefined) {
    // RFC 9112 §6.1: only chunked is understood (501 for other codings); with Content-Length, or in HTTP/1.0, the framing is ambiguous (§6.3): refused.
    const codings = te.split(",").map((c) => c.trim().toLowerCase());
    if (codings.some((c) => c !== "chunked")) return fail(501, `the transfer coding ${JSON.stringify(te.slice(0, 40))} is not supported (only chunked is)`);
    if (codings.length !== 1) return fail(400, "chunked applied more than once");
    if (length >= 0) return fail(400, "both Content-Length and Transfer-Encoding");
    if (line.version === "1.0") return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    framing = "chunked";
  }
  const tokens = connection === "" ? [] : connection.split(",").map((t) => t.trim());
  const keepAlive = line.version === "1.1" ? !tokens.includes("close") : tokens.includes("keep-alive");
  return {
    method: line.method,
    target: line.target,
    path: target.path,
    query: target.query,
    authority: target.authority,
    host: target.authority ?? host ?? "",
    version: line.version,
    fields: out,
    framing: framing === "length" && length === 0 ? "none" : framing,
    length: Math.max(0, length),
    keepAlive,
    expectContinue,
    upgrade: upgrade !== undefined && tokens.includes("upgrade") ? upgrade : undefined,
    headBytes,
  };
}

/** contentLength reads 1*DIGIT, or a list of identical ones (RFC 9112 §6.3 item 5: "42, 42"); -1 when invalid or beyond 2^53. */
function contentLength(value: string): number {
  let n = -1;
  for (const part of value.split(",")) {
    const v = part.trim();
    if (v.length === 0 || v.length > 15) return -1;
    for (let i = 0; i < v.length; i++) {
      const c = v.charCodeAt(i);
      if (c < 48 || c > 57) return -1;
    }
    const m = Number(v);
    if (n >= 0 && m !== n) return -1;
    n = m;
  }
  return n;
}
