/** Filling and refreshing the cache from the origin: store what RFC 9111 §3 allows, revalidate stale entries (§4.3), serve stale on errors (RFC 5861 §4), refresh in the background (RFC 5861 §3). */
import { NEVER } from "../lib/cancel.ts";
import type { CacheRules } from "../config/types.ts";
import type { Fields } from "../lib/fields.ts";
import type { Reply } from "../lib/reply.ts";
import { log } from "../observability/log.ts";
import { keepPartial } from "./cache-partial.ts";
import { clientOf, type Downstream, type RequestContext } from "./context.ts";
import { GatewayError } from "./errors.ts";
import { responsePolicy } from "../cache/cache-control.ts";
import { compressible } from "../lib/compress.ts";
import { formatHttpDate } from "../cache/http-date.ts";
import {
  alwaysRevalidates,
  currentAge,
  freshnessLifetime,
  hasExplicitFreshness,
  mergeRevalidated,
  storable,
  withheldFields,
  type ResponseInfo,
} from "../cache/policy.ts";
import type { ResponseCache } from "../cache/response-cache.ts";
import { CACHE_NAME, serveStored, takeConditionals, type Conditionals } from "../cache/serve.ts";
import type { Entry } from "../cache/store.ts";
import { secondaryKey, varyNames } from "../cache/vary.ts";

/** Forward sends the request on to the origin and returns the client-ready response (the proxy's forward). */
export type Forward = (ctx: RequestContext) => Promise<Reply>;

/** Headers that describe one exchange or one client, not the stored representation: never stored. */
const NOT_STORED = ["set-cookie", "x-request-id", "cache-status", "connection"];

type Result = "hit" | "miss" | "stale" | "revalidated" | "bypass";

/** count records a lookup's result in the route's metrics and the access log; background exchanges (already finished contexts) are not client lookups. */
export function count(ctx: RequestContext, result: Result): void {
  if (ctx.finished) return;
  ctx.route?.stats.cache(result);
  ctx.cache = result;
}

/** TAG_FIELDS carry an origin's purge tags: Cache-Tag (comma-separated) and Surrogate-Key (space-separated). */
const TAG_FIELDS = ["cache-tag", "surrogate-key"];

/** tagsOf reads the purge tags of a response (at most 64, each at most 256 characters: they are index rows). */
function tagsOf(h: Fields): string[] {
  const tags = new Set<string>();
  for (const v of h.getAll("cache-tag")) for (const t of v.split(",")) if (t.trim()) tags.add(t.trim());
  for (const v of h.getAll("surrogate-key")) for (const t of v.split(" ")) if (t.trim()) tags.add(t.trim());
  return [...tags].filter((t) => t.length <= 256).slice(0, 64);
}

/** tag sets Cache-Status (RFC 9211) on a response passed through from the origin, and keeps its purge tags from the client unless the config passes them. */
export function tag(res: Reply, status: string, cache: ResponseCache): Reply {
  res.headers.set("cache-status", `${CACHE_NAME}; ${status}`);
  if (!cache.passTagFields) for (const name of TAG_FIELDS) res.headers.delete(name);
  return res;
}

/**
 * lifetimeOf is the freshness lifetime to store with a response: the origin's (RFC 9111 §4.2.1), unless the route replaces it (ttl), gives one where the origin
 * gave none (default_ttl) or puts a floor under it (min_ttl).
 */
function lifetimeOf(info: ResponseInfo, rules: CacheRules): number {
  if (rules.ttl !== undefined) return rules.ttl;
  const origin = rules.defaultTtl !== undefined && !hasExplicitFreshness(info.headers) ? rules.defaultTtl : freshnessLifetime(info);
  return rules.minTtl !== undefined && !alwaysRevalidates(info.headers) ? Math.max(origin, rules.minTtl) : origin;
}

/** refresh recomputes what a hit needs from an entry's headers and times: its lifetime, corrected initial age and no-cache (also for one read from disk). */
export function refresh(e: Entry, rules: CacheRules): void {
  e.lifetime = lifetimeOf(e, rules);
  e.initialAge = currentAge(e, e.responseTime);
  e.alwaysRevalidate = alwaysRevalidates(e.headers); // a qualified no-cache only withholds fields (§5.2.2.4)
}

/** BACKGROUND is the Downstream of a background revalidation: no client that could leave, no body, no listener whose timeout to raise, no upgrade. */
const BACKGROUND: Downstream = {
  peer: (ctx) => ctx.peer ?? "",
  signal: () => NEVER,
  body: () => null,
  keepWaiting: () => undefined,
  upgrade: () => false,
  tlsName: () => undefined,
};

/**
 * background is a context of its own for an exchange nobody waits for, finished from the start: not a client request in logs and metrics; it has no client
 * to leave, no body, no listener timeout to raise.
 */
function background(ctx: RequestContext): RequestContext {
  return { ...ctx, downstream: BACKGROUND, peer: clientOf(ctx), finished: true, streamed: undefined, responded: false };
}

/** Filler talks to the origin for one cached route. */
export class Filler {
  constructor(
    private readonly rules: CacheRules,
    private readonly cache: ResponseCache,
    private readonly forward: Forward,
  ) {}

  /**
   * fetch sends the client's request as it is (its validators and range too: the origin may answer 304 or 206, which pass through) and stores a full response
   * that may be stored.
   */
  async fetch(ctx: RequestContext, primary: string): Promise<Reply> {
    // The Vary key must come from what the client sent, before forwarding adds X-Forwarded-For, Via and the like.
    const asked = ctx.headers.clone();
    const requestTime = Date.now();
    const res = await this.forward(ctx);
    // A 206 for the client's range: kept as a piece of the response when it may be (RFC 9111 §3.3), passed on as it is otherwise.
    if (res.status === 206)
      return (
        (await keepPartial(ctx, this.cache, (info) => lifetimeOf(info, this.rules), primary, res, requestTime)) ??
        tag(res, "fwd=uri-miss; detail=partial", this.cache)
      );
    return this.admit(ctx, primary, res, requestTime, Date.now(), { headers: asked, any: true }, asked, "fwd=uri-miss");
  }

  /**
   * whole fetches the whole response of a URL whose range a client asked for ([cache] fetch_whole_on_range), in the background, to store it (when it may be,
   * and fits max_object_size): one at a time per URL, failures only logged.
   */
  async whole(ctx: RequestContext, primary: string): Promise<void> {
    const turn = this.cache.coalescer.join(`whole ${primary}`, 0);
    if (!turn.leader) return;
    try {
      const headers = ctx.headers.clone();
      for (const name of ["range", "if-range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "cache-control"]) headers.delete(name);
      const bg: RequestContext = { ...background(ctx), method: "GET", headers };
      const res = await this.fetch(bg, primary);
      res.discard();
    } catch (err) {
      log.warn("background fetch of a whole response failed", { url: primary, error: String((err as Error).message ?? err) });
    } finally {
      turn.done();
    }
  }

  private async admit(
    ctx: RequestContext,
    primary: string,
    res: Reply,
    requestTime: number,
    responseTime: number,
    cond: Conditionals,
    asked: Fields,
    status: string,
  ): Promise<Reply> {
    // A request that basic or forward auth let through is authenticated even when its Authorization was removed (or it never had one).
    const ok = storable("GET", asked, res, ctx.user !== undefined || asked.has("authorization"));
    // A GET's response without content (a 204) is stored empty; a HEAD that revalidated brings no content to store.
    const declared = res.body === null ? 0 : Number(res.headers.get("content-length") ?? NaN);
    const head = ctx.method === "HEAD";
    if (!ok.ok || head || !(declared <= this.cache.maxObjectSize)) {
      return tag(res, `${status}; detail=${ok.ok ? (head ? "method" : "too-large") : ok.reason}`, this.cache);
    }
    let body: Uint8Array;
    try {
      body = await res.bytes();
    } catch (e) {
      throw e instanceof GatewayError ? e : new GatewayError(502, "upstream response broke off", "upstream", String((e as Error).message ?? e));
    }
    const headers = res.headers.clone();
    for (const name of NOT_STORED) headers.delete(name);
    for (const name of withheldFields(headers)) headers.delete(name); // RFC 9111 §5.2.2.4, §5.2.2.7
    if (!headers.has("date")) headers.set("date", formatHttpDate(responseTime)); // RFC 9110 §6.6.1: a cache adds the Date it lacks
    const tags = tagsOf(headers);
    if (!this.cache.passTagFields) for (const name of TAG_FIELDS) headers.delete(name);
    const vary = varyNames(headers);
    const noTransform = responsePolicy(headers).directives.has("no-transform") || /\bno-transform\b/i.test(headers.get("cache-control") ?? "");
    const entry: Entry = {
      status: res.status,
      headers,
      body,
      requestTime,
      responseTime,
      vary: vary === "*" ? [] : vary,
      lifetime: 0,
      initialAge: 0,
      alwaysRevalidate: false,
      encoded: new Map(),
      tags,
      compressible: res.status === 200 && !noTransform && compressible(headers.get("content-type"), headers.get("content-encoding"), body.byteLength),
    };
    refresh(entry, this.rules);
    const secondary = vary === "*" || vary.length === 0 ? "" : secondaryKey(vary, asked);
    const stored = vary !== "*" && this.cache.put(primary, secondary, entry);
    return this.toClient(
      res,
      serveStored(ctx, entry, currentAge(entry, Date.now()), `${status}${stored ? "; stored" : ""}`, cond, () =>
        this.cache.store.touch(primary, secondary, entry),
      ),
    );
  }

  /** toClient gives the client whose request reached the origin what was meant for it alone: its cookies, its Connection, the fields not stored (withheldFields). */
  private toClient(from: Reply, out: Reply): Reply {
    for (const c of from.headers.getAll("set-cookie")) out.headers.append("set-cookie", c);
    for (const name of withheldFields(from.headers)) {
      if (name !== "set-cookie" && !out.headers.has(name)) for (const v of from.headers.getAll(name)) out.headers.append(name, v);
    }
    const conn = from.headers.get("connection");
    if (conn !== null) out.headers.set("connection", conn);
    return out;
  }

  /**
   * keep stores the response to an unsafe method that may answer later GETs (a POST's, RFC 9110 §9.3.3: the caller checked postReusable) as a miss would
   * (storable, withheld fields, size), and answers the client from it; `asked` is the client's fields before forwarding, for the Vary key.
   */
  keep(ctx: RequestContext, primary: string, res: Reply, requestTime: number, asked: Fields): Promise<Reply> {
    return this.admit(ctx, primary, res, requestTime, Date.now(), { headers: asked, any: false }, asked, "fwd=method");
  }

  /**
   * revalidate asks the origin whether e is still good (RFC 9111 §4.3.1): a 304 refreshes it, a new response replaces it, an error may be answered with e while
   * stale-if-error allows (RFC 5861 §4).
   */
  async revalidate(ctx: RequestContext, primary: string, secondary: string, e: Entry, staleIfError: number, age: number, ttl: number): Promise<Reply> {
    const asked = ctx.headers.clone();
    const cond = takeConditionals(ctx.headers);
    const etag = e.headers.get("etag");
    const lastModified = e.headers.get("last-modified");
    if (etag !== null) ctx.headers.set("if-none-match", etag);
    if (lastModified !== null) ctx.headers.set("if-modified-since", lastModified);
    const grown = () => this.cache.store.touch(primary, secondary, e);
    const requestTime = Date.now();
    let res: Reply;
    try {
      res = await this.forward(ctx);
    } catch (err) {
      if (staleIfError > 0 && err instanceof GatewayError && err.status >= 500) {
        count(ctx, "stale");
        return serveStored(ctx, e, age, `fwd=stale; detail=stale-if-error; ttl=${Math.floor(ttl)}`, cond, grown);
      }
      throw err;
    }
    const responseTime = Date.now();
    if (res.status === 304) {
      count(ctx, "revalidated");
      const merged = mergeRevalidated(e.headers, res.headers, responseTime);
      for (const name of NOT_STORED) merged.delete(name);
      for (const name of withheldFields(merged)) merged.delete(name);
      if (!this.cache.passTagFields) for (const name of TAG_FIELDS) merged.delete(name); // a 304's tags are the cache's, not the client's
      const vary = varyNames(merged);
      if (vary === "*" || vary.join(",") !== e.vary.join(",")) {
        // The variants are keyed by the old Vary names: serve this client, drop them all (RFC 9111 §4.1).
        this.cache.delete(primary);
        const once: Entry = { ...e, headers: merged, requestTime, responseTime, encoded: new Map() };
        refresh(once, this.rules);
        return this.toClient(res, serveStored(ctx, once, currentAge(once, responseTime), "fwd=stale; fwd-status=304; detail=vary-changed", cond));
      }
      Object.assign(e, { headers: merged, requestTime, responseTime });
      refresh(e, this.rules);
      this.cache.refreshed(primary, secondary, e);
      return this.toClient(
        res,
        serveStored(ctx, e, currentAge(e, responseTime), `fwd=stale; fwd-status=304; stored; ttl=${Math.floor(e.lifetime)}`, cond, grown),
      );
    }
    if (res.status >= 500 && staleIfError > 0) {
      count(ctx, "stale");
      res.discard();
      return serveStored(ctx, e, age, `fwd=stale; fwd-status=${res.status}; detail=stale-if-error; ttl=${Math.floor(ttl)}`, cond, grown);
    }
    count(ctx, "miss");
    return this.admit(ctx, primary, res, requestTime, responseTime, cond, asked, `fwd=stale; fwd-status=${res.status}`);
  }

  /**
   * background refreshes e after a stale response was served (stale-while-revalidate, RFC 5861 §3); one at a time per URL, failures only logged, nothing
   * counted as a client request.
   */
  async background(ctx: RequestContext, primary: string, secondary: string, e: Entry): Promise<void> {
    const turn = this.cache.coalescer.join(`revalidate ${primary}`, 0);
    if (!turn.leader) return;
    try {
      const headers = ctx.headers.clone();
      headers.delete("cache-control");
      const bg: RequestContext = { ...background(ctx), method: "GET", headers };
      const res = await this.revalidate(bg, primary, secondary, e, 0, 0, 0);
      // Nobody reads this response; a streamed body must still be ended so the upstream connection is released.
      res.discard();
    } catch (err) {
      log.warn("background revalidation failed; the stale response stays stored", { url: primary, error: String((err as Error).message ?? err) });
    } finally {
      turn.done();
    }
  }
}
