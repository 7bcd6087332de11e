/** The front end's raw HTTP/1.1 server (src/front/h1-server.ts) on loopback, spoken to in exact bytes: what the client receives and what the handler was given. */
import { afterAll, describe, expect, test } from "bun:test";
import net from "node:net";
import { ConnectionLimits } from "../src/front/connection-limits.ts";
import { type FrontRequest, FrontServer } from "../src/front/h1-server.ts";
import { Fields } from "../src/lib/fields.ts";
import { Reply } from "../src/lib/reply.ts";

type Seen = { method: string; path: string; query: string; host: string; body: string; error?: string };
const seen: Seen[] = [];
let aborted = 0;

async function readAll(body: ReadableStream<Uint8Array> | null): Promise<{ text: string; error?: string }> {
  if (body === null) return { text: "" };
  let text = "";
  try {
    for await (const piece of body) text += Buffer.from(piece).toString("latin1");
    return { text };
  } catch (e) {
    return { text, error: String((e as Error).message ?? e) };
  }
}

async function handler(req: FrontRequest): Promise<Response> {
  const h = req.head;
  if (h.path === "/noread") return new Response("not read");
  if (h.path === "/slow") {
    req.signal.addEventListener("abort", () => aborted++);
    await Bun.sleep(400);
    return new Response("late");
  }
  if (h.path === "/stream") {
    const parts = ["one,", "two,", "three"];
    return new Response(new ReadableStream({ pull: (c) => (parts.length > 0 ? c.enqueue(new TextEncoder().encode(parts.shift())) : c.close()) }));
  }
  if (h.path === "/big") return new Response("z".repeat(100 * 1024), { headers: { "content-length": String(100 * 1024) } });
  const body = await readAll(req.body);
  seen.push({ method: h.method, path: h.path, query: h.query, host: h.host, body: body.text, error: body.error });
  return Response.json({ method: h.method, path: h.path, host: h.host, body: body.text });
}

const server = new FrontServer({ hostname: "127.0.0.1", port: 0, headerTimeoutMs: 300, handler });
afterAll(() => server.stop(true));

/** talk sends the parts (a pause between them) on a new connection and collects what comes back until the server closes or is quiet for quietMs. */
function talk(parts: string[], quietMs = 250, gapMs = 30): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    let text = "";
    let timer: Timer | undefined;
    const done = (closed: boolean) => {
      clearTimeout(timer);
      resolve({ text, closed });
    };
    const quiet = (s: { end(): void }) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        done(false); // before end(): ending calls close at once
        s.end();
      }, quietMs);
    };
    Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      socket: {
        async open(s) {
          for (const p of parts) {
            s.write(Buffer.from(p, "latin1"));
            await Bun.sleep(gapMs);
          }
          quiet(s);
        },
        data(s, d) {
          text += Buffer.from(d).toString("latin1");
          quiet(s);
        },
        close: () => done(true),
        error: (_s, e) => reject(e),
      },
    }).catch(reject);
  });
}

const statuses = (text: string) => [...text.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));
const GET = (path = "/", fields = "Host: app.test\r\n") => `GET ${path} HTTP/1.1\r\n${fields}\r\n`;

test("keep-alive: two requests one after the other on one connection, both answered, the connection left open", async () => {
  const r = await talk([GET("/one"), GET("/two")], 100); // well within the 300 ms the server waits for another head
  expect(statuses(r.text)).toEqual([200, 200]);
  expect(r.text).toContain('"path":"/one"');
  expect(r.text).toContain('"path":"/two"');
  expect(r.closed).toBe(false);
});

test("pipelining: three requests in one write are answered in order", async () => {
  const r = await talk([GET("/a") + GET("/b") + GET("/c")]);
  expect(statuses(r.text)).toEqual([200, 200, 200]);
  expect([...r.text.matchAll(/"path":"(\/\w)"/g)].map((m) => m[1])).toEqual(["/a", "/b", "/c"]);
});

test("a body on GET reaches the handler (Content-Length and chunked), and the next request after it is read right", async () => {
  const before = seen.length;
  const r = await talk([`GET /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello${GET("/after")}`]);
  expect(statuses(r.text)).toEqual([200, 200]);
  const c = await talk([`GET /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`]);
  expect(statuses(c.text)).toEqual([200]);
  expect(seen.slice(before).map((s) => [s.path, s.body])).toEqual([
    ["/cl", "hello"],
    ["/after", ""],
    ["/chunked", "hello world"],
  ]);
});

test("a body sent in pieces and slowly arrives whole", async () => {
  const before = seen.length;
  const r = await talk(["POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhel", "lo wo", "rld"], 250, 60);
  expect(statuses(r.text)).toEqual([200]);
  expect(seen.slice(before).map((s) => s.body)).toEqual(["hello world"]);
});

test("a head and body sent a byte at a time are read whole (each piece is appended, not the whole buffer copied)", async () => {
  const before = seen.length;
  const text = `POST /trickle HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc${GET("/next")}`;
  const r = await talk([...text], 250, 1);
  expect(statuses(r.text)).toEqual([200, 200]);
  expect(seen.slice(before).map((s) => [s.path, s.body])).toEqual([
    ["/trickle", "abc"],
    ["/next", ""],
  ]);
});

test("Expect: 100-continue gets 100 Continue before the answer", async () => {
  const r = await talk(["POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n", "ok"]);
  expect(r.text.startsWith("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")).toBe(true);
});

test("HTTP/1.0 without keep-alive: one answer, Connection: close, then the close", async () => {
  const r = await talk(["GET / HTTP/1.0\r\n\r\n"]);
  expect(statuses(r.text)).toEqual([200]);
  expect(r.text.toLowerCase()).toContain("connection: close");
  expect(r.closed).toBe(true);
});

test("HEAD gets the head only; a stream of unknown length is chunked for HTTP/1.1 and close-delimited for HTTP/1.0", async () => {
  const head = await talk([`HEAD /big HTTP/1.1\r\nHost: a\r\n\r\n${GET("/x")}`]);
  expect(statuses(head.text)).toEqual([200, 200]);
  expect(head.text).toContain("content-length: 102400\r\n");
  expect(head.text).not.toContain("zzz");
  const chunked = await talk([GET("/stream")]);
  expect(chunked.text).toContain("transfer-encoding: chunked\r\n");
  expect(chunked.text.endsWith("\r\n\r\n4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n")).toBe(true);
  const old = await talk(["GET /stream HTTP/1.0\r\n\r\n"]);
  expect([old.text.endsWith("\r\n\r\none,two,three"), old.closed]).toEqual([true, true]);
  const big = await talk([GET("/big")]);
  expect(big.text.split("\r\n\r\n")[1]!.length).toBe(100 * 1024);
});

test("heads that break the rules get their status and a closed connection; the handler never sees them", async () => {
  const before = seen.length;
  const cases: [string, number][] = [
    ["GET / HTTP/1.1\nHost: a\n\n", 400],
    [`GET /${"a".repeat(9000)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414],
    [`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"b".repeat(17000)}\r\n\r\n`, 431],
    ["POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501],
    ["GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505],
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
  ];
  for (const [bytes, status] of cases) {
    const r = await talk([bytes + GET("/never")]);
    expect([statuses(r.text), r.closed]).toEqual([[status], true]);
  }
  expect(seen.slice(before)).toEqual([]);
});

test("a head that does not arrive in time gets 408; an idle connection is closed without a word", async () => {
  const partial = await talk(["GET / HTTP/1.1\r\nHost: a\r\n"], 1000);
  expect([statuses(partial.text), partial.closed]).toEqual([[408], true]);
  const idle = await talk([], 1000);
  expect([idle.text, idle.closed]).toEqual(["", true]);
});

test("a chunked body that breaks after the head: the handler's body errors and the connection closes", async () => {
  const before = seen.length;
  const r = await talk(["POST /broken HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "lo\r\nzz\r\n"]);
  expect(r.closed).toBe(true);
  expect(seen.slice(before).map((s) => [s.body, s.error !== undefined])).toEqual([["hello", true]]);
});

test("an absolute-form target is routed by its authority", async () => {
  const r = await talk(["GET http://app.test:8080/abs?q=1 HTTP/1.1\r\nHost: app.test:8080\r\n\r\n"]);
  expect(r.text).toContain('"host":"app.test:8080"');
  expect(r.text).toContain('"path":"/abs"');
});

test("a body the handler did not read: the answer goes out, then the connection closes (it cannot carry another request)", async () => {
  const r = await talk([`POST /noread HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n${"x".repeat(1000)}`]);
  expect([statuses(r.text), r.closed]).toEqual([[200], true]);
});

test("a client that leaves before its answer: the request's signal aborts", async () => {
  const before = aborted;
  await talk([GET("/slow")], 50);
  await Bun.sleep(250);
  expect(aborted).toBe(before + 1);
});

describe("PROXY protocol from the sources allowed to send it", () => {
  const clients: string[] = [];
  const proxied = new FrontServer({
    hostname: "127.0.0.1",
    port: 0,
    headerTimeoutMs: 300,
    proxyProtocol: (address) => address === "127.0.0.1",
    handler: (req) => {
      clients.push(req.client);
      return new Response(req.client, { headers: { "content-length": String(req.client.length) } });
    },
  });
  afterAll(() => proxied.stop(true));

  /** from sends bytes from a chosen loopback source address and collects the answer until the server closes or goes quiet. */
  const from = (source: string, bytes: Uint8Array): Promise<string> =>
    new Promise((resolve) => {
      let text = "";
      const s = net.connect({ host: "127.0.0.1", port: proxied.port, localAddress: source }, () => s.write(bytes));
      const timer = setTimeout(() => s.destroy(), 1000);
      s.on("data", (d) => (text += d.toString("latin1")));
      s.on("close", () => {
        clearTimeout(timer);
        resolve(text);
      });
      s.on("error", () => undefined);
    });
  const request = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  const v2 = (block: number[]) =>
    Uint8Array.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0, block.length, ...block]);

  test("v1 and v2 preambles name the client; a trusted source may also speak plain HTTP", async () => {
    clients.length = 0;
    expect(await from("127.0.0.1", Buffer.from(`PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n${request}`))).toEndWith("192.0.2.10");
    const binary = Buffer.concat([v2([203, 0, 113, 7, 198, 51, 100, 1, 0, 80, 1, 187]), Buffer.from(request)]);
    expect(await from("127.0.0.1", binary)).toEndWith("203.0.113.7");
    expect(await from("127.0.0.1", Buffer.from(request))).toEndWith("127.0.0.1");
    expect(clients).toEqual(["192.0.2.10", "203.0.113.7", "127.0.0.1"]);
  });

  test("a preamble from a source not allowed, a malformed one, or one cut short: refused, the handler never asked", async () => {
    clients.length = 0;
    expect(await from("127.0.0.2", Buffer.from(`PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n${request}`))).toStartWith("HTTP/1.1 400 ");
    expect(await from("127.0.0.1", Buffer.from(`PROXY TCP4 192.0.2.999 198.51.100.1 1 2\r\n${request}`))).toStartWith("HTTP/1.1 400 ");
    expect(await from("127.0.0.1", Buffer.from("PROXY TCP4 192.0.2.10 198.5"))).toStartWith("HTTP/1.1 408 ");
    expect(clients).toEqual([]);
  });
});

describe("connection caps", () => {
  const caps = new ConnectionLimits(4, 2);
  const capped = new FrontServer({
    hostname: "127.0.0.1",
    port: 0,
    headerTimeoutMs: 2000,
    caps,
    handler: () => new Response("ok", { headers: { "content-length": "2" } }),
  });
  afterAll(() => capped.stop(true));

  /** open connects from a source address and resolves with the socket and what it was sent first (nothing, for an admitted connection that waits). */
  const open = (source: string): Promise<{ socket: net.Socket; first: string }> =>
    new Promise((resolve) => {
      const socket = net.connect({ host: "127.0.0.1", port: capped.port, localAddress: source });
      let first = "";
      socket.on("data", (d) => (first += d.toString("latin1")));
      socket.on("error", () => undefined);
      socket.on("connect", () => setTimeout(() => resolve({ socket, first }), 250));
    });

  test("past a client's cap a new connection gets 503 and is closed; other clients go on until the total cap; a close makes room", async () => {
    const a1 = await open("127.0.0.2");
    const a2 = await open("127.0.0.2");
    const a3 = await open("127.0.0.2");
    expect([a1.first, a2.first]).toEqual(["", ""]);
    expect(a3.first).toStartWith("HTTP/1.1 503 ");
    expect(a3.first).toContain("too many connections from this client");
    const b1 = await open("127.0.0.3");
    const b2 = await open("127.0.0.3");
    const c1 = await open("127.0.0.4");
    expect([b1.first, b2.first]).toEqual(["", ""]);
    expect(c1.first).toContain("too many connections to this gateway");
    expect(caps.total).toBe(4);
    a1.socket.destroy();
    await Bun.sleep(100);
    const c2 = await open("127.0.0.4");
    expect(c2.first).toBe("");
    for (const s of [a2, b1, b2, c2]) s.socket.destroy();
    await Bun.sleep(100);
    expect(caps.total).toBe(0);
  });
});

test("behind a balancer that sends PROXY, the caps count the clients it names, not the balancer", async () => {
  const caps = new ConnectionLimits(100, 1);
  const behind = new FrontServer({
    hostname: "127.0.0.1",
    port: 0,
    caps,
    proxyProtocol: (a) => a === "127.0.0.5",
    handler: () => new Response("ok", { headers: { "content-length": "2" } }),
  });
  const sockets: net.Socket[] = [];
  const openFor = (client: string): Promise<string> =>
    new Promise((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port: behind.port, localAddress: "127.0.0.5" }, () => s.write(`PROXY TCP4 ${client} 192.0.2.1 1000 80\r\n`));
      sockets.push(s);
      let first = "";
      s.on("data", (d) => (first += d.toString("latin1")));
      s.on("error", () => undefined);
      setTimeout(() => resolve(first), 300);
    });
  try {
    expect(await openFor("198.51.100.1")).toBe("");
    expect(await openFor("198.51.100.2")).toBe("");
    expect(await openFor("198.51.100.1")).toContain("too many connections from this client");
    expect([caps.countOf("198.51.100.1"), caps.countOf("198.51.100.2"), caps.countOf("127.0.0.5")]).toEqual([1, 1, 0]);
  } finally {
    for (const s of sockets) s.destroy();
    behind.stop(true);
  }
});

test("pipelined requests from clients that read nothing: answers wait for their socket (bounded memory), and every one arrives intact when they read", async () => {
  let answered = 0;
  const SIZE = 16 * 1024;
  // Bodies of 16 KiB, each filled with its own number: an answer whose buffer was reused after its write (Bun may still hold it) would show another's bytes.
  const flood = new FrontServer({
    hostname: "127.0.0.1",
    port: 0,
    handler: (req) => {
      answered++;
      const n = Number(req.head.path.slice(1));
      return new Reply(200, new Fields(), new Uint8Array(SIZE).fill(n % 251));
    },
  });
  const count = 1500;
  const open = async (offset: number) => {
    const sock = net.connect({ host: "127.0.0.1", port: flood.port });
    await new Promise((r) => sock.once("connect", r));
    sock.pause();
    sock.write(Array.from({ length: count }, (_, i) => `GET /${offset + i} HTTP/1.1\r\nHost: a\r\n\r\n`).join(""));
    return sock;
  };
  // Two clients, so that while one waits with an answer half written the other's answers are assembled.
  const socks = [await open(0), await open(100)];
  await Bun.sleep(500);
  // 1,500 answers of 16 KiB are 24 MiB a client: with nobody reading, the socket buffers take a part and the server stops answering.
  expect(answered).toBeLessThan(2 * count);
  const got = [Buffer.alloc(0), Buffer.alloc(0)];
  socks.forEach((sock, k) => {
    sock.on("data", (d: Buffer) => (got[k] = Buffer.concat([got[k]!, d])));
    sock.resume();
  });
  // Every answer is awaited by its bytes (a loaded machine may take a while): count × (head + body) for each client.
  const whole = (buf: Buffer) => {
    let n = 0;
    for (let at = 0; n < count; n++) {
      const end = buf.indexOf("\r\n\r\n", at);
      if (end < 0 || buf.byteLength < end + 4 + SIZE) break;
      at = end + 4 + SIZE;
    }
    return n;
  };
  const deadline = Date.now() + 15_000;
  while ((whole(got[0]!) < count || whole(got[1]!) < count) && Date.now() < deadline) await Bun.sleep(20);
  for (const sock of socks) sock.destroy();
  flood.stop(true);
  for (const [k, offset] of [0, 100].entries()) {
    const bodies: number[] = [];
    let at = 0;
    for (let i = 0; i < count; i++) {
      const end = got[k]!.indexOf("\r\n\r\n", at);
      const body = got[k]!.subarray(end + 4, end + 4 + SIZE);
      bodies.push(end > 0 && body.byteLength === SIZE && body.every((b) => b === (offset + i) % 251) ? i : -1);
      at = end + 4 + SIZE;
    }
    expect(bodies).toEqual(Array.from({ length: count }, (_, i) => i));
  }
});

test("a drain that starts while a pipelined request waits: the answer in progress says close, the connection closes, the next request is never handled (RFC 9112 §9.6)", async () => {
  const handled: string[] = [];
  const slow = new FrontServer({
    hostname: "127.0.0.1",
    port: 0,
    handler: async (req) => {
      handled.push(`${req.head.method} ${req.head.path}`);
      await Bun.sleep(200);
      return new Reply(200, Fields.from({ "content-type": "text/plain" }), Buffer.from("answer\n"));
    },
  });
  const sock = net.connect({ host: "127.0.0.1", port: slow.port });
  let got = "";
  let closed = false;
  sock.on("data", (d) => (got += d.toString("latin1")));
  sock.on("close", () => (closed = true));
  sock.on("error", () => undefined);
  await new Promise((r) => sock.once("connect", r));
  sock.write("GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  await Bun.sleep(50);
  const stopped = slow.stop(false);
  const deadline = Date.now() + 3000;
  while (!closed && Date.now() < deadline) await Bun.sleep(20);
  await stopped;
  expect(handled).toEqual(["GET /a"]);
  expect(got.match(/HTTP\/1\.1 /g)?.length).toBe(1);
  expect(got.toLowerCase()).toContain("\r\nconnection: close\r\n");
  expect(closed).toBe(true);
});
