/** Secondary cache keys from Vary (RFC 9110 §12.5.5, RFC 9111 §4.1). */
import type { FieldReader } from "../lib/fields.ts";

const NONE: readonly string[] = [];

/**
 * varyNames returns the lowercased, sorted, de-duplicated field names a response's Vary lists, an empty list
 * without Vary, or "*" when any member is "*" (RFC 9110 §12.5.5). Allocates only when Vary is present.
 */
export function varyNames(resHeaders: FieldReader): readonly string[] | "*" {
  const v = resHeaders.get("vary");
  if (v === null) return NONE;
  const names = new Set<string>();
  for (const part of v.split(",")) {
    const name = part.trim().toLowerCase();
    if (name === "*") return "*";
    if (name !== "") names.add(name);
  }
  return names.size === 0 ? NONE : [...names].sort();
}

/**
 * normalizeValue applies the transformations RFC 9111 §4.1 says preserve a match: field lines already combined
 * with ", " (Headers does that), whitespace trimmed, runs of it collapsed to one space, none before a comma and
 * one after, except inside quoted strings, where whitespace is data. Values are not case-folded or reordered:
 * whether that keeps their meaning depends on each field's own syntax (CASELESS fields are folded).
 */
function normalizeValue(v: string): string {
  if (!/[\s",]/.test(v)) return v; // the common case ("gzip", "en") costs one regex test
  let out = "";
  let quoted = false;
  let space = false;
  let comma = false;
  for (let i = 0; i < v.length; i++) {
    const ch = v[i]!;
    if (quoted) {
      out += ch;
      if (ch === "\\" && i + 1 < v.length) out += v[++i];
      else if (ch === '"') quoted = false;
    } else if (ch === " " || ch === "\t") {
      space = true;
    } else if (ch === ",") {
      out += ",";
      comma = true;
    } else {
      if (comma || (space && out !== "")) out += " ";
      space = comma = false;
      if (ch === '"') quoted = true;
      out += ch;
    }
  }
  return out;
}

/**
 * CASELESS are the fields whose whole syntax is case-insensitive and has no quoted strings: language ranges (RFC 9110 §12.5.4,
 * RFC 4647 §2), content codings (§8.4.1), charsets (§8.3.2) and the weight parameter (§12.4.2).
 */
const CASELESS: ReadonlySet<string> = new Set(["accept-language", "accept-encoding", "accept-charset"]);

/**
 * normalizeCaseless is a CASELESS field's value in one form: lowercased, empty list members dropped (§5.6.1), no whitespace
 * around ";" and "=" (the OWS of §12.4.2), members joined by ", ". The order is kept: it can express a preference.
 */
function normalizeCaseless(v: string): string {
  if (!/[A-Z\s,;=]/.test(v)) return v; // "en", "gzip": one regex test
  let out = "";
  for (const member of v.toLowerCase().split(",")) {
    const m = member.replace(/\s*([;=])\s*/g, "$1").trim();
    if (m === "") continue;
    out += out === "" ? m : `, ${m}`;
  }
  return out;
}

/**
 * secondaryKey builds the string stored variants are keyed by (RFC 9111 §4.1): for each name (lowercased, sorted,
 * de-duplicated, so any order gives one key) `name=value` with the request's value normalized (CASELESS fields also
 * case-folded, so `en-US, fr` and `en-us,fr` share a variant), or the bare `name`
 * when the request lacks the field, since an absent field matches only an absent one; lines joined by "\n",
 * which no field name or value can contain.
 */
export function secondaryKey(names: readonly string[], reqHeaders: FieldReader): string {
  const sorted = [...new Set(names.map((n) => n.toLowerCase()))].sort();
  let key = "";
  for (const name of sorted) {
    const v = reqHeaders.get(name);
    if (key !== "") key += "\n";
    key += v === null ? name : `${name}=${CASELESS.has(name) ? normalizeCaseless(v) : normalizeValue(v)}`;
  }
  return key;
}
