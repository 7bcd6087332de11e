import { afterAll, beforeAll, expect, test } from "bun:test";
import { origin, rawRequest, startGateway, type TestGateway } from "./harness.ts";
import { Client } from "./raw-client.ts";

// Origins that echo what they received, so tests can assert what the gateway forwarded.
const seen: { name: string; headers: Record<string, string>; url: string }[] = [];
const echo = (name: string) =>
  origin((req) => {
    const headers = Object.fromEntries(req.headers);
    seen.push({ name, headers, url: req.url });
    return Response.json(
      { name, headers, path: new URL(req.url).pathname + new URL(req.url).search },
      {
        headers: { "x-origin": name, connection: "x-secret", "x-secret": "hop", "keep-alive": "timeout=5" },
      },
    );
  });
const a = echo("a");
const b = echo("b");
const api = echo("api");
const v2 = echo("v2");
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({
    extra: `[proxy]\ntrusted_proxies = ["127.0.0.2"]\nvia = "edge-1"`,
    routes: {
      shop: `hosts = ["shop.example", "www.shop.example"]
upstreams = ["http://127.0.0.1:${a.port}"]

[[paths]]
prefix = "/api/"
upstreams = ["http://127.0.0.1:${api.port}"]

[[paths]]
prefix = "/api/v2"
upstreams = ["http://127.0.0.1:${v2.port}"]
strip_prefix = true
`,
      apps: `hosts = ["*.apps.example"]\nupstreams = ["http://127.0.0.1:${b.port}"]\npreserve_host = false\n`,
      moved: `hosts = ["old.example"]\nredirect = "https://new.example/"\nredirect_status = 301\n`,
    },
  });
});

afterAll(async () => {
  await gw.cleanup();
  for (const o of [a, b, api, v2]) o.stop(true);
});

async function json(res: Response) {
  return (await res.json()) as { name: string; headers: Record<string, string>; path: string };
}

test("exact hosts route case-insensitively and ignore the port", async () => {
  expect((await json(await gw.request("shop.example"))).name).toBe("a");
  expect((await json(await gw.request("WWW.Shop.Example:8080"))).name).toBe("a");
});

test("a wildcard host matches one label only", async () => {
  expect((await json(await gw.request("x.apps.example"))).name).toBe("b");
  const deeper = await gw.request("x.y.apps.example");
  expect(deeper.status).toBe(404);
});

test("the longest path prefix wins, on segment boundaries, with strip_prefix", async () => {
  expect((await json(await gw.request("shop.example", "/api/users?q=1"))).name).toBe("api");
  expect((await json(await gw.request("shop.example", "/api/users?q=1"))).path).toBe("/api/users?q=1");
  const r = await json(await gw.request("shop.example", "/api/v2/items?x=y"));
  expect(r.name).toBe("v2");
  expect(r.path).toBe("/items?x=y");
  expect((await json(await gw.request("shop.example", "/apix"))).name).toBe("a");
});

test("an unknown host gets 404 over plain HTTP with a request id", async () => {
  const res = await gw.request("nobody.example", "/", { headers: { "x-request-id": "trace-123" } });
  expect(res.status).toBe(404);
  expect(res.headers.get("x-request-id")).toBe("trace-123");
  expect(await res.text()).toContain("trace-123");
});

test("a redirect site keeps path and query", async () => {
  const res = await gw.request("old.example", "/a/b?c=d");
  expect(res.status).toBe(301);
  expect(res.headers.get("location")).toBe("https://new.example/a/b?c=d");
});

test("hop-by-hop headers, and those Connection names, are removed both ways", async () => {
  const res = await gw.request("shop.example", "/", {
    headers: {
      connection: "keep-alive, x-private",
      "x-private": "secret",
      "keep-alive": "timeout=5",
      te: "trailers",
      "proxy-connection": "keep-alive",
      "x-normal": "1",
    },
  });
  const got = (await json(res)).headers;
  expect(got["x-private"]).toBeUndefined();
  expect(got.te).toBeUndefined();
  expect(got["proxy-connection"]).toBeUndefined();
  expect(got["keep-alive"]).toBeUndefined();
  expect(got["x-normal"]).toBe("1");
  expect(res.headers.get("x-secret")).toBeNull();
  expect(res.headers.get("keep-alive")).toBeNull();
  expect(res.headers.get("x-origin")).toBe("a");
});

test("a client that sends Connection: close is told so, and the connection closes after the response (RFC 9112 §9.6)", async () => {
  const raw = await rawRequest(gw.httpPort, "GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n");
  expect(raw).toStartWith("HTTP/1.1 200");
  expect(raw.toLowerCase()).toContain("\r\nconnection: close\r\n");
});

test("forwarded headers from an untrusted client are replaced, Host is kept, Via and X-Request-ID are set", async () => {
  const res = await gw.request("shop.example:8080", "/", {
    headers: { "x-forwarded-for": "6.6.6.6", "x-forwarded-proto": "https", "x-forwarded-host": "evil", forwarded: "for=6.6.6.6", via: "1.0 corp" },
  });
  const got = (await json(res)).headers;
  expect(got["x-forwarded-for"]).toBe("127.0.0.1");
  expect(got["x-forwarded-proto"]).toBe("http");
  expect(got["x-forwarded-host"]).toBe("shop.example:8080");
  expect(got.forwarded).toBe('for=127.0.0.1;host="shop.example:8080";proto=http');
  expect(got.host).toBe("shop.example:8080");
  expect(got.via).toBe("1.0 corp, 1.1 edge-1");
  expect(got["x-request-id"]).toMatch(/^[0-9a-f]{16}-[0-9a-f]+$/);
  expect(res.headers.get("x-request-id")).toBe(got["x-request-id"]!);
  expect(res.headers.get("via")).toBe("1.1 edge-1");
});

test("forwarded headers from a trusted proxy are extended, not replaced", async () => {
  // Connect from 127.0.0.2, which the config trusts (Bun's fetch cannot pick a source address).
  const raw = await new Promise<string>((resolve, reject) => {
    let buf = "";
    const net = require("node:net") as typeof import("node:net");
    const s = net.connect({ host: "127.0.0.1", port: gw.httpPort, localAddress: "127.0.0.2" }, () => {
      s.write(
        "GET / HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nForwarded: for=203.0.113.9;proto=https\r\nConnection: close\r\n\r\n",
      );
    });
    s.on("data", (d) => (buf += d.toString()));
    s.on("end", () => resolve(buf));
    s.on("error", reject);
  });
  const body = JSON.parse(
    raw
      .slice(raw.indexOf("\r\n\r\n") + 4)
      .replace(/^[0-9a-f]+\r\n/, "")
      .replace(/\r\n0\r\n\r\n$/, ""),
  ) as { headers: Record<string, string> };
  expect(body.headers["x-forwarded-for"]).toBe("203.0.113.9, 127.0.0.2");
  expect(body.headers["x-forwarded-proto"]).toBe("https");
  expect(body.headers.forwarded).toBe("for=203.0.113.9;proto=https, for=127.0.0.2;host=shop.example;proto=http");
});

test("preserve_host = false sends the upstream's own host", async () => {
  const got = (await json(await gw.request("x.apps.example"))).headers;
  expect(got.host).toBe(`127.0.0.1:${b.port}`);
  expect(got["x-forwarded-host"]).toBe("x.apps.example");
});

test("upstream connections are reused (keep-alive)", async () => {
  const ports = new Set<number>();
  const counting = origin((req, server) => {
    ports.add(server.requestIP(req)!.port);
    return new Response("ok");
  });
  try {
    gw.writeRoute("ka", `hosts = ["ka.example"]\nupstreams = ["http://127.0.0.1:${counting.port}"]\n`);
    await gw.reload();
    for (let i = 0; i < 50; i++) expect(await (await gw.request("ka.example")).text()).toBe("ok");
    // 50 sequential requests; a new connection each time would show 50 source ports.
    expect(ports.size).toBeLessThanOrEqual(2);
  } finally {
    counting.stop(true);
  }
});

test("the access log counts the bytes of the gateway's own answers (404, 405 and the like), not 0 (issue 13, item 5)", async () => {
  const answers = [
    await rawRequest(gw.httpPort, "GET / HTTP/1.1\r\nHost: nowhere.example\r\nX-Request-ID: own-404\r\nConnection: close\r\n\r\n"),
    await rawRequest(gw.httpPort, "CONNECT shop.example:443 HTTP/1.1\r\nHost: shop.example:443\r\nX-Request-ID: own-405\r\nConnection: close\r\n\r\n"),
  ];
  for (const [i, id] of ["own-404", "own-405"].entries()) {
    const raw = answers[i]!;
    const body = raw.slice(raw.indexOf("\r\n\r\n") + 4);
    const line = await gw.waitForLog((l) => l.msg === "access" && l.request_id === id);
    expect([line.status, line.bytes_out]).toEqual([Number(raw.slice(9, 12)), body.length]);
    expect(body.length).toBeGreaterThan(10);
  }
});

test("a request whose chunked body breaks is answered 400 and logged as 400, not as a client that left (issue 13, item 5)", async () => {
  // Broken in the bytes that came with the head: refused before any route, logged as refused with its status.
  const raw = await rawRequest(gw.httpPort, "POST /api/x HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n");
  expect(raw).toStartWith("HTTP/1.1 400 ");
  expect(await gw.waitForLog((l) => l.msg === "refused" && l.reason === "a chunk size that is not hex")).toMatchObject({ status: 400 });
  // Broken after the route began reading it: the route answers 400, and its access line says 400.
  const c = await Client.open(gw.httpPort);
  c.send("POST /api/x HTTP/1.1\r\nHost: shop.example\r\nX-Request-ID: broken-body\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
  await Bun.sleep(150);
  c.send("zz\r\n");
  await c.until((x) => x.closed, 3000, "the close after the 400");
  expect(c.text).toStartWith("HTTP/1.1 400 ");
  const line = await gw.waitForLog((l) => l.msg === "access" && l.request_id === "broken-body");
  expect(line.status).toBe(400);
});

test("the access log has one JSON line per request with route, status and upstream", async () => {
  await gw.request("shop.example", "/api/logged", { headers: { "x-request-id": "log-me-1" } });
  const line = await gw.waitForLog((l) => l.msg === "access" && l.request_id === "log-me-1");
  expect(line).toMatchObject({
    level: "info",
    host: "shop.example",
    route: "shop/api",
    method: "GET",
    path: "/api/logged",
    status: 200,
    upstream: `http://127.0.0.1:${api.port}`,
  });
  expect(typeof line.duration_ms).toBe("number");
  expect(typeof line.upstream_ms).toBe("number");
  expect(line.bytes_out as number).toBeGreaterThan(10);
  expect(typeof line.client).toBe("string");
});
