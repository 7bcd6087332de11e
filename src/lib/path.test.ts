import { expect, test } from "bun:test";
import { normalizePath } from "./path.ts";

test("a path in normal form is returned as it is", () => {
  for (const p of ["/", "/admin", "/admin/", "/a/b.c/d..e/.well-known/x", "/a.", "/..a/b"]) expect(normalizePath(p)).toBe(p);
});

test("dot segments, encoded unreserved characters and empty segments are resolved: every spelling of /admin is /admin", () => {
  const cases: [string, string][] = [
    ["/x/../admin/secret", "/admin/secret"],
    ["/./admin/secret", "/admin/secret"],
    ["/x/%2e%2e/admin/secret", "/admin/secret"],
    ["/x/%2E./admin", "/admin"],
    ["/%61dmin/", "/admin/"],
    ["//admin/", "/admin/"],
    ["/admin//x", "/admin/x"],
    ["/s/../admin/", "/admin/"],
    ["/../../admin", "/admin"],
    ["/admin/..", "/"],
    ["/admin/.", "/admin/"],
    ["/a/b/..", "/a/"],
    ["/caf%c3%a9", "/caf%C3%A9"],
    ["/a%20b", "/a%20b"],
    ["/%7euser", "/~user"],
  ];
  for (const [raw, want] of cases) expect([raw, normalizePath(raw)]).toEqual([raw, want]);
});

test("an encoded slash, backslash or NUL, or a broken escape, is refused", () => {
  for (const p of ["/admin%2fsecret", "/admin%2Fsecret", "/a%5c..%5cadmin", "/a%00", "/a%", "/a%4", "/a%zz"]) expect([p, normalizePath(p)]).toEqual([p, null]);
});
