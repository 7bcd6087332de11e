/** Compression of stored responses (RFC 9110 §8.4, §12.5.3): zstd, br or gzip chosen by the client's Accept-Encoding q-values, for compressible types the origin did not compress; each encoding is made once per stored response. */
import { nodeZlib } from "./lazy-node.ts";

/** Coding is a content coding this cache can produce. */
export type Coding = "zstd" | "br" | "gzip";

/** PREFERENCE orders codings when the client likes several equally: smallest output first. */
const PREFERENCE: readonly Coding[] = ["zstd", "br", "gzip"];
/** MIN_SIZE: smaller bodies gain less than the header costs. */
export const MIN_SIZE = 256;
const COMPRESSIBLE = /^(text\/|application\/(json|javascript|xml|xhtml\+xml|rss\+xml|atom\+xml|ld\+json|manifest\+json|wasm)|image\/svg\+xml|font\/(ttf|otf))/i;

/** compressible says whether a response of this type and size is worth compressing and not already encoded. */
export function compressible(contentType: string | null, contentEncoding: string | null, size: number): boolean {
  if (size < MIN_SIZE || contentType === null) return false;
  if (contentEncoding !== null && contentEncoding.trim().toLowerCase() !== "identity") return false;
  return COMPRESSIBLE.test(contentType);
}

const memo = new Map<string, Coding | undefined>();
const MEMO_LIMIT = 1000;

/**
 * negotiate picks the coding for an Accept-Encoding value (RFC 9110 §12.5.3): the highest q among zstd, br and gzip (and `*`), ties broken by PREFERENCE;
 * undefined for identity (none acceptable, q=0, or no header). Memoised: browsers send a handful of distinct values.
 */
export function negotiate(acceptEncoding: string | null): Coding | undefined {
  if (acceptEncoding === null || acceptEncoding === "") return undefined;
  if (memo.has(acceptEncoding)) return memo.get(acceptEncoding);
  const c = choose(acceptEncoding);
  if (memo.size >= MEMO_LIMIT) memo.clear();
  memo.set(acceptEncoding, c);
  return c;
}

/** weights reads an Accept-Encoding value: each coding named and its q-value (1 when none is given). */
function weights(acceptEncoding: string): Map<string, number> {
  const q = new Map<string, number>();
  for (const part of acceptEncoding.split(",")) {
    const [name, ...params] = part.trim().toLowerCase().split(";");
    if (!name) continue;
    let weight = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/.exec(p);
      if (m) weight = Math.min(1, Number(m[1]) || 0);
    }
    q.set(name.trim(), weight);
  }
  return q;
}

function choose(acceptEncoding: string): Coding | undefined {
  const q = weights(acceptEncoding);
  const star = q.get("*");
  let best: Coding | undefined;
  let bestQ = 0;
  for (const c of PREFERENCE) {
    const w = q.get(c) ?? star ?? 0;
    if (w > bestQ) {
      best = c;
      bestQ = w;
    }
  }
  return best;
}

/** compress encodes body with coding at a level that suits storing once and serving many times. */
export function compress(body: Uint8Array, coding: Coding): Uint8Array {
  const bytes = body as Uint8Array<ArrayBuffer>;
  if (coding === "zstd") return Bun.zstdCompressSync(bytes, { level: 9 });
  if (coding === "gzip") return Bun.gzipSync(bytes, { level: 9 });
  return nodeZlib().brotliCompressSync(body, BROTLI(body.byteLength));
}

const BROTLI = (size: number) => {
  const c = nodeZlib().constants;
  return { params: { [c.BROTLI_PARAM_QUALITY]: 9, [c.BROTLI_PARAM_SIZE_HINT]: size } };
};

/** compressAsync encodes like compress, on the thread pool: for bodies too large to encode on the request path. */
export function compressAsync(body: Uint8Array, coding: Coding): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, out: Buffer) => (err ? reject(err) : resolve(new Uint8Array(out.buffer, out.byteOffset, out.byteLength)));
    const z = nodeZlib();
    if (coding === "zstd") z.zstdCompress(body, { params: { [z.constants.ZSTD_c_compressionLevel]: 9 } }, done);
    else if (coding === "gzip") z.gzip(body, { level: 9 }, done);
    else z.brotliCompress(body, BROTLI(body.byteLength), done);
  });
}

const acceptedMemo = new Map<string, readonly Coding[]>();
const NONE: readonly Coding[] = [];

/**
 * acceptedCodings lists the codings this module makes that acceptEncoding allows (q > 0, by name or through `*`), best first: highest q, ties broken by
 * PREFERENCE, so its first element is negotiate's choice; empty for no header or none acceptable. Memoised like negotiate. Static sites use it to find a
 * precompressed file the client takes.
 */
export function acceptedCodings(acceptEncoding: string | null): readonly Coding[] {
  if (acceptEncoding === null || acceptEncoding === "") return NONE;
  const hit = acceptedMemo.get(acceptEncoding);
  if (hit !== undefined) return hit;
  const q = weights(acceptEncoding);
  const star = q.get("*");
  const weightOf = (c: Coding) => q.get(c) ?? star ?? 0;
  // Array.prototype.sort is stable: equal weights keep PREFERENCE's order.
  const list = PREFERENCE.filter((c) => weightOf(c) > 0).sort((a, b) => weightOf(b) - weightOf(a));
  if (acceptedMemo.size >= MEMO_LIMIT) acceptedMemo.clear();
  acceptedMemo.set(acceptEncoding, list);
  return list;
}
