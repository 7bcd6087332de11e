import { expect, test } from "bun:test";
import { type ChunkError, ChunkedDecoder } from "./chunked.ts";

const bytes = (s: string) => Buffer.from(s, "latin1");

/** decode feeds the text in pieces of `step` bytes and returns the body, the bytes consumed, and the error if any. */
function decode(text: string, step = text.length): { body: string; used: number; done: boolean; error?: string } {
  const d = new ChunkedDecoder();
  const all = bytes(text);
  let body = "";
  let used = 0;
  for (let i = 0; i < all.length && !d.done; i += step) {
    const r = d.push(all.subarray(i, Math.min(all.length, i + step)), (p) => (body += Buffer.from(p).toString("latin1")));
    if (typeof r !== "number") return { body, used, done: false, error: (r as ChunkError).reason };
    used += r;
  }
  return { body, used, done: d.done };
}

const VALID = "5\r\nhello\r\n1A;name=value; other\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";

test("chunks, extensions and trailers decode to the body, whatever the pieces the bytes arrive in", () => {
  for (const step of [1, 2, 3, 7, VALID.length]) {
    expect(decode(VALID, step)).toEqual({ body: "helloabcdefghijklmnopqrstuvwxyz", used: VALID.length, done: true });
  }
});

test("the bytes after the end belong to the next request: push says how many it used", () => {
  const next = "GET / HTTP/1.1\r\n";
  const r = decode(`3\r\nabc\r\n0\r\n\r\n${next}`);
  expect(r).toEqual({ body: "abc", used: 13, done: true });
});

test("sizes are 1 to 12 hex digits, either case, leading zeros allowed; anything else is refused", () => {
  expect(decode("000A\r\n0123456789\r\n0\r\n\r\n").body).toBe("0123456789");
  expect(decode("a\r\n0123456789\r\n0\r\n\r\n").body.length).toBe(10);
  expect(decode("0000000000010\r\n").error).toContain("12 hex digits");
  for (const size of ["x", "-1", "+5", "0x5", "", " 5"]) expect(decode(`${size}\r\nhello\r\n0\r\n\r\n`).error).toContain("not hex");
});

test("CRLF exactly where the grammar puts it: bare LF, bare CR, data longer than its size are refused", () => {
  expect(decode("5\nhello\r\n0\r\n\r\n").error).toBeDefined();
  expect(decode("5;ext\nhello\r\n0\r\n\r\n").error).toContain("LF alone");
  expect(decode("5\rhello\r\n0\r\n\r\n").error).toContain("bare CR");
  expect(decode("5\r\nhello!\r\n0\r\n\r\n").error).toContain("longer than its size");
  expect(decode("5\r\nhello\r0\r\n\r\n").error).toContain("no CRLF");
  expect(decode("0\r\n\n").error).toContain("LF alone");
  expect(decode("0\r\nX: 1\n\r\n").error).toBeDefined();
});

test("extensions and trailers are bounded and may not hold NUL", () => {
  expect(decode(`5;${"e".repeat(5000)}\r\nhello\r\n0\r\n\r\n`).error).toContain("chunk extension");
  expect(decode("5;a\u0000b\r\nhello\r\n0\r\n\r\n").error).toContain("chunk extension");
  expect(decode(`0\r\nX: ${"t".repeat(5000)}\r\n\r\n`).error).toContain("trailer");
});

test("an unfinished body is not done, and counts what it decoded", () => {
  const d = new ChunkedDecoder();
  expect(d.push(bytes("5\r\nhel"), () => undefined)).toBe(6);
  expect([d.done, d.bytes]).toEqual([false, 3]);
});
