/** Writing a pipeline's answer (a Reply or a Response) on a front-end connection: whole when small and of known length, else streamed at the socket's pace, chunked or by length. */
import type { Fields } from "../lib/fields.ts";
import { type Answered, Reply } from "../lib/reply.ts";
import { type BodyShape, chunkHead, type Exchange, frameResponse, LAST_CHUNK } from "./h1-response.ts";
import type { RequestHead } from "./h1-request.ts";

/** JOIN_LIMIT: a body up to this is copied behind its head into one write; a larger one is written after it. */
const JOIN_LIMIT = 16 * 1024;
/** WHOLE_LIMIT: a response body of declared length up to this is read whole and written with its head in one go. */
const WHOLE_LIMIT = 64 * 1024;

/**
 * joined is before + bytes + after in one buffer: one write, one system call, where three writes would cost three (on loopback a write also delivers the
 * bytes, so it is the dearest step of a small answer; copying a body of up to 16 KiB costs far less). Always a new buffer: Bun may still hold a written
 * buffer after write() said it took all of it (measured: a reused one corrupted answers), so none is ever reused.
 */
function joined(before: string, bytes: Uint8Array, after: string): Uint8Array {
  const out = Buffer.allocUnsafe(before.length + bytes.byteLength + after.length);
  out.write(before, 0, "latin1");
  out.set(bytes, before.length);
  if (after.length > 0) out.write(after, before.length + bytes.byteLength, "latin1");
  return out;
}

/** ResponseSink is the connection a response is written to: it queues what the socket does not take, and says when all of it has gone. */
export interface ResponseSink {
  readonly closed: boolean;
  write(data: Uint8Array | string): void;
  flushed(): Promise<void> | undefined;
}

/**
 * sendResponse writes the response to the request with `head` at the socket's pace; it returns whether the connection must close after it, at once when
 * nothing needed waiting for (a body known in memory, or none), else as a promise.
 */
export function sendResponse(sink: ResponseSink, head: RequestHead, res: Answered, keepAlive: boolean): boolean | Promise<boolean> {
  const x = { method: head.method, version: head.version, keepAlive };
  if (res instanceof Reply) return sendReply(sink, x, res);
  const length = declaredLength(res.headers);
  // A small body of declared length is read whole without asking for res.body: that getter makes a stream even of bytes in memory.
  if (length !== undefined && length <= WHOLE_LIMIT && head.method !== "HEAD") return readWhole(sink, x, res);
  const stream = res.body;
  if (stream === null || head.method === "HEAD") {
    if (stream !== null) void stream.cancel().catch(() => undefined);
    const f = frameResponse(x, res.status, res.headers, { kind: "none" }, res.statusText);
    sink.write(f.head);
    return f.close;
  }
  return streamBody(sink, x, res, stream, length);
}

function isDigits(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** sendReply writes the gateway's own Reply: its body in memory at once, a stream at the socket's pace. */
function sendReply(sink: ResponseSink, x: Exchange, res: Reply): boolean | Promise<boolean> {
  const body = res.body;
  if (x.method !== "HEAD" && body !== null) {
    if (body instanceof Uint8Array) return writeWhole(sink, x, res, body);
    return streamBody(sink, x, res, body, declaredLength(res.headers));
  }
  // No body, or a HEAD answer (its fields describe the body a GET would get; frameResponse passes their Content-Length on).
  res.discard();
  const f = frameResponse(x, res.status, res.headers, { kind: "none" }, res.statusText);
  sink.write(f.head);
  return f.close;
}

/** declaredLength is a well-formed Content-Length of the fields, else undefined. */
function declaredLength(h: Headers | Fields): number | undefined {
  const declared = h.get("content-length");
  return declared !== null && declared.length < 16 && isDigits(declared) ? Number(declared) : undefined;
}

/** writeWhole writes head and body in one write. */
function writeWhole(sink: ResponseSink, x: Exchange, res: Answered, bytes: Uint8Array): boolean {
  const f = frameResponse(x, res.status, res.headers, { kind: "bytes", length: bytes.byteLength }, res.statusText);
  if (!f.body || bytes.byteLength === 0) sink.write(f.head);
  else if (bytes.byteLength <= JOIN_LIMIT) sink.write(joined(f.head, bytes, ""));
  else {
    // A large body is not copied: two writes cost less than allocating and filling its size again.
    sink.write(f.head);
    sink.write(bytes);
  }
  return f.close;
}

async function readWhole(sink: ResponseSink, x: Exchange, res: Response): Promise<boolean> {
  let bytes: Uint8Array;
  try {
    bytes = await res.bytes();
  } catch {
    return true; // the body failed before anything was sent: nothing sensible to answer on this connection
  }
  return writeWhole(sink, x, res, bytes);
}

/** streamBody writes a body as it comes, chunked when its length is unknown, waiting for the socket after each piece. */
async function streamBody(sink: ResponseSink, x: Exchange, res: Answered, stream: ReadableStream<Uint8Array>, length: number | undefined): Promise<boolean> {
  const shape: BodyShape = { kind: "stream", length };
  const f = frameResponse(x, res.status, res.headers, shape, res.statusText);
  sink.write(f.head);
  if (!f.body) {
    void stream.cancel().catch(() => undefined);
    return f.close;
  }
  const reader = stream.getReader();
  let sent = 0;
  try {
    for (;;) {
      const r = await reader.read();
      if (sink.closed) {
        void reader.cancel().catch(() => undefined);
        return true;
      }
      if (r.done) break;
      const n = r.value.byteLength;
      if (n === 0) continue;
      sent += n;
      // A body longer than its declared length would run into the next response: cut here, and close.
      if (length !== undefined && sent > length) {
        void reader.cancel().catch(() => undefined);
        return true;
      }
      if (!f.chunked) sink.write(r.value);
      else if (n <= JOIN_LIMIT) sink.write(joined(chunkHead(n), r.value, "\r\n"));
      else {
        sink.write(chunkHead(n));
        sink.write(r.value);
        sink.write("\r\n");
      }
      const flushed = sink.flushed();
      if (flushed !== undefined) await flushed;
    }
  } catch {
    // The body broke off (the upstream failed): without the last chunk or all the bytes, the client sees it cut; only the close can say so.
    return true;
  }
  if (f.chunked) sink.write(LAST_CHUNK);
  return f.close || (length !== undefined && sent !== length);
}
