import { describe, expect, test } from "bun:test";
import { Fields } from "../lib/fields.ts";
import { formatHttpDate } from "./http-date.ts";
import {
  ageHeader,
  alwaysRevalidates,
  currentAge,
  decide,
  freshnessLifetime,
  invalidates,
  mergeRevalidated,
  onlyIfCached,
  postReusable,
  storable,
  withheldFields,
  type ResponseInfo,
} from "./policy.ts";

const T0 = Date.UTC(2024, 0, 1, 12, 0, 0);
const DATE = formatHttpDate(T0);
const ago = (s: number) => formatHttpDate(T0 - s * 1000);
const at = (s: number) => T0 + s * 1000;

/** res builds a response received at T0 with Date: T0 unless the headers say otherwise. */
function res(headers: Record<string, string> = {}, status = 200, times: Partial<ResponseInfo> = {}): ResponseInfo {
  return { status, headers: new Headers({ date: DATE, ...headers }), requestTime: T0, responseTime: T0, ...times };
}
const req = (h: Record<string, string> = {}) => new Headers(h);
const why = (method: string, rq: Record<string, string>, status: number, h: Record<string, string>) => {
  const r = storable(method, req(rq), { status, headers: new Headers(h) });
  return r.ok ? "ok" : r.reason;
};

describe("storable (RFC 9111 §3)", () => {
  test("GET only; HEAD and unsafe methods are not stored", () => {
    expect(why("GET", {}, 200, {})).toBe("ok");
    for (const m of ["HEAD", "POST", "PUT", "get"]) expect(why(m, {}, 200, { "cache-control": "max-age=60" })).toBe("method");
  });
  test("partial, interim and 304 responses are not stored", () => {
    expect(why("GET", {}, 206, { "cache-control": "max-age=60" })).toBe("partial");
    for (const s of [100, 304, 600]) expect(why("GET", {}, s, { "cache-control": "max-age=60" })).toBe("status");
  });
  test("no-store in the response or in the request", () => {
    expect(why("GET", {}, 200, { "cache-control": "max-age=60, no-store" })).toBe("no-store");
    expect(why("GET", { "cache-control": "no-store" }, 200, { "cache-control": "max-age=60" })).toBe("request-no-store");
  });
  test("unqualified private is never stored by a shared cache; a qualified one only withholds its fields (§5.2.2.7)", () => {
    expect(why("GET", {}, 200, { "cache-control": "private, max-age=60" })).toBe("private");
    expect(why("GET", {}, 200, { "cache-control": 'private="", max-age=60' })).toBe("private"); // no field named: all of it
    expect(why("GET", {}, 200, { "cache-control": 'private="x-user", max-age=60' })).toBe("ok");
    expect(why("GET", {}, 200, { "cdn-cache-control": 'private="x-user", max-age=60' })).toBe("ok");
    expect(why("GET", {}, 200, { "cdn-cache-control": "private, max-age=60" })).toBe("private");
  });
  test("a Set-Cookie that a qualified private or no-cache withholds does not stop storing", () => {
    for (const cc of ['private="Set-Cookie", max-age=60', 'no-cache="set-cookie", max-age=60'])
      expect(why("GET", {}, 200, { "set-cookie": "a=1", "cache-control": cc })).toBe("ok");
    expect(why("GET", {}, 200, { "set-cookie": "a=1", "cache-control": 'private="x-user", max-age=60' })).toBe("set-cookie");
  });
  test("Authorization needs public, s-maxage or must-revalidate (§3.5)", () => {
    const auth = { authorization: "Bearer x" };
    expect(why("GET", auth, 200, { "cache-control": "max-age=60" })).toBe("authorization");
    expect(why("GET", auth, 200, { "cache-control": "proxy-revalidate, max-age=60" })).toBe("authorization");
    for (const cc of ["public", "s-maxage=60", "must-revalidate, max-age=60"]) expect(why("GET", auth, 200, { "cache-control": cc })).toBe("ok");
  });
  test("must-understand: a status we understand overrides no-store, any other is refused (§5.2.2.3)", () => {
    expect(why("GET", {}, 200, { "cache-control": "must-understand, no-store, max-age=60" })).toBe("ok");
    expect(why("GET", {}, 299, { "cache-control": "must-understand, no-store, max-age=60" })).toBe("must-understand");
    expect(why("GET", { "cache-control": "no-store" }, 200, { "cache-control": "must-understand, no-store" })).toBe("request-no-store");
  });
  test("Vary: * is never stored (§4.1)", () => {
    expect(why("GET", {}, 200, { vary: "Accept, *", "cache-control": "max-age=60" })).toBe("vary-star");
  });
  test("Set-Cookie is stored only with public or s-maxage (our choice)", () => {
    expect(why("GET", {}, 200, { "set-cookie": "a=1", "cache-control": "max-age=60" })).toBe("set-cookie");
    expect(why("GET", {}, 200, { "set-cookie": "a=1", "cache-control": "public, max-age=60" })).toBe("ok");
    expect(why("GET", {}, 200, { "set-cookie": "a=1", "cache-control": "s-maxage=60" })).toBe("ok");
  });
  test("statuses not heuristically cacheable need explicit freshness, and must be understood", () => {
    expect(why("GET", {}, 302, {})).toBe("no-explicit-freshness");
    const explicit: Record<string, string>[] = [
      { "cache-control": "max-age=5" },
      { "cache-control": "s-maxage=5" },
      { "cache-control": "public" },
      { expires: DATE },
    ];
    for (const h of explicit) {
      expect(why("GET", {}, 302, h)).toBe("ok");
    }
    for (const s of [204, 301, 404, 410, 501]) expect(why("GET", {}, s, {})).toBe("ok");
    expect(why("GET", {}, 407, { "cache-control": "max-age=60" })).toBe("status");
  });
  test("final statuses this cache does not know are stored with explicit freshness or public (§3), never heuristically", () => {
    for (const s of [299, 499, 599]) {
      expect(why("GET", {}, s, { "cache-control": "max-age=60" })).toBe("ok");
      expect(why("GET", {}, s, { "cdn-cache-control": "s-maxage=60" })).toBe("ok");
      expect(why("GET", {}, s, { expires: DATE })).toBe("ok");
      expect(why("GET", {}, s, { "cache-control": "public" })).toBe("ok");
      expect(why("GET", {}, s, { "last-modified": ago(86_400) })).toBe("no-explicit-freshness");
    }
    for (const s of [103, 199]) expect(why("GET", {}, s, { "cache-control": "max-age=60" })).toBe("status");
  });
  test("a valid CDN-Cache-Control is obeyed instead of Cache-Control and Expires (RFC 9213 §2.2, §3.1)", () => {
    expect(why("GET", {}, 200, { "cache-control": "no-store", "cdn-cache-control": "max-age=600" })).toBe("ok");
    expect(why("GET", {}, 200, { "cache-control": "public, max-age=60", "cdn-cache-control": "private" })).toBe("private");
    expect(why("GET", {}, 200, { "cache-control": "max-age=60", "cdn-cache-control": "no-store" })).toBe("no-store");
    expect(why("GET", {}, 302, { expires: DATE, "cdn-cache-control": "must-revalidate" })).toBe("no-explicit-freshness");
    expect(why("GET", {}, 200, { "cache-control": "no-store", "cdn-cache-control": "Max-Age=600" })).toBe("no-store"); // invalid: ignored
  });
});

describe("freshnessLifetime (RFC 9111 §4.2.1)", () => {
  test("s-maxage beats max-age beats Expires", () => {
    expect(freshnessLifetime(res({ "cache-control": "max-age=60, s-maxage=30", expires: formatHttpDate(at(999)) }))).toBe(30);
    expect(freshnessLifetime(res({ "cache-control": "max-age=60", expires: formatHttpDate(at(999)) }))).toBe(60);
    expect(freshnessLifetime(res({ expires: formatHttpDate(at(999)) }))).toBe(999);
  });
  test("an invalid max-age or s-maxage means stale, not a fall back to Expires", () => {
    expect(freshnessLifetime(res({ "cache-control": "max-age=ten", expires: formatHttpDate(at(999)) }))).toBe(0);
    expect(freshnessLifetime(res({ "cache-control": "s-maxage=1.5, max-age=60" }))).toBe(0);
    expect(freshnessLifetime(res({ "cache-control": "max-age=99999999999" }))).toBe(2 ** 31);
  });
  test("Expires counts from Date; invalid Expires is already expired (§5.3)", () => {
    expect(freshnessLifetime(res({ date: ago(100), expires: formatHttpDate(at(50)) }))).toBe(150);
    expect(freshnessLifetime(res({ expires: ago(10) }))).toBe(0);
    for (const bad of ["0", "-1", "tomorrow", `${formatHttpDate(at(60))}, ${formatHttpDate(at(90))}`]) {
      expect(freshnessLifetime(res({ expires: bad, "last-modified": ago(86400 * 10) }))).toBe(0);
    }
  });
  test("a missing or invalid Date is replaced by the time the response was received", () => {
    const r = res({ expires: formatHttpDate(at(60)) });
    (r.headers as Headers).delete("date");
    expect(freshnessLifetime(r)).toBe(60);
    expect(freshnessLifetime(res({ date: "yesterday", expires: formatHttpDate(at(60)) }))).toBe(60);
  });
  test("heuristic: 10 % of Date − Last-Modified, capped (§4.2.2)", () => {
    expect(freshnessLifetime(res({ "last-modified": ago(5 * 86400) }))).toBe(43200);
    expect(freshnessLifetime(res({ "last-modified": ago(100 * 86400) }))).toBe(86400);
    expect(freshnessLifetime(res({ "last-modified": ago(100 * 86400) }), { heuristicCap: 3600 })).toBe(3600);
    expect(freshnessLifetime(res({ "last-modified": formatHttpDate(at(10)) }))).toBe(0);
    expect(freshnessLifetime(res({}))).toBe(0);
  });
  test("heuristic only for heuristically cacheable statuses or with public", () => {
    expect(freshnessLifetime(res({ "last-modified": ago(1000) }, 302))).toBe(0);
    expect(freshnessLifetime(res({ "last-modified": ago(1000), "cache-control": "public" }, 302))).toBe(100);
    expect(freshnessLifetime(res({ "last-modified": ago(1000) }, 404))).toBe(100);
  });
  test("CDN-Cache-Control replaces Cache-Control and Expires (RFC 9213 §2.2)", () => {
    expect(freshnessLifetime(res({ "cache-control": "max-age=60, s-maxage=120", "cdn-cache-control": "max-age=600" }))).toBe(600);
    const h = { "cdn-cache-control": "must-revalidate", expires: formatHttpDate(at(999)), "last-modified": ago(1000) };
    expect(freshnessLifetime(res(h))).toBe(100);
  });
});

describe("currentAge (RFC 9111 §4.2.3)", () => {
  test("resident time since the response arrived", () => {
    expect(currentAge(res(), at(10))).toBe(10);
  });
  test("the Age header is added to the response delay, and counts from the request", () => {
    expect(currentAge(res({ age: "100" }, 200, { requestTime: at(-2) }), at(10))).toBe(112);
  });
  test("apparent age wins when larger; a Date in the future gives none", () => {
    expect(currentAge(res({ date: ago(50), age: "10" }), at(0))).toBe(50);
    expect(currentAge(res({ date: formatHttpDate(at(50)) }), at(0))).toBe(0);
  });
  test("Age: first member of a list; invalid ignored; huge clamped", () => {
    expect(currentAge(res({ age: "30, 40" }), at(0))).toBe(30);
    for (const bad of ["-5", "abc", "1.5"]) expect(currentAge(res({ age: bad }), at(0))).toBe(0);
    expect(currentAge(res({ age: "99999999999" }), at(0))).toBe(2 ** 31);
  });
});

/** d decides for a response with cc stored at T0, requested `age` seconds later. */
const d = (cc: Record<string, string>, age: number, rq: Record<string, string> = {}, lifetime?: number) => decide(res(cc), req(rq), at(age), lifetime);

describe("decide", () => {
  const ma60 = { "cache-control": "max-age=60" };
  test("fresh while age < lifetime; stale without permission → revalidate", () => {
    expect(d(ma60, 10)).toEqual({ use: "fresh", age: 10, ttl: 50 });
    expect(d(ma60, 60)).toEqual({ use: "revalidate", age: 60, ttl: 0, staleIfError: 0 });
  });
  test("response no-cache always revalidates, even fresh, and forbids stale-if-error (§5.2.2.4)", () => {
    expect(d({ "cache-control": "max-age=60, no-cache, stale-if-error=600" }, 1)).toMatchObject({ use: "revalidate", staleIfError: 0 });
  });
  test("a qualified no-cache does not force revalidation: the fields it names are not stored (§5.2.2.4)", () => {
    expect(d({ "cache-control": 'max-age=60, no-cache="x-user"' }, 1)).toEqual({ use: "fresh", age: 1, ttl: 59 });
    expect(d({ "cache-control": 'max-age=60, no-cache="x-user", stale-if-error=600' }, 70)).toMatchObject({ use: "revalidate", staleIfError: 590 });
    expect(d({ "cache-control": 'max-age=60, no-cache=""' }, 1).use).toBe("revalidate"); // no field named: all of it
    expect(d({ "cdn-cache-control": 'max-age=60, no-cache="x-user"' }, 1).use).toBe("fresh");
  });
  test("request no-cache, or Pragma: no-cache without Cache-Control, revalidates (§5.2.1.4, §5.4)", () => {
    expect(d(ma60, 1, { "cache-control": "no-cache" }).use).toBe("revalidate");
    expect(d(ma60, 1, { pragma: "no-cache" }).use).toBe("revalidate");
    expect(d(ma60, 1, { pragma: "no-cache", "cache-control": "max-stale" }).use).toBe("fresh");
  });
  test("request max-age bounds the age, inclusive (§5.2.1.1)", () => {
    expect(d(ma60, 10, { "cache-control": "max-age=5" }).use).toBe("revalidate");
    expect(d(ma60, 10, { "cache-control": "max-age=10" }).use).toBe("fresh");
  });
  test("min-fresh wants that much freshness left (§5.2.1.3)", () => {
    expect(d(ma60, 10, { "cache-control": "min-fresh=51" }).use).toBe("revalidate");
    expect(d(ma60, 10, { "cache-control": "min-fresh=50" }).use).toBe("fresh");
    expect(d(ma60, 70, { "cache-control": "min-fresh=0, max-stale" }).use).toBe("revalidate");
  });
  test("max-stale with a value allows that much staleness; without, any (§5.2.1.2)", () => {
    expect(d(ma60, 80, { "cache-control": "max-stale=20" })).toEqual({ use: "stale-ok", age: 80, ttl: -20, revalidateInBackground: false });
    expect(d(ma60, 81, { "cache-control": "max-stale=20" }).use).toBe("revalidate");
    expect(d(ma60, 1e6, { "cache-control": "max-stale" }).use).toBe("stale-ok");
    expect(d(ma60, 80, { "cache-control": "max-stale=abc" }).use).toBe("revalidate");
  });
  test("stale-while-revalidate serves stale and revalidates in the background (RFC 5861 §3)", () => {
    const swr = { "cache-control": "max-age=60, stale-while-revalidate=30" };
    expect(d(swr, 90)).toEqual({ use: "stale-ok", age: 90, ttl: -30, revalidateInBackground: true });
    expect(d(swr, 91).use).toBe("revalidate");
    expect(d(swr, 80, { "cache-control": "max-age=100" }).use).toBe("revalidate"); // a client max-age refuses stale
    expect(d(swr, 80, { "cache-control": "max-age=100, max-stale" })).toMatchObject({ use: "stale-ok", revalidateInBackground: true });
  });
  test("must-revalidate, proxy-revalidate and s-maxage stop max-stale, stale-while-revalidate and stale-if-error (§4.2.4)", () => {
    for (const cc of ["max-age=60, must-revalidate", "max-age=60, proxy-revalidate", "s-maxage=60, must-revalidate"]) {
      const h = { "cache-control": `${cc}, stale-while-revalidate=30, stale-if-error=600` };
      expect(d(h, 70, { "cache-control": "max-stale, stale-if-error=600" })).toEqual({ use: "revalidate", age: 70, ttl: -10, staleIfError: 0 });
    }
    expect(d({ "cache-control": "s-maxage=60" }, 70, { "cache-control": "max-stale" })).toEqual({ use: "revalidate", age: 70, ttl: -10, staleIfError: 0 });
  });
  test("s-maxage with stale-while-revalidate or stale-if-error: the origin's explicit grant wins over the implied proxy-revalidate", () => {
    expect(d({ "cache-control": "s-maxage=60, stale-while-revalidate=30" }, 70)).toMatchObject({ use: "stale-ok", revalidateInBackground: true });
    expect(d({ "cache-control": "s-maxage=60, stale-if-error=100" }, 80)).toMatchObject({ use: "revalidate", staleIfError: 80 });
  });
  test("stale-if-error: seconds left from the larger of response and request windows (RFC 5861 §4)", () => {
    expect(d({ "cache-control": "max-age=60, stale-if-error=100" }, 80)).toMatchObject({ use: "revalidate", staleIfError: 80 });
    expect(d(ma60, 80, { "cache-control": "stale-if-error=50" })).toMatchObject({ staleIfError: 30 });
    expect(d({ "cache-control": "max-age=60, stale-if-error=100" }, 80, { "cache-control": "stale-if-error=500" })).toMatchObject({ staleIfError: 480 });
    expect(d({ "cache-control": "max-age=60, stale-if-error=100" }, 200)).toMatchObject({ staleIfError: 0 });
  });
  test("a lifetime given by the caller replaces the computed one", () => {
    expect(d(ma60, 100, {}, 300)).toEqual({ use: "fresh", age: 100, ttl: 200 });
  });
  test("CDN-Cache-Control rules serving too: Cache-Control's must-revalidate is ignored (RFC 9213 §2.2)", () => {
    const h = { "cache-control": "max-age=0, must-revalidate", "cdn-cache-control": "max-age=60, stale-while-revalidate=30" };
    expect(d(h, 10).use).toBe("fresh");
    expect(d(h, 80)).toMatchObject({ use: "stale-ok", revalidateInBackground: true });
    expect(d({ "cache-control": "max-age=600", "cdn-cache-control": "max-age=60, must-revalidate" }, 70, { "cache-control": "max-stale" }).use).toBe(
      "revalidate",
    );
  });
  test("onlyIfCached reads the request directive (§5.2.1.7)", () => {
    expect(onlyIfCached(req({ "cache-control": "max-stale, Only-If-Cached" }))).toBe(true);
    expect(onlyIfCached(req({ pragma: "only-if-cached" }))).toBe(false);
  });
});

describe("mergeRevalidated (RFC 9111 §4.3.4, §3.2)", () => {
  const stored = Fields.from({
    date: ago(600),
    "content-length": "1234",
    "content-encoding": "gzip",
    "content-type": "text/html",
    etag: '"v1"',
    "cache-control": "max-age=60",
    age: "300",
    "x-kept": "1",
  });
  test("the 304's fields replace the stored ones, except those describing the stored body", () => {
    const notModified = new Headers({
      date: DATE,
      "content-length": "0",
      "content-encoding": "br",
      "content-range": "bytes 0-1/2",
      "cache-control": "max-age=120",
      etag: '"v1"',
      "content-type": "text/html; charset=utf-8",
      "x-new": "2",
      "set-cookie": "s=1",
      connection: "x-hop",
      "x-hop": "1",
      "transfer-encoding": "chunked",
      "keep-alive": "timeout=5",
    });
    const m = mergeRevalidated(stored, notModified);
    expect(Object.fromEntries(m)).toEqual({
      date: DATE,
      "content-length": "1234",
      "content-encoding": "gzip",
      "content-type": "text/html; charset=utf-8",
      etag: '"v1"',
      "cache-control": "max-age=120",
      "x-kept": "1",
      "x-new": "2",
    });
    expect(stored.get("cache-control")).toBe("max-age=60"); // input untouched
  });
  test("the old Age goes; the 304's Age comes; a Date-less 304 gets Date = receivedAt or none", () => {
    expect(mergeRevalidated(stored, new Headers({ date: DATE, age: "5" })).get("age")).toBe("5");
    expect(mergeRevalidated(stored, new Headers()).has("date")).toBe(false);
    expect(mergeRevalidated(stored, new Headers(), at(7)).get("date")).toBe(formatHttpDate(at(7)));
  });
});

describe("withheldFields (RFC 9111 §5.2.2.4, §5.2.2.7)", () => {
  test("the lowercased fields a qualified no-cache or private names, from the directives that rule", () => {
    expect(withheldFields(new Headers({ "cache-control": 'no-cache="X-A, x-b", private="X-C", max-age=60' }))).toEqual(["x-a", "x-b", "x-c"]);
    expect(withheldFields(new Headers({ "cache-control": "no-cache=X-Token" }))).toEqual(["x-token"]);
    expect(withheldFields(new Headers({ "cache-control": "no-cache, private, max-age=60" }))).toEqual([]);
    expect(withheldFields(new Headers({ "cache-control": 'private="x-a"', "cdn-cache-control": 'no-cache="x-b"' }))).toEqual(["x-b"]);
    expect(withheldFields(new Headers())).toEqual([]);
  });
});

test("alwaysRevalidates: no-cache without a field list, in the directives that rule (§5.2.2.4)", () => {
  expect(alwaysRevalidates(new Headers({ "cache-control": "max-age=60, no-cache" }))).toBe(true);
  expect(alwaysRevalidates(new Headers({ "cache-control": 'max-age=60, no-cache=""' }))).toBe(true);
  expect(alwaysRevalidates(new Headers({ "cache-control": 'max-age=60, no-cache="x-user"' }))).toBe(false);
  expect(alwaysRevalidates(new Headers({ "cache-control": "no-cache", "cdn-cache-control": "max-age=60" }))).toBe(false);
  expect(alwaysRevalidates(new Headers({ "cache-control": "max-age=60" }))).toBe(false);
});

describe("postReusable (RFC 9110 §9.3.3)", () => {
  const url = "https://example.com/items/1?x=1";
  const h = (cl: string | undefined, cc = "max-age=60") => new Headers({ "cache-control": cc, ...(cl === undefined ? {} : { "content-location": cl }) });
  test("explicit freshness and a Content-Location equal to the target, absolute or relative", () => {
    expect(postReusable(url, 200, h(url))).toBe(true);
    expect(postReusable(url, 200, h("/items/1?x=1"))).toBe(true);
    expect(postReusable(url, 200, h("https://EXAMPLE.com:443/items/1?x=1#top"))).toBe(true);
    expect(postReusable(url, 200, new Headers({ expires: formatHttpDate(Date.now() + 60_000), "content-location": url }))).toBe(true);
  });
  test("not without Content-Location, with another one, or without explicit freshness", () => {
    expect(postReusable(url, 200, h(undefined))).toBe(false);
    expect(postReusable(url, 200, h("/items/2"))).toBe(false);
    expect(postReusable(url, 200, h("/items/1"))).toBe(false);
    expect(postReusable(url, 200, h("http://[bad"))).toBe(false);
    expect(postReusable(url, 200, h(url, "public"))).toBe(false);
    expect(postReusable(url, 200, new Headers({ "content-location": url, "last-modified": ago(86_400) }))).toBe(false);
    expect(postReusable("not a url", 200, h("/x"))).toBe(false);
  });
  test("only a 2xx: Content-Location then describes the target's current representation (RFC 9110 §8.7)", () => {
    for (const s of [201, 204, 299]) expect(postReusable(url, s, h(url))).toBe(true);
    for (const s of [303, 400, 500]) expect(postReusable(url, s, h(url))).toBe(false);
  });
});

describe("invalidates (RFC 9111 §4.4)", () => {
  const url = "https://example.com/items/1?x=1#frag";
  test("target plus same-origin Location and Content-Location, resolved and de-duplicated", () => {
    const h = new Headers({ location: "/items/2#top", "content-location": "https://EXAMPLE.com:443/items/1?x=1" });
    expect(invalidates("POST", 201, url, h)).toEqual(["https://example.com/items/1?x=1", "https://example.com/items/2"]);
  });
  test("never another origin: host, scheme or port differing", () => {
    for (const loc of ["https://other.com/a", "http://example.com/a", "https://example.com:8443/a", "data:,x", "http://[bad"]) {
      expect(invalidates("PUT", 200, url, new Headers({ location: loc }))).toEqual(["https://example.com/items/1?x=1"]);
    }
  });
  test("only unsafe methods (unknown ones included) with 2xx or 3xx", () => {
    for (const m of ["GET", "HEAD", "OPTIONS", "TRACE"]) expect(invalidates(m, 200, url, new Headers())).toEqual([]);
    for (const s of [100, 404, 500]) expect(invalidates("DELETE", s, url, new Headers())).toEqual([]);
    for (const m of ["PURGE", "get", "PATCH"]) expect(invalidates(m, 303, url, new Headers())).toHaveLength(1);
    expect(invalidates("POST", 200, "not a url", new Headers())).toEqual([]);
  });
});

test("ageHeader: whole seconds rounded down, never negative, at most 2^31 (§5.1)", () => {
  expect([0, 1.9, 59.999, -5, Number.NaN, 2 ** 40, Infinity].map(ageHeader)).toEqual(["0", "1", "59", "0", "0", "2147483648", "2147483648"]);
});
