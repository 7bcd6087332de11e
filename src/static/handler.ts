/** Serving a static site: safe path resolution, validators and conditional requests (RFC 9110 §13), single byte ranges (§14), compressed representations (§8.4). */
import { type FieldReader, Fields } from "../lib/fields.ts";
import { ifRangeHolds, parseRange } from "../lib/http-range.ts";
import { type Answered, Reply } from "../lib/reply.ts";
import { preconditions } from "./conditional.ts";
import type { FileSource, FileStat } from "./file-source.ts";
import { select } from "./representation.ts";
import { STATIC_VARIANTS, type VariantCache, variantKey } from "./variants.ts";

/** StaticRequest is what a static site reads of a request: its method, fields and query ("" or "?…"). The proxy's RequestContext is one. */
export type StaticRequest = { readonly method: string; readonly headers: FieldReader; readonly query: string };

/**
 * StaticOptions: index files for directories, an optional Cache-Control, whether dotfiles are served; for compression, the store of compressed forms (default
 * the process's STATIC_VARIANTS), the scope that tells this source's files from other sources' there (default: one of its own per handler; give the root to
 * keep the forms across reloads), and the size above which files are not compressed on the fly (default 8 MiB).
 */
export type StaticOptions = {
  readonly index?: readonly string[];
  readonly cacheControl?: string;
  readonly dotfiles?: "deny" | "allow";
  readonly variants?: VariantCache;
  readonly scope?: string;
  readonly maxCompressSize?: number;
};

/** MAX_COMPRESS_SIZE is the default size above which a file is served as it is unless a precompressed sibling exists. */
export const MAX_COMPRESS_SIZE = 8 * 1024 * 1024;

let handlers = 0;

const TEXT = { "content-type": "text/plain; charset=utf-8" };

function plain(status: number, body: string, extra?: Record<string, string>): Response {
  return new Response(`${body}\n`, { status, headers: { ...TEXT, ...extra } });
}

/** cleanPath decodes a raw request path and refuses anything that could leave the root: "..", "." segments, NUL, backslashes. Returns a status for refusals. */
export function cleanPath(raw: string, dotfiles: "deny" | "allow"): string | 400 | 404 {
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    return 400;
  }
  if (!path.startsWith("/") || path.includes("\0") || path.includes("\\")) return 400;
  const segments = path.split("/");
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === ".." || s === ".") return 400;
    if (s.startsWith(".") && dotfiles === "deny" && !(i === 1 && s === ".well-known")) return 404;
  }
  return path.replace(/\/{2,}/g, "/");
}

/**
 * staticHandler answers GET and HEAD for files of source; `path` is the raw (percent-encoded) path below the site's mount point. One stat per request at most
 * (the source caches them), plus stat-cache lookups for precompressed siblings. A compressed answer is a Reply of stored bytes; others are Responses.
 * Synchronous except when a compressed form is not stored yet.
 */
export function staticHandler(source: FileSource, opts: StaticOptions = {}): (req: StaticRequest, path: string) => Answered | Promise<Answered> {
  const index = opts.index ?? ["index.html"];
  const dotfiles = opts.dotfiles ?? "deny";
  const files: FileServer = {
    source,
    cacheControl: opts.cacheControl,
    variants: opts.variants ?? STATIC_VARIANTS,
    scope: opts.scope ?? `handler-${++handlers}`,
    select: { maxCompressSize: opts.maxCompressSize ?? MAX_COMPRESS_SIZE },
  };
  return (req, rawPath) => {
    const method = req.method;
    if (method !== "GET" && method !== "HEAD") return plain(405, "405 Method Not Allowed", { allow: "GET, HEAD" });
    const path = cleanPath(rawPath, dotfiles);
    if (path === 400) return plain(400, "400 Bad Request: invalid path");
    if (path === 404) return plain(404, "404 Not Found");
    let file = path;
    let stat = source.stat(path);
    if (stat?.kind === "directory") {
      if (!path.endsWith("/")) {
        return new Response(null, { status: 308, headers: { location: `${rawPath}/${req.query}` } });
      }
      stat = null;
      for (const name of index) {
        const s = source.stat(path + name);
        if (s?.kind === "file") {
          stat = s;
          file = path + name;
          break;
        }
      }
    }
    if (stat === null || stat.kind !== "file") return plain(404, "404 Not Found");
    return serveFile(req, files, file, stat);
  };
}

/** FileServer is what serving one file needs of its handler. */
type FileServer = {
  readonly source: FileSource;
  readonly cacheControl: string | undefined;
  readonly variants: VariantCache;
  readonly scope: string;
  readonly select: { readonly maxCompressSize: number };
};

function serveFile(req: StaticRequest, fs: FileServer, file: string, stat: FileStat): Answered | Promise<Answered> {
  const h = req.headers;
  // A Range (on GET or HEAD alike, so HEAD keeps GET's headers) selects the identity representation: see select().
  const { rep, varies } = select(fs.source, file, stat, h.get("accept-encoding"), h.get("range") !== null, fs.select);
  const headers: Record<string, string> = { etag: rep.etag, "last-modified": httpDate(rep.mtimeMs), "accept-ranges": "bytes" };
  if (fs.cacheControl !== undefined) headers["cache-control"] = fs.cacheControl;
  // RFC 9110 §12.5.5: every response of a file with several representations says what chose it, the identity one and 304s included.
  if (varies) headers.vary = "accept-encoding";
  const pre = preconditions(h, rep.etag, rep.mtimeMs);
  if (pre !== undefined) return new Response(null, { status: pre, headers });
  headers["content-type"] = stat.type;
  if (rep.coding === undefined) return identity(req, fs.source, file, stat, headers);
  headers["content-encoding"] = rep.coding;
  // A coded form is served from memory: one compressed on the fly, or a precompressed sibling read once (a large one is streamed from its file).
  const sib = rep.sibling;
  if (sib !== undefined && sib.stat.size > fs.select.maxCompressSize) return whole(req, fs.source.body(sib.path), sib.stat.size, headers);
  const key = sib === undefined ? variantKey(fs.scope, file, stat, rep.coding) : variantKey(fs.scope, sib.path, sib.stat, "file");
  const stored = fs.variants.get(key);
  if (stored !== undefined) return inMemory(req, stored, headers);
  const made = sib === undefined ? fs.variants.make(key, fs.source, file, stat, rep.coding) : fs.variants.make(key, fs.source, sib.path, sib.stat, "file");
  return made.then((bytes) => (bytes === undefined ? plain(404, "404 Not Found") : inMemory(req, bytes, headers)));
}

/** whole answers 200 with body of size bytes (none for HEAD). */
function whole(req: StaticRequest, body: Blob | Uint8Array | string, size: number, headers: Record<string, string>): Response {
  headers["content-length"] = String(size);
  return new Response(req.method === "HEAD" ? null : body, { status: 200, headers });
}

/** inMemory answers 200 with stored bytes as a Reply: written with its head in one go, no native Response or Headers made (HEAD: no body). */
function inMemory(req: StaticRequest, bytes: Uint8Array, headers: Record<string, string>): Reply {
  headers["content-length"] = String(bytes.byteLength);
  return new Reply(200, new Fields(Object.keys(headers), Object.values(headers)), req.method === "HEAD" ? null : bytes);
}

const dates = new Map<number, string>();

/** httpDate formats a modification time for Last-Modified, memoised: a site has few distinct ones, and formatting a Date costs more than the lookup. */
function httpDate(ms: number): string {
  let d = dates.get(ms);
  if (d === undefined) {
    if (dates.size >= 1000) dates.clear();
    d = new Date(ms).toUTCString();
    dates.set(ms, d);
  }
  return d;
}

/** identity answers with the file as it is: one byte range when asked for and If-Range holds (RFC 9110 §14.2, §13.1.5), else all of it. */
function identity(req: StaticRequest, source: FileSource, file: string, stat: FileStat, headers: Record<string, string>): Response {
  const h = req.headers;
  const range = req.method === "GET" ? h.get("range") : null;
  if (range !== null && ifRangeHolds(h.get("if-range"), headers.etag!, headers["last-modified"]!)) {
    const r = parseRange(range, stat.size);
    if (r === "unsatisfiable") return new Response(null, { status: 416, headers: { ...headers, "content-range": `bytes */${stat.size}` } });
    if (r !== undefined) {
      const [start, end] = r;
      headers["content-range"] = `bytes ${start}-${end}/${stat.size}`;
      headers["content-length"] = String(end - start + 1);
      return new Response(source.body(file, start, end + 1), { status: 206, headers });
    }
  }
  return whole(req, source.body(file), stat.size, headers);
}
