import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "./load.ts";
import { ConfigError, formatProblem } from "./problems.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

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
  writeFileSync(
    join(dir, "routes", "a.toml"),
    `${OK_SITE}[[paths]]\nprefix = "/api/"\nupstreams = ["http://127.0.0.1:9001"]\nresponse_header_timeout = "5s"\n`,
  );
  const c = loadConfig(join(dir, "config.toml"));
  expect(c.global.routesDir).toBe(join(dir, "routes"));
  expect(c.global.cache.maxSize).toBe(64 * 1024 * 1024);
  expect(c.global.listen.admin).toBeUndefined();
  expect(c.sites[0]!.routes.map((r) => [r.name, r.prefix])).toEqual([
    ["a", "/"],
    ["a/api", "/api"],
  ]);
  const sub = c.sites[0]!.routes[1]!.action;
  expect(sub?.kind === "proxy" && sub.options.responseHeaderTimeout).toBe(5000);
});

test("an unknown key is named with its line and a did-you-mean hint", () => {
  const p = problemsFor('[listen]\nhttp = "127.0.0.1:8080"\nadmn = "127.0.0.1:9180"\n');
  expect(p).toHaveLength(1);
  expect(p[0]).toMatch(
    /^config\.toml:3: listen\.admn: unknown key, did you mean "admin"\? \(expected one of admin, http, http2, https, idle_timeout, proxy_protocol, public_https_port\)$/,
  );
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
    "routes/u.toml:2: upstreams[0]: scheme ftp: is not supported (expected http://, https://, srv+http:// or srv+https://)",
    'routes/u.toml:2: upstreams[1]: "http://10.0.0.1:80/path" has a path or query (expected a URL such as "http://10.8.0.11:30080" (scheme, host, optional port; no path), or "srv+http://_http._tcp.web.default.svc.cluster.local")',
    'routes/u.toml:2: upstreams[2]: cannot read "not a url" as a URL (expected a URL such as "http://10.8.0.11:30080" (scheme, host, optional port; no path), or "srv+http://_http._tcp.web.default.svc.cluster.local")',
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

test("TLS settings are checked against what the global config can serve", () => {
  const main = '[listen]\nhttp = "127.0.0.1:8080"\n';
  expect(problemsFor(main, { a: 'hosts = ["a.example"]\ntls = "internal"\nstatic = "public"\n' })).toEqual([
    'routes/a.toml:2: tls: "internal" needs an HTTPS listener (expected listen.https in config.toml, or tls = "off")',
  ]);
  const https = '[listen]\nhttp = "127.0.0.1:8080"\nhttps = "127.0.0.1:8443"\n';
  expect(problemsFor(https, { w: 'hosts = ["*.w.example", "10.0.0.1"]\ntls = "acme"\nstatic = "public"\n' })).toEqual([
    'routes/w.toml:1: hosts[0]: wildcard "*.w.example" needs the dns-01 challenge (RFC 8555 §7.1.3), not http-01 (acme.challenge in config.toml) (expected [acme] challenge = "dns-01" in this file, or acme.challenge = "dns-01", with [acme.dns] in config.toml)',
    'routes/w.toml:1: hosts[1]: "10.0.0.1" is an IP address; ACME CAs issue for names (expected host names with tls = "acme", or tls = "internal"/"manual" for addresses)',
  ]);
  expect(problemsFor(https, { p: 'hosts = ["p.example"]\nstatic = "public"\n[hsts]\nmax_age = "1d"\npreload = true\n' })).toEqual([
    'routes/p.toml:3: hsts: is only sent over HTTPS (tls is "off") (expected tls = "acme", "internal" or "manual")',
    "routes/p.toml:5: hsts.preload: needs include_subdomains = true and max_age of at least 1 year (expected what the browsers' preload lists require)",
  ]);
});

test("a misspelt tls is one problem, not followed by complaints about the keys that depend on it (issue 15, item 4)", () => {
  const https = '[listen]\nhttp = "127.0.0.1:8080"\nhttps = "127.0.0.1:8443"\n';
  expect(
    problemsFor(https, {
      a: 'hosts = ["a.example"]\ntls = "manul"\ncert = "c.pem"\nkey = "k.pem"\nstatic = "public"\n[hsts]\nmax_age = "1d"\n[acme]\nchallenge = "dns-01"\n',
    }),
  ).toEqual(['routes/a.toml:2: tls: "manul" is not allowed, did you mean "manual"? (expected one of "acme", "internal", "manual", "off")']);
});

test("the route names the gateway counts its own answers under cannot be taken by a route file or a [[paths]] entry", () => {
  const main = '[listen]\nhttp = "127.0.0.1:8080"\n';
  expect(problemsFor(main, { "acme-challenge": OK_SITE })).toEqual([
    'routes/acme-challenge.toml: file name "acme-challenge" is a route name the gateway uses itself (expected another file name)',
  ]);
  expect(problemsFor(main, { a: 'hosts = ["b.example"]\nstatic = "public"\n[[paths]]\nprefix = "/x"\nname = "acme-challenge"\nstatic = "public"\n' })).toEqual([
    'routes/a.toml:5: paths[0].name: "acme-challenge" is a route name the gateway uses itself (expected another name)',
  ]);
});

test("[acme] and [acme.dns] problems name the key and what was expected", () => {
  const p = problemsFor('[acme]\ndirectory = "acme.example/dir"\nemail = "ops"\nchallenge = "dns-01"\n');
  expect(p).toEqual([
    'config.toml:2: acme.directory: "acme.example/dir" is not an http(s) URL (expected the ACME directory URL of the CA)',
    'config.toml:3: acme.email: "ops" is not an e-mail address (expected an address such as "ops@example.com")',
    'config.toml:4: acme.challenge: "dns-01" needs [acme.dns] (expected an [acme.dns] table with server and the TSIG key)',
  ]);
  const q = problemsFor('[acme]\nchallenge = "dns-01"\n[acme.dns]\nserver = "127.0.0.1"\ntsig_key_name = "k"\ntsig_secret = "not base64!"\n');
  expect(q).toEqual([
    'config.toml:4: acme.dns.server: cannot read "127.0.0.1" as an address (expected HOST:PORT such as "127.0.0.1:53")',
    'config.toml:6: acme.dns.tsig_secret: is not base64 (expected the secret as tsig-keygen prints it, such as "kXo3…=")',
  ]);
});

test("a manual certificate that does not cover the site's hosts is refused", () => {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-cert-"));
  dirs.push(dir);
  const r = Bun.spawnSync([
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "1",
    "-keyout",
    join(dir, "k.pem"),
    "-out",
    join(dir, "c.pem"),
    "-subj",
    "/CN=other.example",
    "-addext",
    "subjectAltName=DNS:other.example",
  ]);
  expect(r.exitCode).toBe(0);
  const p = problemsFor('[listen]\nhttps = "127.0.0.1:8443"\n', {
    m: `hosts = ["m.example"]\ntls = "manual"\ncert = "${dir}/c.pem"\nkey = "${dir}/k.pem"\nstatic = "public"\n`,
  });
  expect(p).toEqual([
    `routes/m.toml:3: cert: ${dir}/c.pem does not cover m.example (it names other.example) (expected a certificate for every host of the site)`,
  ]);
});

test("upstream names are discovered through [resolver]; SRV names always; an SRV URL takes no port", () => {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-config-"));
  dirs.push(dir);
  mkdirSync(join(dir, "routes"));
  writeFileSync(join(dir, "config.toml"), '[resolver]\nservers = ["10.96.0.10:53"]\n');
  writeFileSync(
    join(dir, "routes", "a.toml"),
    'hosts = ["a.example"]\nupstreams = ["http://web.default.svc:8080", "http://10.0.0.1:80", "srv+http://_http._tcp.web.default.svc"]\n',
  );
  const ups = loadConfig(join(dir, "config.toml")).sites[0]!.routes[0]!.action;
  expect(ups?.kind === "proxy" && ups.upstreams.map((u) => [u.url, u.discover])).toEqual([
    ["http://web.default.svc:8080", true],
    ["http://10.0.0.1", false],
    ["srv+http://_http._tcp.web.default.svc", true],
  ]);
  expect(problemsFor("", { s: 'hosts = ["s.example"]\nupstreams = ["srv+http://_http._tcp.x:80"]\n' })).toEqual([
    "routes/s.toml:2: upstreams[0]: an SRV upstream takes its ports from the SRV records (expected srv+http://NAME without a port)",
  ]);
});

test('workers is 1 by default, a count, or "auto" (the CPUs); anything else is a problem in check format', () => {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-config-"));
  dirs.push(dir);
  mkdirSync(join(dir, "routes"));
  const load = (top: string) => {
    writeFileSync(join(dir, "config.toml"), `${top}\n[listen]\nhttp = "127.0.0.1:8080"\n`);
    return loadConfig(join(dir, "config.toml")).global.workers;
  };
  expect(load("")).toBe(1);
  expect(load("workers = 3")).toBe(3);
  expect(load('workers = "auto"')).toBe(require("node:os").availableParallelism());
  expect(problemsFor("workers = 0\n")).toEqual(['config.toml:1: workers: 0 is out of range (expected "auto" or a whole number from 1 to 1024)']);
  expect(problemsFor('workers = "atuo"\n')).toEqual([
    'config.toml:1: workers: "atuo" is not allowed, did you mean "auto"? (expected "auto" or a whole number from 1 to 1024)',
  ]);
  expect(problemsFor("workers = 1.5\n")).toEqual(['config.toml:1: workers: 1.5 is out of range (expected "auto" or a whole number from 1 to 1024)']);
  expect(problemsFor("workers = [2]\n")).toEqual(['config.toml:1: workers: got an array (expected "auto" or a whole number from 1 to 1024)']);
});

describe("route files reused across loads", () => {
  test("an unchanged route file is reused, not parsed and checked again; a changed one, a changed config.toml, or a file naming other files is", () => {
    const dir = mkdtempSync(join(tmpdir(), "gatehouse-reuse-"));
    mkdirSync(join(dir, "routes"));
    writeFileSync(join(dir, "config.toml"), 'routes_dir = "routes"\n[listen]\nhttp = "127.0.0.1:8080"\n');
    writeFileSync(join(dir, "routes", "a.toml"), 'hosts = ["a.test"]\nupstreams = ["http://127.0.0.1:9"]\n');
    writeFileSync(join(dir, "routes", "b.toml"), 'hosts = ["b.test"]\nstatic = "."\n');
    const site = (c: ReturnType<typeof loadConfig>, name: string) => c.sites.find((s) => s.name === name)!;
    const c1 = loadConfig(join(dir, "config.toml"));
    const c2 = loadConfig(join(dir, "config.toml"));
    expect(site(c2, "a")).toBe(site(c1, "a")); // reused
    expect(site(c2, "b")).not.toBe(site(c1, "b")); // static: always read again
    writeFileSync(join(dir, "routes", "a.toml"), 'hosts = ["a.test", "www.a.test"]\nupstreams = ["http://127.0.0.1:9"]\n');
    const c3 = loadConfig(join(dir, "config.toml"));
    expect(site(c3, "a").hosts).toEqual(["a.test", "www.a.test"]);
    writeFileSync(join(dir, "config.toml"), 'routes_dir = "routes"\n[listen]\nhttp = "127.0.0.1:8080"\n[proxy]\nmax_body_size = "1KiB"\n');
    const c4 = loadConfig(join(dir, "config.toml"));
    expect(site(c4, "a")).not.toBe(site(c3, "a"));
    expect(site(c4, "a").routes[0]!.maxBodySize).toBe(1024);
    // a duplicate host in a reused file is still found, with its line
    writeFileSync(join(dir, "routes", "c.toml"), '# c\nhosts = ["a.test"]\nupstreams = ["http://127.0.0.1:9"]\n');
    expect(() => loadConfig(join(dir, "config.toml"))).toThrow(/c\.toml:2: hosts: host "a\.test" is also claimed by/);
    rmSync(dir, { recursive: true, force: true });
  });
});

test("two sites that export to the same file, or one site whose chain and key are one file, are refused with each file and line", () => {
  const out = mkdtempSync(join(tmpdir(), "gatehouse-export-"));
  dirs.push(out);
  const site = (host: string, cert: string, key: string) =>
    `hosts = ["${host}"]\ntls = "internal"\n\n[export]\ncert = "${join(out, cert)}"\nkey = "${join(out, key)}"\n`;
  const problems = problemsFor('[listen]\nhttp = "127.0.0.1:8080"\n', {
    a: site("a.example", "a.pem", "shared-key.pem"),
    b: site("b.example", "b.pem", "shared-key.pem"),
    c: site("c.example", "c.pem", "c.pem"),
    // One site's chain where another writes its key.
    d: site("d.example", "shared-key.pem", "d-key.pem"),
  });
  expect(problems).toEqual([
    expect.stringMatching(/^routes\/b\.toml:6: export\.key: .*shared-key\.pem.* is also written by routes\/a\.toml/),
    expect.stringMatching(/^routes\/c\.toml:6: export\.key: is the same file as cert/),
    expect.stringMatching(/^routes\/d\.toml:5: export\.cert: .*shared-key\.pem.* is also written by routes\/a\.toml/),
  ]);
});

test("a [[tcp]] entry's site problem names that entry, though an entry before it was left out for its listen address", () => {
  const main = `[listen]\nhttp = "127.0.0.1:8080"\n\n[[tcp]]\nname = "a"\nlisten = "nowhere"\nmode = "plain"\nupstreams = ["tcp://127.0.0.1:1"]\n\n[[tcp]]\nname = "b"\nlisten = "127.0.0.1:9993"\nmode = "terminate"\nsite = "nosuch"\nupstreams = ["tcp://127.0.0.1:1"]\n`;
  const problems = problemsFor(main, { a: OK_SITE });
  expect(problems).toContainEqual(expect.stringMatching(/^config\.toml:14: tcp\[1\]\.site: no route file "nosuch\.toml"/));
});
