/** Compressed forms of static files (made on the fly, or precompressed files read once), kept per process in a map bounded in bytes, keyed so that a changed file never finds an old form. */
import { LRUCache } from "lru-cache";
import { type Coding, compress, compressAsync } from "../lib/compress.ts";
import type { FileSource, FileStat } from "./file-source.ts";

/** SYNC_LIMIT: files up to this size are compressed on the request's own thread (well under a millisecond); larger ones on the thread pool. */
const SYNC_LIMIT = 64 * 1024;

/** VariantCacheOptions bound a VariantCache: maxBytes of compressed bytes in all. */
export type VariantCacheOptions = { readonly maxBytes?: number };

/** Form is how a stored form was made from its file: compressed in a coding, or "file" for a file kept as it is (a precompressed sibling). */
export type Form = Coding | "file";

/**
 * variantKey names the form of one file: the source's scope (its root), the path, the size and mtime of the stat the form was made from, and the form, so a
 * file that changes (new size or mtime) gets a new key and its old forms are only evicted, never served.
 */
export function variantKey(scope: string, path: string, stat: FileStat, form: Form): string {
  return `${scope}\0${path}\0${stat.size}\0${stat.mtimeMs}\0${form}`;
}

/**
 * VariantCache holds compressed files, least recently used evicted past maxBytes (default 32 MiB). A hit is one Map lookup; a miss reads and compresses the
 * file once however many requests wait for it (coalesced). Bytes handed out must not be changed.
 */
export class VariantCache {
  private readonly lru: LRUCache<string, Uint8Array>;
  private readonly making = new Map<string, Promise<Uint8Array | undefined>>();

  constructor(opts: VariantCacheOptions = {}) {
    const maxSize = opts.maxBytes ?? 32 * 1024 * 1024;
    this.lru = new LRUCache({ maxSize, maxEntrySize: maxSize, sizeCalculation: (v) => Math.max(1, v.byteLength) });
  }

  /** get returns the stored form for key, or undefined. */
  get(key: string): Uint8Array | undefined {
    return this.lru.get(key);
  }

  /**
   * make reads path of source, compresses it in form (or keeps it as it is for "file") and stores it under key; undefined when the file cannot be read. Bytes
   * whose length is not stat's size (the file changed between stat and read) are served to this request but not stored: they do not belong to key.
   */
  make(key: string, source: FileSource, path: string, stat: FileStat, form: Form): Promise<Uint8Array | undefined> {
    const pending = this.making.get(key);
    if (pending !== undefined) return pending;
    const p = this.produce(key, source, path, stat, form).finally(() => this.making.delete(key));
    this.making.set(key, p);
    return p;
  }

  private async produce(key: string, source: FileSource, path: string, stat: FileStat, form: Form): Promise<Uint8Array | undefined> {
    let bytes: Uint8Array;
    try {
      bytes = await readAll(source.body(path));
    } catch {
      return undefined;
    }
    const out = form === "file" ? bytes : bytes.byteLength <= SYNC_LIMIT ? compress(bytes, form) : await compressAsync(bytes, form);
    if (bytes.byteLength === stat.size) this.lru.set(key, out);
    return out;
  }

  /** size is the number of stored bytes (for tests). */
  get size(): number {
    return this.lru.calculatedSize;
  }
}

async function readAll(body: Blob | Uint8Array | string): Promise<Uint8Array> {
  if (body instanceof Uint8Array) return body;
  if (typeof body === "string") return new TextEncoder().encode(body);
  return new Uint8Array(await body.arrayBuffer());
}

/** STATIC_VARIANTS is the process's one VariantCache, shared by every static site and kept across reloads (keys name the root). */
export const STATIC_VARIANTS = new VariantCache();
