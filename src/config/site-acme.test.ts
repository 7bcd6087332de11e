import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { challengeFor } from "../tls/acme/solvers.ts";
import { loadConfig } from "./load.ts";
import { ConfigError, formatProblem } from "./problems.ts";
import type { Config } from "./types.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** load lays out a config dir and returns the config, or the formatted problems (file names relative to the dir). */
function load(main: string, routes: Record<string, string>): Config | string[] {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-site-acme-"));
  dirs.push(dir);
  mkdirSync(join(dir, "routes"));
  writeFileSync(join(dir, "config.toml"), main);
  for (const [n, t] of Object.entries(routes)) writeFileSync(join(dir, "routes", `${n}.toml`), t);
  try {
    return loadConfig(join(dir, "config.toml"));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems.map((p) => formatProblem({ ...p, file: p.file.replace(`${dir}/`, "") }).replaceAll(`${dir}/`, ""));
  }
}

function problems(main: string, routes: Record<string, string>): string[] {
  const r = load(main, routes);
  return Array.isArray(r) ? r : [];
}

const HTTPS = '[listen]\nhttp = "127.0.0.1:8080"\nhttps = "127.0.0.1:8443"\n';
const HTTPS_ONLY = '[listen]\nhttps = "127.0.0.1:8443"\n';
const DNS = '[acme.dns]\nserver = "127.0.0.1:53"\ntsig_key_name = "k"\ntsig_secret = "a2V5a2V5a2V5"\n';
const site = (hosts: string, acme = "") => `hosts = [${hosts}]\ntls = "acme"\nupstreams = ["http://127.0.0.1:9000"]\n${acme}`;

test("a route file's [acme] challenge overrides config.toml's for that site only", () => {
  const c = load(`${HTTPS}[acme]\nchallenge = "http-01"\n`, {
    alpn: site('"alpn.example"', '[acme]\nchallenge = "tls-alpn-01"\n'),
    plain: site('"plain.example"'),
  });
  if (Array.isArray(c)) throw new Error(c.join("\n"));
  const byName = new Map(c.sites.map((s) => [s.name, s]));
  expect(byName.get("alpn")!.acme).toEqual({ challenge: "tls-alpn-01" });
  expect(challengeFor(byName.get("alpn")!, c.global.acme)).toBe("tls-alpn-01");
  expect(byName.get("plain")!.acme).toBeUndefined();
  expect(challengeFor(byName.get("plain")!, c.global.acme)).toBe("http-01");
});

test("config.toml's [acme] challenge takes tls-alpn-01, which needs no plain HTTP listener", () => {
  const c = load(`${HTTPS_ONLY}[acme]\nchallenge = "tls-alpn-01"\n`, { a: site('"a.example"') });
  if (Array.isArray(c)) throw new Error(c.join("\n"));
  expect(c.global.acme.challenge).toBe("tls-alpn-01");
  expect(challengeFor(c.sites[0]!, c.global.acme)).toBe("tls-alpn-01");
  // The same site with http-01 does need it, and says where the challenge came from.
  expect(problems(HTTPS_ONLY, { a: site('"a.example"', '[acme]\nchallenge = "http-01"\n') })).toEqual([
    'routes/a.toml:5: acme.challenge: "acme" with the http-01 challenge needs the plain HTTP listener (the CA connects to port 80 through it) (expected listen.http in config.toml, or [acme] challenge = "tls-alpn-01" or "dns-01")',
  ]);
});

test("bad [acme] values and keys are reported with file, line and what was expected", () => {
  expect(problems(HTTPS, { a: site('"a.example"', '[acme]\nchallenge = "tls-alpn-1"\nemail = "ops@example.com"\n') })).toEqual([
    'routes/a.toml:5: acme.challenge: "tls-alpn-1" is not allowed, did you mean "tls-alpn-01"? (expected one of "http-01", "dns-01", "tls-alpn-01")',
    "routes/a.toml:6: acme.email: unknown key (expected one of challenge)",
  ]);
  expect(problems(HTTPS, { a: 'hosts = ["a.example"]\ntls = "internal"\nstatic = "/"\n[acme]\nchallenge = "dns-01"\n' })).toEqual([
    'routes/a.toml:4: acme: is only used with tls = "acme" (tls is "internal") (expected tls = "acme", or no [acme] table)',
  ]);
});

test("a site's \"dns-01\" needs config.toml's [acme.dns]; with it, the site may have wildcards", () => {
  const wild = site('"*.w.example"', '[acme]\nchallenge = "dns-01"\n');
  expect(problems(HTTPS, { w: wild })).toEqual([
    'routes/w.toml:5: acme.challenge: "dns-01" needs [acme.dns] in config.toml (expected an [acme.dns] table with server and the TSIG key in config.toml)',
  ]);
  expect(problems(`${HTTPS}[acme]\n${DNS}`, { w: wild })).toEqual([]);
});

test("wildcards need dns-01 per site: a site's own http-01 or tls-alpn-01 is refused even when config.toml says dns-01", () => {
  const main = `${HTTPS}[acme]\nchallenge = "dns-01"\n${DNS}`;
  expect(problems(main, { w: site('"*.w.example"') })).toEqual([]);
  expect(problems(main, { w: site('"*.w.example"', '[acme]\nchallenge = "tls-alpn-01"\n') })).toEqual([
    'routes/w.toml:1: hosts[0]: wildcard "*.w.example" needs the dns-01 challenge (RFC 8555 §7.1.3), not tls-alpn-01 ([acme] challenge) (expected [acme] challenge = "dns-01" in this file, or acme.challenge = "dns-01", with [acme.dns] in config.toml)',
  ]);
});

test("tls-alpn-01 is refused with listen.http2 = true (Bun.serve cannot negotiate acme-tls/1), whether the site or config.toml chose it", () => {
  const http2 = `${HTTPS}http2 = true\n`;
  expect(problems(http2, { a: site('"a.example"', '[acme]\nchallenge = "tls-alpn-01"\n') })).toEqual([
    'routes/a.toml:5: acme.challenge: "tls-alpn-01" ([acme] challenge) cannot be answered with listen.http2 = true: Bun.serve, which serves HTTP/2, cannot negotiate ALPN "acme-tls/1" (expected [acme] challenge = "http-01" or "dns-01", or listen.http2 = false in config.toml)',
  ]);
  expect(problems(`${http2}[acme]\nchallenge = "tls-alpn-01"\n`, { a: site('"a.example"') })).toEqual([
    'routes/a.toml:2: tls: "tls-alpn-01" (acme.challenge in config.toml) cannot be answered with listen.http2 = true: Bun.serve, which serves HTTP/2, cannot negotiate ALPN "acme-tls/1" (expected [acme] challenge = "http-01" or "dns-01", or listen.http2 = false in config.toml)',
  ]);
  // A site that chooses another challenge is fine with HTTP/2.
  expect(problems(`${http2}[acme]\nchallenge = "tls-alpn-01"\n`, { a: site('"a.example"', '[acme]\nchallenge = "http-01"\n') })).toEqual([]);
});
