/** The front end's HTTP/1.1 server on raw sockets (Bun.listen), plain or TLS: one listening address, its connections (h1-conn.ts), its settings, and a graceful stop. */
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import { Conn } from "./h1-conn.ts";
import type { ConnHost, FrontHandler, FrontSettings } from "./h1-types.ts";
import { DEFAULT_LIMITS, type RequestLimits } from "./h1-request.ts";
import { type TlsHost, tlsAcceptHandlers } from "./tls-accept.ts";
import type { NativeContext, TlsContexts } from "./tls-contexts.ts";

export type { FrontHandler, FrontRequest, FrontSettings } from "./h1-types.ts";

/** FrontOptions: where to listen, the handler, and the settings (every one has a default). */
export type FrontOptions = Partial<FrontSettings> & {
  readonly hostname: string;
  readonly port: number;
  readonly handler: FrontHandler;
  /** refused is told of every request refused before the handler (status, reason), for logs and metrics. */
  readonly refused?: (status: number, reason: string, client: string) => void;
  /** reusePort binds beside sibling worker processes (SO_REUSEPORT); the kernel spreads new connections between them. */
  readonly reusePort?: boolean;
  /** tls makes this a TLS listener serving these certificates, chosen per handshake by the client's server name. */
  readonly tls?: TlsContexts;
  /** alpnChallenge gives the acme-tls/1 certificate for a name being validated by TLS-ALPN-01. */
  readonly alpnChallenge?: (name: string) => NativeContext | undefined;
};

/** settingsOf fills the defaults in: CONTRACT.md's [limits] and a 75 s keep-alive. */
export function settingsOf(o: Partial<FrontSettings>): FrontSettings {
  return {
    limits: o.limits ?? (DEFAULT_LIMITS as RequestLimits),
    headerTimeoutMs: o.headerTimeoutMs ?? 10_000,
    idleTimeoutMs: o.idleTimeoutMs ?? 75_000,
    bodyTimeoutMs: o.bodyTimeoutMs ?? 30_000,
    caps: o.caps,
    proxyProtocol: o.proxyProtocol,
  };
}

/** ConnSet is the connections of a listener and its graceful stop: idle ones close at once, busy ones after their answer. */
export class ConnSet {
  readonly connections = new Set<Conn>();
  /** handshakes counts TLS connections accepted whose handshake has not ended: a drain waits for them (they are bounded by the header timeout). */
  handshakes = 0;
  draining = false;
  private emptied: (() => void) | undefined;

  add(c: Conn): void {
    this.connections.add(c);
  }

  delete(c: Conn): void {
    this.connections.delete(c);
    this.check();
  }

  /** handshaking counts a TLS handshake in (+1) or out (-1). */
  handshaking(delta: 1 | -1): void {
    this.handshakes += delta;
    this.check();
  }

  private check(): void {
    if (this.draining && this.connections.size === 0 && this.handshakes === 0) this.emptied?.();
  }

  /** pending counts the requests being answered now. */
  pending(): number {
    let n = 0;
    for (const c of this.connections) if (c.busy && !c.closed) n++;
    return n;
  }

  /**
   * drain closes idle connections after a short grace (a request already sent on one is served) and the others after their answers and that grace; it
   * resolves when none is left (at once with force, every one cut).
   */
  drain(force: boolean, terminate: (c: Conn) => void): Promise<void> {
    this.draining = true;
    for (const c of this.connections) {
      if (force) terminate(c);
      else if (c.idleNow) c.lingerIdle();
    }
    if ((this.connections.size === 0 && this.handshakes === 0) || force) return Promise.resolve();
    return new Promise((r) => (this.emptied = r));
  }
}

/** FrontServer is one listening address of the front end: plain TCP, or TLS with the certificate chosen per handshake (tls-accept.ts). */
export class FrontServer implements ConnHost, TlsHost {
  settings: FrontSettings;
  readonly handler: FrontHandler;
  readonly refused: FrontOptions["refused"];
  readonly contexts: TlsContexts;
  readonly alpnChallenge: FrontOptions["alpnChallenge"];
  private readonly conns = new ConnSet();
  private readonly listener: TCPSocketListener<unknown>;

  constructor(opts: FrontOptions) {
    this.settings = settingsOf(opts);
    this.handler = opts.handler;
    this.refused = opts.refused;
    this.contexts = opts.tls as TlsContexts;
    this.alpnChallenge = opts.alpnChallenge;
    const plain: SocketHandler<Conn | undefined> = {
      open: (s) => {
        // A client that reset before Bun got to it leaves a socket without a peer address: nothing to serve, nothing to count.
        if (!s.remoteAddress) {
          s.terminate();
          return;
        }
        const c = new Conn(s as Socket<Conn>, this);
        s.data = c;
        this.opened(c);
      },
      // A socket dropped in open has no Conn.
      data: (s, d) => s.data?.onData(d),
      drain: (s) => s.data?.onDrain(),
      close: (s) => s.data?.onClose(),
      error: (s) => s.data?.onClose(),
    };
    this.listener = Bun.listen<unknown>({
      hostname: opts.hostname,
      port: opts.port,
      ...(opts.reusePort ? { reusePort: true } : {}),
      socket: (opts.tls === undefined ? plain : tlsAcceptHandlers(this)) as SocketHandler<unknown>,
    });
  }

  /**
   * opened takes a new connection (after its handshake, for TLS): counted and started. One whose handshake ends while the server drains is treated as the
   * connections idle at the drain's start: its client sends its request right after the handshake, which is served (with close) within the drain's grace.
   */
  opened(c: Conn): void {
    this.conns.add(c);
    c.start();
    if (this.conns.draining) c.lingerIdle();
  }

  get draining(): boolean {
    return this.conns.draining;
  }

  handshaking(delta: 1 | -1): void {
    this.conns.handshaking(delta);
  }

  closed(c: Conn): void {
    this.conns.delete(c);
  }

  /** configure replaces the settings (a reload); each connection uses them from its next step on. */
  configure(settings: FrontSettings): void {
    this.settings = settings;
  }

  /** port is the port bound (useful with port 0). */
  get port(): number {
    return this.listener.port;
  }

  /** connections are the connections open now. */
  get connections(): ReadonlySet<Conn> {
    return this.conns.connections;
  }

  /** pending counts the requests being answered now. */
  get pendingRequests(): number {
    return this.conns.pending();
  }

  /** stop stops accepting; idle connections close now, busy ones after their answer; it resolves when all are gone (with force: at once, every one cut). */
  stop(force = false): Promise<void> {
    this.listener.stop(false);
    return this.conns.drain(force, (c) => c.socket.terminate());
  }
}
