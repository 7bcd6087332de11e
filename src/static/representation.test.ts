import { expect, test } from "bun:test";
import { acceptedCodings, negotiate } from "../lib/compress.ts";
import { embeddedSource, type FileSource, type FileStat } from "./file-source.ts";
import { codedEtag, identityEtag, select } from "./representation.ts";
import { VariantCache, variantKey } from "./variants.ts";

const T = new Date("2026-01-02T03:04:05Z");
const TEXT = "body { color: red; }\n".repeat(40);
const OPTS = { maxCompressSize: 8 * 1024 * 1024 };

/** sourceWith serves TEXT as /a.css, and the given extra files (siblings), all with mtime T unless mtimes says otherwise. */
function sourceWith(extra: Record<string, string>, mtimes: Record<string, number> = {}): FileSource {
  const base = embeddedSource(
    { "/a.css": { body: TEXT }, "/b.png": { body: "x".repeat(2000) }, ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [k, { body: v }])) },
    T,
  );
  return {
    stat(path) {
      const s = base.stat(path);
      return s === null || mtimes[path] === undefined ? s : { ...s, mtimeMs: mtimes[path]! };
    },
    body: base.body,
  };
}
const statOf = (s: FileSource, p: string) => s.stat(p) as FileStat;

test("acceptedCodings lists what the client takes, best first, and agrees with negotiate", () => {
  expect(acceptedCodings("gzip, br, zstd")).toEqual(["zstd", "br", "gzip"]);
  expect(acceptedCodings("gzip;q=0.8, br;q=0.9")).toEqual(["br", "gzip"]);
  expect(acceptedCodings("*;q=0.5, br;q=0")).toEqual(["zstd", "gzip"]);
  expect(acceptedCodings("identity")).toEqual([]);
  expect(acceptedCodings(null)).toEqual([]);
  for (const ae of ["gzip, deflate, br, zstd", "gzip;q=0.5, br", "br;q=0, gzip", "*", "identity, *;q=0", "deflate"])
    expect(acceptedCodings(ae)[0]).toBe(negotiate(ae));
});

test("select: on the fly for text, a sibling when the client takes it, identity for a Range; Vary whenever the forms differ", () => {
  const plain = sourceWith({});
  const st = statOf(plain, "/a.css");
  const z = select(plain, "/a.css", st, "gzip, zstd", false, OPTS);
  expect(z).toEqual({ rep: { coding: "zstd", etag: codedEtag(st, "zstd"), mtimeMs: T.getTime(), sibling: undefined }, varies: true });
  expect(z.rep.etag).toBe(`${identityEtag(st).slice(0, -1)}-zstd"`);
  expect(select(plain, "/a.css", st, "gzip", true, OPTS).rep.coding).toBeUndefined();
  expect(select(plain, "/a.css", st, null, false, OPTS)).toMatchObject({ rep: { coding: undefined, etag: identityEtag(st) }, varies: true });
  // Above the size limit, without siblings: one form only, no Vary.
  expect(select(plain, "/a.css", st, "gzip", false, { maxCompressSize: 100 })).toMatchObject({ rep: { coding: undefined }, varies: false });
  expect(select(plain, "/b.png", statOf(plain, "/b.png"), "gzip", false, OPTS).varies).toBe(false);

  const later = T.getTime() + 5000;
  const sib = sourceWith({ "/a.css.br": "BR", "/b.png.gz": "GZ" }, { "/a.css.br": later });
  const br = select(sib, "/a.css", st, "zstd, br", false, OPTS);
  expect(br.rep.coding).toBe("br");
  expect(br.rep.sibling?.path).toBe("/a.css.br");
  expect(br.rep.mtimeMs).toBe(later);
  expect(br.rep.etag).toBe(codedEtag(st, "br", statOf(sib, "/a.css.br")));
  expect(br.rep.etag).not.toBe(codedEtag(st, "br"));
  // A sibling makes even a type not compressed on the fly vary, for clients that did not take it too.
  expect(select(sib, "/b.png", statOf(sib, "/b.png"), "gzip", false, OPTS).rep.sibling?.path).toBe("/b.png.gz");
  expect(select(sib, "/b.png", statOf(sib, "/b.png"), "br", false, OPTS)).toMatchObject({ rep: { coding: undefined }, varies: true });
  // A sibling older than its file is not served.
  const stale = sourceWith({ "/a.css.br": "BR" }, { "/a.css.br": T.getTime() - 1000 });
  expect(select(stale, "/a.css", st, "br", false, OPTS).rep.sibling).toBeUndefined();
});

test("VariantCache: one compression for concurrent misses, bounded in bytes, nothing stored from a file that changed under it", async () => {
  const src = sourceWith({});
  const st = statOf(src, "/a.css");
  const cache = new VariantCache({ maxBytes: 4096 });
  let reads = 0;
  const counting: FileSource = {
    stat: src.stat,
    body(p, s, e) {
      reads++;
      return src.body(p, s, e);
    },
  };
  const key = variantKey("root", "/a.css", st, "gzip");
  const [a, b] = await Promise.all([cache.make(key, counting, "/a.css", st, "gzip"), cache.make(key, counting, "/a.css", st, "gzip")]);
  expect(reads).toBe(1);
  expect(a).toBe(b!);
  expect(new TextDecoder().decode(Bun.gunzipSync(a as Uint8Array<ArrayBuffer>))).toBe(TEXT);
  expect(cache.get(key)).toBe(a!);
  // The stat says another size than the bytes read: served, not stored.
  const moved = { ...st, size: st.size + 1 };
  const k2 = variantKey("root", "/a.css", moved, "br");
  expect(await cache.make(k2, src, "/a.css", moved, "br")).toBeDefined();
  expect(cache.get(k2)).toBeUndefined();
  for (let i = 0; i < 50; i++) await cache.make(variantKey(`r${i}`, "/a.css", st, "zstd"), src, "/a.css", st, "zstd");
  expect(cache.size).toBeLessThanOrEqual(4096);
  expect(await cache.make("gone", src, "/missing.css", st, "gzip")).toBeUndefined();
});
