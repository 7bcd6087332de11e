/** The response store: an LRU bounded by bytes (body plus headers plus a fixed overhead per object), with Vary variants under one primary key. */
import type { Fields } from "../lib/fields.ts";
import { LRUCache } from "lru-cache";
import { cacheEvictions, cacheObjects, cacheSize } from "../observability/gateway-metrics.ts";

/** Entry is one stored response: a complete body, the headers to serve it with, and the times the age arithmetic needs (RFC 9111 §4.2.3). */
export type Entry = {
  readonly status: number;
  headers: Fields;
  readonly body: Uint8Array;
  requestTime: number;
  responseTime: number;
  /** vary is the request field names this response varies on (empty: none). */
  readonly vary: readonly string[];
  /** lifetime is the freshness lifetime in seconds, the route's TTL rules applied (RFC 9111 §4.2.1). */
  lifetime: number;
  /** initialAge is the corrected initial age in seconds (RFC 9111 §4.2.3): the age is initialAge + time since responseTime. */
  initialAge: number;
  /** alwaysRevalidate: the response said no-cache (§5.2.2.4), so it is never served without asking the origin. */
  alwaysRevalidate: boolean;
  /** compressible: the cache may encode the body for clients that accept it; encoded holds the codings made so far. */
  readonly compressible: boolean;
  readonly encoded: Map<string, Uint8Array>;
  /** tags are the purge tags the origin gave it (Cache-Tag, Surrogate-Key): POST /cache/purge?tag=T removes it. */
  readonly tags: readonly string[];
  /** file: the body is not in memory (`body` is empty) but in a file of the disk tier, `length` bytes at `offset`, to stream and check against `crc`. */
  readonly file?: DiskBody;
};

/** DiskBody is where a body too large to read whole lies on disk; damaged is called when streaming it finds it does not match its CRC. */
export type DiskBody = { readonly path: string; readonly offset: number; readonly length: number; readonly crc: number; readonly damaged: () => void };

/** OVERHEAD is what one object costs beside its body and headers: the entry, its key and the LRU's bookkeeping, measured roughly. */
const OVERHEAD = 512;
const SEP = "\u0000";

function headerBytes(h: Fields): number {
  let n = 0;
  for (let i = 0; i < h.size; i++) n += h.nameAt(i).length + h.valueAt(i).length + 4;
  return n;
}

/** entrySize is the accounted size of an entry: what it keeps in memory. */
export function entrySize(e: Entry, key: string): number {
  let n = e.body.byteLength + headerBytes(e.headers) + key.length * 2 + OVERHEAD;
  for (const b of e.encoded.values()) n += b.byteLength;
  return n;
}

/** Store holds entries under "primary key NUL secondary key"; the primary key's Vary names are remembered while any variant of it is stored. */
export class Store {
  private readonly lru: LRUCache<string, Entry>;
  /** varyOf maps a primary key to the Vary names of its variants and their secondary keys. */
  private readonly varyOf = new Map<string, { names: readonly string[]; secondaries: Set<string> }>();
  /** byTag maps a purge tag to the keys of the entries that carry it. */
  private readonly byTag = new Map<string, Set<string>>();

  constructor(readonly maxSize: number) {
    this.lru = new LRUCache<string, Entry>({
      maxSize,
      sizeCalculation: (e, key) => entrySize(e, key),
      dispose: (e, key, reason) => {
        this.untag(e, key);
        if (reason === "set") return; // replaced by a newer response under the same key: still one object
        const cut = key.indexOf(SEP);
        const primary = key.slice(0, cut);
        const v = this.varyOf.get(primary);
        if (v) {
          v.secondaries.delete(key.slice(cut + 1));
          if (v.secondaries.size === 0) this.varyOf.delete(primary);
        }
        if (reason === "evict") cacheEvictions.labels().value++;
        this.report();
      },
    });
  }

  private untag(e: Entry, key: string): void {
    for (const t of e.tags) {
      const keys = this.byTag.get(t);
      keys?.delete(key);
      if (keys?.size === 0) this.byTag.delete(t);
    }
  }

  private report(): void {
    cacheSize.labels().value = this.lru.calculatedSize;
    cacheObjects.labels().value = this.lru.size;
  }

  /** names returns the Vary names stored responses for this primary key vary on, or undefined when none is stored (one Map hit). */
  names(primary: string): readonly string[] | undefined {
    return this.varyOf.get(primary)?.names;
  }

  /** get returns the variant for primary and secondary key, marking it recently used. */
  get(primary: string, secondary: string): Entry | undefined {
    return this.lru.get(primary + SEP + secondary);
  }

  /**
   * set stores an entry (replacing the variant with the same secondary key); a response that varies on other names than the stored ones replaces them all.
   * Entries larger than the whole store are refused.
   */
  set(primary: string, secondary: string, e: Entry): boolean {
    const key = primary + SEP + secondary;
    if (entrySize(e, key) > this.maxSize) return false;
    const v = this.varyOf.get(primary);
    if (v && v.names.join(",") !== e.vary.join(",")) this.delete(primary);
    this.lru.set(key, e);
    if (!this.lru.has(key)) return false;
    for (const t of e.tags) {
      const keys = this.byTag.get(t);
      if (keys) keys.add(key);
      else this.byTag.set(t, new Set([key]));
    }
    const cur = this.varyOf.get(primary);
    if (cur) cur.secondaries.add(secondary);
    else this.varyOf.set(primary, { names: e.vary, secondaries: new Set([secondary]) });
    this.report();
    return true;
  }

  /** touch recomputes an entry's accounted size after it changed (a 304 merged into it, an encoding added). */
  touch(primary: string, secondary: string, e: Entry): void {
    const key = primary + SEP + secondary;
    if (this.lru.peek(key) !== e) return;
    // Grown past the whole store (many large encodings): drop it by the path that keeps the Vary index right.
    if (entrySize(e, key) > this.maxSize) this.lru.delete(key);
    else this.lru.set(key, e);
    this.report();
  }

  /** delete removes every variant stored under primary (a few Map operations) and returns how many. */
  delete(primary: string): number {
    const v = this.varyOf.get(primary);
    if (!v) return 0;
    const keys = [...v.secondaries].map((s) => primary + SEP + s);
    for (const k of keys) this.lru.delete(k);
    this.report();
    return keys.length;
  }

  /** purgeTag removes the entries that carry a tag, or with soft marks them stale (revalidated before use, served stale where they allow it); how many. */
  purgeTag(tag: string, soft: boolean): number {
    const keys = [...(this.byTag.get(tag) ?? [])];
    for (const key of keys) {
      const e = this.lru.peek(key);
      if (e === undefined) continue;
      if (soft) e.lifetime = -1;
      else this.lru.delete(key);
    }
    this.report();
    return keys.length;
  }

  /** purge removes every entry whose primary key matches (a scan of all keys: for the admin API, not the request path), and returns how many it removed. */
  purge(match: (primary: string) => boolean): number {
    let n = 0;
    for (const key of [...this.lru.keys()]) {
      if (match(key.slice(0, key.indexOf(SEP)))) {
        this.lru.delete(key);
        n++;
      }
    }
    this.report();
    return n;
  }
}
