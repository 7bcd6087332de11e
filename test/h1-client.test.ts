/** Tests of the HTTP/1.1 client reading responses from scripted upstreams: framing (Content-Length, chunked, close), interim and bodiless answers, hop-by-hop fields, malformed heads. */
import { afterEach, expect, test } from "bun:test";
import { BUFFER_LIMIT } from "../src/upstream/h1-client.ts";
import {
  bodyText,
  cleanup,
  closedWithin,
  countedSignal,
  get,
  headOf,
  listen,
  mkPool,
  ok,
  pattern,
  readAll,
  rejection,
  sleep,
  splitAfter,
  until,
  within,
  writeParts,
} from "./h1-upstream.ts";

afterEach(cleanup);

// ---------------------------------------------------------------- 1. Content-Length

test("1. a Content-Length body up to 64 KiB arrives whole as bytes (even in pieces), and the connection is reused", async () => {
  const big = pattern(BUFFER_LIMIT);
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/1") await writeParts(p.s, ["HTTP/1.1 200 OK\r\nContent-Le", "ngth: 11\r\nX-A: 1\r\n\r", "\nhello", " world"]);
      else
        await writeParts(p.s, [
          `HTTP/1.1 201 Created\r\nContent-Length: ${big.length}\r\n\r\n`,
          big.subarray(0, 1000),
          big.subarray(1000, 30_000),
          big.subarray(30_000),
        ]);
    },
  });
  const pool = mkPool(srv);
  const r1 = await within(pool.request(get("/1")), 2000, "first response");
  expect(r1.status).toBe(200);
  expect(r1.statusText).toBe("OK");
  expect(r1.kind).toBe("bytes");
  expect(r1.stream).toBeUndefined();
  expect(r1.headers.get("x-a")).toBe("1");
  expect(r1.headers.get("content-length")).toBe("11");
  expect(Buffer.from(await within(r1.bytes(), 2000, "first body")).toString()).toBe("hello world");
  expect(pool.idleCount).toBe(1);

  const r2 = await within(pool.request(get("/2")), 2000, "second response");
  expect(r2.status).toBe(201);
  expect(r2.statusText).toBe("Created");
  expect(r2.kind).toBe("bytes");
  // pieces that arrived in separate reads must not have been overwritten by later ones
  expect(Buffer.compare(Buffer.from(await within(r2.bytes(), 2000, "second body")), big)).toBe(0);
  // bytes() may be asked again once the body is whole
  expect((await r2.bytes()).byteLength).toBe(BUFFER_LIMIT);
  expect(pool.opened).toBe(1);
  expect(srv.peers.length).toBe(1);
  expect(srv.peers[0]!.reqs.map((r) => r.raw.toString("latin1"))).toEqual([headOf("GET", "/1"), headOf("GET", "/2")]);
  expect(pool.idleCount).toBe(1);
});

test("1b. a Content-Length body over 64 KiB streams, exact, and the connection is reused", async () => {
  const big = pattern(300_000, 7);
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/big")
        await writeParts(p.s, [
          `HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n${big.subarray(0, 5).toString("latin1")}`,
          big.subarray(5, 100_000),
          big.subarray(100_000),
        ]);
      else await writeParts(p.s, [ok("next")]);
    },
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/big"));
  expect(r.kind).toBe("stream");
  expect(r.headers.get("content-length")).toBe(String(big.length));
  expect(Buffer.compare(await within(readAll(r.stream!), 2000, "big body"), big)).toBe(0);
  expect(await bodyText(await pool.request(get("/n")))).toBe("next");
  expect(pool.opened).toBe(1);
  expect(srv.peers.length).toBe(1);
});

// ---------------------------------------------------------------- 2. chunked

const CHUNKED_HEAD = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nX-A: 1\r\n\r\n";
const CHUNKED_BODY = '4;ext=1\r\nWiki\r\n6;a="b;c"; d\r\npedia \r\nE\r\n in\r\n\r\nchunks.\r\n0;last=yes\r\nX-T: v\r\nX-U: w\r\n\r\n';

test("2. a chunked body with extensions and trailers, split at awkward points, streams exact; the connection is reused", async () => {
  const parts = splitAfter(
    CHUNKED_HEAD + CHUNKED_BODY,
    "X-A: 1\r\n\r", // head: between the last CR and LF
    "4;ex", // inside a size line's extension
    "Wi", // inside data
    "ki\r", // between CR and LF after data
    '6;a="b', // inside a quoted extension
    "pedia \r\n", // exactly at a chunk boundary
    "E", // inside a size line, before its CR
    " in\r\n", // inside data that holds CRLF
    "chunks.\r\n0", // in the last chunk's size line
    ";last=yes\r", // between CR and LF of the last chunk
    "X-T: v\r\nX-", // inside the trailer section
    "U: w\r\n\r", // between CR and LF of the final empty line
  );
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/c") await writeParts(p.s, parts);
      else await writeParts(p.s, [ok("again")]);
    },
  });
  const pool = mkPool(srv);
  const r = await within(pool.request(get("/c")), 2000, "chunked head");
  expect(r.kind).toBe("stream");
  expect(r.headers.get("x-a")).toBe("1");
  expect(r.headers.has("transfer-encoding")).toBe(false);
  expect(r.headers.has("trailer")).toBe(false);
  expect(r.headers.has("content-length")).toBe(false);
  expect((await within(readAll(r.stream!), 3000, "chunked body")).toString("latin1")).toBe("Wikipedia  in\r\n\r\nchunks.");
  // the trailer fields are not mistaken for the next response's head
  const r2 = await within(pool.request(get("/2")), 2000, "second response");
  expect(await bodyText(r2)).toBe("again");
  expect(pool.opened).toBe(1);
  expect(srv.peers.length).toBe(1);
});

test("2b. chunked with a large uppercase-hex chunk, and Content-Length beside chunked: chunked wins, Content-Length is dropped", async () => {
  const data = pattern(0x1a0f0, 3);
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/c") {
        await writeParts(p.s, [
          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1A0F0\r\n",
          data.subarray(0, 50_000),
          data.subarray(50_000),
          "\r\n0\r\n\r\n",
        ]);
      } else await writeParts(p.s, [ok("x")]);
    },
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/c"));
  expect(r.kind).toBe("stream");
  expect(r.headers.has("content-length")).toBe(false);
  expect(Buffer.compare(await within(readAll(r.stream!), 2000, "body"), data)).toBe(0);
});

// ---------------------------------------------------------------- 3. close-delimited

test("3. a close-delimited body (no length, not chunked) runs to the close; the connection is not reused", async () => {
  const srv = listen({
    onRequest: async (p) => {
      await writeParts(p.s, ["HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nfirst,", " second,", " third"]);
      await sleep(10);
      p.s.end();
    },
  });
  const pool = mkPool(srv);
  const r = await within(pool.request(get("/")), 2000, "head");
  expect(r.kind).toBe("stream");
  expect((await within(readAll(r.stream!), 2000, "body to the close")).toString()).toBe("first, second, third");
  expect(pool.idleCount).toBe(0);
  const r2 = await within(pool.request(get("/")), 2000, "second head");
  expect(await within(bodyText(r2), 2000, "second body")).toBe("first, second, third");
  expect(pool.opened).toBe(2);
  expect(srv.peers.length).toBe(2);
});

test("3b. a transfer coding other than chunked is close-delimited, and its Content-Length is dropped", async () => {
  const srv = listen({
    onRequest: async (p) => {
      await writeParts(p.s, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nabc", "def"]);
      p.s.end();
    },
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/"));
  expect(r.kind).toBe("stream");
  expect(r.headers.has("content-length")).toBe(false);
  expect(r.headers.has("transfer-encoding")).toBe(false);
  expect((await within(readAll(r.stream!), 2000, "body")).toString()).toBe("abcdef");
  expect(pool.idleCount).toBe(0);
});

// ---------------------------------------------------------------- 4. interim responses

for (const together of [false, true]) {
  test(`4. 100 Continue and 103 Early Hints before a 200 (${together ? "in one write" : "in separate writes"}) give the 200 with its body`, async () => {
    const interim = ["HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", ok("final", "X-F: 1\r\n")];
    const srv = listen({
      onRequest: async (p, r) => {
        if (r.target === "/i") await writeParts(p.s, together ? [interim.join("")] : interim);
        else await writeParts(p.s, [ok("next")]);
      },
    });
    const pool = mkPool(srv);
    const r = await within(pool.request(get("/i")), 1500, "the final response after 1xx");
    expect(r.status).toBe(200);
    expect(r.headers.get("x-f")).toBe("1");
    expect(r.headers.has("link")).toBe(false);
    expect(await within(bodyText(r), 1000, "body")).toBe("final");
    expect(await within(bodyText(await pool.request(get("/n"))), 1000, "next")).toBe("next");
    expect(pool.opened).toBe(1);
  });
}

// ---------------------------------------------------------------- 5. bodiless responses

test("5. HEAD with a Content-Length, 204, 304 and Content-Length 0 have no body (kind none), and the connection is reused", async () => {
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.method === "HEAD") await writeParts(p.s, ["HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"]);
      else if (r.target === "/204") await writeParts(p.s, ["HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"]);
      else if (r.target === "/304") await writeParts(p.s, ['HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: "e"\r\n\r\n']);
      else if (r.target === "/0") await writeParts(p.s, ["HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]);
      else await writeParts(p.s, [ok("body")]);
    },
  });
  const pool = mkPool(srv);
  const h = await within(pool.request(get("/h", undefined, "HEAD")), 1000, "HEAD");
  expect(h.kind).toBe("none");
  expect(h.stream).toBeUndefined();
  expect(h.headers.get("content-length")).toBe("1234");
  const g = await within(pool.request(get("/g")), 1000, "GET after HEAD");
  expect(await bodyText(g)).toBe("body");
  const n = await within(pool.request(get("/204")), 1000, "204");
  expect([n.status, n.kind]).toEqual([204, "none"]);
  const m = await within(pool.request(get("/304")), 1000, "304");
  expect([m.status, m.kind, m.headers.get("content-length")]).toEqual([304, "none", "99"]);
  const z = await within(pool.request(get("/0")), 1000, "Content-Length 0");
  expect([z.status, z.kind]).toEqual([200, "none"]);
  expect(await bodyText(await within(pool.request(get("/g")), 1000, "last GET"))).toBe("body");
  expect(pool.opened).toBe(1);
  expect(srv.peers.length).toBe(1);
  expect(srv.peers[0]!.reqs.length).toBe(6);
});

// ---------------------------------------------------------------- 6. Connection: close, HTTP/1.0

for (const [name, response, reused] of [
  ["Connection: close", ok("a", "Connection: X-Foo, Close\r\n"), false],
  ["HTTP/1.0 without keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na", false],
  ["HTTP/1.0 with Connection: keep-alive (control)", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\na", true],
] as const) {
  test(`6. ${name}: the connection is ${reused ? "" : "not "}reused`, async () => {
    const srv = listen({ onRequest: (p) => writeParts(p.s, [response]) });
    const pool = mkPool(srv);
    expect(await bodyText(await within(pool.request(get("/")), 1000, "first"))).toBe("a");
    expect(pool.idleCount).toBe(reused ? 1 : 0);
    if (!reused)
      await within(
        until(() => srv.closed() === 1, 500, "the server to see the close"),
        1000,
        "close",
      );
    expect(await bodyText(await within(pool.request(get("/")), 1000, "second"))).toBe("a");
    expect(pool.opened).toBe(reused ? 1 : 2);
    expect(srv.peers.length).toBe(reused ? 1 : 2);
  });
}

// ---------------------------------------------------------------- 7. hop-by-hop fields

test("7. hop-by-hop response fields (and fields named in Connection) are removed; others, with repeated Set-Cookie, are kept", async () => {
  const response =
    "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nProxy-Connection: keep-alive\r\n" +
    "Trailer: X-T\r\nUpgrade: h2c\r\nX-Secret: s\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\nX-Other: ok\r\nCache-Control: no-store\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
  const srv = listen({ onRequest: (p) => writeParts(p.s, [response]) });
  const pool = mkPool(srv);
  const r = await within(pool.request(get("/")), 1000, "head");
  expect([...new Set([...r.headers].map(([name]) => name))].sort()).toEqual(["cache-control", "set-cookie", "x-other"]);
  expect(r.headers.getAll("set-cookie")).toEqual(["a=1; Path=/", "b=2"]);
  expect(r.headers.get("x-other")).toBe("ok");
  expect(await within(bodyText(r), 1000, "body")).toBe("hi");
  expect(pool.idleCount).toBe(1);
});

// ---------------------------------------------------------------- 9. malformed responses

const bigField = `X-Big: ${"a".repeat(70_000)}\r\n`;
for (const [name, parts] of [
  ["a bad status code", ["HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n"]],
  ["not HTTP at all", ["ICY 200 OK\r\n\r\n"]],
  ["a status line without the space", ["HTTP/1.1200 OK\r\n\r\n"]],
  ["two different Content-Length values", ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"]],
  ["a Content-Length that is not digits", ["HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"]],
  ["whitespace before the colon", ["HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello"]],
  ["a tab before the colon of another field", ["HTTP/1.1 200 OK\r\nX-A\t: 1\r\nContent-Length: 0\r\n\r\n"]],
  ["an obs-fold line", ["HTTP/1.1 200 OK\r\nX-A: a\r\n  folded\r\nContent-Length: 0\r\n\r\n"]],
  ["an obs-fold line holding a colon", ["HTTP/1.1 200 OK\r\nX-A: a\r\n\tb: c\r\nContent-Length: 0\r\n\r\n"]],
  ["a line without a colon", ["HTTP/1.1 200 OK\r\ngarbage\r\nContent-Length: 0\r\n\r\n"]],
  ["101 Switching Protocols", ["HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"]],
  ["a head over 64 KiB arriving in pieces", ["HTTP/1.1 200 OK\r\n", ...Array.from({ length: 5 }, () => `X-Big: ${"a".repeat(16_384)}\r\n`)]],
  ["a head over 64 KiB arriving with its end", [`HTTP/1.1 200 OK\r\n${bigField}Content-Length: 0\r\n\r\n`]],
  ["a field name with a space inside", ["HTTP/1.1 200 OK\r\nX Y: z\r\nContent-Length: 0\r\n\r\n"]],
  ["a field value with a NUL", ["HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n"]],
  ["a field value with a bare CR", ["HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n"]],
  ["a field name with a delimiter", ["HTTP/1.1 200 OK\r\nX(A): b\r\nContent-Length: 0\r\n\r\n"]],
] as const) {
  test(`9. malformed response: ${name} → EPROTO, connection closed`, async () => {
    const srv = listen({ onRequest: (p) => writeParts(p.s, parts, 5) });
    const pool = mkPool(srv);
    const e = await rejection(pool.request(get("/")), 1500, name);
    expect({ code: e.code, serverSawClose: await closedWithin(srv, 1, 500) }).toEqual({ code: "EPROTO", serverSawClose: true });
    expect(pool.idleCount).toBe(0);
  });
}

test("9b. a bad chunk size errors the body stream with EPROTO and closes the connection", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "zz\r\nabc\r\n0\r\n\r\n"]) });
  const pool = mkPool(srv);
  const r = await pool.request(get("/"));
  const e = await rejection(readAll(r.stream!), 1000, "body");
  expect(e.code).toBe("EPROTO");
  expect(pool.idleCount).toBe(0);
  await within(
    until(() => srv.closed() === 1, 500, "close"),
    1000,
    "close",
  );
});

// ---------------------------------------------------------------- review: other edges

test("R1. a body cut short by the upstream's close fails: bytes() and the stream reject with ECONNRESET", async () => {
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/b") await writeParts(p.s, ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]);
      else await writeParts(p.s, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"]);
      await sleep(10);
      p.s.end();
    },
  });
  const pool = mkPool(srv);
  const b = await pool.request(get("/b"));
  expect((await rejection(b.bytes(), 1000, "cut bytes")).code).toBe("ECONNRESET");
  const s = await pool.request(get("/s"));
  expect((await rejection(readAll(s.stream!), 1000, "cut stream")).code).toBe("ECONNRESET");
  expect(pool.idleCount).toBe(0);
});

test("R2. bytes after a Content-Length body, or unasked-for bytes on an idle connection, take the connection out of use", async () => {
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/extra") await writeParts(p.s, [`${ok("ab")}HTTP/1.1 200 OK\r\n`]);
      else {
        await writeParts(p.s, [ok("cd")]);
        await sleep(20);
        p.s.write("junk");
      }
    },
  });
  const pool = mkPool(srv);
  expect(await bodyText(await pool.request(get("/extra")))).toBe("ab");
  expect(pool.idleCount).toBe(0);
  expect(await bodyText(await pool.request(get("/junk")))).toBe("cd");
  expect(pool.idleCount).toBe(1);
  await sleep(60);
  expect(pool.idleCount).toBe(0);
  await within(
    until(() => srv.closed() === 2, 500, "close"),
    1000,
    "close",
  );
});

test("R3. no abort listener is left on the signal after bytes, stream, none, EPROTO and refused outcomes", async () => {
  const srv = listen({
    onRequest: (p, r) =>
      writeParts(p.s, [
        r.target === "/bad"
          ? "HTTP/1.1 XYZ\r\n\r\n"
          : r.target === "/s"
            ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
            : r.target === "/n"
              ? "HTTP/1.1 204 No Content\r\n\r\n"
              : ok("b"),
      ]),
  });
  const pool = mkPool(srv);
  const sig = countedSignal();
  expect(await bodyText(await pool.request(get("/b", sig.signal)))).toBe("b");
  expect(await bodyText(await pool.request(get("/s", sig.signal)))).toBe("a");
  expect(await bodyText(await pool.request(get("/n", sig.signal)))).toBe("");
  await rejection(pool.request(get("/bad", sig.signal)), 1000, "bad");
  expect(sig.listeners()).toBe(0);
});

test("R4. a close-delimited body ended by a connection reset (not a clean close) fails instead of looking complete", async () => {
  const srv = listen({
    onRequest: async (p) => {
      await writeParts(p.s, ["HTTP/1.1 200 OK\r\n\r\npartial"]);
      await sleep(20);
      p.s.terminate();
    },
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/"));
  expect(r.kind).toBe("stream");
  const out = await within(
    readAll(r.stream!).then(
      (b) => `complete: ${b.toString()}`,
      (e: Error & { code?: string }) => `failed: ${e.code}`,
    ),
    1000,
    "body",
  );
  expect(out).toBe("failed: ECONNRESET");
});

test("R5. Transfer-Encoding chunked then gzip (chunked not the final coding) is close-delimited, not dechunked (RFC 9112 §6.3 item 4)", async () => {
  const srv = listen({
    onRequest: async (p) => {
      await writeParts(p.s, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\nraw gzip bytes"]);
      await sleep(10);
      p.s.end();
    },
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/"));
  const out = await within(
    readAll(r.stream!).then(
      (b) => b.toString(),
      (e: Error & { code?: string }) => `failed: ${e.code}`,
    ),
    1000,
    "body",
  );
  expect(out).toBe("raw gzip bytes");
});

test("R6. an HTTP/1.0 response with Transfer-Encoding is not reused even with keep-alive (RFC 9112 §6.1)", async () => {
  const srv = listen({
    onRequest: (p) => writeParts(p.s, ["HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"]),
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/"));
  await within(bodyText(r), 1000, "body");
  expect(pool.idleCount).toBe(0);
});
