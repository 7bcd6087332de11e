/** Stored partial content (RFC 9111 §3.3–3.4): the byte ranges of a response that came as 206s, combined while their strong validator matches, answering later range requests they cover. */
import { LRUCache } from "lru-cache";
import type { FieldReader, Fields } from "../lib/fields.ts";

/** Piece is a stored byte range: its first byte's offset and its bytes. */
type Piece = { readonly start: number; readonly bytes: Uint8Array };

/** PartialResponse is what is stored of one response: its fields (those of the 206s, without Content-Range), its complete length, its ETag, and its pieces in order. */
export type PartialResponse = {
  headers: Fields;
  readonly size: number;
  readonly etag: string;
  pieces: Piece[];
  requestTime: number;
  responseTime: number;
  /** lifetime and initialAge as for a complete entry (set by the route's rules, RFC 9111 §4.2). */
  lifetime: number;
  initialAge: number;
};

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+)$/;

/** rangeOf reads a 206's Content-Range: [first, last, complete length], or undefined (another unit, an unknown length, or nonsense). */
export function rangeOf(h: FieldReader): [number, number, number] | undefined {
  const m = CONTENT_RANGE.exec(h.get("content-range")?.trim() ?? "");
  if (!m) return undefined;
  const [a, b, size] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return Number.isSafeInteger(size) && a <= b && b < size ? [a, b, size] : undefined;
}

/** strongEtag is the response's ETag when it is strong: only strong validators let ranges be combined (RFC 9111 §3.4, RFC 9110 §8.8.1). */
export function strongEtag(h: FieldReader): string | undefined {
  const e = h.get("etag")?.trim();
  return e?.startsWith('"') ? e : undefined;
}

function bytesOf(p: PartialResponse): number {
  let n = 512;
  for (const x of p.pieces) n += x.bytes.byteLength;
  return n;
}

/** merge adds a piece to sorted, non-overlapping pieces, joining those it overlaps or touches. */
function merge(pieces: readonly Piece[], add: Piece): Piece[] {
  let start = add.start;
  let end = add.start + add.bytes.byteLength;
  const joined: Piece[] = [];
  const out: Piece[] = [];
  for (const p of pieces) {
    const pe = p.start + p.bytes.byteLength;
    if (pe < start || p.start > end) out.push(p);
    else {
      joined.push(p);
      start = Math.min(start, p.start);
      end = Math.max(end, pe);
    }
  }
  const bytes = new Uint8Array(end - start);
  for (const p of joined) bytes.set(p.bytes, p.start - start);
  bytes.set(add.bytes, add.start - start); // the newest bytes win where they overlap (same validator: the same bytes)
  out.push({ start, bytes });
  return out.sort((a, b) => a.start - b.start);
}

/** PartialStore holds partial responses by URL, bounded in bytes (least recently used first). */
export class PartialStore {
  private readonly lru: LRUCache<string, PartialResponse>;

  constructor(readonly maxSize: number) {
    this.lru = new LRUCache<string, PartialResponse>({ maxSize, sizeCalculation: (p) => bytesOf(p) });
  }

  /**
   * add stores the range of a 206 (its Content-Range and strong ETag read by the caller): combined with what is stored when the ETag is the same, replacing
   * it otherwise (RFC 9111 §3.4). The newest response's fields and times are kept.
   */
  add(
    key: string,
    headers: Fields,
    etag: string,
    range: [number, number, number],
    bytes: Uint8Array,
    times: { requestTime: number; responseTime: number },
  ): void {
    const [start, , size] = range;
    const fields = headers.clone();
    fields.delete("content-range");
    fields.delete("content-length");
    const old = this.lru.get(key);
    const piece = { start, bytes };
    const p: PartialResponse =
      old !== undefined && old.etag === etag && old.size === size
        ? { ...old, headers: fields, pieces: merge(old.pieces, piece), ...times }
        : { headers: fields, size, etag, pieces: [piece], ...times, lifetime: 0, initialAge: 0 };
    if (bytesOf(p) <= this.maxSize) this.lru.set(key, p);
  }

  /** get returns the partial stored for key. */
  get(key: string): PartialResponse | undefined {
    return this.lru.get(key);
  }

  /** slice returns bytes [start, end] of p when one piece holds them all. */
  static slice(p: PartialResponse, start: number, end: number): Uint8Array | undefined {
    for (const x of p.pieces) {
      if (x.start <= start && end < x.start + x.bytes.byteLength) return x.bytes.subarray(start - x.start, end - x.start + 1);
    }
    return undefined;
  }

  /** delete drops what is stored for key (a complete response came, or the URL was purged). */
  delete(key: string): boolean {
    return this.lru.delete(key);
  }

  /** purge drops every partial whose key matches; how many. */
  purge(match: (key: string) => boolean): number {
    let n = 0;
    for (const k of [...this.lru.keys()]) if (match(k) && this.lru.delete(k)) n++;
    return n;
  }
}
