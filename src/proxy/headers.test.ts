import { expect, test } from "bun:test";
import { appendVia, setForwarded, stripHopByHop } from "./headers.ts";
import { isWellFormedId, requestId } from "./request-id.ts";

test("stripHopByHop removes the fixed list and whatever Connection names", () => {
  const h = new Headers({
    connection: "close, X-Trace , keep-alive",
    "x-trace": "1",
    "keep-alive": "5",
    te: "trailers",
    upgrade: "h2c",
    "transfer-encoding": "chunked",
    "x-keep": "yes",
  });
  stripHopByHop(h);
  expect([...h.keys()]).toEqual(["x-keep"]);
});

test("setForwarded quotes IPv6 and hosts with ports (RFC 7239 §6)", () => {
  const h = new Headers();
  setForwarded(h, { client: "2001:db8::1", proto: "https", host: "example.com:8443" }, false);
  expect(h.get("forwarded")).toBe('for="[2001:db8::1]";host="example.com:8443";proto=https');
  expect(h.get("x-forwarded-for")).toBe("2001:db8::1");
});

test("appendVia extends an existing Via list", () => {
  const h = new Headers({ via: "1.0 fred" });
  appendVia(h, "1.1 gatehouse");
  expect(h.get("via")).toBe("1.0 fred, 1.1 gatehouse");
});

test("request ids: a well-formed client id is kept, anything else replaced by a unique one", () => {
  expect(requestId("01HZX5-abc.def_123")).toBe("01HZX5-abc.def_123");
  for (const bad of ["", "has space", "a\r\nInjected: 1", "x".repeat(129), "ünïcode"]) {
    expect(isWellFormedId(bad)).toBe(false);
    expect(requestId(bad)).not.toBe(bad);
  }
  const ids = new Set(Array.from({ length: 1000 }, () => requestId(null)));
  expect(ids.size).toBe(1000);
});
