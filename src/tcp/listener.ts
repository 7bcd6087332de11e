/** The listening socket of one [[tcp]] route address (Bun.listen, SO_REUSEPORT like the other public listeners), its open connections, and a drain bounded by a deadline. */
import type { SocketHandler, TCPSocketListener } from "bun";
import type { Address } from "../config/types.ts";
import { TcpConn, type TcpHost } from "./conn.ts";
import type { ListenerState } from "./route.ts";

/** TcpListener accepts the connections of one address; state (route, certificate, trusted sources) may change at any time and applies to the next connection. */
export class TcpListener {
  readonly conns = new Set<TcpConn>();
  private readonly listener: TCPSocketListener<TcpConn>;
  private accepting = true;
  private emptied: (() => void) | undefined;

  constructor(
    readonly address: Address,
    public state: ListenerState,
  ) {
    this.listener = Bun.listen<TcpConn>({
      hostname: address.hostname,
      port: address.port,
      // Sibling workers share the address (the supervisor checked it was free), and an instance taking over joins it (bun-types lacks the key).
      ...{ reusePort: true },
      // A FIN from one side is passed on as a FIN, not taken for the end of both ways.
      allowHalfOpen: true,
      socket: tcpAcceptHandlers(this),
    });
  }

  /** port is the port bound. */
  get port(): number {
    return this.listener.port;
  }

  opened(c: TcpConn): void {
    this.conns.add(c);
  }

  closed(c: TcpConn): void {
    this.conns.delete(c);
    if (!this.accepting && this.conns.size === 0) this.emptied?.();
  }

  /** stopAccepting closes the listening socket; open connections go on. */
  stopAccepting(): void {
    if (!this.accepting) return;
    this.accepting = false;
    this.listener.stop(false);
  }

  /** drained resolves once no connection is open (after stopAccepting). */
  drained(): Promise<void> {
    if (this.conns.size === 0) return Promise.resolve();
    return new Promise((r) => {
      const before = this.emptied;
      this.emptied = () => {
        before?.();
        r();
      };
    });
  }

  /** cut closes every open connection now. */
  cut(): void {
    for (const c of [...this.conns]) c.shutdown();
  }
}

/** tcpAcceptHandlers are the Bun.listen handlers of a [[tcp]] listener: each accepted socket becomes a TcpConn of host. */
function tcpAcceptHandlers(host: TcpHost & { opened(c: TcpConn): void }): SocketHandler<TcpConn> {
  return {
    open: (s) => {
      // A client that reset its connection before Bun got to it leaves a socket without a peer address: nothing to serve, nothing to count.
      if (!s.remoteAddress) {
        s.terminate();
        return;
      }
      const c = new TcpConn(s, host);
      s.data = c;
      host.opened(c);
      c.start();
    },
    // A socket dropped in open has no TcpConn.
    data: (s, d) => s.data?.rawData(d),
    drain: (s) => s.data?.rawDrain(),
    end: (s) => s.data?.rawEnd(),
    close: (s) => s.data?.rawClosed(),
    error: (s) => s.data?.rawClosed(),
  };
}
