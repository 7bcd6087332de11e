/** Tests of the HTTP/1.1 client's connections: reuse and stale connections, refusal, aborts, backpressure, request bodies, early answers, the idle pool. */
import { afterEach, expect, test } from "bun:test";
import { H1Pool, type H1Request } from "../src/upstream/h1-client.ts";
import {
  bodyText,
  closedWithin,
  cleanup,
  closeAfter,
  countedSignal,
  get,
  headOf,
  listen,
  mkPool,
  ok,
  pattern,
  rejection,
  sleep,
  until,
  within,
  writeParts,
  type Peer,
} from "./h1-upstream.ts";

afterEach(cleanup);

// ---------------------------------------------------------------- 8. the upstream closes a kept-alive connection

test("8a. a connection the upstream closes 20 ms after answering (without saying so) is not used again", async () => {
  const srv = listen({
    onRequest: async (p) => {
      await writeParts(p.s, [ok("a")]);
      await sleep(20);
      p.s.end();
    },
  });
  const pool = mkPool(srv);
  expect(await bodyText(await pool.request(get("/")))).toBe("a");
  await sleep(100);
  expect(pool.idleCount).toBe(0);
  expect(await bodyText(await within(pool.request(get("/")), 1000, "second GET"))).toBe("a");
  expect(pool.opened).toBe(2);
  expect(srv.peers[0]!.reqs.length).toBe(1);
});

for (const how of ["end", "terminate"] as const) {
  test(`8b. the upstream closes (${how}) as a second request arrives on a kept-alive connection: a GET is retried on a new one, a POST fails`, async () => {
    // every connection answers its first request and closes, without answering, when a second one arrives
    const srv = listen({
      onRequest: async (p) => {
        if (p.reqs.length === 2) {
          if (how === "end") p.s.end();
          else p.s.terminate();
          return;
        }
        await writeParts(p.s, [ok(`from ${p.id}`)]);
      },
    });
    const pool = mkPool(srv);
    const sig = countedSignal();
    expect(await bodyText(await pool.request(get("/", sig.signal)))).toBe("from 0");
    expect(pool.idleCount).toBe(1);
    const r = await within(pool.request(get("/", sig.signal)), 2000, "retried GET");
    expect(await bodyText(r)).toBe("from 1");
    expect(pool.opened).toBe(2);
    expect(srv.peers.length).toBe(2);
    expect(srv.peers[0]!.reqs.length).toBe(2);
    expect(sig.listeners()).toBe(0);
    expect(pool.idleCount).toBe(1);

    // a POST on connection 1, which closes as it arrives: not repeated
    const body = new TextEncoder().encode("payload");
    const post: H1Request = { method: "POST", head: headOf("POST", "/p", `content-length: ${body.length}\r\n`), body, chunked: false, signal: sig.signal };
    const e = await rejection(pool.request(post), 2000, "POST on a closing connection");
    expect(e.code).toBe("ECONNRESET");
    await sleep(100);
    expect(srv.peers.length).toBe(2);
    expect(srv.peers[1]!.reqs.length).toBe(2);
    expect(srv.peers[1]!.reqs[1]!.method).toBe("POST");
    expect(sig.listeners()).toBe(0);
  });
}

// ---------------------------------------------------------------- 10. refused

test("10. a refused connection rejects with ECONNREFUSED", async () => {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  const pool = closeAfter(new H1Pool("127.0.0.1", port));
  const e = await rejection(pool.request(get("/")), 2000, "refused");
  expect(e.code).toBe("ECONNREFUSED");
  expect(pool.idleCount).toBe(0);
});

// ---------------------------------------------------------------- 11. abort

test("11a. an abort before the head arrives rejects promptly with the signal's reason; the connection is closed", async () => {
  const srv = listen({ onRequest: () => {} });
  const pool = mkPool(srv);
  const sig = countedSignal();
  const p = pool.request(get("/", sig.signal));
  await until(() => srv.peers[0]?.reqs.length === 1, 1000, "the request to arrive");
  const reason = new Error("stop now");
  const t0 = performance.now();
  sig.ctrl.abort(reason);
  const e = await rejection(p, 200, "aborted request");
  expect(e).toBe(reason);
  expect(performance.now() - t0).toBeLessThan(100);
  expect(sig.listeners()).toBe(0);
  expect(pool.idleCount).toBe(0);
  await within(
    until(() => srv.closed() === 1, 500, "close"),
    1000,
    "close",
  );
});

test("11b. a string reason becomes an Error with that message; a signal aborted already opens no connection", async () => {
  const srv = listen({ onRequest: () => {} });
  const pool = mkPool(srv);
  const ctrl = new AbortController();
  const p = pool.request(get("/", ctrl.signal));
  await until(() => srv.peers[0]?.reqs.length === 1, 1000, "the request to arrive");
  ctrl.abort("response header timeout");
  const e = await rejection(p, 200, "aborted request");
  expect(e).toBeInstanceOf(Error);
  expect(e.message).toBe("response header timeout");
  const e2 = await rejection(pool.request(get("/", ctrl.signal)), 200, "already aborted");
  expect(e2.message).toBe("response header timeout");
  expect(pool.opened).toBe(1);
});

test("11c. an abort during a streamed body errors the stream; the connection is closed and not reused", async () => {
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/s") await writeParts(p.s, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"]);
      else await writeParts(p.s, [ok("fresh")]);
    },
  });
  const pool = mkPool(srv);
  const sig = countedSignal();
  const r = await pool.request(get("/s", sig.signal));
  const reader = r.stream!.getReader();
  expect(Buffer.from((await within(reader.read(), 1000, "first chunk")).value!).toString()).toBe("first");
  const pending = reader.read();
  const reason = new Error("client left");
  sig.ctrl.abort(reason);
  expect(await rejection(pending, 500, "read after abort")).toBe(reason);
  expect(sig.listeners()).toBe(0);
  await within(
    until(() => srv.closed() === 1, 500, "close"),
    1000,
    "close",
  );
  expect(await bodyText(await pool.request(get("/n")))).toBe("fresh");
  expect(pool.opened).toBe(2);
});

test("11d. an abort during a bytes body rejects bytes(); the connection is closed", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]) });
  const pool = mkPool(srv);
  const ctrl = new AbortController();
  const r = await pool.request(get("/", ctrl.signal));
  expect(r.kind).toBe("bytes");
  const b = r.bytes();
  const reason = new Error("idle");
  ctrl.abort(reason);
  expect(await rejection(b, 500, "bytes after abort")).toBe(reason);
  await within(
    until(() => srv.closed() === 1, 500, "close"),
    1000,
    "close",
  );
  expect(pool.idleCount).toBe(0);
});

test("11e. cancelling the body stream closes the connection", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"]) });
  const pool = mkPool(srv);
  const sig = countedSignal();
  const r = await pool.request(get("/", sig.signal));
  await r.stream!.cancel("not wanted");
  await within(
    until(() => srv.closed() === 1, 500, "close"),
    1000,
    "close",
  );
  expect(pool.idleCount).toBe(0);
  expect(sig.listeners()).toBe(0);
});

test("11f. an abort while the connection is still being made rejects promptly (a black-holed upstream must not outlast the deadline)", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, [ok("late")]) });
  const pool = mkPool(srv);
  // a connect that takes 400 ms, as to an upstream that drops SYNs
  const real = Bun.connect;
  const slow = (async (o: Parameters<typeof Bun.connect>[0]) => {
    await sleep(400);
    return real(o);
  }) as typeof Bun.connect;
  (Bun as { connect: typeof Bun.connect }).connect = slow;
  try {
    const ctrl = new AbortController();
    const p = pool.request(get("/", ctrl.signal));
    await sleep(50);
    const reason = new Error("response header timeout");
    ctrl.abort(reason);
    const t0 = performance.now();
    const out = await within(
      p.then(
        () => "resolved",
        (e: unknown) => (e === reason ? "rejected with the reason" : `rejected with ${String(e)}`),
      ),
      1000,
      "aborted connect",
    );
    expect({ out, prompt: performance.now() - t0 < 100 }).toEqual({ out: "rejected with the reason", prompt: true });
    // the connection made after all is not kept
    await sleep(450);
    expect(pool.idleCount).toBe(0);
    expect(srv.peers.every((p) => p.closed)).toBe(true);
  } finally {
    (Bun as { connect: typeof Bun.connect }).connect = real;
  }
});

// ---------------------------------------------------------------- 12. backpressure

test("12. a streamed body that nobody reads pauses the socket (the upstream can write only a bounded amount); then all of it arrives", async () => {
  const TOTAL = 64 * 1024 * 1024;
  const CHUNK = Buffer.alloc(256 * 1024, 0x61);
  let written = 0;
  const pump = (p: Peer) => {
    while (written < TOTAL) {
      const n = p.s.write(CHUNK.subarray(0, Math.min(CHUNK.length, TOTAL - written)));
      if (n > 0) written += n;
      if (n < CHUNK.length) return; // wait for drain
    }
    p.s.end();
  };
  const srv = listen({
    onRequest: (p) => {
      p.s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${TOTAL}\r\n\r\n`);
      pump(p);
    },
    onDrain: pump,
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/"));
  expect(r.kind).toBe("stream");
  await sleep(300);
  const early = written;
  // Loopback socket buffers (client receive plus server send, autotuned) hold a few MiB; the client queues 64 KiB plus what one
  // read brings. Without the pause the server would have written all 64 MiB by now.
  expect(early).toBeLessThan(16 * 1024 * 1024);
  await sleep(100);
  expect(written - early).toBeLessThan(1024 * 1024); // and it stays put
  let total = 0;
  const t0 = performance.now();
  for await (const c of r.stream!) total += c.byteLength;
  expect(total).toBe(TOTAL);
  console.log(
    `backpressure: the upstream wrote ${(early / 1048576).toFixed(1)} MiB while the body was unread; reading 64 MiB took ${(performance.now() - t0).toFixed(0)} ms`,
  );
}, 10_000);

// ---------------------------------------------------------------- 13. request bodies

test("13a. a Uint8Array body goes after the head with its Content-Length, exact (small and 1 MiB); the connection is reused", async () => {
  const srv = listen({ onRequest: (p, r) => writeParts(p.s, [ok(`got ${r.body.length}`)]) });
  const pool = mkPool(srv);
  const small = new Uint8Array(256).map((_, i) => i);
  const large = pattern(1024 * 1024, 9);
  for (const body of [small, large]) {
    const head = headOf("PUT", "/u", `content-length: ${body.length}\r\n`);
    const r = await within(pool.request({ method: "PUT", head, body, chunked: false, signal: new AbortController().signal }), 3000, "PUT");
    expect(await bodyText(r)).toBe(`got ${body.length}`);
  }
  const reqs = srv.peers[0]!.reqs;
  expect(reqs.length).toBe(2);
  expect(reqs[0]!.head).toBe(headOf("PUT", "/u", "content-length: 256\r\n"));
  expect(Buffer.compare(reqs[0]!.body, Buffer.from(small))).toBe(0);
  expect(Buffer.compare(reqs[1]!.body, large)).toBe(0);
  expect(pool.opened).toBe(1);
});

function streamOf(chunks: (string | Uint8Array)[], gap = 5): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      if (i > 0) await sleep(gap);
      if (i >= chunks.length) return c.close();
      const x = chunks[i++]!;
      c.enqueue(typeof x === "string" ? Buffer.from(x, "latin1") : x);
    },
  });
}

test("13b. a ReadableStream body with chunked=true is sent in chunked coding, empty pieces skipped, ending in the 0-chunk", async () => {
  const srv = listen({ onRequest: (p, r) => writeParts(p.s, [ok(`got ${r.body.length}`)]) });
  const pool = mkPool(srv);
  const bin = pattern(70_000, 5);
  const body = streamOf(["abc", new Uint8Array(0), "defgh", bin]);
  const r = await within(
    pool.request({ method: "POST", head: headOf("POST", "/c", "transfer-encoding: chunked\r\n"), body, chunked: true, signal: new AbortController().signal }),
    3000,
    "POST",
  );
  expect(await bodyText(r)).toBe(`got ${8 + bin.length}`);
  const req = srv.peers[0]!.reqs[0]!;
  expect(srv.peers[0]!.problem).toBeUndefined();
  const expected = Buffer.concat([Buffer.from(`3\r\nabc\r\n5\r\ndefgh\r\n${bin.length.toString(16)}\r\n`), bin, Buffer.from("\r\n0\r\n\r\n")]);
  expect(Buffer.compare(req.raw.subarray(req.head.length), expected)).toBe(0);
  // a chunked body that was sent whole leaves the connection usable
  expect(await bodyText(await pool.request(get("/")))).toBe("got 0");
  expect(pool.opened).toBe(1);
});

test("13c. a ReadableStream body with a Content-Length is sent as it is", async () => {
  const srv = listen({ onRequest: (p, r) => writeParts(p.s, [ok(`got ${r.body.toString()}`)]) });
  const pool = mkPool(srv);
  const body = streamOf(["hello ", "world"]);
  const r = await pool.request({
    method: "POST",
    head: headOf("POST", "/l", "content-length: 11\r\n"),
    body,
    chunked: false,
    signal: new AbortController().signal,
  });
  expect(await within(bodyText(r), 2000, "body")).toBe("got hello world");
  expect(srv.peers[0]!.reqs[0]!.raw.toString()).toBe(`${headOf("POST", "/l", "content-length: 11\r\n")}hello world`);
});

test("13d. a request body stream that fails rejects the request with its error and closes the connection", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, [ok("never")]) });
  const pool = mkPool(srv);
  const boom = new Error("client body too large");
  let n = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      await sleep(5);
      if (n++ === 0) c.enqueue(Buffer.from("abc"));
      else c.error(boom);
    },
  });
  const e = await rejection(
    pool.request({ method: "POST", head: headOf("POST", "/", "transfer-encoding: chunked\r\n"), body, chunked: true, signal: new AbortController().signal }),
    1000,
    "failed body",
  );
  expect(e).toBe(boom);
  await within(
    until(() => srv.closed() === 1, 500, "close"),
    1000,
    "close",
  );
});

// ---------------------------------------------------------------- 14. early answer

test("14. an upstream that answers (413) while a streamed request body is still being sent: the answer is delivered, the connection not reused", async () => {
  const srv = listen({
    onData: (p, d) => {
      p.buf = Buffer.concat([p.buf, d]);
      if (p.reqs.length === 0 && p.buf.includes("\r\n\r\n")) {
        p.reqs.push({ head: "", method: "POST", target: "/", headers: new Map(), raw: p.buf, body: Buffer.alloc(0) });
        p.s.write("HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo big!");
      }
    },
  });
  const pool = mkPool(srv);
  let cancelled = false;
  let pulls = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      await sleep(20);
      if (pulls++ > 100) return c.close();
      c.enqueue(Buffer.alloc(1000, 0x62));
    },
    cancel() {
      cancelled = true;
    },
  });
  const r = await within(
    pool.request({ method: "POST", head: headOf("POST", "/", "transfer-encoding: chunked\r\n"), body, chunked: true, signal: new AbortController().signal }),
    1000,
    "early answer",
  );
  expect(r.status).toBe(413);
  expect(await within(bodyText(r), 1000, "413 body")).toBe("too big!");
  expect(pool.idleCount).toBe(0);
  await within(
    until(() => srv.closed() === 1, 500, "close"),
    1000,
    "close",
  );
  // the rest of the client's body is not read on: the source is cancelled
  await within(
    until(() => cancelled, 500, "the body source to be cancelled"),
    1000,
    "cancel",
  );
  expect(pulls).toBeLessThan(20);
  expect(await bodyText(await within(pool.request(get("/")), 1000, "next request"))).toBe("too big!");
  expect(pool.opened).toBe(2);
});

test("14b. after an early answer, a request body source that has stalled is cancelled too (not left locked and unread)", async () => {
  const srv = listen({
    onData: (p, d) => {
      p.buf = Buffer.concat([p.buf, d]);
      if (p.reqs.length === 0 && p.buf.includes("\r\n\r\n")) {
        p.reqs.push({ head: "", method: "POST", target: "/", headers: new Map(), raw: p.buf, body: Buffer.alloc(0) });
        p.s.write("HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
      }
    },
  });
  const pool = mkPool(srv);
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(Buffer.from("first"));
    },
    pull() {
      return new Promise<void>(() => {}); // the client sends nothing more
    },
    cancel() {
      cancelled = true;
    },
  });
  const r = await within(
    pool.request({ method: "POST", head: headOf("POST", "/", "transfer-encoding: chunked\r\n"), body, chunked: true, signal: new AbortController().signal }),
    1000,
    "early answer",
  );
  expect(r.status).toBe(413);
  await within(
    until(() => srv.closed() === 1, 500, "close"),
    1000,
    "close",
  );
  await within(
    until(() => cancelled, 300, "the stalled body source to be cancelled"),
    1000,
    "cancel",
  );
});

test("14c. after an early answer, a request body pump waiting for the socket to drain stops and cancels its source", async () => {
  // The upstream reads nothing, so the client's send buffer fills and the pump waits for a drain; then it answers.
  const srv = listen({
    onData: () => {},
  });
  const pool = mkPool(srv);
  let cancelled = false;
  let pulled = 0;
  const piece = Buffer.alloc(64 * 1024, 0x63);
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (pulled >= 256 * piece.length) return c.close(); // 16 MiB at most, far more than the socket buffers hold
      pulled += piece.length;
      c.enqueue(piece);
    },
    cancel() {
      cancelled = true;
    },
  });
  const p = pool.request({
    method: "POST",
    head: headOf("POST", "/", "transfer-encoding: chunked\r\n"),
    body,
    chunked: true,
    signal: new AbortController().signal,
  });
  await until(() => srv.peers.length === 1, 1000, "the connection");
  srv.peers[0]!.s.pause();
  await sleep(150);
  const stalledAt = pulled;
  expect(stalledAt).toBeLessThan(256 * piece.length); // the pump is waiting on the socket, not done
  srv.peers[0]!.s.write("HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
  srv.peers[0]!.s.resume();
  const r = await within(p, 1000, "early answer");
  expect(r.status).toBe(413);
  await within(
    until(() => srv.closed() === 1, 500, "close"),
    1000,
    "close",
  );
  await within(
    until(() => cancelled, 300, "the body source to be cancelled"),
    1000,
    "cancel",
  );
});

// ---------------------------------------------------------------- 15, 16. the idle pool

test("15. maxIdle caps idle connections; connections idle past idleMs are closed", async () => {
  let held: (() => void)[] = [];
  const srv = listen({
    onRequest: (p) => {
      held.push(() => void writeParts(p.s, [ok("x")]));
      if (held.length === 3) for (const f of held.splice(0)) f();
    },
  });
  const pool = mkPool(srv, { maxIdle: 2, idleMs: 300 });
  const rs = await within(Promise.all([0, 1, 2].map(() => pool.request(get("/")))), 2000, "three concurrent requests");
  for (const r of rs) expect(await bodyText(r)).toBe("x");
  expect(pool.opened).toBe(3);
  expect(pool.idleCount).toBe(2);
  await within(
    until(() => srv.closed() === 1, 500, "the third connection to close"),
    1000,
    "close",
  );
  held = [];
  await sleep(250);
  expect(pool.idleCount).toBe(2); // not yet past idleMs
  await within(
    until(() => pool.idleCount === 0, 800, "the idle connections to be swept"),
    1000,
    "sweep",
  );
  await within(
    until(() => srv.closed() === 3, 500, "the server to see them close"),
    1000,
    "close",
  );
});

test("16. pool.close() drops idle connections; later connections are not kept", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, [ok("x")]) });
  const pool = mkPool(srv);
  expect(await bodyText(await pool.request(get("/")))).toBe("x");
  expect(pool.idleCount).toBe(1);
  pool.close();
  expect(pool.idleCount).toBe(0);
  await within(
    until(() => srv.closed() === 1, 500, "close"),
    1000,
    "close",
  );
  expect(await bodyText(await pool.request(get("/")))).toBe("x");
  expect(pool.idleCount).toBe(0);
  await within(
    until(() => srv.closed() === 2, 500, "close"),
    1000,
    "close",
  );
});

test("17. routes that name the same upstream address share its kept-alive connections; the pool closes when the last of them leaves", async () => {
  const { EndpointRegistry } = await import("../src/upstream/endpoint.ts");
  const srv = listen({ onRequest: async (p) => writeParts(p.s, [ok("x")]) });
  const reg = new EndpointRegistry();
  const url = `http://127.0.0.1:${srv.port}`;
  const a = reg.get("site-a", url);
  const b = reg.get("site-b", `${url}/`);
  // Two routes, one address: one pool, so a connection opened for one route serves the other (nginx's upstream block; before, one pool per route and URL).
  expect(a.h1).toBeDefined();
  expect(b.h1).toBe(a.h1);
  for (const e of [a, b, a, b]) expect(await bodyText(await e.h1!.request(get("/")))).toBe("x");
  expect(srv.peers.length).toBe(1);
  // Route a leaves: b keeps the pool and its idle connection.
  reg.retain(new Set([b]));
  expect(b.h1!.idleCount).toBe(1);
  expect(await bodyText(await b.h1!.request(get("/")))).toBe("x");
  expect(srv.peers.length).toBe(1);
  // The last one leaves: its idle connections close, and a route that names the address later gets a new pool.
  reg.retain(new Set());
  expect(b.h1!.idleCount).toBe(0);
  expect(await closedWithin(srv, 1, 1000)).toBe(true);
  const c = reg.get("site-c", url);
  expect(c.h1).not.toBe(a.h1);
  reg.retain(new Set());
});
