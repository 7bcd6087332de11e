/** Where a static site's files come from: a directory on disk, or pages compiled into the binary. */
import { realpathSync, statSync } from "node:fs";
import { join, sep } from "node:path";
import { contentType } from "./content-type.ts";

/** FileStat is what the handler needs to answer: kind, size, mtime, type. */
export type FileStat = { readonly kind: "file" | "directory"; readonly size: number; readonly mtimeMs: number; readonly type: string };

/** FileSource answers for clean relative paths ("/a/b.css", no "..", already decoded); `stat` returns null for anything missing or outside the source. */
export interface FileSource {
  stat(path: string): FileStat | null;
  body(path: string, start?: number, end?: number): Blob | Uint8Array | string;
}

/** StatCacheOptions bound the per-source cache of stat results. */
export type StatCacheOptions = { readonly ttlMs?: number; readonly maxEntries?: number };

/**
 * directorySource serves files under root. Symlinks are followed only while their target stays inside root. Stat results (misses included) are cached for ttlMs
 * so a busy file costs no syscall per request.
 */
export function directorySource(root: string, opts: StatCacheOptions = {}): FileSource {
  const ttl = opts.ttlMs ?? 1000;
  const max = opts.maxEntries ?? 10_000;
  let realRoot: string | undefined;
  const cache = new Map<string, { at: number; stat: FileStat | null; file: string }>();

  function lookup(path: string): { stat: FileStat | null; file: string } {
    const now = performance.now();
    const hit = cache.get(path);
    if (hit && now - hit.at < ttl) return hit;
    const entry = { at: now, ...resolveStat(path) };
    if (cache.size >= max) cache.delete(cache.keys().next().value!);
    cache.set(path, entry);
    return entry;
  }

  function resolveStat(path: string): { stat: FileStat | null; file: string } {
    const file = join(root, path);
    try {
      realRoot ??= realpathSync(root);
      const real = realpathSync(file);
      if (real !== realRoot && !real.startsWith(realRoot + sep)) return { stat: null, file };
      const s = statSync(real);
      const kind = s.isFile() ? "file" : s.isDirectory() ? "directory" : undefined;
      if (kind === undefined) return { stat: null, file };
      return { stat: { kind, size: s.size, mtimeMs: Math.floor(s.mtimeMs), type: contentType(real) }, file: real };
    } catch {
      return { stat: null, file };
    }
  }

  return {
    stat: (path) => lookup(path).stat,
    body(path, start, end) {
      const f = Bun.file(lookup(path).file);
      return start === undefined ? f : f.slice(start, end);
    },
  };
}

/** EmbeddedFile is one page compiled into the binary. */
export type EmbeddedFile = { readonly body: string | Uint8Array; readonly contentType?: string };

/** embeddedSource serves a fixed map of paths ("/index.html") held in memory. */
export function embeddedSource(files: Record<string, EmbeddedFile>, mtime: Date): FileSource {
  const entries = new Map<string, { bytes: Uint8Array; stat: FileStat }>();
  const dirs = new Set<string>(["/"]);
  for (const [path, f] of Object.entries(files)) {
    const bytes = typeof f.body === "string" ? new TextEncoder().encode(f.body) : f.body;
    entries.set(path, { bytes, stat: { kind: "file", size: bytes.byteLength, mtimeMs: mtime.getTime(), type: f.contentType ?? contentType(path) } });
    for (let i = path.lastIndexOf("/"); i > 0; i = path.lastIndexOf("/", i - 1)) dirs.add(path.slice(0, i));
  }
  const dirStat: FileStat = { kind: "directory", size: 0, mtimeMs: mtime.getTime(), type: "" };
  return {
    stat(path) {
      const p = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
      return entries.get(p)?.stat ?? (dirs.has(p) ? dirStat : null);
    },
    body(path, start, end) {
      const bytes = entries.get(path)!.bytes;
      return start === undefined ? bytes : bytes.subarray(start, end);
    },
  };
}
