/** The process's response cache: the store, the coalescing lock, cache keys, purge and invalidation. It outlives reloads; a changed max_size starts an empty store. */
import type { FieldReader } from "../lib/fields.ts";
import { normalizeHostHeader } from "../lib/host.ts";
import type { PurgeFilter } from "../observability/admin.ts";
import { Coalescer } from "./coalesce.ts";
import { secondaryKey } from "./vary.ts";
import { Store, type Entry } from "./store.ts";

const HOST_MEMO_LIMIT = 10_000;

/** ResponseCache is the registry of stored responses shared by every route that caches. */
export class ResponseCache {
  store: Store;
  maxObjectSize: number;
  readonly coalescer = new Coalescer();
  private readonly hosts = new Map<string, string>();

  constructor(maxSize: number, maxObjectSize: number) {
    this.store = new Store(maxSize);
    this.maxObjectSize = maxObjectSize;
  }

  /** configure applies [cache] of a new config: a new max_size replaces the store (empty), max_object_size applies to the next responses. */
  configure(maxSize: number, maxObjectSize: number): void {
    if (maxSize !== this.store.maxSize) this.store = new Store(maxSize);
    this.maxObjectSize = maxObjectSize;
  }

  /**
   * primaryKey is the target URI (RFC 9111 §2): scheme, normalized host without port, path and (unless ignored) query. The host's normalization is memoised: a
   * Map hit per request.
   */
  primaryKey(scheme: string, rawHost: string, path: string, query: string): string {
    let host = this.hosts.get(rawHost);
    if (host === undefined) {
      host = normalizeHostHeader(rawHost) ?? rawHost.toLowerCase();
      if (this.hosts.size >= HOST_MEMO_LIMIT) this.hosts.clear();
      this.hosts.set(rawHost, host);
    }
    return `${scheme}://${host}${path}${query}`;
  }

  /** lookup finds the stored variant matching the request's Vary fields (RFC 9111 §4.1), or undefined. */
  lookup(primary: string, req: FieldReader): { entry: Entry; secondary: string } | undefined {
    const names = this.store.names(primary);
    if (names === undefined) return undefined;
    const secondary = names.length === 0 ? "" : secondaryKey(names, req);
    const entry = this.store.get(primary, secondary);
    return entry === undefined ? undefined : { entry, secondary };
  }

  /** purge removes what the filter selects and returns how many responses it removed. */
  purge(f: PurgeFilter): number {
    if ("all" in f) return this.store.purge(() => true);
    if ("url" in f) {
      const rest = f.url.replace(/^https?:\/\//i, "");
      const slash = rest.indexOf("/");
      const host = slash < 0 ? rest : rest.slice(0, slash);
      const key = (normalizeHostHeader(host) ?? host.toLowerCase()) + (slash < 0 ? "/" : rest.slice(slash));
      return this.store.delete(`http://${key}`) + this.store.delete(`https://${key}`);
    }
    const host = f.host.toLowerCase();
    const prefix = f.prefix ?? "/";
    return this.store.purge((k) => k.startsWith(`http://${host}${prefix}`) || k.startsWith(`https://${host}${prefix}`));
  }

  /** invalidate drops the stored responses for these absolute URLs (after an unsafe method, RFC 9111 §4.4); ignoreQuery matches how the route keys them. */
  invalidate(urls: readonly string[], ignoreQuery: boolean): void {
    for (const u of urls) {
      let parsed: URL;
      try {
        parsed = new URL(u);
      } catch {
        continue;
      }
      this.purge({ url: `${parsed.hostname}${parsed.pathname}${ignoreQuery ? "" : parsed.search}` });
    }
  }
}
