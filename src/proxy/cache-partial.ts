/** PartialResponse content in the cache phase (RFC 9111 §3.3–3.4): a 206 from the origin is kept as a piece of its response, and later range requests that the kept pieces cover are answered from them. */
import type { CacheRules } from "../config/types.ts";
import { ifRangeHolds, parseRange } from "../lib/http-range.ts";
import { Reply } from "../lib/reply.ts";
import { type PartialResponse, PartialStore, rangeOf, strongEtag } from "../cache/partial.ts";
import { ageHeader, currentAge, storable } from "../cache/policy.ts";
import type { ResponseCache } from "../cache/response-cache.ts";
import { CACHE_NAME } from "../cache/serve.ts";
import type { RequestContext } from "./context.ts";

/** Lifetime computes a response's freshness lifetime by the route's rules (cache-fill's lifetimeOf). */
export type Lifetime = (info: { status: number; headers: PartialResponse["headers"]; requestTime: number; responseTime: number }) => number;

/**
 * servePartial answers a range request from the kept pieces of its URL: only a single range that one piece holds, of a fresh partial, for a request without
 * its own Cache-Control or Pragma (those go the long way); undefined otherwise.
 */
export function servePartial(ctx: RequestContext, cache: ResponseCache, primary: string): Reply | undefined {
  const range = ctx.headers.get("range");
  if (range === null || ctx.method !== "GET" || ctx.headers.get("cache-control") !== null || ctx.headers.get("pragma") !== null) return undefined;
  const p = cache.partials.get(primary);
  if (p === undefined) return undefined;
  const age = p.initialAge + (Date.now() - p.responseTime) / 1000;
  if (!(age < p.lifetime)) return undefined;
  if (!ifRangeHolds(ctx.headers.get("if-range"), p.etag, p.headers.get("last-modified"))) return undefined;
  const r = parseRange(range, p.size);
  if (r === undefined || r === "unsatisfiable") return undefined;
  const bytes = PartialStore.slice(p, r[0], r[1]);
  if (bytes === undefined) return undefined;
  const h = p.headers.clone();
  h.set("content-range", `bytes ${r[0]}-${r[1]}/${p.size}`);
  h.set("content-length", String(bytes.byteLength));
  h.set("age", ageHeader(age));
  h.set("cache-status", `${CACHE_NAME}; hit; ttl=${Math.floor(p.lifetime - age)}; detail=partial`);
  h.set("x-request-id", ctx.id);
  ctx.bytesOut = bytes.byteLength;
  return new Reply(206, h, bytes);
}

/**
 * keepPartial keeps the range of a 206 that the origin sent for a client's range request, when it could be stored as a complete response would (its
 * directives), has a strong ETag and one byte range of a known length, and is not larger than max_object_size; the client gets the same bytes. undefined: not
 * kept (the caller passes the response on as it is).
 */
export async function keepPartial(
  ctx: RequestContext,
  cache: ResponseCache,
  lifetime: Lifetime,
  primary: string,
  res: Reply,
  requestTime: number,
): Promise<Reply | undefined> {
  const etag = strongEtag(res.headers);
  const range = rangeOf(res.headers);
  const length = Number(res.headers.get("content-length") ?? Number.NaN);
  if (etag === undefined || range === undefined || !(length === range[1] - range[0] + 1) || length > cache.maxObjectSize || res.body === null) return undefined;
  if (res.headers.has("vary") || !storable("GET", ctx.headers, { status: 200, headers: res.headers }).ok) return undefined;
  const bytes = await res.bytes();
  if (bytes.byteLength !== length) return undefined;
  const responseTime = Date.now();
  cache.partials.add(primary, res.headers, etag, range, bytes, { requestTime, responseTime });
  const p = cache.partials.get(primary);
  if (p !== undefined && p.responseTime === responseTime) {
    p.lifetime = lifetime({ status: 200, headers: p.headers, requestTime, responseTime });
    p.initialAge = currentAge({ status: 200, headers: p.headers, requestTime, responseTime }, responseTime);
  }
  res.headers.set("cache-status", `${CACHE_NAME}; fwd=uri-miss; stored; detail=partial`);
  return new Reply(206, res.headers, bytes, res.statusText);
}

/** wantsWhole says whether a range miss should also fetch the whole response in the background ([cache] fetch_whole_on_range). */
export function wantsWhole(rules: CacheRules, ctx: RequestContext): boolean {
  return rules.fetchWholeOnRange && ctx.method === "GET" && ctx.headers.get("range") !== null;
}
