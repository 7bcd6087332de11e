/** An HTTP/2 client for tests (node:http2 in Bun): one session over TLS with a chosen SNI name and source address, its ALPN protocol and the server's SETTINGS, and bounded requests on it. */
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type Settings } from "node:http2";

/** H2Response is one answer: its :status, its fields, its body bytes. */
export type H2Response = { readonly status: number; readonly headers: IncomingHttpHeaders; readonly body: Buffer };

/** H2Options: the SNI name (none for an address), the CA to verify against, a source address on loopback. */
export type H2Options = { readonly servername?: string; readonly ca?: string; readonly from?: string };

/** H2Session is one HTTP/2 connection to 127.0.0.1:port. */
export class H2Session {
  private constructor(
    readonly session: ClientHttp2Session,
    /** remoteSettings are the SETTINGS the server sent first. */
    readonly remoteSettings: Settings,
  ) {}

  /** open connects, offering h2 and http/1.1, and resolves once the server's SETTINGS arrived (bounded by timeoutMs); rejects if the server chose anything but h2. */
  static open(port: number, opts: H2Options = {}, timeoutMs = 5000): Promise<H2Session> {
    return new Promise((resolve, reject) => {
      const session = http2.connect(`https://127.0.0.1:${port}`, {
        servername: opts.servername,
        ca: opts.ca,
        rejectUnauthorized: opts.ca !== undefined,
        ALPNProtocols: ["h2", "http/1.1"],
        ...(opts.from ? { localAddress: opts.from } : {}),
      } as http2.SecureClientSessionOptions);
      const timer = setTimeout(() => {
        session.destroy();
        reject(new Error(`no HTTP/2 SETTINGS from 127.0.0.1:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      session.once("remoteSettings", (settings) => {
        clearTimeout(timer);
        if (session.alpnProtocol !== "h2") {
          session.destroy();
          reject(new Error(`ALPN chose ${String(session.alpnProtocol)}, not h2`));
          return;
        }
        resolve(new H2Session(session, settings));
      });
      session.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  /** alpn is the protocol the TLS handshake chose. */
  get alpn(): string | false | undefined {
    return this.session.alpnProtocol;
  }

  get closed(): boolean {
    return this.session.closed || this.session.destroyed;
  }

  /** stream opens a request stream: GET of path for authority unless headers say otherwise; the caller writes and ends its body. */
  stream(authority: string, path: string, headers: Record<string, string | string[]> = {}): ClientHttp2Stream {
    return this.session.request({ ":method": "GET", ":path": path, ":authority": authority, ...headers }, { endStream: false });
  }

  /** request sends one request (body optional) and reads its whole answer, bounded by timeoutMs; a reset stream rejects with its error. */
  request(
    authority: string,
    path: string,
    init: { headers?: Record<string, string | string[]>; body?: string | Uint8Array } = {},
    timeoutMs = 10_000,
  ): Promise<H2Response> {
    const st = this.stream(authority, path, init.headers);
    const answer = read(st, timeoutMs);
    st.end(init.body);
    return answer;
  }

  /** close ends the session (GOAWAY) and destroys it if it is not gone within a second. */
  async close(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.session.destroy();
        resolve();
      }, 1000);
      this.session.close(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** read collects a stream's answer (status, fields, body) until it ends, bounded by timeoutMs (then the stream is cancelled). */
export function read(st: ClientHttp2Stream, timeoutMs = 10_000): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let headers: IncomingHttpHeaders | undefined;
    const timer = setTimeout(() => {
      st.close(http2.constants.NGHTTP2_CANCEL);
      reject(new Error(`no complete answer within ${timeoutMs} ms (status ${String(headers?.[":status"])}, ${Buffer.concat(chunks).length} bytes)`));
    }, timeoutMs);
    st.on("response", (h) => (headers = h));
    st.on("data", (d: Buffer) => chunks.push(d));
    st.on("end", () => {
      clearTimeout(timer);
      if (headers === undefined) reject(new Error("the stream ended without a response"));
      else resolve({ status: Number(headers[":status"]), headers, body: Buffer.concat(chunks) });
    });
    st.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
