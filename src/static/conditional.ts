/** Preconditions of a request for a static file (RFC 9110 §13): If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since, in that order. */
import type { FieldReader } from "../lib/fields.ts";

function opaque(tag: string): string {
  return tag.startsWith("W/") ? tag.slice(2) : tag;
}

/** matchesAny compares an entity tag with an If-Match / If-None-Match list: weak comparison unless strong is set (RFC 9110 §8.8.3.2). */
export function matchesAny(header: string, etag: string, strong: boolean): boolean {
  if (header.trim() === "*") return true;
  for (const raw of header.split(",")) {
    const t = raw.trim();
    if (strong ? t === etag : opaque(t) === opaque(etag)) return true;
  }
  return false;
}

function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}

/**
 * preconditions evaluates a request's conditional fields against the selected representation's ETag and modification time (RFC 9110 §13.2.2): 412 when a
 * precondition fails, 304 when the client's copy is current, undefined to answer in full. Every coding has its own ETag, so an If-None-Match matches only
 * the representation this request would get.
 */
export function preconditions(h: FieldReader, etag: string, mtimeMs: number): 304 | 412 | undefined {
  const ifMatch = h.get("if-match");
  if (ifMatch !== null) {
    if (!matchesAny(ifMatch, etag, true)) return 412;
  } else {
    const ius = h.get("if-unmodified-since");
    const since = ius === null ? NaN : Date.parse(ius);
    if (!Number.isNaN(since) && seconds(mtimeMs) > seconds(since)) return 412;
  }
  const inm = h.get("if-none-match");
  if (inm !== null) {
    if (matchesAny(inm, etag, false)) return 304;
  } else {
    const ims = h.get("if-modified-since");
    const since = ims === null ? NaN : Date.parse(ims);
    if (!Number.isNaN(since) && seconds(mtimeMs) <= seconds(since)) return 304;
  }
  return undefined;
}
