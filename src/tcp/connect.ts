/** Connecting a [[tcp]] route's connection to an upstream: its endpoints in turn, each bounded by connect_timeout; a failed one is ejected and the next tried. */
import type { Socket, SocketHandler } from "bun";
import type { Balancer, TcpEndpoint } from "./endpoints.ts";

/** UpstreamHandler receives what the upstream socket does once it is connected. */
export interface UpstreamHandler {
  onData(d: Uint8Array): void;
  onDrain(): void;
  /** onEnd: the upstream sent FIN (it sends no more). */
  onEnd(): void;
  onClose(): void;
}

/** UpstreamLink is the data of an upstream socket: its handler, once the connection has one; bytes that come before are kept (copied) until then. */
export class UpstreamLink {
  handler: UpstreamHandler | undefined;
  early: Uint8Array[] = [];
  ended = false;
  closed = false;

  /** attach hands the socket to h, with whatever it said before. */
  attach(h: UpstreamHandler): void {
    this.handler = h;
    for (const d of this.early) h.onData(d);
    this.early = [];
    if (this.ended) h.onEnd();
    if (this.closed) h.onClose();
  }
}

const HANDLERS: SocketHandler<UpstreamLink> = {
  data: (s, d) => {
    if (s.data.handler) s.data.handler.onData(d);
    else s.data.early.push(Buffer.from(d));
  },
  drain: (s) => s.data.handler?.onDrain(),
  end: (s) => {
    s.data.ended = true;
    s.data.handler?.onEnd();
  },
  close: (s) => {
    if (s.data.closed) return;
    s.data.closed = true;
    s.data.handler?.onClose();
  },
  error: () => {
    // close follows
  },
};

/** Connected is an upstream connection that worked: its socket and the endpoint it reached (counted in its open connections until released). */
export type Connected = { readonly socket: Socket<UpstreamLink>; readonly link: UpstreamLink; readonly endpoint: TcpEndpoint };

/** ConnectOptions are a route's settings for connecting, and what to tell of each failed attempt. */
export type ConnectOptions = {
  readonly timeoutMs: number;
  readonly maxPerEndpoint: number;
  readonly cooldownMs: number;
  readonly failed: (e: TcpEndpoint, error: string) => void;
};

/** TimedOut is connectOnce's rejection when the connect outlasted its timeout; its attempt goes on in the kernel until it ends (settled() is called then). */
export class TimedOut extends Error {}

/**
 * connectOnce opens one connection to host:port within timeoutMs; it rejects with what went wrong (a socket that connects late is closed). Bun.connect cannot
 * be cancelled: after a TimedOut the attempt holds its socket until the kernel gives up (SYN retries, about two minutes on Linux) or it connects late; settled
 * is called once when it is over (only after a TimedOut).
 */
export function connectOnce(
  host: string,
  port: number,
  timeoutMs: number,
  link = new UpstreamLink(),
  settled: () => void = () => {},
): Promise<Socket<UpstreamLink>> {
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      reject(new TimedOut(`no connection within ${timeoutMs}ms`));
    }, timeoutMs);
    Bun.connect<UpstreamLink>({ hostname: host, port, allowHalfOpen: true, data: link, socket: HANDLERS }).then(
      (s) => {
        clearTimeout(timer);
        if (done) {
          s.terminate();
          settled();
        } else {
          done = true;
          resolve(s);
        }
      },
      (e: unknown) => {
        clearTimeout(timer);
        if (done) {
          settled();
          return;
        }
        done = true;
        reject(new Error((e as { code?: string }).code ?? String((e as Error)?.message ?? e)));
      },
    );
  });
}

/**
 * connectUpstream tries the balancer's endpoints in turn until one connects: each failure ejects its endpoint and is reported; undefined when every one failed
 * (or all are at their cap). The endpoint reached counts the connection as open; the caller releases it when the connection ends. A connect that timed out
 * stays counted until its socket is gone (connectOnce), so that a blackholed endpoint holds at most its cap of sockets.
 */
export async function connectUpstream(b: Balancer, o: ConnectOptions): Promise<Connected | undefined> {
  for (const e of b.order(performance.now(), o.maxPerEndpoint)) {
    // The order was made before the connects tried ahead of this one: the endpoint may have filled up meanwhile.
    if (e.open >= o.maxPerEndpoint) continue;
    // Counted while connecting, so concurrent connects respect the cap too.
    e.open++;
    const link = new UpstreamLink();
    try {
      const socket = await connectOnce(e.host, e.port, o.timeoutMs, link, () => e.open--);
      e.connected();
      return { socket, link, endpoint: e };
    } catch (err) {
      if (!(err instanceof TimedOut)) e.open--;
      const error = (err as Error).message;
      e.failed(performance.now(), o.cooldownMs, error);
      o.failed(e, error);
    }
  }
  return undefined;
}
