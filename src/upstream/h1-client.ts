/** A pooled HTTP/1.1 client on Bun.connect for plain-HTTP upstreams (RFC 9112): keep-alive connections per upstream address, reused last-in first-out and closed when idle too long. It replaces fetch on the proxy's hot path, where fetch cost a third of a proxied request. Messages are in h1-message.ts, one connection's protocol in h1-connection.ts, one exchange and its response body in h1-exchange.ts. */
import type { Socket } from "bun";
import { Conn, handlers, type ConnOwner } from "./h1-connection.ts";
import { Exchange } from "./h1-exchange.ts";
import { abortError, H1Error, type H1Request, type H1Response } from "./h1-message.ts";

export { BUFFER_LIMIT, H1Error, type H1Request, type H1Response } from "./h1-message.ts";

/** PoolOptions: how many idle connections to keep and for how long. */
export type PoolOptions = { readonly maxIdle: number; readonly idleMs: number };
export const DEFAULT_POOL: PoolOptions = { maxIdle: 256, idleMs: 4_000 };

/** H1Pool is the connections to one upstream address. */
export class H1Pool implements ConnOwner {
  private readonly idle: Conn[] = [];
  private sweeper: Timer | undefined;
  private closedAll = false;
  /** opened counts connections made (for tests and the pool's metric). */
  opened = 0;

  /** authority is host:port as a Host field names it. */
  readonly authority: string;

  constructor(
    readonly hostname: string,
    readonly port: number,
    private readonly opts: PoolOptions = DEFAULT_POOL,
  ) {
    const h = hostname.includes(":") ? `[${hostname}]` : hostname;
    this.authority = port === 80 ? h : `${h}:${port}`;
  }

  /** request sends one request and resolves with the response head; the body follows through the response. */
  request(req: H1Request): Promise<H1Response> {
    if (req.signal.aborted) return Promise.reject(abortError(req.signal));
    let conn = this.idle.pop();
    while (conn?.closed) conn = this.idle.pop();
    if (conn !== undefined) {
      const ex = new Exchange(req, conn);
      conn.start(ex);
      return ex.promise;
    }
    return this.connect(req);
  }

  private async connect(req: H1Request): Promise<H1Response> {
    const conn = new Conn(this);
    this.opened++;
    let socket: Socket<Conn>;
    const connecting = Bun.connect<Conn>({ hostname: this.hostname, port: this.port, data: conn, socket: handlers });
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, rej) => {
      onAbort = () => rej(abortError(req.signal));
      req.signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      socket = await Promise.race([connecting, aborted]);
    } catch (e) {
      conn.closed = true;
      if (req.signal.aborted) {
        // the connection may still be made: it is not wanted
        connecting.then(
          (s) => s.terminate(),
          () => {},
        );
        throw abortError(req.signal);
      }
      const err = e as { code?: string; message?: string };
      throw new H1Error(err.code ?? "ECONNREFUSED", err.message ?? String(e));
    } finally {
      req.signal.removeEventListener("abort", onAbort!);
    }
    conn.socket = socket;
    socket.setNoDelay(true);
    if (req.signal.aborted || conn.closed) {
      conn.destroy();
      throw req.signal.aborted ? abortError(req.signal) : new H1Error("ECONNRESET", "upstream closed the connection at once");
    }
    const ex = new Exchange(req, conn);
    conn.start(ex);
    return ex.promise;
  }

  /** retry sends an exchange again on a new connection (its first one was closing). */
  retry(ex: Exchange): void {
    this.connect(ex.req).then(ex.resolve, ex.reject);
  }

  release(conn: Conn): void {
    if (this.closedAll || this.idle.length >= this.opts.maxIdle) {
      conn.destroy();
      return;
    }
    conn.idleSince = performance.now();
    this.idle.push(conn);
    if (this.sweeper === undefined) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(250, this.opts.idleMs / 4));
      this.sweeper.unref();
    }
  }

  forget(conn: Conn): void {
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
  }

  /** sweep closes connections idle for longer than idleMs (the oldest are at the bottom of the stack). */
  private sweep(): void {
    const limit = performance.now() - this.opts.idleMs;
    let n = 0;
    while (n < this.idle.length && this.idle[n]!.idleSince < limit) n++;
    if (n > 0) for (const c of this.idle.splice(0, n)) c.destroy();
    if (this.idle.length === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** idleCount is how many connections wait for reuse. */
  get idleCount(): number {
    return this.idle.length;
  }

  /** close drops every idle connection and keeps none from now on (the endpoint left); exchanges in flight finish. */
  close(): void {
    this.closedAll = true;
    for (const c of this.idle.splice(0)) c.destroy();
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}
