/** The cache phase of a proxied route (RFC 9111): lookup, serve fresh or allowed-stale responses, revalidate, coalesce misses and revalidations, invalidate after unsafe methods. */
import type { CacheRules } from "../config/types.ts";
import type { FieldReader } from "../lib/fields.ts";
import type { Reply } from "../lib/reply.ts";
import type { RequestContext } from "./context.ts";
import { GatewayError } from "./errors.ts";
import { count, Filler, refresh, tag, type Forward } from "./cache-fill.ts";
import { servePartial, wantsWhole } from "./cache-partial.ts";
import { decide, invalidates, onlyIfCached, postReusable, type Decision } from "../cache/policy.ts";
import type { ResponseCache } from "../cache/response-cache.ts";
import { serveStored } from "../cache/serve.ts";
import type { Entry } from "../cache/store.ts";

export type { Forward } from "./cache-fill.ts";

/** COALESCE_WAIT_MS bounds how long a request waits for another one fetching or revalidating the same URL before going to the origin itself. */
const COALESCE_WAIT_MS = 10_000;

function bypassed(rules: CacheRules, h: FieldReader): boolean {
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

/**
 * judge says what to do with a stored entry: without parsing anything for the common case (no Cache-Control or Pragma in the request, no no-cache in the
 * response), else by decide() (RFC 9111 §4.2, §5.2).
 */
function judge(e: Entry, h: FieldReader, now: number): Decision {
  if (!e.alwaysRevalidate && h.get("cache-control") === null && h.get("pragma") === null) {
    const age = e.initialAge + (now - e.responseTime) / 1000;
    if (age < e.lifetime) return { use: "fresh", age, ttl: e.lifetime - age };
  }
  return decide(e, h, now, e.lifetime);
}

/** cachePhase wraps a proxied route's forward with the cache; the returned handler is the route's `handle`. */
export function cachePhase(rules: CacheRules, cache: ResponseCache, forward: Forward): (ctx: RequestContext) => Reply | Promise<Reply> {
  const fill = new Filler(rules, cache, forward);

  /** answer serves a stored entry when the decision allows it, or returns undefined when the origin must be asked. */
  function answer(ctx: RequestContext, primary: string, secondary: string, e: Entry, d: Decision, detail: string): Reply | undefined {
    const grown = () => cache.store.touch(primary, secondary, e);
    if (d.use === "fresh") {
      count(ctx, "hit");
      return serveStored(ctx, e, d.age, `hit; ttl=${Math.floor(d.ttl)}${detail}`, ctx.headers, grown);
    }
    if (d.use === "stale-ok") {
      count(ctx, "stale");
      if (d.revalidateInBackground) void fill.background(ctx, primary, secondary, e);
      return serveStored(ctx, e, d.age, `hit; ttl=${Math.floor(d.ttl)}; detail=stale`, ctx.headers, grown);
    }
    return undefined;
  }

  /** cached answers a fresh hit at once (no promise on the way of the commonest answer), anything else through uncached(). */
  return function cached(ctx: RequestContext): Reply | Promise<Reply> {
    const method = ctx.method;
    if (method !== "GET" && method !== "HEAD") return uncached(ctx);
    const asked = ctx.headers;
    if (bypassed(rules, asked)) return uncached(ctx);
    const primary = cache.primaryKey(ctx.scheme, ctx.host, ctx.path, rules.ignoreQuery ? "" : ctx.query);
    let found = cache.lookup(primary, asked);
    if (found !== undefined) {
      const res = answer(ctx, primary, found.secondary, found.entry, judge(found.entry, asked, Date.now()), "");
      if (res !== undefined) return res;
    } else if (cache.disk !== undefined) {
      // The disk tier is asked here too, without a promise on the way of a disk hit.
      found = fromDisk(primary, asked);
      if (found !== undefined) {
        const res = answer(ctx, primary, found.secondary, found.entry, judge(found.entry, asked, Date.now()), "; detail=disk");
        if (res !== undefined) return res;
      }
    }
    return uncached(ctx, primary, found);
  };

  /** uncached is everything but an answer from the store at first sight: unsafe methods, bypasses, misses, revalidations, coalescing. */
  async function uncached(ctx: RequestContext, known?: string, seen?: ReturnType<ResponseCache["lookup"]>): Promise<Reply> {
    const method = ctx.method;
    const asked = ctx.headers;
    if (method !== "GET" && method !== "HEAD") {
      // RFC 9110 §9.3.3: a POST's response may answer later GETs; its Vary key comes from the fields the client sent, kept before forwarding.
      const sent = method === "POST" && !bypassed(rules, asked) ? asked.clone() : undefined;
      const requestTime = Date.now();
      const res = await forward(ctx);
      const url = `${ctx.scheme}://${ctx.host}${ctx.path}${ctx.query}`;
      // RFC 9111 §4.4: a non-error answer to an unsafe method invalidates the target and same-origin Location / Content-Location.
      cache.invalidate(invalidates(method, res.status, url, res.headers), rules.ignoreQuery);
      if (sent !== undefined && postReusable(url, res.status, res.headers)) {
        return fill.keep(ctx, cache.primaryKey(ctx.scheme, ctx.host, ctx.path, rules.ignoreQuery ? "" : ctx.query), res, requestTime, sent);
      }
      return res;
    }
    if (bypassed(rules, asked)) {
      count(ctx, "bypass");
      return tag(await forward(ctx), "fwd=bypass", cache);
    }
    const primary = known!;
    let found = seen;
    // cached() asked both tiers already.
    const disk = cache.disk;
    // A range that kept pieces of the response cover (RFC 9111 §3.4).
    if (found === undefined) {
      const piece = servePartial(ctx, cache, primary);
      if (piece !== undefined) {
        count(ctx, "hit");
        return piece;
      }
    }
    if (onlyIfCached(asked)) throw new GatewayError(504, "not in the cache, or not usable without the origin (only-if-cached)", "downstream");
    if (method === "HEAD" && found === undefined) {
      count(ctx, "miss");
      return tag(await forward(ctx), "fwd=uri-miss", cache);
    }
    // One request per URL goes to the origin (a miss or a revalidation); the others wait for it and look again.
    const turn = cache.coalescer.join(primary, COALESCE_WAIT_MS);
    if (!turn.leader) {
      await turn.wait;
      found = cache.lookup(primary, asked);
      if (found !== undefined) {
        const res = answer(ctx, primary, found.secondary, found.entry, judge(found.entry, asked, Date.now()), "; detail=coalesced");
        if (res !== undefined) return res;
      }
    }
    // Across the node's processes too: one of them fills a URL no tier holds (a lock file of the disk tier), the others wait for it and read its file.
    let release: (() => void) | undefined;
    try {
      if (turn.leader && found === undefined && disk !== undefined) {
        release = disk.claim(primary);
        if (release === undefined) {
          await disk.waitFill(primary, COALESCE_WAIT_MS);
          found = fromDisk(primary, asked);
          if (found !== undefined) {
            const res = answer(ctx, primary, found.secondary, found.entry, judge(found.entry, asked, Date.now()), "; detail=coalesced");
            if (res !== undefined) return res;
          }
          release = disk.claim(primary);
        }
      }
      if (found !== undefined) {
        const d = decide(found.entry, asked, Date.now(), found.entry.lifetime);
        if (d.use === "revalidate") return await fill.revalidate(ctx, primary, found.secondary, found.entry, d.staleIfError, d.age, d.ttl);
      }
      count(ctx, "miss");
      if (method === "HEAD") return tag(await forward(ctx), "fwd=uri-miss", cache);
      if (wantsWhole(rules, ctx)) void fill.whole(ctx, primary);
      return await fill.fetch(ctx, primary);
    } finally {
      if (turn.leader) turn.done();
      // Released once the file is written: a process that waited finds it.
      if (release !== undefined) void disk!.written(primary).then(release, release);
    }
  }

  /** fromDisk looks a URL up in the disk tier: the entry made ready for this route (lifetime by its rules, a soft purge's mark), kept in memory when small. */
  function fromDisk(primary: string, asked: FieldReader): { entry: Entry; secondary: string } | undefined {
    const hit = cache.disk?.lookup(primary, asked);
    if (hit === undefined) return undefined;
    refresh(hit.entry, rules);
    if (hit.stale) hit.entry.lifetime = -1;
    if (hit.entry.file === undefined) cache.store.set(primary, hit.secondary, hit.entry);
    return hit;
  }
}
