import { expect, test } from "bun:test";
import { secondaryKey, varyNames } from "./vary.ts";

test("varyNames: lowercased, sorted, de-duplicated across field lines (RFC 9110 §12.5.5)", () => {
  const h = new Headers();
  h.append("vary", "Accept-Encoding, User-Agent");
  h.append("vary", " accept-encoding ,, Accept-Language");
  expect(varyNames(h)).toEqual(["accept-encoding", "accept-language", "user-agent"]);
});

test("varyNames: no Vary or an empty one is no names; a * member anywhere is *", () => {
  expect(varyNames(new Headers())).toEqual([]);
  expect(varyNames(new Headers({ vary: " , " }))).toEqual([]);
  expect(varyNames(new Headers({ vary: "*" }))).toBe("*");
  expect(varyNames(new Headers({ vary: "Accept, *" }))).toBe("*");
});

const key = (h: Record<string, string> | Headers, names = ["accept-encoding"]) => secondaryKey(names, h instanceof Headers ? h : new Headers(h));

test("whitespace the syntax allows is not significant (RFC 9111 §4.1)", () => {
  const k = key({ "accept-encoding": "gzip, br" });
  for (const v of ["gzip,br", "  gzip ,   br  ", "gzip,\tbr", "gzip , br"]) expect(key({ "accept-encoding": v })).toBe(k);
  expect(key({ "accept-encoding": "br, gzip" })).not.toBe(k); // reordering is not a normalization we apply
});

test("several field lines match their combination with a comma (RFC 9111 §4.1)", () => {
  const h = new Headers();
  h.append("accept-encoding", "gzip");
  h.append("accept-encoding", "br");
  expect(key(h)).toBe(key({ "accept-encoding": "gzip, br" }));
});

test("inside a quoted string whitespace is data", () => {
  const n = ["x-q"];
  expect(key({ "x-q": 'a="1  2"' }, n)).not.toBe(key({ "x-q": 'a="1 2"' }, n));
  expect(key({ "x-q": 'a="x,y" ,  b' }, n)).toBe(key({ "x-q": 'a="x,y", b' }, n));
  expect(key({ "x-q": 'a="\\"  ,"  ,b' }, n)).toBe('x-q=a="\\"  ,", b');
});

test("a missing field differs from an empty one, and from every value", () => {
  const absent = key({});
  expect(absent).not.toBe(key({ "accept-encoding": "" }));
  expect(absent).not.toBe(key({ "accept-encoding": "accept-encoding" }));
  expect(key({ "accept-encoding": "" })).toBe(key({ "accept-encoding": "   " }));
});

test("values are case-sensitive unless the field's syntax is not, and distinct values give distinct keys", () => {
  const n = ["x-q"];
  expect(key({ "x-q": "gzip" }, n)).not.toBe(key({ "x-q": "GZIP" }, n));
  expect(key({ "accept-encoding": "gzip" })).not.toBe(key({ "accept-encoding": "br" }));
});

test("Accept-Language, Accept-Encoding and Accept-Charset: case, whitespace and empty members are not significant", () => {
  const lang = (v: string) => key({ "accept-language": v }, ["accept-language"]);
  const k = lang("en-us,fr");
  for (const v of ["en-US, fr", "EN-us ,FR", " en-US,, fr ", "en-US,\tfr"]) expect(lang(v)).toBe(k);
  expect(lang("en-US;q=0.8, fr;Q=0.5")).toBe(lang("en-us ; q=0.8,fr; q=0.5"));
  expect(lang("fr, en-us")).not.toBe(k); // order is a preference: kept
  expect(lang("en-gb, fr")).not.toBe(k);
  expect(key({ "accept-encoding": "GZip, BR" })).toBe(key({ "accept-encoding": "gzip,br" }));
  expect(key({ "accept-charset": "UTF-8" }, ["accept-charset"])).toBe(key({ "accept-charset": "utf-8" }, ["accept-charset"]));
});

test("the key does not depend on the order or case of the names, nor on unrelated fields", () => {
  const h = new Headers({ "accept-language": "en", "accept-encoding": "gzip", cookie: "a=1" });
  const k = secondaryKey(["accept-encoding", "accept-language"], h);
  expect(secondaryKey(["Accept-Language", "accept-encoding", "accept-language"], h)).toBe(k);
  h.set("cookie", "b=2");
  expect(secondaryKey(["accept-encoding", "accept-language"], h)).toBe(k);
});

test("field boundaries cannot be forged by a value", () => {
  const names = ["a", "b"];
  expect(secondaryKey(names, new Headers({ a: "1, b=2" }))).not.toBe(secondaryKey(names, new Headers({ a: "1", b: "2" })));
  expect(secondaryKey(names, new Headers({ a: "b=" }))).not.toBe(secondaryKey(names, new Headers({ b: "" })));
});

test("no names, no key", () => {
  expect(secondaryKey([], new Headers({ a: "1" }))).toBe("");
});
