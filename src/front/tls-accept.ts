/** A TLS connection before its first request: PROXY preamble (trusted sources), the ClientHello read for its name, the certificate chosen, then Bun's TLS upgrade. */
import type { Socket, SocketHandler } from "bun";
import { unwatch, type Watched, watch } from "../lib/idle-watch.ts";
import { MAX_HELLO, NOT_TLS, readHello } from "./client-hello.ts";
import { Conn, type ConnHost } from "./h1-conn.ts";
import { isPreamble, isProxyError, looksLikePreamble, MAX_PREAMBLE, parseProxyHeader } from "./proxy-protocol.ts";
import type { NativeContext, TlsContexts } from "./tls-contexts.ts";

/** TlsHost is a server whose connections speak TLS: its connections, certificates and the TLS-ALPN-01 answers it may give. */
export interface TlsHost extends ConnHost {
  readonly contexts: TlsContexts;
  /** alpnChallenge is the acme-tls/1 certificate for a name being validated (RFC 8737), if any. */
  alpnChallenge?(name: string): NativeContext | undefined;
  opened(conn: Conn): void;
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
  readonly wait: Watched;

  constructor(
    private readonly socket: Socket<Accepting>,
    private readonly host: TlsHost,
  ) {
    this.client = socket.remoteAddress;
    this.preamble = host.settings.proxyProtocol?.(this.client) === true;
    // The hello and the handshake together have the header timeout; a silent connection is closed at its end.
    this.wait = { last: performance.now(), limit: host.settings.headerTimeoutMs, expire: () => this.socket.terminate() };
    watch(this.wait);
  }

  onData(data: Uint8Array): void {
    if (this.done) return;
    let buf = this.buf.byteLength === 0 ? data : Buffer.concat([this.buf, data]);
    if (this.preamble) {
      if (!looksLikePreamble(buf)) this.preamble = false;
      else {
        const p = parseProxyHeader(buf);
        if (p === undefined) {
          if (buf.byteLength > MAX_PREAMBLE) {
            this.refuse(`a PROXY protocol preamble over ${MAX_PREAMBLE} bytes`);
            return;
          }
          this.buf = Buffer.from(buf);
          return;
        }
        if (isProxyError(p)) {
          this.refuse(p.error);
          return;
        }
        this.preamble = false;
        if (p.kind === "proxy") this.client = p.source.address;
        buf = buf.subarray(p.bytes);
        if (buf.byteLength === 0) {
          this.buf = EMPTY;
          return;
        }
      }
    } else if (isPreamble(buf)) {
      this.refuse("a PROXY protocol preamble from a source that listen.proxy_protocol does not name");
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
    this.upgrade(buf, context, challenge !== undefined, name);
  }

  /** upgrade starts TLS on the connection with the bytes read so far; after the handshake the connection is an HTTP/1.1 Conn (or, for a challenge, closes). */
  private upgrade(initial: Uint8Array, context: NativeContext, challenge: boolean, name: string | undefined): void {
    const host = this.host;
    const client = this.client;
    const wait = this.wait;
    const handlers: SocketHandler<Conn | undefined> = {
      handshake(ts, ok) {
        unwatch(wait);
        if (!ok || challenge) {
          // A failed handshake, or a TLS-ALPN-01 validation: it only wanted the certificate.
          ts.end();
          return;
        }
        const conn = new Conn(ts as unknown as Socket<Conn>, host, name, client);
        ts.data = conn;
        host.opened(conn);
      },
      data: (ts, d) => ts.data?.onData(d),
      drain: (ts) => ts.data?.onDrain(),
      close: (ts) => {
        unwatch(wait);
        ts.data?.onClose();
      },
      error: (ts) => {
        unwatch(wait);
        ts.data?.onClose();
      },
    };
    try {
      (this.socket as unknown as { upgradeTLS(o: unknown): unknown }).upgradeTLS({
        isServer: true,
        initialData: initial,
        tls: { secureContext: context, ALPNProtocols: challenge ? ACME_TLS : HTTP_1_1 },
        data: undefined,
        socket: handlers,
      });
    } catch {
      unwatch(wait);
      this.socket.terminate();
    }
  }

  private refuse(reason: string): void {
    this.done = true;
    unwatch(this.wait);
    this.host.refused?.(400, reason, this.client);
    this.socket.end();
  }

  onClose(): void {
    this.done = true;
    unwatch(this.wait);
  }
}

/** tlsAcceptHandlers are the Bun.listen socket handlers of a TLS listener until each connection's handshake; then the TLS socket's own take over. */
export function tlsAcceptHandlers(host: TlsHost): SocketHandler<Accepting> {
  return {
    open: (s) => {
      s.data = new Accepting(s, host);
    },
    data: (s, d) => s.data.onData(d),
    close: (s) => s.data.onClose(),
    error: (s) => s.data.onClose(),
  };
}
