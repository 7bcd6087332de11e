import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "./load.ts";
import { ConfigError, formatProblem } from "./problems.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** problemsFor lays out a config dir and returns the formatted problems (file names relative to the dir). */
function problemsFor(main: string, routes: Record<string, string> = {}): string[] {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-config-"));
  dirs.push(dir);
  mkdirSync(join(dir, "routes"));
  mkdirSync(join(dir, "public"));
  writeFileSync(join(dir, "config.toml"), main);
  for (const [n, t] of Object.entries(routes)) writeFileSync(join(dir, "routes", `${n}.toml`), t);
  try {
    loadConfig(join(dir, "config.toml"));
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems.map((p) => formatProblem({ ...p, file: p.file.replace(`${dir}/`, "") }).replaceAll(`${dir}/`, ""));
  }
}

const OK_SITE = 'hosts = ["a.example"]\nupstreams = ["http://127.0.0.1:9000"]\n';

test("a valid config loads with defaults filled in", () => {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-config-"));
  dirs.push(dir);
  mkdirSync(join(dir, "routes"));
  writeFileSync(join(dir, "config.toml"), '[listen]\nhttp = "127.0.0.1:8080"\n[cache]\nmax_size = "64MiB"\n');
  writeFileSync(join(dir, "routes", "a.toml"), OK_SITE + '[[paths]]\nprefix = "/api/"\nupstreams = ["http://127.0.0.1:9001"]\nresponse_header_timeout = "5s"\n');
  const c = loadConfig(join(dir, "config.toml"));
  expect(c.global.routesDir).toBe(join(dir, "routes"));
  expect(c.global.cache.maxSize).toBe(64 * 1024 * 1024);
  expect(c.global.listen.admin).toBeUndefined();
  expect(c.sites[0]!.routes.map((r) => [r.name, r.prefix])).toEqual([["a", "/"], ["a/api", "/api"]]);
  const sub = c.sites[0]!.routes[1]!.action;
  expect(sub?.kind === "proxy" && sub.options.responseHeaderTimeout).toBe(5000);
});

test("an unknown key is named with its line and a did-you-mean hint", () => {
  const p = problemsFor("[listen]\nhttp = \"127.0.0.1:8080\"\nadmn = \"127.0.0.1:9180\"\n");
  expect(p).toHaveLength(1);
  expect(p[0]).toMatch(/^config\.toml:3: listen\.admn: unknown key, did you mean "admin"\? \(expected one of admin, http, https, idle_timeout\)$/);
});

test("wrong types, bad sizes, durations and addresses each give their own line", () => {
  const p = problemsFor(`routes_dir = 5
[listen]
http = "localhost"
[proxy]
max_body_size = "lots"
response_header_timeout = "30"
trusted_proxies = ["10.0.0.0/99"]
[cache]
max_size = true
`);
  expect(p).toContain("config.toml:1: routes_dir: got number 5 (expected a string)");
  expect(p.find((l) => l.startsWith("config.toml:3: listen.http:"))).toContain('cannot read "localhost" as a listen address');
  expect(p.find((l) => l.startsWith("config.toml:5: proxy.max_body_size:"))).toContain("expected a size");
  expect(p.find((l) => l.startsWith("config.toml:6: proxy.response_header_timeout:"))).toContain("expected a duration");
  expect(p.find((l) => l.startsWith("config.toml:7: proxy.trusted_proxies[0]:"))).toBeDefined();
  expect(p.find((l) => l.startsWith("config.toml:9: cache.max_size:"))).toBeDefined();
});

test("TOML syntax errors name the line", () => {
  const p = problemsFor('[listen]\nhttp = "127.0.0.1:8080"\nadmin = 127.0.0.1:9180\n');
  expect(p).toHaveLength(1);
  expect(p[0]).toStartWith("config.toml:3: invalid TOML:");
});

test("route files: missing hosts, bad values, conflicting actions, bad sub-routes — all reported at once", () => {
  const p = problemsFor("", {
    a: 'upstreams = ["http://127.0.0.1:1"]\n',
    b: 'hosts = ["b.example", "bad host"]\ntls = "acem"\nupstreams = ["ftp://x", "http://10.0.0.1:80/path"]\nredirect = "https://x"\n',
    c: 'hosts = ["c.example"]\nupstreams = ["http://127.0.0.1:1"]\n[[paths]]\nprefix = "api"\nupstreams = []\n[[paths]]\nprefix = "/s"\nstatic = "missing-dir"\nload_balance = "random"\n',
  });
  expect(p).toContain('routes/a.toml: hosts: missing (expected a list of host names such as ["example.com"])');
  expect(p.find((l) => l.startsWith("routes/b.toml:1: hosts[1]:"))).toContain('"bad host" is not a valid host');
  expect(p).toContain('routes/b.toml:2: tls: "acem" is not allowed, did you mean "acme"? (expected one of "acme", "internal", "manual", "off")');
  expect(p.find((l) => l.startsWith("routes/b.toml:4: redirect: cannot be combined with upstreams"))).toBeDefined();
  expect(p.find((l) => l.startsWith("routes/c.toml:4: paths[0].prefix:"))).toContain('does not start with "/"');
  expect(p.find((l) => l.startsWith("routes/c.toml:5: paths[0].upstreams: is empty"))).toBeDefined();
  expect(p.find((l) => l.startsWith("routes/c.toml:8: paths[1].static:"))).toContain("is not a directory");
  expect(p.find((l) => l.startsWith("routes/c.toml:9: paths[1].load_balance:"))).toContain('one of "round_robin", "least_requests"');
});

test("upstream URLs are checked one by one", () => {
  const p = problemsFor("", { u: 'hosts = ["u.example"]\nupstreams = ["ftp://x", "http://10.0.0.1:80/path", "not a url"]\n' });
  expect(p).toEqual([
    "routes/u.toml:2: upstreams[0]: scheme ftp: is not supported (expected http:// or https://)",
    'routes/u.toml:2: upstreams[1]: "http://10.0.0.1:80/path" has a path or query (expected a URL such as "http://10.8.0.11:30080" (scheme, host, optional port; no path))',
    'routes/u.toml:2: upstreams[2]: cannot read "not a url" as a URL (expected a URL such as "http://10.8.0.11:30080" (scheme, host, optional port; no path))',
  ]);
});

test("two sites claiming one host is an error naming both files", () => {
  const p = problemsFor("", { one: OK_SITE, two: 'hosts = ["A.example."]\nupstreams = ["http://127.0.0.1:1"]\n' });
  expect(p).toEqual(['routes/two.toml:1: hosts: host "a.example" is also claimed by routes/one.toml (expected each host in one route file only)']);
});

test("a missing routes directory and the same address twice are reported", () => {
  const p = problemsFor('routes_dir = "nope"\n[listen]\nhttp = "127.0.0.1:8080"\nadmin = "127.0.0.1:8080"\n');
  expect(p.find((l) => l.startsWith("config.toml:1: routes_dir:"))).toContain("is not a directory");
  expect(p.find((l) => l.startsWith("config.toml:4: listen.admin:"))).toContain("is also listen.http");
});

test("a sub-route name that collides with another route is refused", () => {
  const p = problemsFor("", {
    shop: OK_SITE,
    other: 'hosts = ["o.example"]\nupstreams = ["http://127.0.0.1:1"]\n[[paths]]\nprefix = "/x"\nname = "shop"\nupstreams = ["http://127.0.0.1:2"]\n',
  });
  // Files are read in name order, so other.toml claims "shop" first.
  expect(p).toEqual(['routes/shop.toml:1: route name "shop" is also used in routes/other.toml (expected a route name used once)']);
});
