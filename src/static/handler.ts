/** Serving a static site: safe path resolution, validators and conditional requests (RFC 9110 §13), single byte ranges (§14). */
import type { FieldReader } from "../lib/fields.ts";
import { ifRangeHolds, parseRange } from "../lib/http-range.ts";
import type { FileSource, FileStat } from "./file-source.ts";

/** StaticRequest is what a static site reads of a request: its method, fields and query ("" or "?…"). The proxy's RequestContext is one. */
export type StaticRequest = { readonly method: string; readonly headers: FieldReader; readonly query: string };

/** StaticOptions: index files for directories, an optional Cache-Control, whether dotfiles are served. */
export type StaticOptions = { readonly index?: readonly string[]; readonly cacheControl?: string; readonly dotfiles?: "deny" | "allow" };

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

function etagOf(s: FileStat): string {
  return `"${s.size.toString(16)}-${s.mtimeMs.toString(16)}"`;
}

function opaque(tag: string): string {
  return tag.startsWith("W/") ? tag.slice(2) : tag;
}

/** matchesAny compares an entity tag with an If-Match / If-None-Match list: weak comparison unless strong is set (RFC 9110 §8.8.3.2). */
function matchesAny(header: string, etag: string, strong: boolean): boolean {
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
 * staticHandler answers GET and HEAD for files of source; `path` is the raw (percent-encoded) path below the site's mount point. One stat per request at most
 * (the source caches them).
 */
export function staticHandler(source: FileSource, opts: StaticOptions = {}): (req: StaticRequest, path: string) => Response {
  const index = opts.index ?? ["index.html"];
  const dotfiles = opts.dotfiles ?? "deny";
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
    return serveFile(req, source, file, stat, opts.cacheControl);
  };
}

function serveFile(req: StaticRequest, source: FileSource, file: string, stat: FileStat, cacheControl: string | undefined): Response {
  const etag = etagOf(stat);
  const lastModified = new Date(stat.mtimeMs).toUTCString();
  const headers: Record<string, string> = { etag, "last-modified": lastModified, "accept-ranges": "bytes" };
  if (cacheControl !== undefined) headers["cache-control"] = cacheControl;
  const h = req.headers;
  // RFC 9110 §13.2.2: If-Match, then If-Unmodified-Since, then If-None-Match, then If-Modified-Since, then If-Range.
  const ifMatch = h.get("if-match");
  if (ifMatch !== null) {
    if (!matchesAny(ifMatch, etag, true)) return new Response(null, { status: 412, headers });
  } else {
    const ius = h.get("if-unmodified-since");
    const since = ius === null ? NaN : Date.parse(ius);
    if (!Number.isNaN(since) && seconds(stat.mtimeMs) > seconds(since)) return new Response(null, { status: 412, headers });
  }
  const inm = h.get("if-none-match");
  if (inm !== null) {
    if (matchesAny(inm, etag, false)) return new Response(null, { status: 304, headers });
  } else {
    const ims = h.get("if-modified-since");
    const since = ims === null ? NaN : Date.parse(ims);
    if (!Number.isNaN(since) && seconds(stat.mtimeMs) <= seconds(since)) return new Response(null, { status: 304, headers });
  }
  headers["content-type"] = stat.type;
  const range = req.method === "GET" ? h.get("range") : null;
  if (range !== null && ifRangeHolds(h.get("if-range"), etag, lastModified)) {
    const r = parseRange(range, stat.size);
    if (r === "unsatisfiable") return new Response(null, { status: 416, headers: { ...headers, "content-range": `bytes */${stat.size}` } });
    if (r !== undefined) {
      const [start, end] = r;
      headers["content-range"] = `bytes ${start}-${end}/${stat.size}`;
      headers["content-length"] = String(end - start + 1);
      return new Response(source.body(file, start, end + 1), { status: 206, headers });
    }
  }
  headers["content-length"] = String(stat.size);
  if (req.method === "HEAD") return new Response(null, { status: 200, headers });
  return new Response(source.body(file), { status: 200, headers });
}
