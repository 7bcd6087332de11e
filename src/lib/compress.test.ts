import { expect, test } from "bun:test";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { compress, compressible, negotiate } from "./compress.ts";

test("negotiate follows q-values, * and q=0, and prefers zstd, br, gzip on ties", () => {
  expect(negotiate(null)).toBeUndefined();
  expect(negotiate("gzip")).toBe("gzip");
  expect(negotiate("gzip, deflate, br")).toBe("br");
  expect(negotiate("gzip, br, zstd")).toBe("zstd");
  expect(negotiate("br;q=0.5, gzip;q=0.8")).toBe("gzip");
  expect(negotiate("*")).toBe("zstd");
  expect(negotiate("*, zstd;q=0")).toBe("br");
  expect(negotiate("gzip;q=0, identity")).toBeUndefined();
  expect(negotiate("deflate")).toBeUndefined();
  expect(negotiate("GZIP ; Q=1")).toBe("gzip");
});

test("compressible: text-like types above the minimum size that are not encoded yet", () => {
  expect(compressible("text/css; charset=utf-8", null, 1000)).toBe(true);
  expect(compressible("application/javascript", "identity", 1000)).toBe(true);
  expect(compressible("image/svg+xml", null, 1000)).toBe(true);
  expect(compressible("image/png", null, 1000)).toBe(false);
  expect(compressible("text/css", "gzip", 1000)).toBe(false);
  expect(compressible("text/css", null, 100)).toBe(false);
  expect(compressible(null, null, 1000)).toBe(false);
});

test("each coding round-trips and shrinks repetitive text", () => {
  const body = new TextEncoder().encode("body { color: red; }\n".repeat(200));
  const z = compress(body, "zstd");
  expect(Bun.zstdDecompressSync(z)).toEqual(Buffer.from(body));
  expect(new Uint8Array(brotliDecompressSync(compress(body, "br")))).toEqual(body);
  expect(new Uint8Array(gunzipSync(compress(body, "gzip")))).toEqual(body);
  expect(z.byteLength).toBeLessThan(body.byteLength / 10);
});
