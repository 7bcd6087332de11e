/** Load for the upgrade test: keep-alive and new-connection clients, plain and TLS, that count answers and failures the way a browser would see them. */
import net from "node:net";
import tls from "node:tls";

/** Tally is what a load run saw: answers (200), failures with a sample of why, and requests resent after a reused connection closed unanswered. */
export type Tally = { ok: number; failed: number; resent: number; why: string[] };

type Opener = () => net.Socket;

/** once sends one request on sock and resolves with the status, or "closed" if the connection ends before any byte of an answer, or an error text. */
function once(sock: net.Socket, request: string): Promise<number | "closed" | string> {
  return new Promise((resolve) => {
    let buf = "";
    let done = false;
    const finish = (v: number | "closed" | string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.off("data", onData);
      sock.off("close", onClose);
      sock.off("error", onError);
      resolve(v);
    };
    const onData = (d: Buffer) => {
      buf += d.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? -1);
      if (length < 0) return finish(`no content-length in ${JSON.stringify(buf.slice(0, 80))}`);
      if (buf.length >= end + 4 + length) finish(Number(buf.slice(9, 12)));
    };
    const onClose = () => finish(buf === "" ? "closed" : `cut after ${buf.length} bytes`);
    const onError = (e: Error) => finish(buf === "" ? "closed" : `error after ${buf.length} bytes: ${e.message}`);
    const timer = setTimeout(() => finish("no answer within 5 s"), 5000);
    sock.on("data", onData);
    sock.on("close", onClose);
    sock.on("error", onError);
    sock.write(request);
  });
}

function connected(open: Opener): Promise<net.Socket | string> {
  return new Promise((resolve) => {
    const s = open();
    const ok = () => {
      s.off("error", bad);
      resolve(s);
    };
    const bad = (e: Error) => resolve(`connect: ${e.message}`);
    s.once(s instanceof tls.TLSSocket ? "secureConnect" : "connect", ok);
    s.once("error", bad);
  });
}

/**
 * Load runs clients until stopped: `keepAlive` of them reuse one connection (and, as browsers do, resend a request once on a new connection when a reused one
 * closes before any byte of its answer, RFC 9112 §9.3.1), `fresh` of them open a new connection for every request.
 */
export class Load {
  readonly tally: Tally = { ok: 0, failed: 0, resent: 0, why: [] };
  private running = true;
  private readonly loops: Promise<void>[] = [];

  constructor(open: Opener, host: string, keepAlive: number, fresh: number) {
    const req = `GET / HTTP/1.1\r\nhost: ${host}\r\n\r\n`;
    const closing = `GET / HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`;
    for (let i = 0; i < keepAlive; i++) this.loops.push(this.keepAliveLoop(open, req));
    for (let i = 0; i < fresh; i++) this.loops.push(this.freshLoop(open, closing));
  }

  private fail(why: string): void {
    this.tally.failed++;
    if (this.tally.why.length < 10) this.tally.why.push(why);
  }

  private async keepAliveLoop(open: Opener, req: string): Promise<void> {
    let sock: net.Socket | undefined;
    let reused = false;
    while (this.running) {
      if (sock === undefined || sock.destroyed) {
        const s = await connected(open);
        if (typeof s === "string") {
          this.fail(s);
          await Bun.sleep(10);
          continue;
        }
        sock = s;
        reused = false;
      }
      const r = await once(sock, req);
      if (r === 200) {
        this.tally.ok++;
        reused = true;
        continue;
      }
      sock.destroy();
      sock = undefined;
      if (r === "closed" && reused) this.tally.resent++;
      else this.fail(String(r));
    }
    sock?.destroy();
  }

  private async freshLoop(open: Opener, req: string): Promise<void> {
    while (this.running) {
      const s = await connected(open);
      if (typeof s === "string") {
        this.fail(s);
        await Bun.sleep(10);
        continue;
      }
      const r = await once(s, req);
      s.destroy();
      if (r === 200) this.tally.ok++;
      else this.fail(String(r));
    }
  }

  /** stop ends every loop after its current request. */
  async stop(): Promise<Tally> {
    this.running = false;
    await Promise.all(this.loops);
    return this.tally;
  }
}

/** plain opens loopback TCP connections to port. */
export const plain =
  (port: number): Opener =>
  () =>
    net.connect({ host: "127.0.0.1", port });

/** secure opens TLS connections to port with SNI `name`, verified against ca. */
export const secure =
  (port: number, name: string, ca: string): Opener =>
  () =>
    tls.connect({ host: "127.0.0.1", port, servername: name, ca, ALPNProtocols: ["http/1.1"] });
