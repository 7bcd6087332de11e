/** A TLS connection before its first request: PROXY preamble (trusted sources), the ClientHello read for its name, the certificate chosen, then Bun's TLS upgrade. */
import type { Socket, SocketHandler } from "bun";
import { unwatch, type Watched, watch } from "../lib/idle-watch.ts";
import { MAX_HELLO, NOT_TLS, readHello } from "./client-hello.ts";
import type { ConnectionLimits } from "./connection-limits.ts";
import { Conn } from "./h1-conn.ts";
import type { ConnHost } from "./h1-types.ts";
import { isPreamble, readPreamble, UNTRUSTED_PREAMBLE } from "./proxy-protocol.ts";
import type { NativeContext, TlsContexts } from "./tls-contexts.ts";

/** TlsHost is a server whose connections speak TLS: its connections, certificates and the TLS-ALPN-01 answers it may give. */
export interface TlsHost extends ConnHost {
  readonly contexts: TlsContexts;
  /** alpnChallenge is the acme-tls/1 certificate for a name being validated (RFC 8737), if any. */
  alpnChallenge?(name: string): NativeContext | undefined;
  opened(conn: Conn): void;
  /** handshaking counts connections from accept to the end of their handshake (+1, then -1 once): a drain waits for them too. */
  handshaking(delta: 1 | -1): void;
}

/** HTTP_1_1 and ACME_TLS are ALPN protocol lists in wire format (a length byte before each name), as upgradeTLS takes them. */
const HTTP_1_1 = Buffer.from("\x08http/1.1", "latin1");
const ACME_TLS = Buffer.from("\x0aacme-tls/1", "latin1");
/** PLAIN_HTTP answers a plain HTTP request sent to the TLS port, as nginx does, so that a person who typed http:// sees why. */
const PLAIN_HTTP =
  "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 46\r\nconnection: close\r\n\r\nThis port speaks HTTPS: use an https:// URL.\r\n";
const EMPTY = new Uint8Array(0);

/** Accepting is one connection from accept to the end of its TLS handshake, deadline included. */
class Accepting {
  private buf: Uint8Array = EMPTY;
  private preamble: boolean;
  private client: string;
  private done = false;
  /** counted is the caps this connection is counted in, until a Conn takes the count over or it closes. */
  private counted: ConnectionLimits | undefined;
  /** secure is the TLS socket once the upgrade started. */
  private secure: Socket<unknown> | undefined;
  /** inHandshake: counted in the host's handshakes until the handshake ends or the connection closes. */
  private inHandshake = true;
  readonly wait: Watched;

  constructor(
    private readonly socket: Socket<Accepting>,
    private readonly host: TlsHost,
  ) {
    this.client = socket.remoteAddress;
    host.handshaking(1);
    this.preamble = host.settings.proxyProtocol?.(this.client) === true;
    // The hello and the handshake together have the header timeout; a silent connection is closed at its end.
    this.wait = { last: performance.now(), limit: host.settings.headerTimeoutMs, expire: () => (this.secure ?? this.socket).terminate() };
    watch(this.wait);
    if (!this.preamble) this.admit();
  }

  onData(data: Uint8Array): void {
    if (this.done) return;
    let buf = this.buf.byteLength === 0 ? data : Buffer.concat([this.buf, data]);
    if (this.preamble) {
      const p = readPreamble(buf);
      if (p.step === "wait") {
        this.buf = Buffer.from(buf);
        return;
      }
      if (p.step === "refuse") {
        this.refuse(p.reason);
        return;
      }
      this.preamble = false;
      if (p.step === "read" && p.client !== undefined) this.client = p.client;
      if (!this.admit()) return;
      if (p.step === "read") buf = buf.subarray(p.bytes);
      if (buf.byteLength === 0) {
        this.buf = EMPTY;
        return;
      }
    } else if (isPreamble(buf)) {
      this.refuse(UNTRUSTED_PREAMBLE);
      return;
    }
    const hello = readHello(buf);
    if (hello === undefined) {
      // Kept as a copy: the socket may reuse the bytes it handed over.
      this.buf = buf.byteLength > MAX_HELLO ? EMPTY : Buffer.from(buf);
      return;
    }
    if (hello === NOT_TLS) {
      if (/^[A-Z]{3,10} [!-~]/.test(Buffer.from(buf.subarray(0, 12)).toString("latin1"))) this.socket.write(PLAIN_HTTP);
      this.refuse("not a TLS handshake");
      return;
    }
    const name = hello.serverName;
    // RFC 8737 §3: a TLS-ALPN-01 validation offers acme-tls/1 alone and gets the challenge certificate for its name.
    const challenge = name !== undefined && hello.alpn.includes("acme-tls/1") ? this.host.alpnChallenge?.(name) : undefined;
    const context = challenge ?? this.host.contexts.select(name);
    if (context === undefined) {
      this.refuse("no certificate to serve");
      return;
    }
    this.done = true;
    // A handshake that got the fallback certificate is for no site: its requests are told so (421), whatever their Host.
    this.upgrade(buf, context, challenge !== undefined, this.host.contexts.serves(name) ? name! : "");
  }

  /** upgrade starts TLS on the connection with the bytes read so far; after the handshake the connection is an HTTP/1.1 Conn (or, for a challenge, closes). */
  private upgrade(initial: Uint8Array, context: NativeContext, challenge: boolean, name: string | undefined): void {
    const closed = (conn: Conn | undefined) => {
      unwatch(this.wait);
      this.settle();
      if (conn === undefined) this.release();
      else conn.onClose();
    };
    const handlers: SocketHandler<Conn | undefined> = {
      handshake: (ts, ok) => {
        unwatch(this.wait);
        this.settle();
        if (!ok || challenge) {
          // A failed handshake, or a TLS-ALPN-01 validation: it only wanted the certificate.
          ts.end();
          return;
        }
        const conn = new Conn(ts as unknown as Socket<Conn>, this.host, name, this.client);
        // The count taken at accept goes over to the connection, which releases it when it closes.
        if (this.counted !== undefined) conn.countedIn(this.counted);
        this.counted = undefined;
        ts.data = conn;
        this.host.opened(conn);
      },
      data: (ts, d) => ts.data?.onData(d),
      drain: (ts) => ts.data?.onDrain(),
      close: (ts) => closed(ts.data),
      error: (ts) => closed(ts.data),
    };
    try {
      const [, secure] = (this.socket as unknown as { upgradeTLS(o: unknown): [Socket<unknown>, Socket<unknown>] }).upgradeTLS({
        isServer: true,
        initialData: initial,
        tls: { secureContext: context, ALPNProtocols: challenge ? ACME_TLS : HTTP_1_1 },
        data: undefined,
        socket: handlers,
      });
      // The deadline now closes the TLS socket: closing the raw one under it would not end a handshake that stalls.
      this.secure = secure;
    } catch {
      unwatch(this.wait);
      this.release();
      this.socket.terminate();
    }
  }

  /**
   * admit counts the connection against the caps from its start (a handshake in progress holds a socket too), under the client a preamble named; past a cap it
   * is closed at once: nothing can be said to it before TLS.
   */
  private admit(): boolean {
    const caps = this.host.settings.caps;
    if (caps === undefined) return true;
    const over = caps.admit(this.client);
    if (over === undefined) {
      this.counted = caps;
      return true;
    }
    this.done = true;
    unwatch(this.wait);
    // Settled here: the socket may close before this object is its data, and then no close handler of ours runs.
    this.settle();
    this.host.refused?.(503, over === "total" ? "too many connections to this gateway" : "too many connections from this client", this.client);
    this.socket.terminate();
    return false;
  }

  /** release uncounts the connection (it closed before it became a Conn, which otherwise takes the count over). */
  private release(): void {
    this.counted?.release(this.client);
    this.counted = undefined;
  }

  private refuse(reason: string): void {
    this.done = true;
    this.release();
    unwatch(this.wait);
    this.host.refused?.(400, reason, this.client);
    this.socket.end();
  }

  /** settle ends the handshake's count, once. */
  private settle(): void {
    if (!this.inHandshake) return;
    this.inHandshake = false;
    this.host.handshaking(-1);
  }

  onClose(): void {
    this.done = true;
    unwatch(this.wait);
    // After the upgrade the TLS socket's own close (or its handshake) settles the count.
    if (this.secure === undefined) this.settle();
    // Before the upgrade the count is ours to release; after it, the TLS socket's close releases it (or its Conn does).
    if (this.secure === undefined) this.release();
  }
}

/** tlsAcceptHandlers are the Bun.listen socket handlers of a TLS listener until each connection's handshake; then the TLS socket's own take over. */
export function tlsAcceptHandlers(host: TlsHost): SocketHandler<Accepting | undefined> {
  return {
    open: (s) => {
      // A client that reset before Bun got to it leaves a socket without a peer address: no handshake to count, nothing to serve.
      if (!s.remoteAddress) {
        s.terminate();
        return;
      }
      s.data = new Accepting(s as Socket<Accepting>, host);
    },
    // A socket dropped in open has no Accepting.
    data: (s, d) => s.data?.onData(d),
    close: (s) => s.data?.onClose(),
    error: (s) => s.data?.onClose(),
  };
}
