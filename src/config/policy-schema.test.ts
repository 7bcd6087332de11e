import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "./load.ts";
import { ConfigError, formatProblem } from "./problems.ts";
import type { Config } from "./types.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** load lays out a config dir (with errors/ok.html) and returns the config, or the formatted problems (paths relative to the dir). */
function load(route: string, main = '[listen]\nhttp = "127.0.0.1:8080"\n'): Config | string[] {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-policy-"));
  dirs.push(dir);
  mkdirSync(join(dir, "routes"));
  mkdirSync(join(dir, "errors"));
  writeFileSync(join(dir, "errors/ok.html"), "<h1>{status}</h1>");
  writeFileSync(join(dir, "config.toml"), main);
  writeFileSync(join(dir, "routes/app.toml"), route);
  try {
    return loadConfig(join(dir, "config.toml"));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems.map((p) => formatProblem({ ...p, file: p.file.replace(`${dir}/`, "") }).replaceAll(`${dir}/`, ""));
  }
}

const UP = 'hosts = ["app.test"]\nupstreams = ["http://127.0.0.1:9000"]\n';
const HASH = "$argon2id$v=19$m=19456,t=2,p=1$QAtqRv65mMPhEIUL9Qh5MFypaqhi83UslQ7X7MWh4FY$kpmVFxMc2UUoF+cXMdiSlY7H/vzULqbXXXhgdInVarU";

test("every policy problem is reported at its file, line and key, with what was expected", () => {
  const problems = load(
    `${UP}[[rate_limit]]\nkey = "ip"\nrate = "10/d"\nburst = 0\n[access]\nallow = ["10.0.0.0/33", "fd00::/8"]\n[basic_auth]\nrealm = 'a"b'\nusers = { alice = "hunter2" }\n[forward_auth]\nurl = "auth.local/verify"\ncopy_headers = ["Content-Length"]\n[headers]\nrequest_set = { "X-Who" = "{nobody}" }\nresponse_remove = ["Transfer-Encoding"]\n[error_pages]\n404 = "errors/missing.html"\n200 = "errors/ok.html"\n`,
  );
  expect(problems).toEqual([
    'routes/app.toml:4: rate_limit[0].key: "ip" is not a rate limit key (expected "client", "route", "header:NAME" or "cookie:NAME")',
    'routes/app.toml:5: rate_limit[0].rate: "10/d" is not a rate (expected a positive number of requests per s, m or h, such as "10/s" or "100/m")',
    "routes/app.toml:6: rate_limit[0].burst: 0 is out of range (expected a whole number from 1 to 1000000000)",
    'routes/app.toml:8: access.allow[0]: cannot read "10.0.0.0/33" as an address or range (expected an IPv4 or IPv6 address or CIDR range such as "10.0.0.0/8" or "fd00::/8")',
    'routes/app.toml:10: basic_auth.realm: "a\\"b" cannot be a realm (expected printable ASCII without quotes or backslashes)',
    "routes/app.toml:11: basic_auth.users.alice: is not a password hash (passwords are never written in the config) (expected an argon2id or bcrypt hash printed by `gatehouse hash-password`)",
    'routes/app.toml:13: forward_auth.url: "auth.local/verify" is not an absolute http(s) URL (expected a URL such as "http://127.0.0.1:9091/api/verify")',
    'routes/app.toml:14: forward_auth.copy_headers[0]: "Content-Length" cannot be copied (expected field names such as "Remote-User")',
    "routes/app.toml:16: headers.request_set.X-Who: {nobody} is not a placeholder (expected {client}, {request_id}, {host}, {scheme}, {user})",
    'routes/app.toml:17: headers.response_remove[0]: "Transfer-Encoding" frames the message, which the gateway does itself (expected any field but Content-Length, Transfer-Encoding and hop-by-hop fields)',
    "routes/app.toml:19: error_pages.404: cannot read errors/missing.html: ENOENT (expected a readable HTML file)",
    "routes/app.toml:20: error_pages.200: is not an error status (expected a status from 400 to 599, such as 404 or 503)",
  ]);
});

test("a [[paths]] entry inherits each policy table of its site, replaces it with its own, or turns it off", () => {
  const c = load(
    `${UP}[[rate_limit]]\nrate = "10/s"\n[access]\ndeny = ["10.9.0.0/16"]\n[basic_auth]\nusers = { alice = "${HASH}" }\n` +
      `[[paths]]\nprefix = "/inherit"\n[paths.headers]\nresponse_set = { "X-Area" = "inherit" }\n[[paths]]\nprefix = "/off"\nrate_limit = []\naccess = false\nbasic_auth = false\n[[paths]]\nprefix = "/own"\n[paths.access]\nallow = ["10.0.0.0/8"]\n[[paths.rate_limit]]\nkey = "cookie:sid"\nrate = "100/m"\n`,
  ) as Config;
  expect(c).not.toBeArray();
  const [site, inherit, off, own] = c.sites[0]!.routes;
  expect(inherit!.policy.rateLimits).toBe(site!.policy.rateLimits);
  expect(inherit!.policy.access).toBe(site!.policy.access);
  expect(inherit!.policy.basicAuth).toBe(site!.policy.basicAuth);
  // The entries refine the site's own action.
  expect(inherit!.action).toBe(site!.action);
  expect(off!.policy.rateLimits).toEqual([]);
  expect(off!.policy.access).toBeUndefined();
  expect(off!.policy.basicAuth).toBeUndefined();
  expect(own!.policy.access!.allow.length).toBe(1);
  expect(own!.policy.basicAuth).toBe(site!.policy.basicAuth);
  // Without burst, a bucket holds one window's worth: "100/m" lets 100 through at once.
  expect(own!.policy.rateLimits[0]).toMatchObject({ key: { kind: "cookie", name: "sid" }, burst: 100, window: 60 });
  expect(own!.policy.rateLimits[0]!.perSecond).toBeCloseTo(100 / 60);
});

test("config.toml's [admin] takes allow and deny lists, with the same checks", () => {
  const bad = load(UP, '[listen]\nhttp = "127.0.0.1:8080"\n[admin]\nallow = ["127.0.0.0/8", "localhost"]\n');
  expect(bad).toEqual([
    'config.toml:4: admin.allow[1]: cannot read "localhost" as an address or range (expected an IPv4 or IPv6 address or CIDR range such as "10.0.0.0/8" or "fd00::/8")',
  ]);
  const good = load(UP, '[listen]\nhttp = "127.0.0.1:8080"\n[admin]\nallow = ["127.0.0.0/8", "::1"]\n') as Config;
  expect(good.global.admin.access!.allow.length).toBe(2);
});

test("rule values and user names beyond Latin-1 are refused (a head written byte per character would cut U+010D to a CR), as is an empty allow list", () => {
  const problems = load(
    `${UP}[access]\nallow = []\n[headers]\nrequest_set = { "X-Q" = "b\u010D\u010Ainjected: yes" }\nresponse_set = { "X-Caf" = "café" }\n[basic_auth]\nusers = { "李" = "${HASH}" }\n`,
  );
  expect(problems).toEqual([
    "routes/app.toml:4: access.allow: is empty: it would let no one in (expected addresses or ranges to allow, or no allow key to allow everyone not denied)",
    "routes/app.toml:6: headers.request_set.X-Q: holds a control character or one beyond Latin-1 (expected a field value of printable characters on one line)",
    "routes/app.toml:9: basic_auth.users.李: cannot be a user name (expected a name without ':', control characters or characters beyond Latin-1 (RFC 7617 §2))",
  ]);
});
