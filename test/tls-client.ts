/** A TLS client for tests: one connection with a chosen SNI name, the certificate it got, and HTTP/1.1 requests over it (keep-alive). */
import { connect, type PeerCertificate, type TLSSocket } from "node:tls";

/** TlsResponse is one parsed HTTP/1.1 response. */
export type TlsResponse = { status: number; headers: Record<string, string>; body: string };

/** TlsConn is an open TLS connection to the gateway. */
export class TlsConn {
  private buf = "";
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: TLSSocket) {
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      this.buf += d;
      this.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => undefined);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** open connects to address:port (default 127.0.0.1) with SNI servername (none when undefined); ca makes `authorized` meaningful. */
  static open(port: number, servername: string | undefined, ca?: string | string[], address = "127.0.0.1"): Promise<TlsConn> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: address, port, servername, ca, rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] }, () => resolve(new TlsConn(s)));
      s.once("error", reject);
    });
  }

  get authorized(): boolean {
    return this.socket.authorized;
  }

  get authorizationError(): string | undefined {
    return this.socket.authorizationError?.toString();
  }

  get cert(): PeerCertificate {
    return this.socket.getPeerCertificate();
  }

  /** request sends one request and reads one response (Content-Length bodies only). */
  async request(host: string, path = "/", timeoutMs = 5000): Promise<TlsResponse> {
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = this.buf.indexOf("\r\n\r\n");
      if (end >= 0) {
        const lines = this.buf.slice(0, end).split("\r\n");
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const i = l.indexOf(":");
          headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
        }
        const len = Number(headers["content-length"] ?? 0);
        if (this.buf.length >= end + 4 + len) {
          const body = this.buf.slice(end + 4, end + 4 + len);
          this.buf = this.buf.slice(end + 4 + len);
          return { status: Number(lines[0]!.split(" ")[1]), headers, body };
        }
      }
      if (this.closed) throw new Error("connection closed before a full response");
      if (Date.now() > deadline) throw new Error("no response in time");
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** tlsGet opens a connection, makes one request, closes; returns the response and what the handshake showed. */
export async function tlsGet(port: number, servername: string | undefined, host: string, path = "/", ca?: string | string[], address?: string) {
  const c = await TlsConn.open(port, servername, ca, address);
  try {
    const res = await c.request(host, path);
    return { ...res, authorized: c.authorized, authorizationError: c.authorizationError, cert: c.cert };
  } finally {
    c.close();
  }
}
