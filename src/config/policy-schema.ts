/** Reading a route's traffic policy ([[rate_limit]], [access], [basic_auth], [forward_auth], [headers]) and a site's [error_pages] and maintenance switch. */
import { readFileSync, statSync } from "node:fs";
import { parseCidr, type Cidr } from "../lib/cidr.ts";
import { HOP_BY_HOP } from "../lib/http.ts";
import { resolvePath } from "./locations.ts";
import type { AccessRule, BasicAuth, ErrorPage, FieldRule, ForwardAuth, HeaderRules, RateKey, RateLimit, RoutePolicy, SitePages } from "./policy-types.ts";
import type { Reader } from "./reader.ts";

const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const RATE_RE = /^(\d+(?:\.\d+)?)\/(s|m|h)$/;
const WINDOWS: Record<string, number> = { s: 1, m: 60, h: 3600 };
/** PLACEHOLDERS are what a header rule's value may name, each filled per request. */
export const PLACEHOLDERS: readonly string[] = ["client", "request_id", "host", "scheme", "user"];
/** FRAMING fields say how a message is delimited or carried: rules may not touch them (the gateway writes them). */
const FRAMING = new Set(["content-length", "transfer-encoding", ...HOP_BY_HOP]);
/** HASH_RE matches the password hashes Bun.password makes and checks: argon2id/argon2i/argon2d (PHC strings) and bcrypt ($2a$, $2b$, $2y$). */
const HASH_RE = /^(?:\$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+|\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53})$/;
const MAX_PAGE = 256 * 1024;

/**
 * hasControl says whether text holds what no field value or user name may: a control character (a tab allowed when `tab`), or one beyond Latin-1, which a
 * message head written byte per character would cut to another byte (U+010D to a bare CR).
 */
function hasControl(text: string, tab: boolean): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && !(tab && c === 9)) || c === 0x7f || c > 0xff) return true;
  }
  return false;
}

/** disabled says whether key is set to false, the way a [[paths]] entry turns off what it would inherit from the site. */
function disabled(r: Reader, key: string): boolean {
  return r.value(key) === false;
}

function readRateKey(r: Reader, text: string): RateKey | undefined {
  if (text === "client" || text === "route") return { kind: text };
  const colon = text.indexOf(":");
  const kind = text.slice(0, colon);
  const name = text.slice(colon + 1);
  if (colon > 0 && (kind === "header" || kind === "cookie") && TOKEN_RE.test(name))
    return kind === "header" ? { kind, name: name.toLowerCase() } : { kind, name };
  r.problem("key", `${JSON.stringify(text)} is not a rate limit key`, '"client", "route", "header:NAME" or "cookie:NAME"');
  return undefined;
}

/** readRateLimits reads [[rate_limit]] entries; a [[paths]] entry without any inherits the site's, and `rate_limit = []` turns them off. */
function readRateLimits(r: Reader, inherited: readonly RateLimit[]): readonly RateLimit[] {
  if (!r.has("rate_limit")) return inherited;
  const out: RateLimit[] = [];
  for (const t of r.tableList("rate_limit")) {
    const text = t.string("key") ?? "client";
    const key = readRateKey(t, text);
    const rate = t.requiredString("rate", '"N/s", "N/m" or "N/h", such as "10/s"');
    const m = rate === undefined ? null : RATE_RE.exec(rate);
    if (rate !== undefined && (m === null || Number(m[1]) <= 0))
      t.problem("rate", `${JSON.stringify(rate)} is not a rate`, 'a positive number of requests per s, m or h, such as "10/s" or "100/m"');
    const count = m ? Number(m[1]) : 1;
    // Without burst the bucket holds one window's worth: "100/m" lets 100 requests through at once, then 100 a minute.
    const burst = t.integer("burst", Math.max(1, Math.ceil(count)), 1, 1_000_000_000);
    const maxKeys = t.integer("max_keys", 100_000, 1, 10_000_000);
    t.done();
    if (key && m) {
      const window = WINDOWS[m[2]!]!;
      out.push({ text, key, perSecond: count / window, rate: rate!, window, burst, maxKeys });
    }
  }
  return out;
}

function readCidrs(t: Reader, key: string): Cidr[] {
  const out: Cidr[] = [];
  (t.stringList(key) ?? []).forEach((s, i) => {
    const c = parseCidr(s.trim());
    if (c) out.push(c);
    else
      t.problem(
        `${key}[${i}]`,
        `cannot read ${JSON.stringify(s)} as an address or range`,
        'an IPv4 or IPv6 address or CIDR range such as "10.0.0.0/8" or "fd00::/8"',
      );
  });
  return out;
}

/** readAccessTable reads an allow/deny table ([access] of a route, [admin] of config.toml's allow); problems name its keys. */
export function readAccessTable(t: Reader): AccessRule {
  const allow = readCidrs(t, "allow");
  // An empty allow list would let no one in, or (read as "no list") everyone: either way not what was meant.
  const raw = t.value("allow");
  if (Array.isArray(raw) && raw.length === 0)
    t.problem("allow", "is empty: it would let no one in", "addresses or ranges to allow, or no allow key to allow everyone not denied");
  return { allow, deny: readCidrs(t, "deny") };
}

function readAccess(r: Reader, inherited: AccessRule | undefined): AccessRule | undefined {
  if (!r.has("access")) return inherited;
  if (disabled(r, "access")) return undefined;
  const t = r.table("access");
  if (!t) return inherited;
  const rule = readAccessTable(t);
  if (!t.has("allow") && !t.has("deny")) t.problem("", "sets neither allow nor deny", "allow and/or deny lists of addresses or CIDR ranges");
  t.done();
  return rule;
}

function readBasicAuth(r: Reader, inherited: BasicAuth | undefined): BasicAuth | undefined {
  if (!r.has("basic_auth")) return inherited;
  if (disabled(r, "basic_auth")) return undefined;
  const t = r.table("basic_auth");
  if (!t) return inherited;
  const realm = t.string("realm") ?? "restricted";
  // The realm goes into WWW-Authenticate as a quoted string (RFC 7617 §2).
  if (!/^[\x20-\x7e]*$/.test(realm) || /["\\]/.test(realm))
    t.problem("realm", `${JSON.stringify(realm)} cannot be a realm`, "printable ASCII without quotes or backslashes");
  const users = new Map<string, string>();
  const u = t.table("users");
  if (!u) t.problem("users", "missing", 'a table of user = "hash", such as { alice = "$argon2id$…" } (hashes from `gatehouse hash-password`)');
  for (const name of u?.keys() ?? []) {
    const hash = u!.string(name);
    if (name === "" || name.includes(":") || hasControl(name, false))
      u!.problem(name, "cannot be a user name", "a name without ':', control characters or characters beyond Latin-1 (RFC 7617 §2)");
    else if (hash !== undefined && !HASH_RE.test(hash))
      u!.problem(name, "is not a password hash (passwords are never written in the config)", "an argon2id or bcrypt hash printed by `gatehouse hash-password`");
    else if (hash !== undefined) users.set(name, hash);
  }
  if (u && u.keys().length === 0) t.problem("users", "is empty", "at least one user");
  const forwardAuthorization = t.bool("forward_authorization", false);
  t.done();
  return { realm, users, forwardAuthorization };
}

function readForwardAuth(r: Reader, inherited: ForwardAuth | undefined): ForwardAuth | undefined {
  if (!r.has("forward_auth")) return inherited;
  if (disabled(r, "forward_auth")) return undefined;
  const t = r.table("forward_auth");
  if (!t) return inherited;
  const url = t.requiredString("url", 'the auth service\'s URL, such as "http://127.0.0.1:9091/api/verify"') ?? "";
  if (url && !/^https?:\/\/[^/\s?#]+(?:[/?][^\s]*)?$/.test(url))
    t.problem("url", `${JSON.stringify(url)} is not an absolute http(s) URL`, 'a URL such as "http://127.0.0.1:9091/api/verify"');
  const copyHeaders: string[] = [];
  (t.stringList("copy_headers") ?? []).forEach((n, i) => {
    if (!TOKEN_RE.test(n) || FRAMING.has(n.toLowerCase()))
      t.problem(`copy_headers[${i}]`, `${JSON.stringify(n)} cannot be copied`, 'field names such as "Remote-User"');
    else copyHeaders.push(n.toLowerCase());
  });
  const timeout = t.duration("timeout", 5000);
  if (timeout <= 0) t.problem("timeout", "must be longer than 0", 'a duration such as "2s"');
  t.done();
  return { url, copyHeaders, timeout };
}

function fieldName(t: Reader, key: string, name: string): boolean {
  if (!TOKEN_RE.test(name)) t.problem(key, `${JSON.stringify(name)} is not a field name`, 'a field name such as "X-Content-Type-Options"');
  else if (FRAMING.has(name.toLowerCase()))
    t.problem(
      key,
      `${JSON.stringify(name)} frames the message, which the gateway does itself`,
      "any field but Content-Length, Transfer-Encoding and hop-by-hop fields",
    );
  else return true;
  return false;
}

function fieldRules(t: Reader, key: string): FieldRule[] {
  const m = t.table(key);
  const out: FieldRule[] = [];
  for (const name of m?.keys() ?? []) {
    const value = m!.string(name);
    if (value === undefined || !fieldName(m!, name, name)) continue;
    const bad = [...value.matchAll(/\{([^}]*)\}/g)].map((x) => x[1]!).find((p) => !PLACEHOLDERS.includes(p));
    if (hasControl(value, true)) m!.problem(name, "holds a control character or one beyond Latin-1", "a field value of printable characters on one line");
    else if (bad !== undefined) m!.problem(name, `{${bad}} is not a placeholder`, PLACEHOLDERS.map((p) => `{${p}}`).join(", "));
    else out.push({ name: name.toLowerCase(), value });
  }
  m?.done();
  return out;
}

function removals(t: Reader, key: string): string[] {
  const list = t.stringList(key) ?? [];
  return list.filter((n, i) => fieldName(t, `${key}[${i}]`, n)).map((n) => n.toLowerCase());
}

function readHeaders(r: Reader, inherited: HeaderRules | undefined): HeaderRules | undefined {
  if (!r.has("headers")) return inherited;
  if (disabled(r, "headers")) return undefined;
  const t = r.table("headers");
  if (!t) return inherited;
  const rules: HeaderRules = {
    requestSet: fieldRules(t, "request_set"),
    requestAdd: fieldRules(t, "request_add"),
    requestRemove: removals(t, "request_remove"),
    responseSet: fieldRules(t, "response_set"),
    responseAdd: fieldRules(t, "response_add"),
    responseRemove: removals(t, "response_remove"),
  };
  t.done();
  return rules;
}

/** readPolicy reads a site's or a [[paths]] entry's policy; each part a [[paths]] entry leaves out comes from `inherited` (the site's). */
export function readPolicy(r: Reader, inherited: RoutePolicy): RoutePolicy {
  return {
    rateLimits: readRateLimits(r, inherited.rateLimits),
    access: readAccess(r, inherited.access),
    basicAuth: readBasicAuth(r, inherited.basicAuth),
    forwardAuth: readForwardAuth(r, inherited.forwardAuth),
    headers: readHeaders(r, inherited.headers),
  };
}

function readPage(t: Reader, key: string, path: string): ErrorPage | undefined {
  try {
    const size = statSync(path).size;
    if (size > MAX_PAGE) {
      t.problem(key, `${path} is ${size} bytes`, `a page of at most ${MAX_PAGE / 1024} KiB`);
      return undefined;
    }
    return { file: path, text: readFileSync(path, "utf8") };
  } catch (e) {
    t.problem(key, `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, "a readable HTML file");
    return undefined;
  }
}

/** readSitePages reads a route file's [error_pages] (relative paths start at the directory of config.toml), maintenance and maintenance_retry_after. */
export function readSitePages(r: Reader, dir: string): SitePages {
  const pages = new Map<number, ErrorPage>();
  const t = r.table("error_pages");
  for (const key of t?.keys() ?? []) {
    const file = t!.string(key);
    const status = /^[45]\d\d$/.test(key) ? Number(key) : 0;
    if (status === 0) t!.problem(key, "is not an error status", "a status from 400 to 599, such as 404 or 503");
    else if (file !== undefined) {
      const page = readPage(t!, key, resolvePath(dir, file));
      if (page) pages.set(status, page);
    }
  }
  t?.done();
  const maintenance = r.bool("maintenance", false);
  const retryAfter = Math.ceil(r.duration("maintenance_retry_after", 300_000) / 1000);
  return { pages, maintenance, retryAfter };
}
