/** The gateway's plain HTTP listener (the raw front end) end to end, in exact bytes: what the client receives and what a raw origin received. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startGateway, type TestGateway } from "./harness.ts";
import { Client } from "./raw-client.ts";

type Got = { method: string; path: string; headers: Record<string, string>; body: string };

/** parseRequest reads one whole request (Content-Length or chunked body) at the start of buf, or undefined while it is incomplete. */
function parseRequest(buf: string): { got: Got; used: number } | undefined {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const [line, ...lines] = buf.slice(0, end).split("\r\n");
  const [method, path] = line!.split(" ");
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const name = l.slice(0, l.indexOf(":")).toLowerCase();
    const value = l.slice(l.indexOf(":") + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  let pos = end + 4;
  let body = "";
  if (headers["transfer-encoding"]?.includes("chunked")) {
    for (;;) {
      const eol = buf.indexOf("\r\n", pos);
      if (eol < 0) return undefined;
      const size = Number.parseInt(buf.slice(pos, eol), 16);
      if (size === 0) {
        if (buf.indexOf("\r\n\r\n", eol) !== eol) return undefined; // no trailers expected
        pos = eol + 4;
        break;
      }
      if (buf.length < eol + 2 + size + 2) return undefined;
      body += buf.slice(eol + 2, eol + 2 + size);
      pos = eol + 2 + size + 2;
    }
  } else {
    const length = Number(headers["content-length"] ?? 0);
    if (buf.length < pos + length) return undefined;
    body = buf.slice(pos, pos + length);
    pos += length;
  }
  return { got: { method: method!, path: path!, headers, body }, used: pos };
}

/**
 * rawOrigin is a Bun.listen origin that records every whole request (Bun.serve drops a GET's body) and answers JSON {origin, path, body}; /slow answers after
 * 1 s; an upgrade to /refuse gets 400, any other upgrade a 101 and then its bytes echoed.
 */
function rawOrigin(name: string) {
  const got: Got[] = [];
  const conns: { closed: boolean }[] = [];
  const server = Bun.listen<{ buf: string; echo: boolean; c: { closed: boolean } }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        const c = { closed: false };
        conns.push(c);
        s.data = { buf: "", echo: false, c };
      },
      data(s, d) {
        if (s.data.echo) return void s.write(d);
        s.data.buf += Buffer.from(d).toString("latin1");
        for (let r = parseRequest(s.data.buf); r !== undefined; r = parseRequest(s.data.buf)) {
          s.data.buf = s.data.buf.slice(r.used);
          const g = r.got;
          got.push(g);
          if (g.headers.upgrade !== undefined) {
            if (g.path === "/refuse") s.write("HTTP/1.1 400 Bad Request\r\ncontent-length: 15\r\n\r\nno upgrade here");
            else {
              s.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo-proto\r\nConnection: upgrade\r\n\r\n");
              s.data.echo = true;
              if (s.data.buf) s.write(s.data.buf);
              return;
            }
            continue;
          }
          const body = JSON.stringify({ origin: name, path: g.path, body: g.body });
          const answer = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
          const bytes = Buffer.from(answer, "latin1");
          if (g.path === "/slow") setTimeout(() => s.write(bytes), 1000);
          else s.write(bytes);
        }
      },
      close(s) {
        s.data.c.closed = true;
      },
    },
  });
  return { server, got, conns, route: (host: string) => `hosts = ["${host}"]\nupstreams = ["http://127.0.0.1:${server.port}"]\n` };
}

const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
const bodiesOf = (text: string) =>
  [...text.matchAll(/\{"origin":.*?\}(?=HTTP|$)/g)].map((m) => JSON.parse(m[0]) as { origin: string; path: string; body: string });

const a = rawOrigin("a");
const b = rawOrigin("b");
const up = rawOrigin("up");
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({
    extra: `[limits]\nmax_header_size = "4KiB"\nmax_header_fields = 10\n`,
    routes: { a: a.route("site-a.test"), b: b.route("site-b.test"), up: up.route("up.test") },
  });
});
afterAll(async () => {
  await gw?.cleanup();
  for (const o of [a, b, up]) o.server.stop(true);
});

/** exchange sends bytes on a new connection and waits for the close or a quiet spell. */
async function exchange(bytes: string, from?: string): Promise<Client> {
  const c = await Client.open(gw.httpPort, from);
  c.send(bytes);
  await c.settle();
  return c;
}

test("a GET body with Content-Length and a chunked one reach the origin byte for byte; the client gets the origin's answers", async () => {
  const before = a.got.length;
  const c = await exchange(
    "GET /cl HTTP/1.1\r\nHost: site-a.test\r\nContent-Length: 12\r\n\r\nhello\x00\xffworld" +
      "GET /chunked HTTP/1.1\r\nHost: site-a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
  );
  expect(statuses(c.text)).toEqual([200, 200]);
  expect(bodiesOf(c.text).map((r) => [r.path, r.body])).toEqual([
    ["/cl", "hello\x00\xffworld"],
    ["/chunked", "hello, world"],
  ]);
  expect(a.got.slice(before).map((g) => [g.method, g.path, g.body])).toEqual([
    ["GET", "/cl", "hello\x00\xffworld"],
    ["GET", "/chunked", "hello, world"],
  ]);
  expect(c.closed).toBe(false);
});

test("an absolute-form target routes by its authority; a Host naming another authority gets 400 and a close, and reaches no origin", async () => {
  const before = [a.got.length, b.got.length];
  const ok = await exchange("GET http://site-b.test/x?y=1 HTTP/1.1\r\nHost: site-b.test\r\n\r\n");
  expect(statuses(ok.text)).toEqual([200]);
  expect(bodiesOf(ok.text)[0]).toMatchObject({ origin: "b", path: "/x?y=1" });
  expect(b.got.slice(before[1]).map((g) => [g.path, g.headers.host])).toEqual([["/x?y=1", "site-b.test"]]);
  const bad = await exchange("GET http://site-b.test/x HTTP/1.1\r\nHost: site-a.test\r\n\r\nGET /never HTTP/1.1\r\nHost: site-a.test\r\n\r\n");
  expect([statuses(bad.text), bad.closed]).toEqual([[400], true]);
  expect([a.got.length, b.got.length]).toEqual([before[0]!, before[1]! + 1]);
});

test("framing errors get their status and a closed connection and never reach the origin", async () => {
  const before = a.got.length;
  const H = "Host: site-a.test\r\n";
  const cases: [string, string, number][] = [
    ["CL and TE", `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
    ["two Content-Lengths", `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, 400],
    ["gzip coding", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\n`, 501],
    ["HTTP/1.2", `GET / HTTP/1.2\r\n${H}\r\n`, 505],
    ["9 KiB request line", `GET /${"l".repeat(9 * 1024)} HTTP/1.1\r\n${H}\r\n`, 414],
    ["5 KiB head", `GET / HTTP/1.1\r\n${H}X-Big: ${"b".repeat(5 * 1024)}\r\n\r\n`, 431],
    ["11 fields", `GET / HTTP/1.1\r\n${H}${Array.from({ length: 10 }, (_, i) => `X-F${i}: ${i}\r\n`).join("")}\r\n`, 431],
    ["a length that is not decimal", `POST / HTTP/1.1\r\n${H}Content-Length: 0x5\r\n\r\nhello`, 400],
    ["a bare LF ending a field", `GET / HTTP/1.1\r\n${H}X-A: 1\n\r\n`, 400],
    ["a bare CR in a field", `GET / HTTP/1.1\r\n${H}X-A: 1\r2\r\n\r\n`, 400],
    ["obs-fold", `GET / HTTP/1.1\r\n${H}X-A: 1\r\n 2\r\n\r\n`, 400],
    ["NUL in a value", `GET / HTTP/1.1\r\n${H}X-A: 1\x002\r\n\r\n`, 400],
    ["whitespace before the colon", `GET / HTTP/1.1\r\n${H}X-A : 1\r\n\r\n`, 400],
    ["a field name with a non-token character", `GET / HTTP/1.1\r\n${H}X(A): 1\r\n\r\n`, 400],
    ["two Host fields", `GET / HTTP/1.1\r\n${H}${H}\r\n`, 400],
    ["no Host in HTTP/1.1", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400],
    ["chunk size not hex", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`, 400],
    ["chunk size overflowing", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${"f".repeat(20)}\r\nhello\r\n`, 400],
    ["chunked in HTTP/1.0", `POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
  ];
  for (const [what, bytes, status] of cases) {
    const c = await exchange(`${bytes}GET /never HTTP/1.1\r\n${H}\r\n`);
    expect([what, statuses(c.text), c.closed]).toEqual([what, [status], true]);
  }
  // Within the limits the same shapes are served: 10 fields and a 3 KiB head.
  const fine = await exchange(
    `GET /fine HTTP/1.1\r\n${H}${Array.from({ length: 8 }, (_, i) => `X-F${i}: ${"v".repeat(380)}\r\n`).join("")}Connection: close\r\n\r\n`,
  );
  expect(statuses(fine.text)).toEqual([200]);
  expect(a.got.slice(before).map((g) => g.path)).toEqual(["/fine"]);
});

test("a chunked body that breaks after the upstream request began: the client gets 400, the origin's connection is closed (not reused), the next request is served", async () => {
  const opened = a.conns.length;
  const c = await Client.open(gw.httpPort);
  c.send("POST /broken HTTP/1.1\r\nHost: site-a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
  // The origin's connection is open and the first chunk on its way before the body breaks.
  const deadline = Date.now() + 3000;
  while (a.conns.length === opened && Date.now() < deadline) await Bun.sleep(10);
  await Bun.sleep(100);
  c.send("zz\r\n");
  await c.settle();
  expect([statuses(c.text), c.closed]).toEqual([[400], true]);
  const upstream = a.conns[a.conns.length - 1]!;
  const until = Date.now() + 3000;
  while (!upstream.closed && Date.now() < until) await Bun.sleep(10);
  expect(upstream.closed).toBe(true);
  const next = await exchange("GET /after HTTP/1.1\r\nHost: site-a.test\r\nConnection: close\r\n\r\n");
  expect(statuses(next.text)).toEqual([200]);
});

test("pipelining: three GETs in one write get three answers in order on the one connection; the origin sees all three", async () => {
  const before = a.got.length;
  const c = await exchange(["/p1", "/p2", "/p3"].map((p) => `GET ${p} HTTP/1.1\r\nHost: site-a.test\r\n\r\n`).join(""));
  expect(statuses(c.text)).toEqual([200, 200, 200]);
  expect(bodiesOf(c.text).map((r) => r.path)).toEqual(["/p1", "/p2", "/p3"]);
  expect(a.got.slice(before).map((g) => g.path)).toEqual(["/p1", "/p2", "/p3"]);
  expect(c.closed).toBe(false);
});

test("Expect: 100-continue gets 100 Continue before the body is sent, then the answer; the origin gets the body (and no Expect)", async () => {
  const before = a.got.length;
  const c = await Client.open(gw.httpPort);
  c.send("POST /expect HTTP/1.1\r\nHost: site-a.test\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n");
  await c.until((x) => x.text.includes("\r\n\r\n"), 3000, "100 Continue");
  expect(c.text).toBe("HTTP/1.1 100 Continue\r\n\r\n");
  c.send("the body!");
  await c.until((x) => statuses(x.text).length === 2 && x.text.endsWith("}"), 3000, "the answer");
  expect(statuses(c.text)).toEqual([100, 200]);
  expect(bodiesOf(c.text)[0]).toMatchObject({ path: "/expect", body: "the body!" });
  expect(a.got.slice(before).map((g) => [g.method, g.body, g.headers.expect])).toEqual([["POST", "the body!", undefined]]);
  c.end();
});

test("a non-WebSocket upgrade: the 101 (with x-request-id) and then bytes both ways; closing the client closes the origin side; logged with 101", async () => {
  const conns = up.conns.length;
  const c = await Client.open(gw.httpPort);
  c.send("GET /up HTTP/1.1\r\nHost: up.test\r\nUpgrade: echo-proto\r\nConnection: upgrade\r\n\r\n");
  await c.until((x) => x.text.includes("\r\n\r\n"), 3000, "the 101");
  const head = c.text.toLowerCase();
  expect(head).toStartWith("http/1.1 101 ");
  expect(head).toContain("upgrade: echo-proto\r\n");
  expect(head).toMatch(/\r\nx-request-id: [^\r\n]+\r\n/);
  const id = /\r\nx-request-id: ([^\r\n]+)\r\n/.exec(head)![1]!;
  expect(up.got.at(-1)).toMatchObject({ path: "/up", headers: { upgrade: "echo-proto", connection: "upgrade" } });
  c.send("ping \x00\x01\x02 pong");
  await c.until((x) => x.text.endsWith("ping \x00\x01\x02 pong"), 3000, "the echo");
  const piped = up.conns.slice(conns);
  expect(piped.length).toBe(1);
  expect(piped[0]!.closed).toBe(false);
  c.end();
  const deadline = Date.now() + 3000;
  while (!piped[0]!.closed && Date.now() < deadline) await Bun.sleep(10);
  expect(piped[0]!.closed).toBe(true);
  const line = await gw.waitForLog((l) => l.msg === "access" && l.request_id === id, 3000);
  expect([line.status, line.path]).toEqual([101, "/up"]);
});

test("an origin that refuses the upgrade: the client gets its 400 and body", async () => {
  const c = await exchange("GET /refuse HTTP/1.1\r\nHost: up.test\r\nUpgrade: echo-proto\r\nConnection: upgrade\r\n\r\n");
  expect(statuses(c.text)).toEqual([400]);
  expect(c.text).toEndWith("\r\n\r\nno upgrade here");
  expect(up.got.at(-1)?.path).toBe("/refuse");
});

test("SIGTERM: an idle keep-alive connection closes after the drain's short grace (1 s), one in flight gets its whole answer with Connection: close, the process exits 0", async () => {
  const slow = rawOrigin("slow");
  const g = await startGateway({ routes: { slow: slow.route("slow.test") } });
  try {
    const idle = await Client.open(g.httpPort);
    idle.send("GET /first HTTP/1.1\r\nHost: slow.test\r\n\r\n");
    await idle.until((x) => x.text.endsWith("}"), 3000, "the first answer");
    const busy = await Client.open(g.httpPort);
    busy.send("GET /slow HTTP/1.1\r\nHost: slow.test\r\n\r\n");
    await Bun.sleep(200);
    g.proc.kill("SIGTERM");
    const t0 = Date.now();
    await idle.until((x) => x.closed, 2000, "the idle connection's close");
    // Not at once (a request sent just then is still served), and within the grace and the sweep's quarter second.
    expect(Date.now() - t0).toBeGreaterThan(700);
    await busy.until((x) => x.closed, 3000, "the busy connection's close");
    expect(statuses(busy.text)).toEqual([200]);
    expect(busy.text.toLowerCase()).toContain("\r\nconnection: close\r\n");
    expect(bodiesOf(busy.text)).toEqual([{ origin: "slow", path: "/slow", body: "" }]);
    expect(await Promise.race([g.proc.exited, Bun.sleep(5000).then(() => "still running")])).toBe(0);
  } finally {
    await g.cleanup();
    slow.server.stop(true);
  }
});
