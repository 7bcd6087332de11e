/** The cache phase of a proxied route (RFC 9111): lookup, serve fresh or allowed-stale responses, revalidate, coalesce misses, store what may be stored, invalidate after unsafe methods. */
import type { CacheRules } from "../config/types.ts";
import { cacheRequests } from "../observability/gateway-metrics.ts";
import { log } from "../observability/log.ts";
import { clientOf, type RequestContext } from "../proxy/context.ts";
import { GatewayError } from "../proxy/errors.ts";
import { discard, release } from "../proxy/finish.ts";
import { parseCacheControl, responsePolicy } from "./cache-control.ts";
import { currentAge, decide, freshnessLifetime, invalidates, mergeRevalidated, onlyIfCached, storable, type ResponseInfo } from "./policy.ts";
import type { ResponseCache } from "./response-cache.ts";
import { compressible } from "./compress.ts";
import { CACHE_NAME, serveStored, takeConditionals, type Conditionals } from "./serve.ts";
import { varyNames, secondaryKey } from "./vary.ts";
import type { Entry } from "./store.ts";

/** Forward sends the request on to the origin and returns the client-ready response (the proxy's forward). */
export type Forward = (ctx: RequestContext) => Promise<Response>;

const UNSAFE = new Set(["POST", "PUT", "DELETE", "PATCH"]);
/** COALESCE_WAIT_MS bounds how long a miss waits for another request fetching the same URL before going to the origin itself. */
const COALESCE_WAIT_MS = 10_000;
/** Headers that describe one exchange, not the stored representation: never stored. */
const NOT_STORED = ["set-cookie", "x-request-id", "cache-status"];

type Result = "hit" | "miss" | "stale" | "revalidated" | "bypass";
const cells = new Map<Result, { value: number }>();

function count(ctx: RequestContext, result: Result): void {
  let c = cells.get(result);
  if (c === undefined) cells.set(result, (c = cacheRequests.labels(result)));
  c.value++;
  ctx.cache = result;
}

function tag(res: Response, status: string): Response {
  res.headers.set("cache-status", `${CACHE_NAME}; ${status}`);
  return res;
}

function bypassed(rules: CacheRules, h: Headers): boolean {
  if (rules.bypassCookies.length === 0) return false;
  const cookie = h.get("cookie");
  if (cookie === null) return false;
  if (rules.bypassCookies.includes("*")) return true;
  for (const part of cookie.split(";")) {
    const name = part.slice(0, part.indexOf("=")).trim();
    if (rules.bypassCookies.includes(name)) return true;
  }
  return false;
}

/** lifetimeOf is the freshness lifetime to store with a response: the origin's (RFC 9111 §4.2.1), unless the route replaces it (ttl), gives one where the origin gave none (default_ttl) or puts a floor under it (min_ttl). */
function lifetimeOf(info: ResponseInfo, rules: CacheRules): number {
  if (rules.ttl !== undefined) return rules.ttl;
  const { directives: cc, targeted } = responsePolicy(info.headers);
  const explicit = cc.has("s-maxage") || cc.has("max-age") || (!targeted && info.headers.has("expires"));
  const origin = !explicit && rules.defaultTtl !== undefined ? rules.defaultTtl : freshnessLifetime(info);
  return rules.minTtl !== undefined && !cc.has("no-cache") ? Math.max(origin, rules.minTtl) : origin;
}

/** refresh recomputes what a hit needs from an entry's headers and times: its lifetime, corrected initial age and no-cache. */
function refresh(e: Entry, rules: CacheRules): void {
  e.lifetime = lifetimeOf(e, rules);
  e.initialAge = currentAge(e, e.responseTime);
  e.alwaysRevalidate = responsePolicy(e.headers).directives.has("no-cache");
}

/** quickFresh answers the common question without parsing anything: a request without Cache-Control or Pragma, an entry still fresh. Returns the ttl in seconds, or undefined to let decide() judge. */
function quickFresh(e: Entry, h: Headers, now: number): { age: number; ttl: number } | undefined {
  if (e.alwaysRevalidate || h.get("cache-control") !== null || h.get("pragma") !== null) return undefined;
  const age = e.initialAge + (now - e.responseTime) / 1000;
  return age < e.lifetime ? { age, ttl: e.lifetime - age } : undefined;
}

/** cachePhase wraps a proxied route's forward with the cache; the returned handler is the route's `handle`. */
export function cachePhase(rules: CacheRules, cache: ResponseCache, forward: Forward): (ctx: RequestContext) => Promise<Response> {
  /** upstream forwards with the outcome held: the phase decides whether the client gets this response (release) or one from the store (discard). */
  async function upstream(ctx: RequestContext): Promise<Response> {
    ctx.hold = true;
    try {
      return await forward(ctx);
    } catch (e) {
      discard(ctx);
      throw e;
    }
  }

  return async function cached(ctx: RequestContext): Promise<Response> {
    const req = ctx.req;
    const method = req.method;
    if (method !== "GET" && method !== "HEAD") {
      const res = await forward(ctx);
      // RFC 9111 §4.4: a non-error answer to an unsafe method invalidates the target and same-origin Location / Content-Location.
      if (UNSAFE.has(method) && res.status < 400) cache.invalidate(invalidates(method, res.status, `${ctx.scheme}://${ctx.host}${ctx.path}${ctx.query}`, res.headers));
      return res;
    }
    if (bypassed(rules, req.headers)) {
      count(ctx, "bypass");
      return tag(await forward(ctx), "fwd=bypass");
    }
    const primary = cache.primaryKey(ctx.scheme, ctx.host, ctx.path, rules.ignoreQuery ? "" : ctx.query);
    const found = cache.lookup(primary, req.headers);
    const now = Date.now();
    if (found !== undefined) {
      const e = found.entry;
      const quick = quickFresh(e, req.headers, now);
      if (quick !== undefined) {
        count(ctx, "hit");
        return serveStored(ctx, e, quick.age, `hit; ttl=${Math.floor(quick.ttl)}`, req.headers, () => cache.store.touch(primary, found.secondary, e));
      }
      const d = decide(e, req.headers, now, e.lifetime);
      if (d.use === "fresh") {
        count(ctx, "hit");
        return serveStored(ctx, e, d.age, `hit; ttl=${Math.floor(d.ttl)}`, req.headers, () => cache.store.touch(primary, found.secondary, e));
      }
      if (d.use === "stale-ok") {
        count(ctx, "stale");
        if (d.revalidateInBackground) void revalidateInBackground(ctx, primary, found.secondary, e);
        return serveStored(ctx, e, d.age, `hit; ttl=${Math.floor(d.ttl)}; detail=stale`, req.headers, () => cache.store.touch(primary, found.secondary, e));
      }
      return revalidate(ctx, primary, found.secondary, e, d.staleIfError, d.age, d.ttl);
    }
    if (onlyIfCached(req.headers)) throw new GatewayError(504, "not in the cache (only-if-cached)", "downstream");
    if (method === "HEAD") {
      count(ctx, "miss");
      return tag(await forward(ctx), "fwd=uri-miss");
    }
    const turn = cache.coalescer.join(primary, COALESCE_WAIT_MS);
    if (!turn.leader) {
      await turn.wait;
      const again = cache.lookup(primary, req.headers);
      if (again !== undefined) {
        const d = decide(again.entry, req.headers, Date.now(), again.entry.lifetime);
        if (d.use === "fresh") {
          count(ctx, "hit");
          return serveStored(ctx, again.entry, d.age, `hit; ttl=${Math.floor(d.ttl)}; detail=coalesced`, req.headers, () => cache.store.touch(primary, again.secondary, again.entry));
        }
      }
      count(ctx, "miss");
      return fetchAndStore(ctx, primary, "fwd=uri-miss");
    }
    count(ctx, "miss");
    try {
      return await fetchAndStore(ctx, primary, "fwd=uri-miss");
    } finally {
      turn.done();
    }
  };

  /** fetchAndStore asks the origin for a full response (the client's validators and range set aside), stores it when RFC 9111 §3 and the size limit allow, and answers the client from it. */
  async function fetchAndStore(ctx: RequestContext, primary: string, status: string, cond = takeConditionals(ctx.req.headers)): Promise<Response> {
    const requestTime = Date.now();
    const res = await upstream(ctx);
    return admit(ctx, primary, res, requestTime, Date.now(), cond, status);
  }

  async function admit(ctx: RequestContext, primary: string, res: Response, requestTime: number, responseTime: number, cond: Conditionals, status: string): Promise<Response> {
    const ok = storable("GET", ctx.req.headers, res);
    const declared = Number(res.headers.get("content-length") ?? NaN);
    if (!ok.ok || !(declared <= cache.maxObjectSize) || res.body === null) {
      const why = ok.ok ? (res.body === null ? "no body" : "too large or of unknown length") : ok.reason;
      // The client's validators were set aside for a response we would store; unused, the origin answered in full.
      release(ctx);
      return tag(res, `${status}; detail="${why}"`);
    }
    let body: Uint8Array;
    try {
      body = await res.bytes();
    } catch (e) {
      discard(ctx);
      throw e instanceof GatewayError ? e : new GatewayError(502, "upstream response broke off", "upstream", String((e as Error).message ?? e));
    }
    discard(ctx);
    const headers = new Headers(res.headers);
    for (const name of NOT_STORED) headers.delete(name);
    const info: ResponseInfo = { status: res.status, headers, requestTime, responseTime };
    const vary = varyNames(headers);
    const compressibleBody = res.status === 200 && !(parseCacheControl(headers.get("cache-control")).has("no-transform")) && compressible(headers.get("content-type"), headers.get("content-encoding"), body.byteLength);
    const entry: Entry = { ...info, body, vary: vary === "*" ? [] : vary, lifetime: 0, initialAge: 0, alwaysRevalidate: false, compressible: compressibleBody, encoded: new Map() };
    refresh(entry, rules);
    const secondary = vary === "*" || vary.length === 0 ? "" : secondaryKey(vary, ctx.req.headers);
    const stored = vary !== "*" && cache.store.set(primary, secondary, entry);
    const out = serveStored(ctx, entry, currentAge(entry, Date.now()), `${status}${stored ? "; stored" : ""}`, cond, () => cache.store.touch(primary, secondary, entry));
    // The client whose request filled the cache gets the cookies meant for it; nobody else does.
    for (const c of res.headers.getSetCookie()) out.headers.append("set-cookie", c);
    return out;
  }

  /** revalidate asks the origin whether e is still good (RFC 9111 §4.3.1): a 304 refreshes it, a new response replaces it, an error may be answered with e while stale-if-error allows (RFC 5861 §4). */
  async function revalidate(ctx: RequestContext, primary: string, secondary: string, e: Entry, staleIfError: number, age: number, ttl: number): Promise<Response> {
    const cond = takeConditionals(ctx.req.headers);
    const etag = e.headers.get("etag");
    const lastModified = e.headers.get("last-modified");
    if (etag !== null) ctx.req.headers.set("if-none-match", etag);
    if (lastModified !== null) ctx.req.headers.set("if-modified-since", lastModified);
    const requestTime = Date.now();
    let res: Response;
    try {
      res = await upstream(ctx);
    } catch (err) {
      if (staleIfError > 0 && err instanceof GatewayError && err.status >= 500) {
        count(ctx, "stale");
        return serveStored(ctx, e, age, `hit; ttl=${Math.floor(ttl)}; fwd=stale; detail=stale-if-error`, cond, () => cache.store.touch(primary, secondary, e));
      }
      throw err;
    }
    const responseTime = Date.now();
    if (res.status === 304) {
      count(ctx, "revalidated");
      const merged = mergeRevalidated(e.headers, res.headers);
      for (const name of NOT_STORED) merged.delete(name);
      Object.assign(e, { headers: merged, requestTime, responseTime });
      refresh(e, rules);
      cache.store.touch(primary, secondary, e);
      discard(ctx);
      return serveStored(ctx, e, currentAge(e, responseTime), `fwd=stale; fwd-status=304; stored; ttl=${Math.floor(e.lifetime)}`, cond, () => cache.store.touch(primary, secondary, e));
    }
    if (res.status >= 500 && staleIfError > 0) {
      count(ctx, "stale");
      void res.body?.cancel();
      discard(ctx);
      return serveStored(ctx, e, age, `hit; ttl=${Math.floor(ttl)}; fwd=stale; fwd-status=${res.status}; detail=stale-if-error`, cond, () => cache.store.touch(primary, secondary, e));
    }
    count(ctx, "miss");
    return admit(ctx, primary, res, requestTime, responseTime, cond, `fwd=stale; fwd-status=${res.status}`);
  }

  /** revalidateInBackground refreshes e after a stale response was served (stale-while-revalidate, RFC 5861 §3); one at a time per URL, failures only logged. */
  async function revalidateInBackground(ctx: RequestContext, primary: string, secondary: string, e: Entry): Promise<void> {
    const turn = cache.coalescer.join(`revalidate ${primary}`, 0);
    if (!turn.leader) return;
    try {
      const headers = new Headers(ctx.req.headers);
      headers.delete("cache-control");
      const req = new Request(ctx.req.url, { method: "GET", headers });
      // A context of its own, finished from the start: the background exchange is not a client request in logs and metrics;
      // its server stub ignores per-request timeouts (the request is not one of the listener's).
      const server = Object.create(ctx.server, { timeout: { value: () => undefined } }) as RequestContext["server"];
      const bg: RequestContext = { ...ctx, req, server, peer: clientOf(ctx), finished: true };
      await revalidate(bg, primary, secondary, e, 0, 0, 0);
    } catch (err) {
      log.warn("background revalidation failed; the stale response stays stored", { url: primary, error: String((err as Error).message ?? err) });
    } finally {
      turn.done();
    }
  }
}
