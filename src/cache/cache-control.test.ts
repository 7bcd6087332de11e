import { expect, test } from "bun:test";
import { parseCacheControl, parseTargeted, responsePolicy, seconds } from "./cache-control.ts";

const entries = (d: ReadonlyMap<string, string | true> | undefined) => (d === undefined ? undefined : Object.fromEntries(d));

test("names are lowercased, bare names are true, token and quoted arguments both read (RFC 9111 §5.2)", () => {
  expect(entries(parseCacheControl('Public, MAX-AGE=60, no-cache="Set-Cookie, X-A", s-maxage="30"'))).toEqual({
    public: true,
    "max-age": "60",
    "no-cache": "Set-Cookie, X-A",
    "s-maxage": "30",
  });
});

test("quoted strings keep commas and lose their backslash escapes", () => {
  expect(entries(parseCacheControl('private="a,b", ext="q\\"uote", x=1'))).toEqual({ private: "a,b", ext: 'q"uote', x: "1" });
});

test("empty members, stray whitespace and a missing field are tolerated", () => {
  expect(entries(parseCacheControl(" , no-store ,, max-age = 5 ,"))).toEqual({ "no-store": true, "max-age": "5" });
  expect(parseCacheControl(null).size).toBe(0);
  expect(parseCacheControl(undefined).size).toBe(0);
  expect(parseCacheControl("").size).toBe(0);
});

test("a repeated directive: the first occurrence wins (RFC 9111 §4.2.1)", () => {
  const d = parseCacheControl("max-age=10, max-age=99, no-cache, no-cache=x");
  expect(seconds(d, "max-age")).toBe(10);
  expect(d.get("no-cache")).toBe(true);
});

test("seconds reads delta-seconds: digits only, quoted accepted, clamped at 2^31 (RFC 9111 §1.2.2)", () => {
  const d = parseCacheControl('a=0, b=42, c="7", d=-1, e=1.5, f=abc, g, h=99999999999999999999, i=');
  expect(seconds(d, "a")).toBe(0);
  expect(seconds(d, "b")).toBe(42);
  expect(seconds(d, "c")).toBe(7);
  for (const n of ["d", "e", "f", "g", "i", "absent"]) expect(seconds(d, n)).toBeUndefined();
  expect(seconds(d, "h")).toBe(2 ** 31);
});

test("targeted fields parse as Structured Fields dictionaries (RFC 9213 §2.1)", () => {
  expect(entries(parseTargeted('max-age=600, no-cache="set-cookie", stale-if-error=60;x=1, public'))).toEqual({
    "max-age": "600",
    "no-cache": "set-cookie",
    "stale-if-error": "60",
    public: true,
  });
  expect(entries(parseTargeted("no-store=?1, private=?0"))).toEqual({ "no-store": true });
  expect(entries(parseTargeted("max-age=10, max-age=20"))).toEqual({ "max-age": "20" }); // RFC 8941 §4.2.2: last wins
  expect(entries(parseTargeted("x=(a b);p, y=:AQID:, z=tok/en, w=1.5"))).toEqual({ x: "(a b)", y: ":AQID:", z: "tok/en", w: "1.5" });
});

test("an empty or unparsable targeted field is ignored as a whole (RFC 9213 §2.1)", () => {
  for (const bad of [
    "",
    "   ",
    "Max-Age=60",
    "max-age=60,",
    "max-age = 60",
    "max-age=60 junk",
    'a="unterminated',
    "a=1.2345",
    "a=1234567890123456",
    "a=?2",
    "a=(b",
    "1a=1",
    "a=@",
    'a="tab\there"',
  ])
    expect(parseTargeted(bad)).toBeUndefined();
  expect(parseTargeted(null)).toBeUndefined();
});

test("responsePolicy: a valid CDN-Cache-Control replaces Cache-Control entirely (RFC 9213 §2.2)", () => {
  const h = new Headers({ "cache-control": "no-store", "cdn-cache-control": "max-age=600" });
  const p = responsePolicy(h);
  expect(p.targeted).toBe(true);
  expect(p.directives.has("no-store")).toBe(false);
  expect(seconds(p.directives, "max-age")).toBe(600);
});

test("responsePolicy falls back to Cache-Control when CDN-Cache-Control is absent, empty or invalid", () => {
  for (const cdn of [undefined, "", "MAX-AGE=600"]) {
    const h = new Headers({ "cache-control": "max-age=5" });
    if (cdn !== undefined) h.set("cdn-cache-control", cdn);
    const p = responsePolicy(h);
    expect(p.targeted).toBe(false);
    expect(seconds(p.directives, "max-age")).toBe(5);
  }
});

test("a targeted field whose known directive has the wrong type is ignored as a whole (RFC 9213 §2.1)", () => {
  for (const bad of [
    'max-age="60"',
    "max-age",
    "max-age=?1",
    "max-age=?0",
    "max-age=-1",
    "max-age=60.0",
    "max-age=sixty",
    "max-age=:AQID:",
    "max-age=(60)",
    's-maxage="60"',
    'stale-while-revalidate="30"',
    "stale-if-error=1.5",
    "no-store=1",
    'public="yes", max-age=60',
    'must-revalidate="x"',
    "private=1",
    "no-cache=(a b)",
  ])
    expect(parseTargeted(bad)).toBeUndefined();
  // Right types, parameters ignored: still read.
  expect(entries(parseTargeted('max-age=60;a="x", no-cache="x-a", private=x-b, ext="any"'))).toEqual({
    "max-age": "60",
    "no-cache": "x-a",
    private: "x-b",
    ext: "any",
  });
  // The whole field falls back to Cache-Control, not just the bad directive.
  const p = responsePolicy(new Headers({ "cache-control": "max-age=5", "cdn-cache-control": 'max-age="60", no-store' }));
  expect(p.targeted).toBe(false);
  expect(seconds(p.directives, "max-age")).toBe(5);
  expect(p.directives.has("no-store")).toBe(false);
});
