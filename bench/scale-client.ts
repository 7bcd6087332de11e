/**
 * Clients for bench/scale.sh (issue 18, item 4): many connections that each do one exchange and then sit idle, spread over the
 * source addresses 127.0.0.2–127.0.0.201 (so no address holds more than N/200 of them: gatehouse's default
 * max_connections_per_client of 256 is never reached, and the ephemeral ports never run out).
 *
 *   bun bench/scale-client.ts http PORT HOST PATH N CONCURRENCY   N keep-alive connections, one GET each, answered, then idle
 *   bun bench/scale-client.ts ws   PORT HOST PATH N CONCURRENCY   N WebSockets (upgrade answered 101), then idle
 *   bun bench/scale-client.ts echo PORT                           a WebSocket echo origin (Bun.serve), and 200 "ok" to plain GETs
 *
 * http and ws print one JSON line once every connection is open (or failed), then read commands on stdin, one a line:
 *   probe   one more exchange on every connection still open (a GET, or a text message that must come back the same), one JSON line
 *   state   how many are open and how many the server closed, one JSON line
 *   quit    close them all and exit (also on end of input)
 */
import net from "node:net";

const [mode, portArg] = [process.argv[2], Number(process.argv[3])];

if (mode === "echo") {
  Bun.serve({
    hostname: "127.0.0.1",
    port: portArg,
    fetch(req, server) {
      if (req.headers.get("upgrade")?.toLowerCase() === "websocket" && server.upgrade(req)) return undefined;
      return new Response("ok");
    },
    // No pings from the origin: an idle WebSocket stays silent on both sides, so idle CPU is the proxies' own.
    websocket: { idleTimeout: 960, sendPings: false, message: (ws, msg) => void ws.send(msg) },
  });
  console.log(JSON.stringify({ echo: portArg }));
} else if (mode === "http" || mode === "ws") {
  const [host, path, total, conc] = [process.argv[4]!, process.argv[5]!, Number(process.argv[6]), Number(process.argv[7])];
  type Conn = { sock: net.Socket; buf: Buffer; open: boolean; waiter?: (ok: boolean) => void; expect?: string };
  const conns: Conn[] = [];
  let closedByServer = 0;
  const source = (i: number) => `127.0.0.${2 + (i % 200)}`;

  // An HTTP response is complete when its head and Content-Length bytes of body have arrived (the bench answers carry one).
  const httpDone = (b: Buffer): boolean => {
    const end = b.indexOf("\r\n\r\n");
    if (end < 0) return false;
    const m = /content-length:\s*(\d+)/i.exec(b.subarray(0, end).toString("latin1"));
    return m !== null && b.length >= end + 4 + Number(m[1]);
  };
  const httpOk = (b: Buffer): boolean => b.subarray(0, 12).toString("latin1") === "HTTP/1.1 200";
  // A server frame (unmasked): a text frame whose payload is the message sent; pings and other frames are skipped.
  const wsEcho = (c: Conn): boolean | undefined => {
    let b = c.buf;
    while (b.length >= 2) {
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return undefined;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) return false;
      if (b.length < off + len) return undefined;
      const op = b[0]! & 0x0f;
      const payload = b.subarray(off, off + len).toString();
      b = b.subarray(off + len);
      c.buf = b;
      if (op === 1) return payload === c.expect;
    }
    return undefined;
  };
  const upgradeDone = (b: Buffer): boolean => b.indexOf("\r\n\r\n") >= 0;
  const upgradeOk = (b: Buffer): boolean => b.subarray(0, 12).toString("latin1") === "HTTP/1.1 101";

  const maskedText = (text: string): Buffer => {
    const p = Buffer.from(text);
    const mask = Buffer.from([1, 2, 3, 4]);
    const out = Buffer.alloc(2 + 4 + p.length);
    out[0] = 0x81;
    out[1] = 0x80 | p.length; // the bench's messages are short (< 126 bytes)
    mask.copy(out, 2);
    for (let i = 0; i < p.length; i++) out[6 + i] = p[i]! ^ mask[i % 4]!;
    return out;
  };

  let phase: "head" | "frames" = "head";
  const onData = (c: Conn, d: Buffer) => {
    c.buf = c.buf.length ? Buffer.concat([c.buf, d]) : d;
    if (!c.waiter) return;
    let ok: boolean | undefined;
    if (mode === "http") ok = httpDone(c.buf) ? httpOk(c.buf) : undefined;
    else if (phase === "head") ok = upgradeDone(c.buf) ? upgradeOk(c.buf) : undefined;
    else ok = wsEcho(c);
    if (ok === undefined) return;
    if (mode === "http" || phase === "head") c.buf = Buffer.alloc(0);
    const w = c.waiter;
    c.waiter = undefined;
    w(ok);
  };

  const exchange = (c: Conn, i: number, timeoutMs: number): Promise<boolean> =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        c.waiter = undefined;
        resolve(false);
      }, timeoutMs);
      c.waiter = (ok) => {
        clearTimeout(t);
        resolve(ok);
      };
      if (mode === "http") c.sock.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: scale\r\n\r\n`);
      else if (phase === "head")
        c.sock.write(
          `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      else {
        c.expect = `m${i}-${Date.now()}`;
        c.sock.write(maskedText(c.expect));
      }
    });

  const open = (i: number): Promise<boolean> =>
    new Promise((resolve) => {
      const sock = net.connect({ host: "127.0.0.1", port: portArg, localAddress: source(i) });
      const c: Conn = { sock, buf: Buffer.alloc(0), open: false };
      conns.push(c);
      let settled = false;
      sock.on("connect", () => {
        c.open = true;
        exchange(c, i, 10_000).then((ok) => {
          settled = true;
          resolve(ok);
        });
      });
      sock.on("data", (d: Buffer) => onData(c, d));
      sock.on("error", () => undefined);
      sock.on("close", () => {
        if (c.open) closedByServer++;
        c.open = false;
        if (c.waiter) c.waiter(false);
        if (!settled) {
          settled = true;
          resolve(false);
        }
      });
    });

  // Runs fn(0..n-1) with at most `conc` in flight; counts true results.
  const pool = async (n: number, fn: (i: number) => Promise<boolean>): Promise<number> => {
    let next = 0;
    let good = 0;
    const lane = async () => {
      while (next < n) {
        const i = next++;
        if (await fn(i)) good++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(conc, n) }, lane));
    return good;
  };

  const t0 = performance.now();
  const ok = await pool(total, open);
  phase = "frames";
  const openNow = () => conns.filter((c) => c.open).length;
  console.log(JSON.stringify({ opened: total, ok, failed: total - ok, open: openNow(), ms: Math.round(performance.now() - t0) }));

  for await (const line of console) {
    const cmd = line.trim();
    if (cmd === "probe") {
      const live = conns.filter((c) => c.open);
      const t1 = performance.now();
      const good = await pool(live.length, (i) => exchange(live[i]!, i, 10_000));
      console.log(JSON.stringify({ probed: live.length, ok: good, failed: live.length - good, closed_by_server: closedByServer, ms: Math.round(performance.now() - t1) }));
    } else if (cmd === "state") {
      console.log(JSON.stringify({ open: openNow(), closed_by_server: closedByServer }));
    } else if (cmd === "quit") break;
  }
  for (const c of conns) {
    c.open = false;
    c.sock.destroy();
  }
  process.exit(0);
} else {
  console.error("usage: bun bench/scale-client.ts http|ws PORT HOST PATH N CONCURRENCY | echo PORT");
  process.exit(2);
}
