import { describe, expect, test } from "bun:test";
import { type HeadError, isHeadError, parseRequestHead, type RequestHead, type RequestLimits } from "./h1-request.ts";

const bytes = (s: string) => Buffer.from(s, "latin1");
const parse = (s: string, limits?: RequestLimits) => parseRequestHead(bytes(s), limits);
const head = (s: string, limits?: RequestLimits): RequestHead => {
  const r = parse(s, limits);
  if (r === undefined || isHeadError(r)) throw new Error(`expected a head, got ${JSON.stringify(r)}`);
  return r;
};
const refused = (s: string, limits?: RequestLimits): HeadError => {
  const r = parse(s, limits);
  if (!isHeadError(r)) throw new Error(`expected a refusal, got ${JSON.stringify(r)}`);
  return r;
};
const GET = (fields = "Host: app.test\r\n", line = "GET /a?b=1 HTTP/1.1") => `${line}\r\n${fields}\r\n`;

describe("a well-formed head", () => {
  test("request line, fields in order with lowercased names and trimmed values, where the body starts", () => {
    const text = GET("Host: app.test\r\nX-Thing:  two words \t\r\nACCEPT: */*\r\n");
    const h = head(`${text}next`);
    expect([h.method, h.target, h.path, h.query, h.host, h.version]).toEqual(["GET", "/a?b=1", "/a", "?b=1", "app.test", "1.1"]);
    expect(h.fields).toEqual([
      ["host", "app.test"],
      ["x-thing", "two words"],
      ["accept", "*/*"],
    ]);
    expect([h.framing, h.keepAlive, h.expectContinue, h.upgrade]).toEqual(["none", true, false, undefined]);
    expect(h.headBytes).toBe(text.length);
  });

  test("an incomplete head is undefined, wherever it stops (even between CR and LF)", () => {
    const text = GET();
    for (let cut = 0; cut < text.length; cut++) expect(parse(text.slice(0, cut))).toBeUndefined();
  });

  test("empty lines before the request line are skipped (RFC 9112 §2.2)", () => {
    const h = head(`\r\n\r\n${GET()}`);
    expect(h.path).toBe("/a");
    expect(h.headBytes).toBe(4 + GET().length);
  });

  test("pipelined requests: headBytes is where the second one starts", () => {
    const two = GET() + GET("Host: app.test\r\n", "GET /second HTTP/1.1");
    const first = head(two);
    expect(head(two.slice(first.headBytes)).path).toBe("/second");
  });
});

describe("line endings and the request line", () => {
  test("a bare LF or a bare CR anywhere in the head: 400", () => {
    expect(refused("GET / HTTP/1.1\nHost: a\r\n\r\n").status).toBe(400);
    expect(refused("GET / HTTP/1.1\r\nHost: a\n\r\n").status).toBe(400);
    expect(refused("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n").status).toBe(400);
    expect(refused("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n").status).toBe(400);
  });

  test("method, target and version separated by exactly one space; the method a token; the target visible ASCII", () => {
    for (const line of ["GET  / HTTP/1.1", "GET / HTTP/1.1 ", " GET / HTTP/1.1", "GET /", "G(ET / HTTP/1.1", "GET /a\tb HTTP/1.1", "GET /\u00e9 HTTP/1.1"]) {
      expect(refused(GET(undefined, line)).status).toBe(400);
    }
  });

  test("versions: 1.0 and 1.1 served, other HTTP versions 505, anything else 400", () => {
    expect(head(GET("", "GET / HTTP/1.0")).version).toBe("1.0");
    expect(refused(GET(undefined, "GET / HTTP/2.0")).status).toBe(505);
    expect(refused(GET(undefined, "GET / HTTP/1.2")).status).toBe(505);
    for (const v of ["http/1.1", "HTTP/1.1x", "HTTP/11", "HTTPS/1.1"]) expect(refused(GET(undefined, `GET / ${v}`)).status).toBe(400);
  });

  test("a request line over the limit: 414, even before the head is complete", () => {
    const limits = { maxLineBytes: 64, maxHeadBytes: 1024, maxFields: 10 };
    const long = `GET /${"a".repeat(100)} HTTP/1.1`;
    expect(refused(GET(undefined, long), limits).status).toBe(414);
    expect(refused(long.slice(0, 80), limits).status).toBe(414);
    expect(head(GET(undefined, `GET /${"a".repeat(40)} HTTP/1.1`), limits).path.length).toBe(41);
  });
});

describe("header fields", () => {
  test("obs-fold, whitespace before the colon, a name that is not a token, no colon, an empty name: 400", () => {
    for (const f of ["X-A: 1\r\n continued\r\n", "X-A : 1\r\n", "X-A\t: 1\r\n", "X(A): 1\r\n", "X-A 1\r\n", ": 1\r\n"]) {
      expect(refused(GET(`Host: a\r\n${f}`)).status).toBe(400);
    }
  });

  test("NUL and control characters in a value: 400; tabs and bytes above 0x7f are allowed", () => {
    expect(refused(GET("Host: a\r\nX-A: a\u0000b\r\n")).reason).toContain("NUL");
    expect(refused(GET("Host: a\r\nX-A: a\u0001b\r\n")).status).toBe(400);
    expect(refused(GET("Host: a\r\nX-A: a\u007fb\r\n")).status).toBe(400);
    expect(head(GET("Host: a\r\nX-A: a\tb\u00e9\r\n")).fields[1]).toEqual(["x-a", "a\tb\u00e9"]);
  });

  test("a head or a field count over the limit: 431, even before the head is complete", () => {
    const limits = { maxLineBytes: 64, maxHeadBytes: 128, maxFields: 3 };
    expect(refused(GET(`Host: a\r\nX-Big: ${"b".repeat(200)}\r\n`), limits).status).toBe(431);
    expect(refused(`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"b".repeat(200)}`, limits).status).toBe(431);
    expect(refused(GET("Host: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n"), limits).status).toBe(431);
    expect(head(GET("Host: a\r\nA: 1\r\nB: 2\r\n"), limits).fields.length).toBe(3);
  });
});

describe("Host and the request target", () => {
  test("HTTP/1.1 needs exactly one Host; HTTP/1.0 may have none", () => {
    expect(refused(GET("")).reason).toContain("without Host");
    expect(refused(GET("Host: a\r\nHost: b\r\n")).reason).toContain("more than one Host");
    expect(refused(GET("Host: a\r\nhost: a\r\n")).status).toBe(400);
    expect(head(GET("", "GET / HTTP/1.0")).host).toBe("");
  });

  test("an absolute-form target is routed by its authority; a Host that names another one: 400 (RFC 9112 §3.2.2)", () => {
    const h = head(GET("Host: APP.test:8080\r\n", "GET http://app.test:8080/x?y HTTP/1.1"));
    expect([h.host, h.authority, h.path, h.query]).toEqual(["app.test:8080", "app.test:8080", "/x", "?y"]);
    expect(head(GET("Host: app.test\r\n", "GET https://app.test HTTP/1.1")).path).toBe("/");
    expect(head(GET("Host: app.test\r\n", "GET HTTP://app.test?q HTTP/1.1")).query).toBe("?q");
    expect(refused(GET("Host: app.test\r\n", "GET http://evil.test/x HTTP/1.1")).reason).toContain("another authority");
  });

  test("targets that are no request-target: 400 (userinfo, an empty host, other schemes, a fragment, a bare word)", () => {
    for (const t of ["http://user@app.test/", "http:///x", "ftp://app.test/", "/a#frag", "a/b", "app.test"]) {
      expect(refused(GET("Host: app.test\r\n", `GET ${t} HTTP/1.1`)).status).toBe(400);
    }
  });

  test("CONNECT takes host:port only; * is for OPTIONS only", () => {
    const c = head(GET("Host: app.test:443\r\n", "CONNECT app.test:443 HTTP/1.1"));
    expect([c.method, c.authority, c.host]).toEqual(["CONNECT", "app.test:443", "app.test:443"]);
    expect(refused(GET("Host: a\r\n", "CONNECT /x HTTP/1.1")).status).toBe(400);
    expect(head(GET("Host: a\r\n", "OPTIONS * HTTP/1.1")).path).toBe("*");
    expect(refused(GET("Host: a\r\n", "GET * HTTP/1.1")).status).toBe(400);
  });
});

describe("framing (RFC 9112 §6)", () => {
  test("Content-Length: digits only, repeated only with the same value; 0 means no body", () => {
    const h = head(GET("Host: a\r\nContent-Length: 5\r\n"));
    expect([h.framing, h.length]).toEqual(["length", 5]);
    expect(head(GET("Host: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n")).length).toBe(5);
    expect(head(GET("Host: a\r\nContent-Length: 5, 5\r\n")).length).toBe(5);
    expect(head(GET("Host: a\r\nContent-Length: 0\r\n")).framing).toBe("none");
    for (const v of ["+5", "5a", "0x5", "-1", "", "5 5", "1234567890123456", "5, 6"]) {
      expect(refused(GET(`Host: a\r\nContent-Length: ${v}\r\n`)).status).toBe(400);
    }
    expect(refused(GET("Host: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n")).reason).toContain("Content-Length");
  });

  test("Transfer-Encoding: chunked alone; other codings 501; chunked twice, beside Content-Length, or in HTTP/1.0: 400", () => {
    expect(head(GET("Host: a\r\nTransfer-Encoding: Chunked\r\n")).framing).toBe("chunked");
    expect(refused(GET("Host: a\r\nTransfer-Encoding: gzip\r\n")).status).toBe(501);
    expect(refused(GET("Host: a\r\nTransfer-Encoding: gzip, chunked\r\n")).status).toBe(501);
    expect(refused(GET("Host: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")).status).toBe(400);
    expect(refused(GET("Host: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n")).reason).toContain("both");
    expect(refused(GET("Host: a\r\nTransfer-Encoding: chunked\r\n", "POST / HTTP/1.0")).reason).toContain("HTTP/1.0");
  });
});

describe("the connection", () => {
  test("keep-alive: HTTP/1.1 unless close, HTTP/1.0 only with keep-alive", () => {
    expect(head(GET("Host: a\r\nConnection: close\r\n")).keepAlive).toBe(false);
    expect(head(GET("Host: a\r\nConnection: keep-alive, Close\r\n")).keepAlive).toBe(false);
    expect(head(GET("", "GET / HTTP/1.0")).keepAlive).toBe(false);
    expect(head(GET("Connection: keep-alive\r\n", "GET / HTTP/1.0")).keepAlive).toBe(true);
  });

  test("Expect: 100-continue and an Upgrade that Connection names", () => {
    expect(head(GET("Host: a\r\nExpect: 100-Continue\r\n")).expectContinue).toBe(true);
    expect(head(GET("Host: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")).upgrade).toBe("websocket");
    expect(head(GET("Host: a\r\nUpgrade: websocket\r\n")).upgrade).toBeUndefined();
  });
});
