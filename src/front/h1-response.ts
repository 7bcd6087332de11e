/** The response head the public front end writes (RFC 9112 §4, §6, §9): status line, fields, and the framing and connection decisions, as one pure function. */
import { Fields } from "../lib/fields.ts";
import { HOP_BY_HOP } from "../lib/http.ts";

/** Exchange is what the front end knows of the request a response answers: its method, version and whether the connection may stay open. */
export type Exchange = { readonly method: string; readonly version: "1.0" | "1.1"; readonly keepAlive: boolean };

/** BodyShape is what the response carries: nothing, bytes of known length, or a stream (of declared length when `length` is set, else unknown). */
export type BodyShape = { readonly kind: "none" } | { readonly kind: "bytes"; readonly length: number } | { readonly kind: "stream"; readonly length?: number };

/** ResponseFrame is the head to write and how the body goes after it. */
export type ResponseFrame = {
  /** head is the status line and fields, ending with the empty line. */
  readonly head: string;
  /** body: whether body bytes follow the head (not for HEAD, 1xx, 204, 304). */
  readonly body: boolean;
  /** chunked: the body is sent in chunked coding (a stream of unknown length to an HTTP/1.1 client). */
  readonly chunked: boolean;
  /** close: the connection closes after this response (asked for, HTTP/1.0 without keep-alive, or a body whose end only the close can mark). */
  readonly close: boolean;
};

const DROP = new Set([...HOP_BY_HOP, "content-length", "date"]);
const REASONS: Record<number, string> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  414: "URI Too Long",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  421: "Misdirected Request",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

let dateSecond = -1;
let dateValue = "";

/** httpDate is the Date field value for now (RFC 9110 §6.6.1), made at most once a second. */
export function httpDate(nowMs = Date.now()): string {
  const s = Math.floor(nowMs / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateValue = new Date(s * 1000).toUTCString();
  }
  return dateValue;
}

/**
 * frameResponse writes the head of a response with `status` and `headers` to exchange `x`: hop-by-hop fields, Content-Length and Date are set here, not taken
 * from the headers; a stream of unknown length is chunked for HTTP/1.1 and closes the connection for HTTP/1.0 (RFC 9112 §6.3).
 */
export function frameResponse(x: Exchange, status: number, headers: Headers | Fields, shape: BodyShape, statusText?: string): ResponseFrame {
  const noBody = status < 200 || status === 204 || status === 304;
  const head = x.method === "HEAD";
  let close = !x.keepAlive || headers.get("connection")?.toLowerCase().includes("close") === true;
  let chunked = false;
  let length: number | undefined;
  if (shape.kind === "bytes") length = shape.length;
  else if (shape.kind === "stream") {
    if (shape.length !== undefined) length = shape.length;
    else if (!noBody && !head) {
      if (x.version === "1.1") chunked = true;
      else close = true; // HTTP/1.0 has no chunked coding: the close ends the body
    }
  } else if (!noBody) length = 0;
  // A HEAD answer and a 304 describe the body a GET would get: its Content-Length is passed on when the handler gave one (RFC 9110 §8.6).
  if (head || status === 304) {
    const declared = headers.get("content-length");
    length = declared !== null && /^\d{1,15}$/.test(declared) ? Number(declared) : undefined;
  }
  let out = `HTTP/1.1 ${status} ${statusText || REASONS[status] || "Unknown"}\r\n`;
  if (headers instanceof Fields) {
    for (let i = 0; i < headers.size; i++) {
      const name = headers.nameAt(i);
      if (!DROP.has(name)) out += `${name}: ${headers.valueAt(i)}\r\n`;
    }
  } else for (const [name, value] of headers) if (!DROP.has(name)) out += `${name}: ${value}\r\n`;
  if (!noBody || status === 304) {
    if (chunked) out += "transfer-encoding: chunked\r\n";
    else if (length !== undefined) out += `content-length: ${length}\r\n`;
  }
  if (close) out += "connection: close\r\n";
  else if (x.version === "1.0") out += "connection: keep-alive\r\n";
  out += `date: ${httpDate()}\r\n\r\n`;
  return { head: out, body: !noBody && !head, chunked, close };
}

/** refusal is the whole answer of a refusal the front end makes before any route (a malformed head, a cap): plain text saying why, the connection closing. */
export function refusal(status: number, reason: string, name?: string, value?: string): string {
  const headers = Fields.from({ "content-type": "text/plain; charset=utf-8" });
  if (name !== undefined) headers.set(name, value!);
  const body = `${reason}\n`;
  return frameResponse({ method: "GET", version: "1.1", keepAlive: false }, status, headers, { kind: "bytes", length: body.length }).head + body;
}

/** chunkHead is the size line before a chunk of n bytes (RFC 9112 §7.1); the chunk ends with CRLF, and LAST_CHUNK ends the body (no trailers). */
export function chunkHead(n: number): string {
  return `${n.toString(16)}\r\n`;
}

/** LAST_CHUNK ends a chunked body: the zero-size chunk and an empty trailer section. */
export const LAST_CHUNK = "0\r\n\r\n";
