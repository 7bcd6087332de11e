/** Routing: Host to site by Map (exact, then one-label wildcard), then path to route by Map over segment prefixes. */
import { normalizeHostHeader } from "../lib/host.ts";

/** HOST_INVALID is what HostRouter.lookup returns for a Host header that is not a host name. */
export const HOST_INVALID = Symbol("invalid host");
const NOT_FOUND = Symbol("not found");
const MEMO_LIMIT = 10_000;

/** HostRouter maps Host header values to sites; lookups are memoised on the raw header, so a repeated Host costs one Map hit. */
export class HostRouter<T> {
  private readonly exact = new Map<string, T>();
  private readonly wildcard = new Map<string, T>();
  private readonly memo = new Map<string, T | typeof NOT_FOUND | typeof HOST_INVALID>();

  /** add registers a normalized host ("example.com" or "*.example.com") for value. */
  add(host: string, value: T): void {
    if (host.startsWith("*.")) this.wildcard.set(host.slice(2), value);
    else this.exact.set(host, value);
  }

  /** lookup returns the site for a raw Host header, undefined when no site has it, HOST_INVALID when it is malformed. */
  lookup(rawHost: string): T | undefined | typeof HOST_INVALID {
    let hit = this.memo.get(rawHost);
    if (hit === undefined) {
      hit = this.resolve(rawHost);
      if (this.memo.size >= MEMO_LIMIT) this.memo.clear();
      this.memo.set(rawHost, hit);
    }
    return hit === NOT_FOUND ? undefined : hit;
  }

  private resolve(rawHost: string): T | typeof NOT_FOUND | typeof HOST_INVALID {
    const host = normalizeHostHeader(rawHost);
    if (host === undefined) return HOST_INVALID;
    const exact = this.exact.get(host);
    if (exact !== undefined) return exact;
    const dot = host.indexOf(".");
    // "*.example.com" covers exactly one label: a.example.com, not a.b.example.com nor example.com.
    const wild = dot > 0 ? this.wildcard.get(host.slice(dot + 1)) : undefined;
    return wild ?? NOT_FOUND;
  }
}

/** PathRouter finds the longest configured prefix that matches whole path segments ("/api" matches "/api" and "/api/x", not "/apix"). */
export class PathRouter<T> {
  private readonly byPrefix = new Map<string, T>();
  private maxSegments = 0;

  constructor(private readonly fallback: T | undefined) {}

  /** add registers a normalized prefix (no trailing slash, except "/"). */
  add(prefix: string, value: T): void {
    if (prefix === "/") return;
    this.byPrefix.set(prefix, value);
    let segments = 0;
    for (let i = 0; i < prefix.length; i++) if (prefix.charCodeAt(i) === 47) segments++;
    this.maxSegments = Math.max(this.maxSegments, segments);
  }

  /** lookup costs at most one Map hit per segment of the longest prefix; a site without sub-routes costs nothing. */
  lookup(path: string): T | undefined {
    if (this.maxSegments === 0) return this.fallback;
    // Cut the path to as many segments as the longest prefix has, so a deep path costs no more.
    let p = path;
    let seen = 0;
    for (let i = 0; i < p.length; i++) {
      if (p.charCodeAt(i) === 47 && ++seen > this.maxSegments) {
        p = p.slice(0, i);
        break;
      }
    }
    while (p.length > 0) {
      const hit = this.byPrefix.get(p);
      if (hit !== undefined) return hit;
      const cut = p.lastIndexOf("/");
      if (cut <= 0) break;
      p = p.slice(0, cut);
    }
    return this.fallback;
  }
}
