/** Parsing of Cache-Control (RFC 9111 §5.2) and of targeted fields such as CDN-Cache-Control (RFC 9213). */
import type { FieldReader } from "../lib/fields.ts";

/**
 * Directives is a parsed Cache-Control (or CDN-Cache-Control) field: lowercase names; a value for `name=value`
 * (quotes removed), true for a bare name. In Cache-Control the first occurrence of a name wins (RFC 9111
 * §4.2.1 allows "first occurrence" or "stale"; first is what most caches do); in a targeted field the last
 * wins, as Structured Fields dictionaries require (RFC 8941 §4.2.2).
 */
export type Directives = ReadonlyMap<string, string | true>;

/** DELTA_SECONDS_MAX is where delta-seconds clamp: 2^31, "infinity" (RFC 9111 §1.2.2). */
export const DELTA_SECONDS_MAX = 2 ** 31;

/** TARGET_FIELDS is this cache's target list (RFC 9213 §2.2), most applicable first, lowercase. */
export const TARGET_FIELDS: readonly string[] = ["cdn-cache-control"];

const EMPTY: Directives = new Map();

/**
 * parseCacheControl reads `#cache-directive` (RFC 9111 §5.2): one pass over the string, one Map. Names are
 * case-insensitive (§5.2); token and quoted-string arguments are both accepted (§5.2: "recipients ought to
 * accept both forms"), backslash escapes removed. Empty list members are skipped; null → an empty Map.
 */
export function parseCacheControl(value: string | null | undefined): Directives {
  if (value === null || value === undefined || value === "") return EMPTY;
  const out = new Map<string, string | true>();
  const n = value.length;
  let i = 0;
  while (i < n) {
    let j = i;
    while (j < n && value[j] !== "," && value[j] !== "=") j++;
    const name = value.slice(i, j).trim().toLowerCase();
    let arg: string | true = true;
    if (value[j] === "=") {
      j++;
      while (j < n && (value[j] === " " || value[j] === "\t")) j++;
      if (value[j] === '"') {
        let s = "";
        j++;
        while (j < n && value[j] !== '"') {
          if (value[j] === "\\" && j + 1 < n) j++;
          s += value[j++];
        }
        arg = s;
        while (j < n && value[j] !== ",") j++; // anything after the closing quote is junk
      } else {
        const start = j;
        while (j < n && value[j] !== ",") j++;
        arg = value.slice(start, j).trim();
      }
    }
    if (name !== "" && !out.has(name)) out.set(name, arg);
    i = j + 1;
  }
  return out;
}

/**
 * seconds reads a delta-seconds directive (RFC 9111 §1.2.2): a non-negative integer; absent, bare, or
 * anything but digits → undefined; values over 2^31 clamp to 2^31.
 */
export function seconds(d: Directives, name: string): number | undefined {
  const v = d.get(name);
  if (typeof v !== "string" || !/^\d+$/.test(v)) return undefined;
  return Math.min(Number(v), DELTA_SECONDS_MAX);
}

// RFC 8941 §3.1.2 keys, §3.3.4 tokens, §3.3.1-2 numbers, §3.3.5 byte sequences.
const KEY = /[a-z*][a-z0-9_\-.*]*/y;
const TOKEN = /[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/y;
const NUMBER = /-?\d{1,15}(?:\.\d{1,3})?/y;
const BYTES = /:[A-Za-z0-9+/=]*:/y;

/** Kind is the type of the last bare item read (RFC 8941 §3.3): Integer, Decimal, String, Token, Byte Sequence, Boolean, or an Inner List. */
type Kind = "integer" | "decimal" | "string" | "token" | "bytes" | "boolean" | "list";

/** Cursor walks a Structured Field; `fail` marks a parse error, which voids the whole field (RFC 9213 §2.1); `kind` is the last item's type. */
type Cursor = { readonly s: string; i: number; fail: boolean; kind: Kind };

function take(c: Cursor, re: RegExp): string | undefined {
  re.lastIndex = c.i;
  const m = re.exec(c.s);
  if (m === null) return undefined;
  c.i = re.lastIndex;
  return m[0];
}

/** bareItem returns an item's value as a directive argument: String unquoted, Boolean as boolean, other types as written. */
function bareItem(c: Cursor): string | boolean | undefined {
  const ch = c.s[c.i];
  if (ch === '"') {
    c.kind = "string";
    let out = "";
    for (c.i++; c.i < c.s.length; c.i++) {
      let x = c.s[c.i]!;
      if (x === '"') {
        c.i++;
        return out;
      }
      if (x === "\\") {
        x = c.s[++c.i] ?? "";
        if (x !== '"' && x !== "\\") break;
      } else if (x < " " || x > "~") break;
      out += x;
    }
    return undefined;
  }
  if (ch === "?") {
    c.kind = "boolean";
    const b = c.s[c.i + 1];
    c.i += 2;
    return b === "1" ? true : b === "0" ? false : undefined;
  }
  const numeric = ch === "-" || (ch !== undefined && ch >= "0" && ch <= "9");
  const v = ch === ":" ? take(c, BYTES) : numeric ? take(c, NUMBER) : take(c, TOKEN);
  c.kind = ch === ":" ? "bytes" : !numeric ? "token" : v?.includes(".") ? "decimal" : "integer";
  // A number directly followed by a digit or a dot broke the 15-digit integer or 12.3-digit decimal limits.
  if (v !== undefined && /[\d.]/.test(c.s[c.i] ?? "")) return undefined;
  if (v !== undefined && /^-?\d{13,}\./.test(v)) return undefined;
  return v;
}

/** parameters skips an item's parameters (RFC 8941 §3.1.2), keeping the item's kind. */
function parameters(c: Cursor): void {
  const kind = c.kind;
  while (!c.fail && c.s[c.i] === ";") {
    c.i++;
    while (c.s[c.i] === " ") c.i++;
    if (take(c, KEY) === undefined) c.fail = true;
    else if (c.s[c.i] === "=") {
      c.i++;
      if (bareItem(c) === undefined) c.fail = true;
    }
  }
  c.kind = kind;
}

/** member reads an Item or an Inner List after "="; an Inner List is kept as its source text. */
function member(c: Cursor): string | boolean | undefined {
  if (c.s[c.i] !== "(") {
    const v = bareItem(c);
    if (v === undefined) c.fail = true;
    parameters(c);
    return v;
  }
  const start = c.i++;
  for (;;) {
    while (c.s[c.i] === " ") c.i++;
    if (c.s[c.i] === ")") break;
    if (c.i >= c.s.length || bareItem(c) === undefined) return void (c.fail = true);
    parameters(c);
    if (c.s[c.i] !== " " && c.s[c.i] !== ")") return void (c.fail = true);
  }
  c.i++;
  const text = c.s.slice(start, c.i);
  parameters(c);
  c.kind = "list";
  return text;
}

// RFC 9213 §2.1 infers each known directive's type from its Cache-Control syntax (RFC 9111 §5.2.2): delta-seconds → a non-negative
// Integer; no argument → Boolean; a field-name list (private, no-cache) → String, or Token for the token form, or Boolean when unqualified.
const DELTA_SECONDS = new Set(["max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"]);
const VALUELESS = new Set(["public", "no-store", "no-transform", "must-revalidate", "proxy-revalidate", "must-understand", "immutable"]);
const FIELD_LISTS = new Set(["private", "no-cache"]);

/** typed says whether a known directive's value has the type RFC 9213 §2.1 infers for it; extension directives are not checked. */
function typed(key: string, kind: Kind, v: string | boolean): boolean {
  if (DELTA_SECONDS.has(key)) return kind === "integer" && !(v as string).startsWith("-");
  if (VALUELESS.has(key)) return kind === "boolean";
  if (FIELD_LISTS.has(key)) return kind === "boolean" || kind === "string" || kind === "token";
  return true;
}

/**
 * parseTargeted reads a targeted field such as CDN-Cache-Control as a Structured Fields Dictionary (RFC 9213
 * §2.1, RFC 8941 §4.2.2), or returns undefined when it is empty or does not parse, in which case the cache
 * ignores it (§2.1). Keys must be lowercase; parameters are ignored (§2.1); `?0` drops the directive (a false
 * Boolean violates the inferred constraint of a valueless directive: §2.1 says not to consume such values);
 * numbers, tokens, byte sequences and inner lists keep their source text. A known directive whose value has
 * another type than §2.1 infers from its Cache-Control syntax (`max-age="60"`, `max-age=1.5`, `public=1`)
 * voids the whole field too, so that Cache-Control rules instead of a half-read targeted field.
 */
export function parseTargeted(value: string | null | undefined): Directives | undefined {
  if (value === null || value === undefined) return undefined;
  const c: Cursor = { s: value.replace(/^ +| +$/g, ""), i: 0, fail: false, kind: "boolean" };
  if (c.s === "") return undefined;
  const out = new Map<string, string | true>();
  while (c.i < c.s.length) {
    const key = take(c, KEY);
    if (key === undefined) return undefined;
    let v: string | boolean | undefined = true;
    c.kind = "boolean";
    if (c.s[c.i] === "=") {
      c.i++;
      v = member(c);
    } else parameters(c);
    if (c.fail || v === undefined || !typed(key, c.kind, v)) return undefined;
    if (v === false) out.delete(key);
    else out.set(key, v); // a repeated key: the last one wins (RFC 8941 §4.2.2)
    while (c.s[c.i] === " " || c.s[c.i] === "\t") c.i++;
    if (c.i >= c.s.length) break;
    if (c.s[c.i++] !== ",") return undefined;
    while (c.s[c.i] === " " || c.s[c.i] === "\t") c.i++;
    if (c.i >= c.s.length) return undefined; // trailing comma
  }
  return out;
}

/** Policy is the response directives a shared cache obeys, and whether they came from a targeted field. */
export type Policy = { readonly directives: Directives; readonly targeted: boolean };

/**
 * responsePolicy picks the directives for caching a response: the first field of TARGET_FIELDS with a valid,
 * non-empty value, which makes the cache ignore Cache-Control and Expires altogether (RFC 9213 §2.2), else
 * Cache-Control. One or two parses per call.
 */
export function responsePolicy(h: FieldReader): Policy {
  for (const name of TARGET_FIELDS) {
    const d = parseTargeted(h.get(name));
    if (d !== undefined) return { directives: d, targeted: true };
  }
  return { directives: parseCacheControl(h.get("cache-control")), targeted: false };
}
