import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { challengeFor } from "../tls/acme/solvers.ts";
import { accountDir, siteCas } from "../tls/acme-issuers.ts";
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
  expect(problems(HTTPS, { a: site('"a.example"', '[acme]\nchallenge = "tls-alpn-1"\nemial = "ops@example.com"\n') })).toEqual([
    'routes/a.toml:5: acme.challenge: "tls-alpn-1" is not allowed, did you mean "tls-alpn-01"? (expected one of "http-01", "dns-01", "tls-alpn-01")',
    'routes/a.toml:6: acme.emial: unknown key, did you mean "email"? (expected one of ca_file, challenge, directory, eab_hmac_key, eab_kid, email)',
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

const PEBBLE = "https://127.0.0.1:14000/dir";
const OTHER = "https://localhost:14001/dir";
const ZEROSSL = "https://acme.zerossl.com/v2/DV90";
const HMAC = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

test("a route file's [acme] may choose its own CA and account: directory, email, ca_file, eab; config.toml's [acme] gives the rest", () => {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-ca-file-"));
  dirs.push(dir);
  writeFileSync(join(dir, "ca.pem"), "-----BEGIN CERTIFICATE-----\n");
  const main = `${HTTPS}[acme]\ndirectory = "${PEBBLE}"\nemail = "ops@example.com"\neab_kid = "main"\neab_hmac_key = "${HMAC}"\n`;
  const c = load(main, {
    own: site(
      '"own.example"',
      `[acme]\ndirectory = "${OTHER}"\nemail = "own@example.com"\nca_file = "${join(dir, "ca.pem")}"\neab_kid = "k1"\neab_hmac_key = "${HMAC}"\n`,
    ),
    moved: site('"moved.example"', `[acme]\ndirectory = "${OTHER}"\n`),
    mail: site('"mail.example"', '[acme]\nemail = "mail@example.com"\n'),
    plain: site('"plain.example"'),
  });
  if (Array.isArray(c)) throw new Error(c.join("\n"));
  const by = new Map(c.sites.map((s) => [s.name, s]));
  expect(by.get("own")!.acme).toEqual({
    challenge: undefined,
    directory: OTHER,
    email: "own@example.com",
    caFile: join(dir, "ca.pem"),
    eab: { kid: "k1", hmacKey: HMAC },
  });
  expect(c.global.acme.eab).toEqual({ kid: "main", hmacKey: HMAC });
  const [own] = siteCas(by.get("own")!, c.global.acme);
  expect(own).toEqual({ directory: OTHER, email: "own@example.com", caFile: join(dir, "ca.pem"), eab: { kid: "k1", hmacKey: HMAC } });
  // config.toml's EAB belongs to config.toml's CA: a site at another CA does not send it; a site at the same CA does.
  expect(siteCas(by.get("moved")!, c.global.acme)).toEqual([{ directory: OTHER, email: "ops@example.com", caFile: undefined, eab: undefined }]);
  expect(siteCas(by.get("mail")!, c.global.acme)).toEqual([
    { directory: PEBBLE, email: "mail@example.com", caFile: undefined, eab: { kid: "main", hmacKey: HMAC } },
  ]);
  expect(siteCas(by.get("plain")!, c.global.acme)).toEqual([
    { directory: PEBBLE, email: "ops@example.com", caFile: undefined, eab: { kid: "main", hmacKey: HMAC } },
  ]);
  // Accounts live under their directory's key; another e-mail or an EAB at the same CA gets an account of its own.
  const plainAcme = { ...c.global.acme, eab: undefined };
  const base = accountDir({ directory: PEBBLE, email: "ops@example.com", caFile: undefined }, plainAcme);
  expect(base).toMatch(/^acme\/127\.0\.0\.1_14000-[0-9a-f]{8}$/);
  expect(accountDir({ directory: PEBBLE, email: "mail@example.com", caFile: undefined }, plainAcme)).toMatch(new RegExp(`^${base}/accounts/[0-9a-f]{8}$`));
  expect(accountDir({ directory: OTHER, email: "ops@example.com", caFile: undefined }, plainAcme)).toMatch(/^acme\/localhost_14001-[0-9a-f]{8}$/);
});

test("[[acme.fallback]] CAs follow each site's own CA, in order, with the site's e-mail and ca_file unless the entry sets its own", () => {
  const main = `${HTTPS}[acme]\ndirectory = "${PEBBLE}"\nemail = "ops@example.com"\n[[acme.fallback]]\ndirectory = "${ZEROSSL}"\neab_kid = "zk"\neab_hmac_key = "${HMAC}"\n[[acme.fallback]]\ndirectory = "${OTHER}"\nemail = "other@example.com"\n`;
  const c = load(main, { a: site('"a.example"', '[acme]\nemail = "a@example.com"\n'), b: site('"b.example"', `[acme]\ndirectory = "${OTHER}"\n`) });
  if (Array.isArray(c)) throw new Error(c.join("\n"));
  expect(c.global.acme.fallback).toEqual([
    { directory: ZEROSSL, email: undefined, caFile: undefined, eab: { kid: "zk", hmacKey: HMAC } },
    { directory: OTHER, email: "other@example.com", caFile: undefined, eab: undefined },
  ]);
  const by = new Map(c.sites.map((s) => [s.name, s]));
  expect(siteCas(by.get("a")!, c.global.acme).map((ca) => [ca.directory, ca.email, ca.eab?.kid])).toEqual([
    [PEBBLE, "a@example.com", undefined],
    [ZEROSSL, "a@example.com", "zk"],
    [OTHER, "other@example.com", undefined],
  ]);
  // A site whose own CA is a fallback CA does not try it twice.
  expect(siteCas(by.get("b")!, c.global.acme).map((ca) => ca.directory)).toEqual([OTHER, ZEROSSL]);
  expect(load(HTTPS, {}) as Config).toMatchObject({ global: { acme: { fallback: [] } } });
});

test("bad CA keys in a route file's [acme] are reported like config.toml's, each at its line", () => {
  const bad = `[acme]\ndirectory = "acme.example/dir"\nemail = "ops"\nca_file = "missing.pem"\neab_kid = "k1"\n`;
  expect(problems(HTTPS, { a: site('"a.example"', bad) })).toEqual([
    'routes/a.toml:5: acme.directory: "acme.example/dir" is not an http(s) URL (expected the ACME directory URL of the CA)',
    'routes/a.toml:6: acme.email: "ops" is not an e-mail address (expected an address such as "ops@example.com")',
    expect.stringMatching(/^routes\/a\.toml:7: acme\.ca_file: cannot read .*missing\.pem: ENOENT \(expected a PEM file with the CA of the ACME API\)$/),
    "routes/a.toml:8: acme.eab_kid: needs eab_hmac_key (expected eab_kid and eab_hmac_key together, as the CA hands them out)",
  ]);
  expect(problems(HTTPS, { a: site('"a.example"', '[acme]\neab_kid = "k1"\neab_hmac_key = "not+base64/url="\n') })).toEqual([
    'routes/a.toml:6: acme.eab_hmac_key: is not base64url (expected the MAC key as the CA prints it, such as "zWNDZM6eQGHWpSRTPal5eIUY…" (A-Z a-z 0-9 - _))',
  ]);
  expect(problems(HTTPS, { a: site('"a.example"', `[acme]\neab_hmac_key = "${HMAC}"\n`) })).toEqual([
    "routes/a.toml:5: acme.eab_hmac_key: needs eab_kid (expected eab_kid and eab_hmac_key together, as the CA hands them out)",
  ]);
  expect(problems(HTTPS, { a: site('"a.example"', `[acme]\ndirectory = "https://[::1/dir"\n`) })).toEqual([
    'routes/a.toml:5: acme.directory: "https://[::1/dir" is not an http(s) URL (expected the ACME directory URL of the CA)',
  ]);
  // A CA for a site that does not use ACME: one problem, at the table, not one per key.
  expect(problems(HTTPS, { a: `hosts = ["a.example"]\ntls = "internal"\nstatic = "/"\n[acme]\ndirectory = "${OTHER}"\nemail = "a@example.com"\n` })).toEqual([
    'routes/a.toml:4: acme: is only used with tls = "acme" (tls is "internal") (expected tls = "acme", or no [acme] table)',
  ]);
});

test("bad [acme] EAB and [[acme.fallback]] entries in config.toml are reported with file, line and what was expected", () => {
  const main = `${HTTPS}[acme]\ndirectory = "${PEBBLE}"\neab_kid = ""\neab_hmac_key = "${HMAC}"\n[[acme.fallback]]\nemail = "x@example.com"\n[[acme.fallback]]\ndirectory = "${PEBBLE}"\n[[acme.fallback]]\ndirectory = "${ZEROSSL}"\neab_hmac_key = "a b"\neab_kid = "z"\n[[acme.fallback]]\ndirectory = "${OTHER}"\nemial = "x@example.com"\n`;
  expect(problems(main, {})).toEqual([
    "config.toml:6: acme.eab_kid: is empty (expected the key id of the CA's External Account Binding)",
    "config.toml:8: acme.fallback[0].directory: missing (expected the ACME directory URL of the CA to fall back to)",
    "config.toml:11: acme.fallback[1].directory: is [acme]'s own directory (expected another CA than acme.directory)",
    'config.toml:14: acme.fallback[2].eab_hmac_key: is not base64url (expected the MAC key as the CA prints it, such as "zWNDZM6eQGHWpSRTPal5eIUY…" (A-Z a-z 0-9 - _))',
    'config.toml:18: acme.fallback[3].emial: unknown key, did you mean "email"? (expected one of ca_file, directory, eab_hmac_key, eab_kid, email)',
  ]);
  const twice = `${HTTPS}[[acme.fallback]]\ndirectory = "${ZEROSSL}"\n[[acme.fallback]]\ndirectory = "${ZEROSSL}"\n`;
  expect(problems(twice, {})).toEqual(["config.toml:7: acme.fallback[1].directory: is listed twice (expected each fallback CA once)"]);
});
