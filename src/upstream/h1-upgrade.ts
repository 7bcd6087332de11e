/** The upstream side of an HTTP/1.1 Upgrade (RFC 9110 §7.8): one Bun.connect connection that sends the request head and, after a 101, becomes a byte pipe. */
import type { CancelSignal } from "../lib/cancel.ts";
import type { Fields } from "../lib/fields.ts";
import { ChunkedDecoder } from "../lib/chunked.ts";
import type { Socket } from "bun";
import type { UpstreamTls } from "../config/types.ts";
import { WriteQueue } from "../lib/write-queue.ts";
import { abortError, H1Error, INTERIM, MAX_HEAD, parseResponseHead, type ResponseHead } from "./h1-message.ts";

/** MAX_BODY: the whole body of a non-101 answer is held; a larger one is a protocol error (the front end only relays it as an error page would be). */
const MAX_BODY = 64 * 1024;
/** HOLD_LIMIT: tunnel bytes held before the caller set onData; past this, reading pauses until it does. */
const HOLD_LIMIT = 64 * 1024;
const CRLF2 = Buffer.from("\r\n\r\n");
const EMPTY = Buffer.alloc(0);
// RFC 9110 §5.1 field-name = token; §5.5 field-value: VCHAR, obs-text, SP and HTAB inside.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Tunnel is the upstream connection after a 101: raw bytes both ways, with backpressure. */
export interface Tunnel {
  /** write queues bytes to the upstream (never drops; see buffered). */
  write(data: Uint8Array): void;
  /** buffered is how many written bytes the socket has not taken yet. */
  readonly buffered: number;
  /** onData receives the upstream's bytes; set once: bytes that arrived before are held and delivered when it is set. */
  onData: ((data: Uint8Array) => void) | undefined;
  /** onDrain is called when buffered falls back to 0 after being > 0. */
  onDrain: (() => void) | undefined;
  /** onClose is called once, when the connection closed (the upstream's side, a failure, or end/terminate); held like onData until it is set. */
  onClose: ((error?: string) => void) | undefined;
  /** pause stops reading from the upstream. */
  pause(): void;
  /** resume reads from the upstream again. */
  resume(): void;
  /** end half-closes (sends FIN) once the queued bytes went out; the connection closes when the upstream closes too. */
  end(): void;
  /** terminate closes now, dropping what is queued. */
  terminate(): void;
}

/**
 * UpgradeReply is the upstream's answer. "switched": a 101 with every field as received (Upgrade, Connection, Sec-WebSocket-* included), rest (the bytes that
 * came after its head, the tunnel's first) and the connection as a Tunnel. "answered": any other final answer, hop-by-hop fields removed, its whole body (framed
 * by Content-Length, chunked coding or the close; at most 64 KiB).
 */
export type UpgradeReply =
  | {
      readonly kind: "switched";
      readonly status: 101;
      readonly statusText: string;
      readonly headers: Headers;
      readonly rest: Uint8Array;
      readonly tunnel: Tunnel;
    }
  | { readonly kind: "answered"; readonly status: number; readonly statusText: string; readonly headers: Fields; readonly body: Uint8Array };

/** parseSwitch reads a 101 head strictly (RFC 9112 §4, §5: CRLF lines, token names, no obs-fold), keeping every field; it must name the protocol (Upgrade). */
function parseSwitch(bytes: Uint8Array): { statusText: string; headers: Headers } | H1Error {
  const lines = (bytes as Buffer).toString("latin1").split("\r\n");
  const status = /^HTTP\/1\.1 101(?: ([\t\x20-\x7e\x80-\xff]*))?$/.exec(lines[0]!);
  if (status === null) return new H1Error("EPROTO", `bad 101 status line ${JSON.stringify(lines[0]!.slice(0, 64))}`);
  const headers = new Headers();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^[\t ]+|[\t ]+$/g, "");
    if (colon <= 0 || !TOKEN.test(name) || !FIELD_VALUE.test(value)) return new H1Error("EPROTO", "malformed field in the 101 head");
    headers.append(name, value);
  }
  if (!headers.has("upgrade")) return new H1Error("EPROTO", "101 without an Upgrade field");
  return { statusText: status[1] ?? "", headers };
}

/** dechunk decodes a chunked body held whole so far (RFC 9112 §7.1): the body once it has ended, undefined while incomplete, or an H1Error. */
function dechunk(buf: Uint8Array): Uint8Array | undefined | H1Error {
  const parts: Uint8Array[] = [];
  const d = new ChunkedDecoder();
  const used = d.push(buf, (piece) => parts.push(piece));
  if (typeof used !== "number") return new H1Error("EPROTO", used.reason);
  if (!d.done) return undefined;
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** Upgrade is one connection: the answer while it is read, then the Tunnel. */
class Upgrade implements Tunnel {
  socket: Socket<Upgrade> | undefined;
  onDrain: (() => void) | undefined;
  private phase: "head" | "body" | "tunnel" | "closed" = "head";
  /** buf holds the answer's bytes not consumed yet. */
  private buf: Buffer = EMPTY;
  private answer: ResponseHead | undefined;
  private readonly out = new WriteQueue();
  private taken = 0;
  private bytes = 0;
  private ending = false;
  private userPaused = false;
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private dataFn: ((data: Uint8Array) => void) | undefined;
  private closeFn: ((error?: string) => void) | undefined;
  private closeState: "open" | "closed" | "told" = "open";
  private closeError: string | undefined;
  /** writable counts what the socket takes, so that buffered is exact without a second queue. */
  private readonly writable = { write: (b: Uint8Array) => this.take(this.socket!.write(b)) };

  constructor(
    readonly head: string,
    readonly secure: boolean,
    readonly settle: (r: UpgradeReply | H1Error) => void,
  ) {}

  /** start sends the request head, once the connection is open (and, over TLS, verified). */
  start(): void {
    if (this.phase !== "head") this.socket?.terminate();
    else this.write(Buffer.from(this.head, "latin1"));
  }

  get buffered(): number {
    return this.bytes;
  }
  get onData(): ((data: Uint8Array) => void) | undefined {
    return this.dataFn;
  }
  set onData(fn: ((data: Uint8Array) => void) | undefined) {
    this.dataFn = fn;
    if (fn === undefined) return;
    for (const d of this.held.splice(0)) fn(d);
    if (this.heldBytes > HOLD_LIMIT && !this.userPaused) this.resume();
    this.heldBytes = 0;
    this.tellClose();
  }
  get onClose(): ((error?: string) => void) | undefined {
    return this.closeFn;
  }
  set onClose(fn: ((error?: string) => void) | undefined) {
    this.closeFn = fn;
    this.tellClose();
  }

  private take(n: number): number {
    if (n > 0) this.taken += n;
    return n;
  }

  write(data: Uint8Array): void {
    if (this.phase === "closed" || this.ending || this.socket === undefined) return;
    this.taken = 0;
    this.out.write(this.writable, data);
    this.bytes += data.byteLength - this.taken;
  }

  drained(): void {
    if (this.phase === "closed") return;
    const before = this.bytes;
    this.taken = 0;
    this.out.onDrain(this.writable);
    this.bytes = this.out.pending ? this.bytes - this.taken : 0;
    if (this.bytes > 0) return;
    if (before > 0 && this.phase === "tunnel") this.onDrain?.();
    if (this.ending) this.socket!.shutdown();
  }

  pause(): void {
    this.userPaused = true;
    this.socket?.pause();
  }
  resume(): void {
    this.userPaused = false;
    if (this.phase !== "closed") this.socket?.resume();
  }
  end(): void {
    if (this.ending || this.phase === "closed") return;
    this.ending = true;
    // shutdown, not end: Bun's end() closes the socket at once (close handler inside the call), so the upstream's last bytes would be lost
    if (!this.out.pending) this.socket?.shutdown();
  }
  terminate(): void {
    this.out.clear();
    this.socket?.terminate();
  }

  received(data: Uint8Array): void {
    if (this.phase === "tunnel") {
      if (this.dataFn !== undefined) this.dataFn(data);
      else if (this.held.push(data) && (this.heldBytes += data.byteLength) > HOLD_LIMIT) this.socket?.pause();
    } else if (this.phase !== "closed") {
      const err = this.read(this.buf.length === 0 ? (data as Buffer) : Buffer.concat([this.buf, data]), false);
      if (err !== undefined) this.fail(err);
    }
  }

  /** read takes what has arrived of the answer, its head then its body; closed says the connection has ended. An H1Error fails the exchange. */
  private read(buf: Buffer, closed: boolean): H1Error | undefined {
    this.buf = buf;
    if (this.phase === "head") {
      const end = buf.indexOf(CRLF2);
      if (end > MAX_HEAD || (end < 0 && buf.length > MAX_HEAD)) return new H1Error("EPROTO", `response head over ${MAX_HEAD} bytes`);
      if (end < 0) return closed ? new H1Error("ECONNRESET", "upstream closed the connection without answering") : undefined;
      const head = buf.subarray(0, end);
      buf = this.buf = buf.subarray(end + 4);
      if (/^HTTP\/1\.\d 101(?: |$)/.test(head.toString("latin1", 0, 13).split("\r")[0]!)) {
        const sw = parseSwitch(head);
        if (sw instanceof H1Error) return sw;
        this.phase = "tunnel";
        this.buf = EMPTY;
        this.settle({ kind: "switched", status: 101, statusText: sw.statusText, headers: sw.headers, rest: buf, tunnel: this });
        return undefined;
      }
      const h = parseResponseHead(head, this.head.slice(0, this.head.indexOf(" ")));
      if (h instanceof H1Error) return h;
      if (h === INTERIM) return this.read(buf, closed);
      this.answer = h;
      this.phase = "body";
    }
    const h = this.answer!;
    let whole: Uint8Array | H1Error | undefined;
    if (h.frame === "none") whole = EMPTY;
    else if (h.frame === "length") whole = buf.length >= h.length ? buf.subarray(0, h.length) : undefined;
    else if (h.frame === "chunked") whole = dechunk(buf);
    else if (closed) whole = buf;
    if (whole instanceof H1Error) return whole;
    // chunked coding is allowed as much again for its framing
    const size = whole?.length ?? (h.frame === "length" ? h.length : h.frame === "chunked" ? buf.length / 2 : buf.length);
    if (size > MAX_BODY) return new H1Error("EPROTO", `answer body over ${MAX_BODY} bytes`);
    if (whole === undefined) return closed ? new H1Error("ECONNRESET", "upstream closed the connection before the body ended") : undefined;
    this.phase = "closed";
    this.buf = EMPTY;
    this.socket?.terminate();
    this.settle({ kind: "answered", status: h.status, statusText: h.statusText, headers: h.headers, body: whole });
    return undefined;
  }

  /** fail ends the exchange before its answer: the caller's promise rejects and the connection closes. */
  fail(err: H1Error): void {
    if (this.phase === "tunnel" || this.phase === "closed") return;
    this.phase = "closed";
    this.settle(err);
    this.socket?.terminate();
  }

  closed(err?: Error): void {
    if (this.phase === "head" || this.phase === "body") {
      const e = err === undefined ? this.read(this.buf, true) : new H1Error(codeOf(err, "ECONNRESET"), err.message);
      if (e !== undefined) this.fail(e);
    }
    if (this.closeState !== "open") return;
    this.phase = "closed";
    this.out.clear();
    this.closeState = "closed";
    this.closeError = err?.message;
    this.tellClose();
  }

  /** tellClose calls onClose once, after the held bytes went to onData. */
  private tellClose(): void {
    if (this.closeState !== "closed" || this.closeFn === undefined || this.held.length > 0) return;
    this.closeState = "told";
    this.closeFn(this.closeError);
  }
}

const codeOf = (e: unknown, fallback: string): string => (e as { code?: string } | undefined)?.code ?? fallback;

const handlers = {
  open: (s: Socket<Upgrade>) => {
    s.data.socket = s;
    s.setNoDelay(true);
    if (!s.data.secure) s.data.start();
  },
  // With this handler open comes before the handshake, and a write there is not taken (0): the head goes once the upstream is verified.
  handshake: (s: Socket<Upgrade>, ok: boolean, err: Error | null) => {
    if (ok) s.data.start();
    else s.data.fail(new H1Error(codeOf(err, "EPROTO"), `upstream TLS: ${err?.message ?? "not verified"}`));
  },
  data: (s: Socket<Upgrade>, d: Uint8Array) => s.data.received(d),
  drain: (s: Socket<Upgrade>) => s.data.drained(),
  close: (s: Socket<Upgrade>, err?: Error) => s.data.closed(err),
  error: (s: Socket<Upgrade>, err: Error) => {
    s.data.closed(err);
    s.terminate();
  },
};

/**
 * openUpgrade connects to `url` (http://host:port or https://host:port, IPv6 in brackets), with TLS per `tls` for https, sends `head` (the whole request head,
 * ending in an empty line) and resolves with the upstream's answer; 1xx other than 101 are skipped. It rejects with an H1Error (ECONNREFUSED, ECONNRESET,
 * EPROTO, ETIMEDOUT, or a TLS code) or the abort reason when it cannot connect, the answer is malformed or its head over MAX_HEAD, `signal` aborts, or the
 * timeout passes before the whole answer (a 101 head, or another answer's head and body) arrived. After an "answered" reply the connection is closed; after a
 * "switched" one the tunnel is the caller's and neither the timeout nor the signal touch it.
 */
export function openUpgrade(url: string, tls: UpstreamTls | undefined, head: string, timeoutMs: number, signal: CancelSignal): Promise<UpgradeReply> {
  return new Promise<UpgradeReply>((resolve, reject) => {
    const u = new URL(url);
    const secure = u.protocol === "https:";
    if (!secure && u.protocol !== "http:") return reject(new H1Error("EPROTO", `not an http(s) URL: ${url}`));
    if (signal.aborted) return reject(abortError(signal));
    let done = false;
    const finish = (r: UpgradeReply | H1Error | Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    const up = new Upgrade(head, secure, finish);
    const onAbort = () => {
      finish(abortError(signal));
      up.fail(new H1Error("ECONNRESET", "aborted"));
    };
    const timer = setTimeout(() => up.fail(new H1Error("ETIMEDOUT", `no answer within ${timeoutMs}ms`)), timeoutMs);
    signal.addEventListener("abort", onAbort, { once: true });
    const hostname = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
    const port = Number(u.port || (secure ? 443 : 80));
    const tlsOptions = secure ? { ca: tls?.ca, serverName: tls?.serverName ?? hostname, cert: tls?.cert, key: tls?.key, rejectUnauthorized: true } : undefined;
    Bun.connect<Upgrade>({ hostname, port, data: up, tls: tlsOptions, socket: handlers }).then(
      (socket) => {
        // settled while connecting (timeout, abort): the connection is not wanted
        if (done) socket.terminate();
      },
      (e) => up.fail(new H1Error(codeOf(e, "ECONNREFUSED"), (e as Error).message ?? String(e))),
    );
  });
}
