/** Reading one routes/NAME.toml file into a SiteConfig. */
import { existsSync, readFileSync, statSync } from "node:fs";
import { CertProblem, inspectBundle, isIpLiteral, nameCovers, type CertBundle } from "../lib/cert-info.ts";
import { ACME_CHALLENGES, readCa } from "./acme-schema.ts";
import { readCacheRules } from "./cache-schema.ts";
import { readExport } from "./export-schema.ts";
import { readProxyOptions } from "./global-schema.ts";
import { readPolicy, readSitePages } from "./policy-schema.ts";
import { NO_POLICY } from "./policy-types.ts";
import { resolvePath } from "./locations.ts";
import type { Reader } from "./reader.ts";
import type { Action, GlobalConfig, Hsts, PathRoute, ProxyOptions, SiteAcme, SiteConfig, SiteTls, TlsMode, Upstream } from "./types.ts";

const TLS_MODES: readonly TlsMode[] = ["acme", "internal", "manual", "off"];
const LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const HOST_RE = new RegExp(`^(?:\\*\\.)?${LABEL}(?:\\.${LABEL})*$`);
const HOST_EXPECTED = 'a host name such as "example.com", "*.example.com" (one label) or an IP address';
const SITE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** RESERVED_ROUTES are the route labels of the gateway's own answers (proxy/unrouted.ts): no route file or [[paths]] entry may take them. */
const RESERVED_ROUTES: readonly string[] = ["-", "acme-challenge"];
/** BUILTIN_PREFIX marks a static root compiled into the binary ("builtin:welcome"). */
export const BUILTIN_PREFIX = "builtin:";
/** BUILTIN_SITES are the names `static = "builtin:NAME"` accepts. */
export const BUILTIN_SITES: readonly string[] = ["welcome"];

/** normalizeHost lowercases a host and drops a trailing dot, the form the router keys on. */
export function normalizeHost(host: string): string {
  const h = host.toLowerCase();
  return h.endsWith(".") ? h.slice(0, -1) : h;
}

function readUpstreams(r: Reader, list: string[], g: GlobalConfig): Upstream[] {
  const out: Upstream[] = [];
  const expected = 'a URL such as "http://10.8.0.11:30080" (scheme, host, optional port; no path), or "srv+http://_http._tcp.web.default.svc.cluster.local"';
  list.forEach((text, i) => {
    const key = `upstreams[${i}]`;
    let u: URL;
    try {
      u = new URL(text);
    } catch {
      r.problem(key, `cannot read ${JSON.stringify(text)} as a URL`, expected);
      return;
    }
    const srv = u.protocol === "srv+http:" || u.protocol === "srv+https:";
    if (!srv && u.protocol !== "http:" && u.protocol !== "https:")
      r.problem(key, `scheme ${u.protocol} is not supported`, "http://, https://, srv+http:// or srv+https://");
    else if ((u.pathname !== "/" && u.pathname !== "") || u.search || u.hash) r.problem(key, `${JSON.stringify(text)} has a path or query`, expected);
    else if (u.username || u.password) r.problem(key, "credentials in the URL are not supported", expected);
    else if (srv && u.port) r.problem(key, "an SRV upstream takes its ports from the SRV records", "srv+http://NAME without a port");
    else {
      // Names are discovered through [resolver] (every address an endpoint, re-resolved by TTL); SRV names always are.
      const discover = srv || (g.resolver.servers.length > 0 && !isIpLiteral(u.hostname));
      out.push({ url: `${u.protocol}//${u.host}`, origin: `${u.protocol}//${u.host}`, discover });
    }
  });
  if (list.length > 0 && out.length === list.length && new Set(out.map((u) => u.url)).size !== out.length) {
    r.problem("upstreams", "lists the same endpoint twice", "each endpoint once");
  }
  return out;
}

/** readAction reads upstreams / static / redirect at one level; at most one of them may be set. */
function readAction(r: Reader, g: GlobalConfig, proxy: ProxyOptions, stripPrefix: boolean): Action | undefined {
  const ups = r.stringList("upstreams");
  const stat = r.string("static");
  const redirect = r.string("redirect");
  const index = r.stringList("index") ?? ["index.html"];
  const cacheControl = r.string("cache_control");
  const status = r.integer("redirect_status", 308, 300, 399);
  const keepPath = r.bool("keep_path", true);
  const set = [ups && "upstreams", stat !== undefined && "static", redirect !== undefined && "redirect"].filter(Boolean);
  if (set.length > 1) {
    r.problem(set[1] as string, `cannot be combined with ${set[0]}`, "exactly one of upstreams, static, redirect");
    return undefined;
  }
  if (ups) {
    if (ups.length === 0) r.problem("upstreams", "is empty", "at least one upstream URL");
    const upstreams = readUpstreams(r, ups, g);
    return upstreams.length ? { kind: "proxy", upstreams, stripPrefix, options: proxy } : undefined;
  }
  if (stat !== undefined) {
    const builtin = stat.startsWith(BUILTIN_PREFIX);
    const root = builtin ? stat : resolvePath(g.dir, stat);
    if (builtin && !BUILTIN_SITES.includes(stat.slice(BUILTIN_PREFIX.length))) {
      r.problem("static", `${JSON.stringify(stat)} is not a built-in site`, `${BUILTIN_SITES.map((n) => `"${BUILTIN_PREFIX}${n}"`).join(", ")} or a directory`);
    } else if (!builtin && (!existsSync(root) || !statSync(root).isDirectory())) {
      r.problem("static", `${root} is not a directory`, "a directory to serve (relative paths start at the directory of config.toml)");
    }
    return { kind: "static", root, index, cacheControl, stripPrefix };
  }
  if (redirect !== undefined) {
    if (![301, 302, 307, 308].includes(status)) r.problem("redirect_status", `${status} is not a redirect status`, "301, 302, 307 or 308");
    if (!/^https?:\/\/[^/\s]+/.test(redirect))
      r.problem("redirect", `${JSON.stringify(redirect)} is not an absolute http(s) URL`, 'a URL such as "https://www.example.com"');
    const to = keepPath && redirect.endsWith("/") ? redirect.slice(0, -1) : redirect;
    return { kind: "redirect", to, status: status as 301 | 302 | 307 | 308, keepPath };
  }
  return undefined;
}

/** REFINING_KEYS are the keys with which a [[paths]] entry without an action of its own applies the site's action under other rules. */
const REFINING_KEYS: readonly string[] = ["cache", "rate_limit", "access", "basic_auth", "forward_auth", "headers"];

function hasAction(r: Reader): boolean {
  return r.has("upstreams") || r.has("static") || r.has("redirect");
}

/** normalizePrefix turns "/api/" into "/api": prefixes match whole path segments. */
export function normalizePrefix(p: string): string {
  return p.length > 1 && p.endsWith("/") ? p.slice(0, -1) : p;
}

function file(g: GlobalConfig, p: string | undefined): string | undefined {
  return p === undefined ? undefined : resolvePath(g.dir, p);
}

/**
 * readManual reads and checks a tls = "manual" pair: both files readable, the key matching, every host covered. Files are read again on every reload, so a
 * replaced certificate is picked up by SIGHUP.
 */
function readManual(r: Reader, certFile: string, keyFile: string, hosts: readonly string[]): CertBundle | undefined {
  const read = (key: string, path: string) => {
    try {
      return readFileSync(path, "utf8");
    } catch (e) {
      r.problem(
        key,
        `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        key === "cert" ? "a readable PEM certificate chain" : "a readable PEM private key",
      );
      return undefined;
    }
  };
  const certPem = read("cert", certFile);
  const keyPem = read("key", keyFile);
  if (certPem === undefined || keyPem === undefined) return undefined;
  try {
    const b = inspectBundle(certPem, keyPem);
    const missing = hosts.filter((h) => !b.names.some((n) => nameCovers(n, h)));
    if (missing.length)
      r.problem("cert", `${certFile} does not cover ${missing.join(", ")} (it names ${b.names.join(", ")})`, "a certificate for every host of the site");
    return b;
  } catch (e) {
    const part = e instanceof CertProblem ? e.part : "cert";
    r.problem(
      part,
      `${part === "key" ? keyFile : certFile}: ${(e as Error).message}`,
      "a PEM certificate chain (leaf first) and the private key that belongs to it",
    );
    return undefined;
  }
}

/**
 * readSiteAcme reads a route file's [acme] table (only with tls = "acme"): the challenge, and the CA and account keys of config.toml's [acme] with the same
 * checks (a relative ca_file starts at config.toml's directory); undefined when the file has none.
 */
function readSiteAcme(r: Reader, g: GlobalConfig, mode: TlsMode): SiteAcme | undefined {
  const t = r.table("acme");
  if (!t) return undefined;
  const challenge = t.has("challenge") ? t.oneOf("challenge", ACME_CHALLENGES, "http-01") : undefined;
  const ca = readCa(t, g.dir);
  t.done();
  if (mode !== "acme") r.problem("acme", `is only used with tls = "acme" (tls is "${mode}")`, 'tls = "acme", or no [acme] table');
  return { challenge, ...ca };
}

/**
 * checkAcme checks that the site's challenge (its own [acme] challenge, else config.toml's) can prove every host with the listeners config.toml has: wildcards
 * need dns-01, dns-01 needs [acme.dns], http-01 the plain HTTP listener, tls-alpn-01 the raw HTTPS front end (Bun.serve, used with http2, cannot answer it).
 */
function checkAcme(r: Reader, g: GlobalConfig, hosts: readonly string[], own: SiteAcme | undefined, certOnly: boolean): void {
  const challenge = own?.challenge ?? g.acme.challenge;
  // Problems about the challenge itself go where it was chosen: this file's [acme] challenge, or its tls key when config.toml chose it.
  const at = own?.challenge === undefined ? "tls" : "acme.challenge";
  const from = own?.challenge === undefined ? "acme.challenge in config.toml" : "[acme] challenge";
  hosts.forEach((h, i) => {
    if (isIpLiteral(h))
      r.problem(
        `hosts[${i}]`,
        `${JSON.stringify(h)} is an IP address; ACME CAs issue for names`,
        'host names with tls = "acme", or tls = "internal"/"manual" for addresses',
      );
    else if (h.startsWith("*.") && challenge !== "dns-01")
      r.problem(
        `hosts[${i}]`,
        `wildcard ${JSON.stringify(h)} needs the dns-01 challenge (RFC 8555 §7.1.3), not ${challenge} (${from})`,
        '[acme] challenge = "dns-01" in this file, or acme.challenge = "dns-01", with [acme.dns] in config.toml',
      );
  });
  // config.toml's own dns-01 without [acme.dns] is reported there, once.
  if (own?.challenge === "dns-01" && g.acme.dns === undefined)
    r.problem(at, '"dns-01" needs [acme.dns] in config.toml', "an [acme.dns] table with server and the TSIG key in config.toml");
  if (challenge === "http-01" && g.listen.http === undefined)
    r.problem(
      at,
      '"acme" with the http-01 challenge needs the plain HTTP listener (the CA connects to port 80 through it)',
      'listen.http in config.toml, or [acme] challenge = "tls-alpn-01" or "dns-01"',
    );
  // A certificate-only site may go without the HTTPS listener, but TLS-ALPN-01 is answered on it.
  if (challenge === "tls-alpn-01" && certOnly && g.listen.https === undefined)
    r.problem(
      at,
      '"tls-alpn-01" is answered on the HTTPS listener (the CA connects to port 443)',
      'listen.https in config.toml, or [acme] challenge = "http-01"',
    );
  if (challenge === "tls-alpn-01" && g.listen.http2)
    r.problem(
      at,
      `"tls-alpn-01" (${from}) cannot be answered with listen.http2 = true: Bun.serve, which serves HTTP/2, cannot negotiate ALPN "acme-tls/1"`,
      '[acme] challenge = "http-01" or "dns-01", or listen.http2 = false in config.toml',
    );
}

/**
 * readSiteTls reads tls, cert, key, https_redirect, [hsts] and [acme] of a route file, and checks that the global config can serve them; a certificate-only
 * site (certOnly) serves nothing over HTTPS, so it needs no HTTPS listener.
 */
function readSiteTls(r: Reader, g: GlobalConfig, hosts: readonly string[], certOnly: boolean): SiteTls & { readonly acme: SiteAcme | undefined } {
  const mode = r.oneOf("tls", TLS_MODES, "off");
  // A misspelt tls is one problem: the keys that depend on the mode are taken as written, not reported again against the fallback "off".
  const raw = r.value("tls");
  if (raw !== undefined && !TLS_MODES.includes(raw as TlsMode)) {
    for (const k of ["cert", "key", "hsts", "acme", "https_redirect"]) r.value(k);
    return { mode, manual: undefined, redirect: false, hsts: undefined, acme: undefined };
  }
  const own = readSiteAcme(r, g, mode);
  let certFile: string | undefined;
  let keyFile: string | undefined;
  let manual: CertBundle | undefined;
  if (mode === "manual") {
    certFile = file(g, r.requiredString("cert", 'a certificate chain file, with tls = "manual"'));
    keyFile = file(g, r.requiredString("key", 'a private key file, with tls = "manual"'));
    if (certFile && keyFile) manual = readManual(r, certFile, keyFile, hosts);
  } else {
    for (const k of ["cert", "key"]) if (r.has(k)) r.problem(k, `is only used with tls = "manual" (tls is "${mode}")`, 'tls = "manual", or no cert/key');
  }
  const redirect = r.bool("https_redirect", mode !== "off");
  let hsts: Hsts | undefined;
  const hstsR = r.table("hsts");
  if (hstsR) {
    // RFC 6797 §6.1.1: max-age in seconds; 0 tells browsers to forget the policy.
    const maxAge = Math.round(hstsR.duration("max_age", 365 * 86_400_000) / 1000);
    hsts = { maxAge, includeSubDomains: hstsR.bool("include_subdomains", false), preload: hstsR.bool("preload", false) };
    if (hsts.preload && (!hsts.includeSubDomains || maxAge < 31_536_000))
      hstsR.problem("preload", "needs include_subdomains = true and max_age of at least 1 year", "what the browsers' preload lists require");
    hstsR.done();
    if (mode === "off") r.problem("hsts", 'is only sent over HTTPS (tls is "off")', 'tls = "acme", "internal" or "manual"');
  }
  if (mode !== "off" && !certOnly && g.listen.https === undefined)
    r.problem("tls", `"${mode}" needs an HTTPS listener`, 'listen.https in config.toml, or tls = "off"');
  if (mode === "acme") checkAcme(r, g, hosts, own, certOnly);
  return { mode, manual, redirect, hsts, acme: own };
}

/**
 * refuseStaticCache reports a [cache] table (one that turns the cache on) written for a static route: static sites keep their compressed forms themselves and
 * answer from the file system, so the response cache would never see them; saying so beats ignoring the table.
 */
function refuseStaticCache(r: Reader, action: Action | undefined, rules: PathRoute["cache"], own: boolean): void {
  if (!own || action?.kind !== "static" || !rules?.enabled) return;
  r.problem(
    "cache",
    "does not apply to a static site: static sites keep their compressed variants themselves; [cache] applies to proxied routes",
    "no [cache] table on a route with static (or enabled = false); a site's [cache] still applies to its proxied [[paths]]",
  );
}

/** staticFree drops cache rules from a static route: a [[paths]] entry with static inherits the site's [cache], which is for the site's proxied routes. */
function staticFree(action: Action | undefined, rules: PathRoute["cache"]): PathRoute["cache"] {
  return action?.kind === "static" ? undefined : rules;
}

/** readSite reads a route file; name is the file name without .toml. */
export function readSite(r: Reader, g: GlobalConfig, name: string, file: string): SiteConfig {
  if (!SITE_NAME_RE.test(name)) r.problem("", `file name ${JSON.stringify(name)} cannot be a route name`, "letters, digits, '-', '_' and '.'");
  else if (RESERVED_ROUTES.includes(name)) r.problem("", `file name ${JSON.stringify(name)} is a route name the gateway uses itself`, "another file name");
  const hostsRaw = r.stringList("hosts");
  if (!hostsRaw) r.problem("hosts", "missing", 'a list of host names such as ["example.com"]');
  else if (hostsRaw.length === 0) r.problem("hosts", "is empty", "at least one host name");
  const hosts: string[] = [];
  (hostsRaw ?? []).forEach((h, i) => {
    const host = normalizeHost(h);
    if (!HOST_RE.test(host) && !/^\[[0-9a-f:.]+\]$/.test(host)) r.problem(`hosts[${i}]`, `${JSON.stringify(h)} is not a valid host`, HOST_EXPECTED);
    else if (hosts.includes(host)) r.problem(`hosts[${i}]`, `${JSON.stringify(h)} is listed twice`, "each host once");
    else hosts.push(host);
  });
  // A site with no action anywhere is certificate-only (when it has a certificate): it obtains, renews and exports one, and serves no HTTP.
  const certOnly = !hasAction(r) && !r.has("paths");
  const { acme, ...tls } = readSiteTls(r, g, hosts, certOnly);
  const exported = readExport(r, g.dir);
  // A misspelt tls is reported once, by readSiteTls: not again as "off".
  const off = tls.mode === "off" && (r.value("tls") ?? "off") === "off";
  if (r.has("export") && off) r.problem("export", 'needs a certificate to export (tls is "off")', 'tls = "acme", "internal" or "manual"');
  const proxy = readProxyOptions(r, g.proxy, g.dir);
  const cache = readCacheRules(r, undefined);
  const allowTrace = r.bool("allow_trace", false);
  const policy = readPolicy(r, NO_POLICY);
  const pages = readSitePages(r, g.dir);
  const siteAction = readAction(r, g, proxy, false);
  refuseStaticCache(r, siteAction, cache, r.has("cache"));
  const routes: PathRoute[] = [
    { name, prefix: "/", action: siteAction, maxBodySize: proxy.maxBodySize, cache: staticFree(siteAction, cache), allowTrace, policy },
  ];
  const prefixes = new Set<string>(["/"]);
  for (const p of r.tableList("paths")) {
    const raw = p.requiredString("prefix", 'a path prefix such as "/api/"') ?? "/";
    const prefix = normalizePrefix(raw);
    if (!raw.startsWith("/")) p.problem("prefix", `${JSON.stringify(raw)} does not start with "/"`, 'a path prefix such as "/api/"');
    else if (prefixes.has(prefix)) p.problem("prefix", `${JSON.stringify(raw)} is already routed in this file`, "each prefix once");
    prefixes.add(prefix);
    const routeName = p.string("name") ?? `${name}${prefix}`;
    if (RESERVED_ROUTES.includes(routeName)) p.problem("name", `${JSON.stringify(routeName)} is a route name the gateway uses itself`, "another name");
    const options = readProxyOptions(p, proxy, g.dir);
    const own = readAction(p, g, options, p.bool("strip_prefix", false));
    const pathCache = readCacheRules(p, cache);
    const pathTrace = p.bool("allow_trace", allowTrace);
    const pathPolicy = readPolicy(p, policy);
    // An entry with only cache rules or policy (an auth for /admin, a limit for /api) refines the site's own action for its prefix.
    const refines = !hasAction(p) && REFINING_KEYS.some((k) => p.has(k));
    const action = own ?? (refines ? routes[0]!.action : undefined);
    if (!action && !hasAction(p))
      p.problem(
        "",
        "does nothing",
        "one of upstreams, static, redirect, or cache or policy tables ([paths.cache], [paths.basic_auth], …) for the site's own action",
      );
    // Only this entry's own [paths.cache] is refused: one it inherits from the site is for the site's proxied routes.
    refuseStaticCache(p, action, pathCache, p.has("cache"));
    p.done();
    routes.push({
      name: routeName,
      prefix,
      action,
      maxBodySize: options.maxBodySize,
      cache: staticFree(action, pathCache),
      allowTrace: pathTrace,
      policy: pathPolicy,
    });
  }
  if (certOnly && off && !r.has("export"))
    r.problem(
      "",
      "the site does nothing",
      'one of upstreams, static, redirect, or [[paths]] entries; or tls = "acme", "internal" or "manual" for a certificate only',
    );
  r.done();
  return {
    name,
    file,
    hosts,
    tls,
    routes,
    pages,
    ...(acme ? { acme } : {}),
    ...(certOnly && tls.mode !== "off" ? { certificateOnly: true as const } : {}),
    ...(exported ? { export: exported } : {}),
  };
}
