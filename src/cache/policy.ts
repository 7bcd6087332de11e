/** The RFC 9111 decisions of a shared cache: may a response be stored, how long is it fresh, how old is it, may it answer a request, and what do a 304 and an unsafe method change. */
import type { FieldReader, Fields } from "../lib/fields.ts";
import { DELTA_SECONDS_MAX, parseCacheControl, responsePolicy, seconds, type Directives, type Policy } from "./cache-control.ts";
import { formatHttpDate, parseHttpDate } from "./http-date.ts";
import { varyNames } from "./vary.ts";

/** ResponseInfo is what the cache knows of a stored or candidate response; times are epoch milliseconds on this host's clock. */
export type ResponseInfo = { readonly status: number; readonly headers: FieldReader; readonly requestTime: number; readonly responseTime: number };

/** HEURISTIC_STATUSES are the heuristically cacheable status codes (RFC 9110 §15.1). */
export const HEURISTIC_STATUSES: ReadonlySet<number> = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);

/**
 * UNDERSTOOD_STATUSES are the final status codes whose caching rules this cache implements (RFC 9111 §3):
 * those RFC 9110 §15 defines, less 206 (only complete responses are stored, §3.3), 304 (it freshens, §4.3.4)
 * and 407 (it concerns the proxy, whose fields are never stored, §3.1).
 */
export const UNDERSTOOD_STATUSES: ReadonlySet<number> = new Set([
  200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 307, 308, 400, 401, 402, 403, 404, 405, 406, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422,
  426, 500, 501, 502, 503, 504, 505,
]);

/** DEFAULT_HEURISTIC_CAP is the longest heuristic freshness lifetime, in seconds (one day, RFC 9111 §4.2.2 leaves it to us). */
export const DEFAULT_HEURISTIC_CAP = 86_400;

/** Storability is storable's answer; `reason` is a token fit for logs and a Cache-Status `detail` (RFC 9211 §2.8). */
export type Storability = { ok: true } | { ok: false; reason: string };

const OK: Storability = { ok: true };
const no = (reason: string): Storability => ({ ok: false, reason });

/**
 * listed returns the lowercased field names a qualified no-cache or private lists (RFC 9111 §5.2.2.4, §5.2.2.7), or
 * undefined when the directive is absent, bare, or names no field (then it applies to the whole response).
 */
function listed(d: Directives, name: string): string[] | undefined {
  const v = d.get(name);
  if (typeof v !== "string") return undefined;
  const names = v
    .split(",")
    .map((n) => n.trim().toLowerCase())
    .filter((n) => n !== "");
  return names.length === 0 ? undefined : names;
}

/**
 * withheldFields lists the fields (lowercase) a response's qualified no-cache and private name, from the directives that
 * rule (CDN-Cache-Control when valid): a shared cache stores the response without them and so never sends them to
 * another client (§5.2.2.7), nor reuses them without revalidation (§5.2.2.4). One field parse; empty without them.
 */
export function withheldFields(h: FieldReader): readonly string[] {
  const rd = responsePolicy(h).directives;
  const noCache = listed(rd, "no-cache");
  const priv = listed(rd, "private");
  if (noCache === undefined) return priv ?? [];
  return priv === undefined ? noCache : [...noCache, ...priv];
}

/**
 * storable says whether a shared cache may store this response to this request (RFC 9111 §3): two or three
 * field parses, no allocation on the common path. Only GET is stored (HEAD is answered from a stored GET; a POST's
 * response is checked by postReusable, then here as a GET's). A qualified private or no-cache is storable: the caller
 * removes withheldFields before storing. Set-Cookie without `public` or `s-maxage` is refused unless withheld, a choice
 * of ours (nginx and Varnish do the same): RFC 9111 §7.3 says Set-Cookie does not inhibit caching, but a shared cache
 * would hand one user's cookie to all. Final statuses this cache does not know are stored with explicit freshness or
 * `public` (§3 asks to understand only 206, 304 and must-understand ones).
 * `authorized` says the request was authenticated (RFC 9111 §3.5), by its Authorization field or by the gateway's own auth, which removes the field.
 */
export function storable(
  method: string,
  reqHeaders: FieldReader,
  res: { status: number; headers: FieldReader },
  authorized = reqHeaders.has("authorization"),
): Storability {
  if (method !== "GET") return no("method"); // §3: a method we understand; HEAD responses carry no content to store
  const status = res.status;
  if (status === 206) return no("partial"); // §3.3: we keep complete responses only
  // §3: final only; a 304 freshens (§4.3.4); a 407 concerns the proxy the cache talked through, whose fields are never stored (§3.1).
  if (status < 200 || status === 304 || status === 407 || status > 599) return no("status");
  const { directives: rd, targeted } = responsePolicy(res.headers);
  const understood = UNDERSTOOD_STATUSES.has(status);
  const mustUnderstand = rd.has("must-understand");
  if (mustUnderstand && !understood) return no("must-understand"); // §5.2.2.3
  if (parseCacheControl(reqHeaders.get("cache-control")).has("no-store")) return no("request-no-store"); // §5.2.1.5
  if (rd.has("no-store") && !mustUnderstand) return no("no-store"); // §5.2.2.5; §5.2.2.3 lets must-understand override it
  // §5.2.2.7: a qualified private withholds only the fields it names (the caller removes them); "private" alone, the whole response.
  if (rd.has("private") && listed(rd, "private") === undefined) return no("private");
  const shared = rd.has("public") || rd.has("s-maxage");
  if (authorized && !shared && !rd.has("must-revalidate")) return no("authorization"); // §3.5
  if (varyNames(res.headers) === "*") return no("vary-star"); // §4.1: Vary: * never matches, storing it is waste
  if (res.headers.has("set-cookie") && !shared && !withheld(rd, "set-cookie")) return no("set-cookie");
  if (HEURISTIC_STATUSES.has(status)) return OK; // §3, §4.2.2
  // §3: otherwise, known status or not, only with explicit freshness or public.
  return rd.has("public") || explicitFreshness(rd, targeted, res.headers) ? OK : no("no-explicit-freshness");
}

/** withheld says whether a qualified no-cache or private names this (lowercase) field. */
function withheld(rd: Directives, name: string): boolean {
  return listed(rd, "no-cache")?.includes(name) === true || listed(rd, "private")?.includes(name) === true;
}

/** alwaysRevalidates says whether a stored response may never be reused without asking the origin: its no-cache names no field (RFC 9111 §5.2.2.4). One field parse. */
export function alwaysRevalidates(h: FieldReader): boolean {
  const rd = responsePolicy(h).directives;
  return rd.has("no-cache") && listed(rd, "no-cache") === undefined;
}

/** explicitFreshness: max-age, s-maxage or Expires; Expires does not count when a targeted field rules (RFC 9213 §2.2). */
function explicitFreshness(rd: Directives, targeted: boolean, h: FieldReader): boolean {
  return rd.has("max-age") || rd.has("s-maxage") || (!targeted && h.has("expires"));
}

/** hasExplicitFreshness says whether the origin gave a freshness lifetime (§4.2.1) rather than leaving it to heuristics (§4.2.2). */
export function hasExplicitFreshness(h: FieldReader): boolean {
  const { directives, targeted } = responsePolicy(h);
  return explicitFreshness(directives, targeted, h);
}

/** dateValue is the response's Date, or the time it was received when Date is missing or invalid (RFC 9110 §6.6.1). */
function dateValue(res: ResponseInfo): number {
  return parseHttpDate(res.headers.get("date"), res.responseTime) ?? res.responseTime;
}

function lifetimeOf(res: ResponseInfo, p: Policy, cap: number): number {
  const d = p.directives;
  // §4.2.1 in order: s-maxage (shared caches), max-age; a present but invalid value makes the response stale (§4.2.1, last paragraph).
  if (d.has("s-maxage")) return seconds(d, "s-maxage") ?? 0;
  if (d.has("max-age")) return seconds(d, "max-age") ?? 0;
  const date = dateValue(res);
  const expires = p.targeted ? null : res.headers.get("expires"); // RFC 9213 §2.2: a targeted field voids Expires
  if (expires !== null) {
    const t = parseHttpDate(expires, res.responseTime);
    // §5.3: an invalid Expires (even "0") means already expired; two Expires lines combine into an invalid one.
    return t === undefined ? 0 : Math.min(DELTA_SECONDS_MAX, Math.max(0, Math.floor((t - date) / 1000)));
  }
  // §4.2.2: heuristics only for heuristically cacheable statuses or with public; 10 % of the time since Last-Modified.
  if (!HEURISTIC_STATUSES.has(res.status) && !d.has("public")) return 0;
  const lastModified = parseHttpDate(res.headers.get("last-modified"), res.responseTime);
  if (lastModified === undefined || lastModified >= date) return 0;
  return Math.min(Math.floor((date - lastModified) / 10_000), cap);
}

/**
 * freshnessLifetime (RFC 9111 §4.2.1) in whole seconds, 0 when there is none: the directives of CDN-Cache-Control
 * when it is valid (RFC 9213 §2.2, which also voids Expires), else Cache-Control; s-maxage, max-age, Expires − Date,
 * then 10 % of Date − Last-Modified capped at opts.heuristicCap (default DEFAULT_HEURISTIC_CAP).
 */
export function freshnessLifetime(res: ResponseInfo, opts?: { heuristicCap?: number }): number {
  return lifetimeOf(res, responsePolicy(res.headers), opts?.heuristicCap ?? DEFAULT_HEURISTIC_CAP);
}

/** ageValue reads Age (RFC 9111 §5.1): the first member of a list, an invalid value ignored (0), large values clamped to 2^31. */
function ageValue(h: FieldReader): number {
  const v = h.get("age");
  if (v === null) return 0;
  const first = v.split(",", 1)[0]!.trim();
  return /^\d+$/.test(first) ? Math.min(Number(first), DELTA_SECONDS_MAX) : 0;
}

/** currentAge (RFC 9111 §4.2.3) in fractional seconds: corrected_initial_age (the larger of apparent_age and Age + response_delay) plus resident_time. */
export function currentAge(res: ResponseInfo, now: number): number {
  const apparentAge = Math.max(0, (res.responseTime - dateValue(res)) / 1000);
  const responseDelay = Math.max(0, (res.responseTime - res.requestTime) / 1000);
  const correctedAgeValue = ageValue(res.headers) + responseDelay;
  const correctedInitialAge = Math.max(apparentAge, correctedAgeValue);
  return correctedInitialAge + Math.max(0, (now - res.responseTime) / 1000);
}

/** Decision is what to do with a stored response for a request; age and ttl are fractional seconds, ttl = freshness left (negative when stale). */
export type Decision =
  | { readonly use: "fresh"; readonly age: number; readonly ttl: number }
  | { readonly use: "stale-ok"; readonly age: number; readonly ttl: number; readonly revalidateInBackground: boolean }
  | { readonly use: "revalidate"; readonly age: number; readonly ttl: number; readonly staleIfError: number };

/**
 * requestDirectives reads the request's Cache-Control; without one, Pragma: no-cache counts as no-cache (RFC 7234 §5.4; RFC 9111 §5.4 only deprecates Pragma).
 */
function requestDirectives(h: FieldReader): Directives {
  const cc = h.get("cache-control");
  if (cc !== null) return parseCacheControl(cc);
  const pragma = h.get("pragma");
  if (pragma?.split(",").some((p) => p.trim().toLowerCase() === "no-cache")) return new Map([["no-cache", true]]);
  return parseCacheControl(null);
}

/**
 * staleIfErrorLeft is how many more seconds the response may answer when the origin fails: the larger window of response and request (RFC 5861 §4: either party
 * may permit it, RFC 9111 §4.2.4) minus the staleness so far.
 */
function staleIfErrorLeft(rd: Directives, rq: Directives, ttl: number): number {
  const fromResponse = seconds(rd, "stale-if-error");
  const fromRequest = seconds(rq, "stale-if-error");
  if (fromResponse === undefined && fromRequest === undefined) return 0;
  return Math.max(0, Math.max(fromResponse ?? 0, fromRequest ?? 0) + ttl);
}

/**
 * decide says whether a stored response answers a request as is, stale, or only after revalidation: a few
 * parses and comparisons. `lifetime` (seconds) replaces freshnessLifetime, for a lifetime computed at store
 * time or set by configuration. Stale boundaries are inclusive ("no more than N seconds").
 */
export function decide(stored: ResponseInfo, reqHeaders: FieldReader, now: number, lifetime?: number): Decision {
  const p = responsePolicy(stored.headers);
  const rd = p.directives;
  const rq = requestDirectives(reqHeaders);
  const age = currentAge(stored, now);
  const ttl = (lifetime ?? lifetimeOf(stored, p, DEFAULT_HEURISTIC_CAP)) - age;
  // §4.2.4: these forbid generating a stale response, even when the origin is unreachable (§5.2.2.2 "in all circumstances").
  // s-maxage implies proxy-revalidate (§5.2.2.10), but an origin that also sends stale-while-revalidate or stale-if-error
  // grants stale serving explicitly (RFC 5861, an extension that §5.2.3 lets refine the standard directives), as CDNs read it:
  // "s-maxage=1, stale-while-revalidate=59" is the common way to ask for it.
  const grantsStale = rd.has("stale-while-revalidate") || rd.has("stale-if-error");
  // §5.2.2.4: a qualified no-cache concerns only the fields it names, which were not stored (withheldFields).
  const noCache = rd.has("no-cache") && listed(rd, "no-cache") === undefined;
  const noStale = noCache || rd.has("must-revalidate") || rd.has("proxy-revalidate") || (rd.has("s-maxage") && !grantsStale);
  const revalidate = (): Decision => ({ use: "revalidate", age, ttl, staleIfError: noStale ? 0 : staleIfErrorLeft(rd, rq, ttl) });
  if (noCache) return revalidate(); // §5.2.2.4
  if (rq.has("no-cache")) return revalidate(); // §5.2.1.4
  const maxAge = seconds(rq, "max-age");
  if (maxAge !== undefined && age > maxAge) return revalidate(); // §5.2.1.1: "age ... less than or equal to"
  const minFresh = seconds(rq, "min-fresh");
  if (ttl > 0) return minFresh !== undefined && ttl < minFresh ? revalidate() : { use: "fresh", age, ttl }; // §4.2, §5.2.1.3
  if (noStale || minFresh !== undefined) return revalidate(); // a client asking for min-fresh wants no stale response
  const staleness = -ttl;
  const swr = seconds(rd, "stale-while-revalidate");
  const inSwr = swr !== undefined && staleness <= swr; // RFC 5861 §3
  const maxStale = rq.get("max-stale") === true ? Infinity : seconds(rq, "max-stale"); // §5.2.1.2: bare = any staleness
  // §5.2.1.1: a request max-age refuses stale responses unless max-stale is also present, so it turns stale-while-revalidate off.
  if ((maxStale !== undefined && staleness <= maxStale) || (inSwr && maxAge === undefined)) {
    return { use: "stale-ok", age, ttl, revalidateInBackground: inSwr };
  }
  return revalidate();
}

/** onlyIfCached says whether the request has only-if-cached: the caller answers 504 on a miss or when decide says revalidate (§5.2.1.7). */
export function onlyIfCached(reqHeaders: FieldReader): boolean {
  return parseCacheControl(reqHeaders.get("cache-control")).has("only-if-cached");
}

/** NOT_UPDATED are the fields a 304 does not change in a stored response (RFC 9111 §3.2). */
const NOT_UPDATED: ReadonlySet<string> = new Set([
  // §3.1 → RFC 9110 §7.6.1: hop-by-hop fields are removed before forwarding, so never stored.
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  // §3.1: fields specific to the proxy the cache talked through.
  "proxy-authenticate",
  "proxy-authentication-info",
  "proxy-authorization",
  // §3.2: Content-Length never; the stored content depends on Content-Encoding; Content-Range is processed and removed.
  "content-length",
  "content-encoding",
  "content-range",
  // Our choice: a 304's Set-Cookie belongs to the client whose request revalidated, not to every later one.
  "set-cookie",
]);

/**
 * mergeRevalidated returns the headers to store after a 304 (RFC 9111 §4.3.4, §3.2): a copy of stored with each
 * field of the 304 replacing its value, except NOT_UPDATED and the fields the 304's Connection names. The stored
 * Age is dropped (it described the old exchange; §4.2.3). A 304 without Date gets Date = receivedAt when given
 * (RFC 9110 §6.6.1), else loses the stored Date so that age counts from the caller's new responseTime.
 */
export function mergeRevalidated(stored: Fields, notModified: Fields | Headers, receivedAt?: number): Fields {
  const out = stored.clone();
  const listed = new Set((notModified.get("connection") ?? "").split(",").map((t) => t.trim().toLowerCase()));
  out.delete("age");
  // A field the 304 repeats replaces the stored one with all its lines.
  const replaced = new Set<string>();
  notModified.forEach((value, name) => {
    if (NOT_UPDATED.has(name) || listed.has(name)) return;
    if (replaced.has(name)) out.append(name, value);
    else {
      replaced.add(name);
      out.set(name, value);
    }
  });
  if (!notModified.has("date")) {
    if (receivedAt === undefined) out.delete("date");
    else out.set("date", formatHttpDate(receivedAt));
  }
  return out;
}

// RFC 9110 §9.2.1: the safe methods; every other method, including unknown ones, is unsafe (RFC 9111 §4.4).
const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

/**
 * invalidates lists the absolute URLs (WHATWG-normalized, no fragment) an unsafe request's non-error (2xx, 3xx)
 * response invalidates (RFC 9111 §4.4): the target URI, and Location / Content-Location resolved against it
 * when same-origin (scheme, host, port). Methods are case-sensitive (RFC 9110 §9.1): "get" is unknown, so unsafe.
 */
export function invalidates(method: string, status: number, requestUrl: string, resHeaders: FieldReader): string[] {
  if (SAFE_METHODS.has(method) || status < 200 || status > 399) return [];
  let target: URL;
  try {
    target = new URL(requestUrl);
  } catch {
    return [];
  }
  target.hash = "";
  const out = [target.href];
  for (const name of ["location", "content-location"]) {
    const v = resHeaders.get(name);
    if (v === null) continue;
    let u: URL;
    try {
      u = new URL(v.trim(), target);
    } catch {
      continue;
    }
    u.hash = "";
    // §4.4: never for another origin (RFC 9110 §4.3.1), against denial of service.
    if (u.origin !== "null" && u.origin === target.origin && !out.includes(u.href)) out.push(u.href);
  }
  return out;
}

/**
 * postReusable says whether a POST's response may answer later GET and HEAD requests for its target (RFC 9110 §9.3.3):
 * a 2xx (only then does Content-Location describe the target's current representation, §8.7) with explicit freshness
 * (RFC 9111 §4.2.1) and a Content-Location that, resolved against the target and without a fragment, is the target
 * itself. The caller then applies storable as for a GET. Two URL parses when Content-Location is present.
 */
export function postReusable(requestUrl: string, status: number, resHeaders: FieldReader): boolean {
  const cl = resHeaders.get("content-location");
  if (status < 200 || status > 299 || cl === null || !hasExplicitFreshness(resHeaders)) return false;
  try {
    const target = new URL(requestUrl);
    const u = new URL(cl.trim(), target);
    target.hash = "";
    u.hash = "";
    return u.href === target.href;
  } catch {
    return false;
  }
}

/** ageHeader formats an Age value (RFC 9111 §5.1): whole seconds rounded down, never negative, at most 2^31. */
export function ageHeader(age: number): string {
  if (Number.isNaN(age) || age <= 0) return "0";
  return String(Math.min(DELTA_SECONDS_MAX, Math.floor(age)));
}
