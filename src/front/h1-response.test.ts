import { expect, test } from "bun:test";
import { chunkHead, type Exchange, frameResponse, httpDate, LAST_CHUNK } from "./h1-response.ts";

const GET11: Exchange = { method: "GET", version: "1.1", keepAlive: true };
const fieldsOf = (head: string) => head.split("\r\n").slice(1, -2);
const without = (head: string, name: string) => fieldsOf(head).filter((f) => !f.startsWith(`${name}: `));

test("a body of known length: Content-Length from its size, whatever the headers said; Date added; hop-by-hop fields dropped", () => {
  const h = new Headers({ "content-type": "text/plain", "content-length": "999", "transfer-encoding": "chunked", "keep-alive": "timeout=5", date: "x" });
  const f = frameResponse(GET11, 200, h, { kind: "bytes", length: 5 });
  expect(f.head.startsWith("HTTP/1.1 200 OK\r\n")).toBe(true);
  expect(f.head.endsWith("\r\n\r\n")).toBe(true);
  expect(without(f.head, "date")).toEqual(["content-type: text/plain", "content-length: 5"]);
  expect(fieldsOf(f.head)).toContain(`date: ${httpDate()}`);
  expect([f.body, f.chunked, f.close]).toEqual([true, false, false]);
});

test("a stream of unknown length is chunked for HTTP/1.1 and ends with the close for HTTP/1.0; a declared length is kept", () => {
  const chunked = frameResponse(GET11, 200, new Headers(), { kind: "stream" });
  expect([chunked.chunked, chunked.close, without(chunked.head, "date")]).toEqual([true, false, ["transfer-encoding: chunked"]]);
  const old = frameResponse({ method: "GET", version: "1.0", keepAlive: true }, 200, new Headers(), { kind: "stream" });
  expect([old.chunked, old.close, without(old.head, "date")]).toEqual([false, true, ["connection: close"]]);
  const sized = frameResponse(GET11, 200, new Headers(), { kind: "stream", length: 1 << 20 });
  expect([sized.chunked, without(sized.head, "date")]).toEqual([false, ["content-length: 1048576"]]);
});

test("no body for HEAD, 1xx, 204 and 304; HEAD and 304 keep the Content-Length a GET would get, 204 never has one", () => {
  const head = frameResponse({ ...GET11, method: "HEAD" }, 200, new Headers({ "content-length": "42" }), { kind: "none" });
  expect([head.body, without(head.head, "date")]).toEqual([false, ["content-length: 42"]]);
  // Whatever shape the answer's (empty) body had: a 304 read as 0 bytes still describes the GET's 42.
  expect(without(frameResponse(GET11, 304, new Headers({ "content-length": "42" }), { kind: "bytes", length: 0 }).head, "date")).toEqual([
    "content-length: 42",
  ]);
  const notModified = frameResponse(GET11, 304, new Headers({ etag: '"e"' }), { kind: "none" });
  expect([notModified.body, without(notModified.head, "date")]).toEqual([false, ['etag: "e"']]);
  const empty = frameResponse(GET11, 204, new Headers({ "content-length": "0" }), { kind: "none" });
  expect([empty.body, without(empty.head, "date")]).toEqual([false, []]);
  expect(frameResponse(GET11, 101, new Headers({ upgrade: "websocket" }), { kind: "none" }).body).toBe(false);
  expect(frameResponse({ ...GET11, method: "HEAD" }, 200, new Headers(), { kind: "stream" }).chunked).toBe(false);
});

test("an empty answer says Content-Length: 0, so a keep-alive client knows it has ended", () => {
  expect(without(frameResponse(GET11, 404, new Headers(), { kind: "none" }).head, "date")).toEqual(["content-length: 0"]);
});

test("the connection: closed when the client asked or the handler said so; HTTP/1.0 keep-alive is confirmed", () => {
  expect(frameResponse({ ...GET11, keepAlive: false }, 200, new Headers(), { kind: "bytes", length: 0 }).close).toBe(true);
  const byHandler = frameResponse(GET11, 200, new Headers({ connection: "close" }), { kind: "bytes", length: 0 });
  expect([byHandler.close, fieldsOf(byHandler.head).filter((f) => f.startsWith("connection"))]).toEqual([true, ["connection: close"]]);
  const old = frameResponse({ method: "GET", version: "1.0", keepAlive: true }, 200, new Headers(), { kind: "bytes", length: 0 });
  expect([old.close, fieldsOf(old.head)]).toEqual([false, ["content-length: 0", "connection: keep-alive", `date: ${httpDate()}`]]);
});

test("status lines: the reason of known codes, the handler's own text, a fallback; chunk framing", () => {
  expect(frameResponse(GET11, 421, new Headers(), { kind: "none" }).head.split("\r\n")[0]).toBe("HTTP/1.1 421 Misdirected Request");
  expect(frameResponse(GET11, 299, new Headers(), { kind: "none" }, "Custom").head.split("\r\n")[0]).toBe("HTTP/1.1 299 Custom");
  expect(frameResponse(GET11, 299, new Headers(), { kind: "none" }).head.split("\r\n")[0]).toBe("HTTP/1.1 299 Unknown");
  expect([chunkHead(255), chunkHead(4096), LAST_CHUNK]).toEqual(["ff\r\n", "1000\r\n", "0\r\n\r\n"]);
});

test("httpDate is the IMF-fixdate of the current second", () => {
  expect(httpDate(Date.UTC(2026, 11, 6, 5, 0, 0, 999))).toBe("Sun, 06 Dec 2026 05:00:00 GMT");
});
