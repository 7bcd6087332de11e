import { expect, test } from "bun:test";
import { parseDuration, parseSize, formatBytes } from "./units.ts";
import { closest } from "./did-you-mean.ts";
import { cidrMatcher, parseCidr } from "./cidr.ts";

test("parseSize reads the units people write", () => {
  expect(parseSize("256MiB")).toBe(256 * 1024 * 1024);
  expect(parseSize("8 MB")).toBe(8_000_000);
  expect(parseSize("1.5KiB")).toBe(1536);
  expect(parseSize("100")).toBe(100);
  expect(parseSize(4096)).toBe(4096);
  expect(parseSize("12 parsecs")).toBeUndefined();
  expect(parseSize("-1")).toBeUndefined();
  expect(formatBytes(256 * 1024 * 1024)).toBe("256MiB");
});

test("parseDuration reads compound durations and rejects bare numbers", () => {
  expect(parseDuration("30s")).toBe(30_000);
  expect(parseDuration("250ms")).toBe(250);
  expect(parseDuration("1m30s")).toBe(90_000);
  expect(parseDuration("2h")).toBe(7_200_000);
  expect(parseDuration("0")).toBe(0);
  expect(parseDuration("30")).toBeUndefined();
  expect(parseDuration("5 minutes")).toBeUndefined();
  expect(parseDuration("1s2x")).toBeUndefined();
});

test("closest suggests near names only", () => {
  expect(closest("upstream", ["upstreams", "hosts", "tls"])).toBe("upstreams");
  expect(closest("hots", ["upstreams", "hosts", "tls"])).toBe("hosts");
  expect(closest("zzzzzz", ["upstreams", "hosts", "tls"])).toBeUndefined();
});

test("cidrMatcher matches IPv4, IPv6 and IPv4-mapped clients", () => {
  const m = cidrMatcher(["10.0.0.0/8", "127.0.0.1", "fd00::/8"].map((s) => parseCidr(s)!));
  expect(m("10.1.2.3")).toBe(true);
  expect(m("11.1.2.3")).toBe(false);
  expect(m("127.0.0.1")).toBe(true);
  expect(m("127.0.0.2")).toBe(false);
  expect(m("::ffff:10.9.9.9")).toBe(true);
  expect(m("fd12::1")).toBe(true);
  expect(m("fe80::1")).toBe(false);
  expect(m("not-an-ip")).toBe(false);
  expect(parseCidr("10.0.0.0/33")).toBeUndefined();
  expect(parseCidr("banana")).toBeUndefined();
  expect(cidrMatcher([parseCidr("0.0.0.0/0")!])("8.8.8.8")).toBe(true);
});
