/** What the front end's HTTP/1.1 server and its connections share: a request as handed over (and Req, the one made), the handler, the settings, the transport, the server. */
import type { CancelSignal } from "../lib/cancel.ts";
import type { Answered } from "../lib/reply.ts";
import type { Tunnel } from "../upstream/h1-upgrade.ts";
import type { ConnectionLimits } from "./connection-limits.ts";
import type { RequestHead, RequestLimits } from "./h1-request.ts";

/** FrontRequest is one request as the server hands it over: its head, its body as it arrives (null without one), the client and a signal for its departure. */
export type FrontRequest = {
  readonly head: RequestHead;
  readonly body: ReadableStream<Uint8Array> | null;
  readonly client: string;
  /** signal aborts when the connection closes before the response has gone out. */
  readonly signal: CancelSignal;
  /** tlsName is the server name (SNI) of a TLS connection's handshake, "" when it got the fallback certificate (no SNI, or a name not served); undefined on plain connections. */
  readonly tlsName: string | undefined;
  /** pipe writes an upgrade's 101 `head` and turns the connection into a byte pipe with `upstream` (see Downstream.pipe); the handler then answers undefined. */
  pipe(head: string, early: Uint8Array, upstream: Tunnel, done: (bytesIn: number, bytesOut: number) => void): void;
};

/** FrontHandler answers a request; it should not throw (a throw or a rejection is answered with 500 and the connection closed). */
export type FrontHandler = (req: FrontRequest) => Answered | undefined | Promise<Answered | undefined>;

/** FrontSettings are what a listener allows its connections; a reload replaces them, and each connection reads them anew at its next step. */
export type FrontSettings = {
  readonly limits: RequestLimits;
  /** headerTimeoutMs bounds the wait for a whole head, from the connection's start or the first byte of a later head; then 408 (or a silent close). */
  readonly headerTimeoutMs: number;
  /** idleTimeoutMs is how long a keep-alive connection may wait for its next request. */
  readonly idleTimeoutMs: number;
  /** bodyTimeoutMs is the longest gap between two pieces of a request body the handler is waiting for; then the body fails with 408. */
  readonly bodyTimeoutMs: number;
  /** caps counts connections against [limits] max_connections and max_connections_per_client (one instance may serve several listeners). */
  readonly caps?: ConnectionLimits;
  /** proxyProtocol says whether a source address may open with a PROXY protocol preamble ([listen] proxy_protocol); its client then stands for the peer. */
  readonly proxyProtocol?: (address: string) => boolean;
};

/** Wire is the transport under a connection (a Bun socket, or a TLS socket behind an adapter): write returns the bytes taken, the rest waits for drain. */
export interface Wire {
  readonly remoteAddress: string;
  write(data: Uint8Array): number;
  pause(): void;
  resume(): void;
  end(): void;
  terminate(): void;
}

/** ConnHost is the server a connection belongs to. */
export interface ConnHost {
  readonly settings: FrontSettings;
  readonly handler: FrontHandler;
  /** draining: the server is stopping; connections close after their current answer. */
  readonly draining: boolean;
  /** refused is told of every request refused before the handler (status, reason), for logs and metrics. */
  refused?(status: number, reason: string, client: string): void;
  /** closed is told when a connection (a Conn of h1-conn.ts) has closed. */
  closed(conn: unknown): void;
}

/** ReqConn is what a request asks of its connection: its client, its TLS name, a signal, and the take-over after a 101. */
export interface ReqConn {
  readonly client: string;
  readonly tlsName: string | undefined;
  signal(): CancelSignal;
  takeOver(head: string, early: Uint8Array, upstream: Tunnel, done: (bytesIn: number, bytesOut: number) => void, websocket: boolean): void;
}

/** Req is a FrontRequest whose signal is made only when asked for. */
export class Req implements FrontRequest {
  constructor(
    readonly head: RequestHead,
    readonly body: ReadableStream<Uint8Array> | null,
    private readonly conn: ReqConn,
  ) {}

  get client(): string {
    return this.conn.client;
  }

  get signal(): CancelSignal {
    return this.conn.signal();
  }

  get tlsName(): string | undefined {
    return this.conn.tlsName;
  }

  pipe(head: string, early: Uint8Array, upstream: Tunnel, done: (bytesIn: number, bytesOut: number) => void): void {
    this.conn.takeOver(head, early, upstream, done, this.head.upgrade?.toLowerCase() === "websocket");
  }
}
