/** Helpers for the [[tcp]] route tests: TCP and TLS origins on loopback, clients that collect what they read, self-signed certificates, bounded waits. */
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { join } from "node:path";

/** Origin is a TCP origin on 127.0.0.1: its port, what each connection sent it, and a stop. */
export type Origin = { readonly port: number; readonly received: Buffer[]; stop(): void };

/** listening starts srv on a free loopback port: an Origin whose stop closes it and every connection it holds. */
async function listening(srv: net.Server, sockets: Set<net.Socket>, received: Buffer[]): Promise<Origin> {
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
  return listening(srv, sockets, received);
}

/** tlsOrigin starts a node:tls origin with the given certificate that answers every chunk with tag. */
export async function tlsOrigin(tag: string, cert: { cert: string; key: string }): Promise<Origin> {
  const received: Buffer[] = [];
  const sockets = new Set<tls.TLSSocket>();
  const srv = tls.createServer({ cert: cert.cert, key: cert.key }, (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    const i = received.length;
    received.push(Buffer.alloc(0));
    s.on("error", () => {});
    s.on("data", (d: Buffer) => {
      received[i] = Buffer.concat([received[i]!, d]);
      s.write(`${tag}:${d.toString()}`);
    });
  });
  return listening(srv, sockets, received);
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

/** Blackhole is a port on 127.0.0.1 whose connects hang (SYNs dropped: a full accept queue that is never read), and a stop. */
export type Blackhole = { readonly port: number; stop(): void };

/** BLACKHOLE_PY listens with a backlog of 0, never accepts, and fills the queue itself: the kernel drops every later SYN until the process ends (≤ 10 min). */
const BLACKHOLE_PY = `
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
port = s.getsockname()[1]
fill = []
for i in range(4):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    fill.append(c)
print(port, flush=True)
time.sleep(600)
`;

/** blackhole starts a Blackhole (python3): an upstream that neither accepts nor refuses, for connect timeouts and connects in progress. */
export async function blackhole(): Promise<Blackhole> {
  const p = Bun.spawn(["python3", "-c", BLACKHOLE_PY], { stdout: "pipe", stderr: "inherit" });
  const reader = p.stdout.getReader();
  const first = await Promise.race([reader.read(), Bun.sleep(5000).then(() => undefined)]);
  reader.releaseLock();
  const port = Number(new TextDecoder().decode(first?.value ?? new Uint8Array()).trim());
  if (!(port > 0)) {
    p.kill();
    throw new Error("the blackhole did not start within 5s");
  }
  await Bun.sleep(100); // the queue is full once the kernel has taken the filling connects
  return { port, stop: () => p.kill() };
}

/** clientHello is the first flight of a node:tls client asking for servername: a real ClientHello, to send as slowly or as cut as a test likes. */
export async function clientHello(servername: string): Promise<Buffer> {
  let got = Buffer.alloc(0);
  let resolveHello: (b: Buffer) => void = () => {};
  const hello = new Promise<Buffer>((r) => (resolveHello = r));
  const srv = net.createServer((s) => {
    s.on("data", (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.byteLength >= 5 && got.byteLength >= 5 + got.readUInt16BE(3)) {
        resolveHello(got);
        s.destroy();
      }
    });
    s.on("error", () => {});
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const c = tls.connect({ host: "127.0.0.1", port: (srv.address() as net.AddressInfo).port, servername, rejectUnauthorized: false });
  c.on("error", () => {});
  try {
    return await Promise.race([hello, Bun.sleep(5000).then(() => Promise.reject(new Error("no ClientHello within 5s")))]);
  } finally {
    c.destroy();
    srv.close();
  }
}

/** upstreams is the admin API's TCP endpoints of a route (open connections, ejection), from admin (http://127.0.0.1:PORT). */
export async function tcpEndpoints(admin: string, route: string): Promise<{ upstream: string; open: number }[]> {
  const all = (await (await fetch(`${admin}/upstreams`)).json()) as { kind?: string; route: string; upstream: string; open: number }[];
  return all.filter((e) => e.kind === "tcp" && e.route === route);
}

/** settledOn waits (bounded) until a route of g has no connection open (gatehouse_tcp_connections_open) and its endpoints none either (endpoints false: a blackholed one's count is its connects in progress). */
export async function settledOn(
  g: { admin: string; metric(series: string): Promise<string | undefined> },
  route: string,
  ms = 5000,
  endpoints = true,
): Promise<void> {
  const deadline = Date.now() + ms;
  let last = "";
  while (Date.now() < deadline) {
    const open = Number((await g.metric(`gatehouse_tcp_connections_open{route="${route}"}`)) ?? "NaN");
    const eps = await tcpEndpoints(g.admin, route);
    last = `open ${open}, endpoints ${JSON.stringify(eps.map((e) => e.open))}`;
    if (open === 0 && (!endpoints || eps.every((e) => e.open === 0))) return;
    await Bun.sleep(50);
  }
  throw new Error(`route ${route} did not settle within ${ms}ms: ${last}`);
}

/** closedBy connects to port (from an address), writes text, and says whether the gateway closed the connection within ms and what it read (a reset may even beat the connect's callback). */
export async function closedBy(p: number, from = "127.0.0.1", text = "", ms = 3000): Promise<{ closed: boolean; read: string }> {
  const s = net.connect({ host: "127.0.0.1", port: p, localAddress: from });
  let read = "";
  s.on("connect", () => s.write(text));
  s.on("data", (d: Buffer) => (read += d.toString("latin1")));
  s.on("error", () => {});
  const closed = await Promise.race([new Promise<boolean>((r) => s.once("close", () => r(true))), Bun.sleep(ms).then(() => false)]);
  s.destroy();
  return { closed, read };
}
