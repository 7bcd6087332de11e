/** HTTP/1.1 messages for the upstream client: what a request and a response look like to its callers, and the response head parsed and framed (RFC 9112 §4–§6) by a pure function. */
import type { CancelSignal } from "../lib/cancel.ts";
import { Fields } from "../lib/fields.ts";
import { HOP_BY_HOP, isTokenChar } from "../lib/http.ts";

/**
 * BUFFER_LIMIT: a body of declared length up to this arrives whole (one Uint8Array), larger or unknown ones as a stream. A JS stream per response costs about
 * 40% of a small request's throughput; holding the bytes costs little, bounds memory at this size per request, and lets a truncated body become a clean 502.
 */
export const BUFFER_LIMIT = 64 * 1024;
/** MAX_HEAD: a response head larger than this is a protocol error. */
export const MAX_HEAD = 64 * 1024;

/** H1Error is a failure of the exchange, with a code like the system's (ECONNREFUSED, ECONNRESET, EPROTO) for the caller's outcome accounting. */
export class H1Error extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** H1Request is what to send: the serialized head (request line and fields, ending in an empty line) and the body. */
export type H1Request = {
  readonly method: string;
  readonly head: string;
  /** body: none, whole bytes (sent with the head's Content-Length), or a stream (the head says Content-Length or chunked). */
  readonly body: Uint8Array | ReadableStream<Uint8Array> | null;
  /** chunked: the stream is sent with chunked coding (the head must say `transfer-encoding: chunked`). */
  readonly chunked: boolean;
  readonly signal: CancelSignal;
};

/** H1Response is an upstream's answer: status and fields (hop-by-hop fields already removed), and its body in one of three forms. */
export type H1Response = {
  readonly status: number;
  readonly statusText: string;
  readonly headers: Fields;
  /** kind: "none" (no body), "bytes" (whole, see bytes()), "stream" (see stream). */
  readonly kind: "none" | "bytes" | "stream";
  /** bytes resolves with the whole body of a "bytes" response. */
  bytes(): Promise<Uint8Array>;
  /** ready is the whole body of a "bytes" response when it has already arrived (usually: it came with the head), so no promise is needed. */
  ready(): Uint8Array | undefined;
  readonly stream: ReadableStream<Uint8Array> | undefined;
};

/** Frame is how a response body is delimited (RFC 9112 §6.3): none, Content-Length, chunked coding, or the connection's close. */
export type Frame = "none" | "length" | "chunked" | "close";

/** ResponseHead is a final response head: status, the fields to pass on, and how its body is framed. */
export type ResponseHead = {
  readonly status: number;
  readonly statusText: string;
  readonly headers: Fields;
  readonly frame: Frame;
  /** length is the body's length with frame "length". */
  readonly length: number;
  /** keepAlive is false when the connection cannot carry another exchange after this one. */
  readonly keepAlive: boolean;
};

/** INTERIM is parseResponseHead's answer for a 1xx head (RFC 9110 §15.2): the final one follows on the same connection. */
export const INTERIM = Symbol("interim response");

// Hop-by-hop names are recognised by length first, so that most names are never lowercased; 14 is content-length.
const HOP = new Set(HOP_BY_HOP);
const SPECIAL_LENGTHS = new Set([14, ...HOP_BY_HOP.map((n) => n.length)]);

/** digits says whether s is all ASCII digits (no regex on the hot path). */
function digits(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

const protocolError = (message: string) => new H1Error("EPROTO", message);

/**
 * parseResponseHead reads a response head (the bytes before the empty line) for a request of `method`: status line and fields (RFC 9112 §4, §5), hop-by-hop
 * fields and those Connection names dropped, and the body's framing (§6.3).
 */
export function parseResponseHead(bytes: Uint8Array, method: string): ResponseHead | typeof INTERIM | H1Error {
  const text = (bytes as Buffer).toString("latin1");
  // A value with a bare CR or LF, or a NUL, would reach the client as it is and break its framing (RFC 9110 §5.5).
  if (UNSAFE.test(text)) return protocolError("a bare CR or LF, or a NUL, in the response head");
  let nl = text.indexOf("\r\n");
  if (nl < 0) nl = text.length;
  const line = text.slice(0, nl);
  const code = line.slice(9, 12);
  if (
    !line.startsWith("HTTP/1.") ||
    line.charCodeAt(8) !== 32 ||
    code.length !== 3 ||
    !digits(code) ||
    code.charCodeAt(0) === 48 ||
    (line.length > 12 && line.charCodeAt(12) !== 32)
  ) {
    return protocolError(`bad status line ${JSON.stringify(line.slice(0, 64))}`);
  }
  const status = Number(code);
  const http10 = line.charCodeAt(7) === 48;
  const names: string[] = [];
  const values: string[] = [];
  let length = -1;
  let te: string | undefined;
  let close = http10;
  let connection: string | undefined;
  let pos = nl + 2;
  while (pos < text.length) {
    let eol = text.indexOf("\r\n", pos);
    if (eol < 0) eol = text.length;
    const colon = text.indexOf(":", pos);
    if (colon < 0 || colon > eol || colon === pos) return protocolError("malformed response field");
    const c0 = text.charCodeAt(pos);
    const cLast = text.charCodeAt(colon - 1);
    if (c0 === 32 || c0 === 9 || cLast === 32 || cLast === 9) return protocolError("whitespace in a response field name or a folded line");
    // The fields go out to the client as they are: a name that is no token would break the client's framing.
    const name = tokenName(text, pos, colon);
    if (name === undefined) return protocolError(`invalid response field name ${JSON.stringify(text.slice(pos, Math.min(colon, pos + 64)))}`);
    const value = text.slice(colon + 1, eol).trim();
    pos = eol + 2;
    if (SPECIAL_LENGTHS.has(name.length)) {
      const lower = name;
      if (lower === "content-length") {
        const n = Number(value);
        if (value.length === 0 || value.length > 15 || !digits(value) || (length >= 0 && length !== n))
          return protocolError(`bad Content-Length ${JSON.stringify(value)}`);
        length = n;
      } else if (lower === "transfer-encoding") {
        te = te === undefined ? value : `${te},${value}`;
        continue;
      } else if (lower === "connection") {
        connection = connection === undefined ? value.toLowerCase() : `${connection},${value.toLowerCase()}`;
        continue;
      } else if (HOP.has(lower)) continue;
    }
    names.push(name);
    values.push(value);
  }
  let named: string[] | undefined;
  if (connection !== undefined) {
    named = [];
    for (const t of connection.split(",")) {
      const tok = t.trim();
      if (tok === "close") close = true;
      else if (tok === "keep-alive") {
        if (http10) close = false;
      } else if (tok) named.push(tok);
    }
  }
  const chunked =
    te !== undefined &&
    te
      .slice(te.lastIndexOf(",") + 1)
      .trim()
      .toLowerCase() === "chunked";
  // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing; beside Content-Length, a likely smuggling attempt (§6.3): no reuse either way.
  if (te !== undefined && (http10 || length >= 0)) close = true;
  if (status < 200) {
    // 101 is never asked for here.
    return status === 101 ? protocolError("unexpected 101 Switching Protocols") : INTERIM;
  }
  let frame: Frame;
  if (method === "HEAD" || status === 204 || status === 304)
    frame = "none"; // a Content-Length on a HEAD answer describes the GET's body: it is passed on as it is
  else if (chunked) frame = "chunked";
  else if (te !== undefined)
    frame = "close"; // a final coding other than chunked: the body ends with the connection
  else if (length > 0) frame = "length";
  else frame = length === 0 ? "none" : "close";
  const dropLength = frame === "chunked" || (frame === "close" && te !== undefined);
  if (named === undefined && !dropLength)
    return {
      status,
      statusText: line.length > 13 ? line.slice(13) : "",
      headers: new Fields(names, values),
      frame,
      length,
      keepAlive: !close && frame !== "close",
    };
  const headers = new Fields();
  for (let i = 0; i < names.length; i++) {
    const n = names[i]!;
    if (named?.includes(n)) continue;
    if (dropLength && n === "content-length") continue;
    headers.append(n, values[i]!);
  }
  return { status, statusText: line.length > 13 ? line.slice(13) : "", headers, frame, length, keepAlive: !close && frame !== "close" };
}

/** UNSAFE finds a CR not before LF, an LF not after CR, or a NUL: none may appear in a head whose lines end with CRLF. */
const UNSAFE = /\r(?!\n)|(?<!\r)\n|\0/;

/** tokenName is text[from, to) lowercased when it is a token (RFC 9110 §5.1), else undefined: one pass, and no new string for a lowercase name. */
function tokenName(text: string, from: number, to: number): string | undefined {
  let upper = false;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (!isTokenChar(c)) return undefined;
    if (c >= 65 && c <= 90) upper = true;
  }
  const name = text.slice(from, to);
  return upper ? name.toLowerCase() : name;
}

/** abortError is the error a request ends with when its signal fires: the signal's reason when it is an Error. */
export function abortError(signal: CancelSignal): Error {
  const r = signal.reason;
  if (r instanceof Error) return r;
  const e = new Error(typeof r === "string" ? r : "aborted");
  e.name = "AbortError";
  return e;
}
