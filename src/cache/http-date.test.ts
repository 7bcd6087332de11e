import { expect, test } from "bun:test";
import { formatHttpDate, parseHttpDate } from "./http-date.ts";

const T = Date.UTC(1994, 10, 6, 8, 49, 37);

test("the three HTTP-date forms name the same instant (RFC 9110 §5.6.7)", () => {
  expect(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT")).toBe(T);
  expect(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT", Date.UTC(2024, 0, 1))).toBe(T);
  expect(parseHttpDate("Sun Nov  6 08:49:37 1994")).toBe(T);
  expect(parseHttpDate("Sun Nov 16 08:49:37 1994")).toBe(Date.UTC(1994, 10, 16, 8, 49, 37));
});

test("names match case-insensitively and surrounding whitespace is ignored (RFC 9111 §4.2)", () => {
  expect(parseHttpDate("  sun, 06 NOV 1994 08:49:37 gmt ")).toBe(T);
});

test("rfc850 two-digit years more than 50 years ahead belong to the previous century", () => {
  const now = Date.UTC(2030, 5, 1);
  expect(new Date(parseHttpDate("Friday, 01-Jan-80 00:00:00 GMT", now)!).getUTCFullYear()).toBe(2080);
  expect(new Date(parseHttpDate("Saturday, 01-Jan-81 00:00:00 GMT", now)!).getUTCFullYear()).toBe(1981);
  expect(new Date(parseHttpDate("Saturday, 01-Jan-22 00:00:00 GMT", now)!).getUTCFullYear()).toBe(2022);
});

test("anything else is invalid: other zones, impossible dates, numbers, junk", () => {
  for (const bad of [
    "0",
    "",
    "-1",
    "Sun, 06 Nov 1994 08:49:37 UTC",
    "Sun, 06 Nov 1994 08:49:37 +0000",
    "Sun, 31 Feb 1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 24:00:00 GMT",
    "Sun, 06 Nov 1994 08:60:00 GMT",
    "Sun, 6 Nov 1994 08:49:37 GMT",
    "Sun, 06 Foo 1994 08:49:37 GMT",
    "06 Nov 1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
    "1994-11-06T08:49:37Z",
  ])
    expect(parseHttpDate(bad)).toBeUndefined();
  expect(parseHttpDate(null)).toBeUndefined();
});

test("a leap second reads as the second before it (RFC 9111 §4.2: nearest earlier time)", () => {
  expect(parseHttpDate("Sat, 31 Dec 2016 23:59:60 GMT")).toBe(Date.UTC(2016, 11, 31, 23, 59, 59));
});

test("formatHttpDate writes an IMF-fixdate that parses back", () => {
  expect(formatHttpDate(T + 999)).toBe("Sun, 06 Nov 1994 08:49:37 GMT");
  expect(parseHttpDate(formatHttpDate(T))).toBe(T);
});
