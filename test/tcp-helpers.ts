/** Helpers for the [[tcp]] route tests: TCP and TLS origins on loopback, clients that collect what they read, self-signed certificates, bounded waits. */
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { join } from "node:path";

/** Origin is a TCP origin on 127.0.0.1: its port, what each connection sent it, and a stop. */
export type Origin = { readonly port: number; readonly received: Buffer[]; stop(): void };

/** tcpOrigin starts a node:net origin; each connection is handed to onConn (default: echo everything back, prefixed by tag). */
export async function tcpOrigin(tag: string, onConn?: (s: net.Socket, index: number) => void): Promise<Origin> {
  const received: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    const i = received.length;
    received.push(Buffer.alloc(0));
    s.on("data", (d: Buffer) => (received[i] = Buffer.concat([received[i]!, d])));
    if (onConn) onConn(s, i);
    else {
      s.on("data", (d: Buffer) => s.write(Buffer.concat([Buffer.from(`${tag}:`), d])));
      s.on("end", () => s.end());
    }
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    received,
    stop: () => {
      srv.close();
      for (const s of sockets) s.destroy();
    },
  };
}

/** tlsOrigin starts a node:tls origin with the given certificate that answers every chunk with tag. */
export async function tlsOrigin(tag: string, cert: { cert: string; key: string }): Promise<Origin> {
  const received: Buffer[] = [];
  const srv = tls.createServer({ cert: cert.cert, key: cert.key }, (s) => {
    const i = received.length;
    received.push(Buffer.alloc(0));
    s.on("error", () => {});
    s.on("data", (d: Buffer) => {
      received[i] = Buffer.concat([received[i]!, d]);
      s.write(`${tag}:${d.toString()}`);
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return { port: (srv.address() as net.AddressInfo).port, received, stop: () => srv.close() };
}

/** Client is a connection through the gateway: what it read so far, whether it closed, and waits bounded in time. */
export class Client {
  data = Buffer.alloc(0);
  closed = false;
  error: Error | undefined;

  constructor(readonly socket: net.Socket) {
    socket.on("data", (d: Buffer) => (this.data = Buffer.concat([this.data, d])));
    // The gateway's FIN is its end of the connection (a half-open client would not close by itself).
    socket.on("end", () => (this.closed = true));
    socket.on("close", () => (this.closed = true));
    socket.on("error", (e) => (this.error = e));
  }

  /** text is what the client read, as latin1. */
  get text(): string {
    return this.data.toString("latin1");
  }

  /** until waits for pred (bounded), then returns what was read. */
  async until(pred: (c: Client) => boolean, ms = 5000): Promise<string> {
    await waitFor(
      () => pred(this),
      ms,
      () => `client read ${JSON.stringify(this.text.slice(0, 200))}, closed ${this.closed}`,
    );
    return this.text;
  }

  /** says writes s and waits until the read text includes expect. */
  async says(s: string, expect: string, ms = 5000): Promise<string> {
    const before = this.data.byteLength;
    this.socket.write(s);
    await this.until((c) => c.data.subarray(before).toString("latin1").includes(expect), ms);
    return this.data.subarray(before).toString("latin1");
  }
}

/** connect opens a plain TCP client to 127.0.0.1:port, from localAddress when given; resolves once connected. */
export function connect(port: number, localAddress?: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true, ...(localAddress ? { localAddress } : {}) }, () => resolve(new Client(s)));
    s.once("error", reject);
  });
}

/** tlsConnect opens a TLS client to 127.0.0.1:port with SNI servername (over a socket from localAddress when given); ca undefined: no verification. */
export function tlsConnect(port: number, servername: string, ca?: string, localAddress?: string): Promise<{ client: Client; peer: tls.PeerCertificate }> {
  return new Promise((resolve, reject) => {
    const socket = localAddress ? net.connect({ host: "127.0.0.1", port, localAddress }) : undefined;
    const s = tls.connect({ ...(socket ? { socket } : { host: "127.0.0.1", port }), servername, ...(ca ? { ca } : { rejectUnauthorized: false }) }, () =>
      resolve({ client: new Client(s), peer: s.getPeerCertificate() }),
    );
    s.once("error", reject);
  });
}

/** waitFor polls cond every 10 ms until it holds or ms pass (then throws with what describe says). */
export async function waitFor(cond: () => boolean, ms = 5000, describe: () => string = () => ""): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms}ms ${describe()}`);
    await Bun.sleep(10);
  }
}

/** selfSigned makes a P-256 certificate for name with openssl (in dir), and its SHA-256 fingerprint as node:tls reports it. */
export function selfSigned(dir: string, name: string): { cert: string; key: string; fingerprint: string } {
  const key = join(dir, `${name}.key`);
  const crt = join(dir, `${name}.crt`);
  const p = Bun.spawnSync(
    [
      "openssl",
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
      "-addext",
      `subjectAltName=DNS:${name}`,
      "-keyout",
      key,
      "-out",
      crt,
    ],
    { stderr: "pipe" },
  );
  if (p.exitCode !== 0) throw new Error(`openssl req failed: ${p.stderr.toString()}`);
  const cert = readFileSync(crt, "utf8");
  return { cert, key: readFileSync(key, "utf8"), fingerprint: new X509Certificate(cert).fingerprint256 };
}

/** sha256 is the hex SHA-256 of bytes. */
export function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** route is the text of a plain [[tcp]] entry to 127.0.0.1 upstreams, with extra keys. */
export function route(name: string, port: number, upstreams: number[], extra = ""): string {
  return `
[[tcp]]
name = "${name}"
listen = "127.0.0.1:${port}"
mode = "plain"
upstreams = [${upstreams.map((p) => `"tcp://127.0.0.1:${p}"`).join(", ")}]
${extra}
`;
}
