/** A client's conditional GET or HEAD evaluated against a stored response (RFC 9110 §13, RFC 9111 §4.3.2). */
import type { FieldReader } from "../lib/fields.ts";
import { parseHttpDate } from "./http-date.ts";

/** EntityTag is one entity-tag (RFC 9110 §8.8.3): its opaque-tag with the quotes, and whether it is weak. */
export type EntityTag = { readonly weak: boolean; readonly tag: string };

// RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, in a comma-separated list.
const ETAG = /\s*(W\/)?("[^"]*")\s*(?:,|$)/y;

/**
 * parseEntityTags reads an ETag, If-Match or If-None-Match value into entity-tags, or "*". A value that is not a
 * list of quoted tags (some origins send `ETag: abc`) is read leniently: each comma-separated member is one tag,
 * `W/` still marking it weak, so a malformed tag matches only the same malformed tag.
 */
export function parseEntityTags(value: string): readonly EntityTag[] | "*" {
  const v = value.trim();
  if (v === "*") return "*";
  const out: EntityTag[] = [];
  ETAG.lastIndex = 0;
  while (ETAG.lastIndex < v.length) {
    const at = ETAG.lastIndex;
    const m = ETAG.exec(v);
    if (m === null) {
      if (/^\s*(,|$)/.test(v.slice(at))) {
        // an empty list member (RFC 9110 §5.6.1)
        ETAG.lastIndex = v.indexOf(",", at) + 1 || v.length;
        continue;
      }
      return lenient(v);
    }
    out.push({ weak: m[1] !== undefined, tag: m[2]! });
  }
  return out;
}

function lenient(v: string): EntityTag[] {
  const out: EntityTag[] = [];
  for (const part of v.split(",")) {
    const p = part.trim();
    if (p === "") continue;
    const weak = p.startsWith("W/");
    out.push({ weak, tag: weak ? p.slice(2) : p });
  }
  return out;
}

/** strongMatch: both tags strong and equal (RFC 9110 §8.8.3.2). */
function strongMatch(a: EntityTag, b: EntityTag): boolean {
  return !a.weak && !b.weak && a.tag === b.tag;
}

/** weakMatch: equal opaque-tags, weakness ignored (RFC 9110 §8.8.3.2). */
function weakMatch(a: EntityTag, b: EntityTag): boolean {
  return a.tag === b.tag;
}

/** storedTag is the stored response's entity-tag: the first one its ETag holds, if any. */
function storedTag(stored: FieldReader): EntityTag | undefined {
  const v = stored.get("etag");
  if (v === null) return undefined;
  const tags = parseEntityTags(v);
  return tags === "*" ? undefined : tags[0];
}

/**
 * evaluateConditional decides a client's conditional GET or HEAD against a stored 200 response, in RFC 9110
 * §13.2.2's order: a failing If-Match (strong comparison, §13.1.1), or without If-Match a failing
 * If-Unmodified-Since (§13.1.4), gives 412; then If-None-Match (weak comparison, `*` matches; §13.1.2) gives 304
 * on a match and otherwise "full", If-Modified-Since being ignored; only without If-None-Match does
 * If-Modified-Since (§13.1.3) give 304 when Last-Modified is no later than it; without Last-Modified the stored Date
 * is compared instead, or without a valid Date `receivedAt`, when given (RFC 9111 §4.3.2). Invalid dates are ignored. A few
 * header reads and small parses; the stored response must be current (fresh or just validated). RFC 9111 §4.3.2
 * calls If-Match and If-Unmodified-Since "not applicable to a cache": a caller that prefers to leave them to the
 * origin forwards such requests instead of calling this.
 */
export function evaluateConditional(reqHeaders: FieldReader, stored: FieldReader, receivedAt?: number): 304 | 412 | "full" {
  const etag = storedTag(stored);
  const lastModified = parseHttpDate(stored.get("last-modified"));
  const ifMatch = reqHeaders.get("if-match");
  if (ifMatch !== null) {
    const tags = parseEntityTags(ifMatch);
    // §13.1.1: "*" holds when a current representation exists, and we have one.
    if (tags !== "*" && (etag === undefined || !tags.some((t) => strongMatch(t, etag)))) return 412;
  } else {
    const since = parseHttpDate(reqHeaders.get("if-unmodified-since"));
    // §13.1.4: ignored when invalid or when the representation has no modification date.
    if (since !== undefined && lastModified !== undefined && lastModified > since) return 412;
  }
  const ifNoneMatch = reqHeaders.get("if-none-match");
  if (ifNoneMatch !== null) {
    const tags = parseEntityTags(ifNoneMatch);
    if (tags === "*") return 304;
    return etag !== undefined && tags.some((t) => weakMatch(t, etag)) ? 304 : "full";
  }
  // §13.1.3, with RFC 9111 §4.3.2's fallback for a cache: without Last-Modified, the stored Date, else the time it was received.
  const since = parseHttpDate(reqHeaders.get("if-modified-since"));
  if (since === undefined) return "full";
  const modified = lastModified ?? parseHttpDate(stored.get("date")) ?? receivedAt;
  return modified !== undefined && modified <= since ? 304 : "full";
}
