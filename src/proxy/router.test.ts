import { expect, test } from "bun:test";
import { normalizeHostHeader } from "../lib/host.ts";
import { HOST_INVALID, HostRouter, PathRouter } from "./router.ts";

test("hosts match exactly, case-insensitively, ignoring port and trailing dot", () => {
  const r = new HostRouter<string>();
  r.add("example.com", "site");
  expect(r.lookup("example.com")).toBe("site");
  expect(r.lookup("EXAMPLE.com:8080")).toBe("site");
  expect(r.lookup("example.com.")).toBe("site");
  expect(r.lookup("other.com")).toBeUndefined();
});

test("a wildcard covers exactly one label", () => {
  const r = new HostRouter<string>();
  r.add("*.apps.example.com", "apps");
  r.add("special.apps.example.com", "special");
  expect(r.lookup("a.apps.example.com")).toBe("apps");
  expect(r.lookup("special.apps.example.com")).toBe("special");
  expect(r.lookup("a.b.apps.example.com")).toBeUndefined();
  expect(r.lookup("apps.example.com")).toBeUndefined();
});

test("malformed Host values are invalid, not unknown", () => {
  const r = new HostRouter<string>();
  for (const bad of ["a b", "exa mple.com", "x:port", "x:123456", "[::1", "a..b", "", "ex/ample"]) expect(r.lookup(bad)).toBe(HOST_INVALID);
  expect(normalizeHostHeader("[::1]:8080")).toBe("[::1]");
});

test("path prefixes match whole segments, longest first", () => {
  const p = new PathRouter<string>("root");
  p.add("/api", "api");
  p.add("/api/v2", "v2");
  p.add("/static/img", "img");
  expect(p.lookup("/")).toBe("root");
  expect(p.lookup("/api")).toBe("api");
  expect(p.lookup("/api/")).toBe("api");
  expect(p.lookup("/api/users/1")).toBe("api");
  expect(p.lookup("/apix")).toBe("root");
  expect(p.lookup("/api/v2/x")).toBe("v2");
  expect(p.lookup("/api/v20")).toBe("api");
  expect(p.lookup("/static/img/a/b/c/d/e/f.png")).toBe("img");
  expect(p.lookup("/static/image")).toBe("root");
  expect(p.lookup(`/${"a/".repeat(1000)}`)).toBe("root");
});
