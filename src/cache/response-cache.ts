/** The process's response cache: the memory tier and the disk tier behind it, the coalescing lock, cache keys, purge and invalidation. It outlives reloads; a changed max_size starts an empty memory tier. */
import type { FieldReader } from "../lib/fields.ts";
import { normalizeHostHeader } from "../lib/host.ts";
import type { PurgeFilter } from "../observability/admin.ts";
import { Coalescer } from "./coalesce.ts";
import { secondaryKey } from "./vary.ts";
import { log } from "../observability/log.ts";
import { DiskTier } from "./disk/disk-tier.ts";
import { PartialStore } from "./partial.ts";
import { Store, type Entry } from "./store.ts";

/** DiskSettings are [cache] dir and disk_size; undefined: memory only. */
export type DiskSettings = { readonly dir: string; readonly size: number } | undefined;

const HOST_MEMO_LIMIT = 10_000;

/** ResponseCache is the registry of stored responses shared by every route that caches. */
export class ResponseCache {
  store: Store;
  /** partials are the pieces of responses that came as 206s (RFC 9111 §3.3), in memory, bounded by an eighth of max_size. */
  partials: PartialStore;
  maxObjectSize: number;
  /** disk is the disk tier behind the memory one ([cache] dir), shared by the node's processes. */
  disk: DiskTier | undefined;
  /** passTagFields: Cache-Tag and Surrogate-Key reach clients ([cache] pass_tag_fields); by default they are the origin's word to this cache only. */
  passTagFields = false;
  readonly coalescer = new Coalescer();
  private readonly hosts = new Map<string, string>();

  constructor(maxSize: number, maxObjectSize: number) {
    this.store = new Store(maxSize);
    this.partials = new PartialStore(Math.floor(maxSize / 8));
    this.maxObjectSize = maxObjectSize;
  }

  /**
   * configure applies [cache] of a new config: a new max_size replaces the memory tier (empty), max_object_size applies to the next responses, a new dir or
   * disk_size opens the disk tier again (what is on disk stays there).
   */
  configure(maxSize: number, maxObjectSize: number, disk?: DiskSettings, passTagFields = false): void {
    if (maxSize !== this.store.maxSize) {
      this.store = new Store(maxSize);
      this.partials = new PartialStore(Math.floor(maxSize / 8));
    }
    this.maxObjectSize = maxObjectSize;
    this.passTagFields = passTagFields;
    if (disk?.dir !== this.disk?.dir || disk?.size !== this.disk?.maxBytes) {
      this.disk?.close();
      this.disk = undefined;
      try {
        this.disk = disk ? new DiskTier(disk.dir, disk.size) : undefined;
      } catch (e) {
        log.error("cache dir unusable; the cache stays in memory", { dir: disk?.dir, error: String((e as Error).message ?? e) });
      }
    }
  }

  /** put stores a response from the origin in the memory tier and (after the answer) on disk; false when neither took it. */
  put(primary: string, secondary: string, e: Entry): boolean {
    // A complete response makes the pieces of its URL useless.
    this.partials.delete(primary);
    const inMemory = this.store.set(primary, secondary, e);
    if (this.disk === undefined) return inMemory;
    this.disk.store(primary, secondary, e);
    return true;
  }

  /** refreshed stores an entry again after it changed (a 304 merged into it): memory accounting, and its copy on disk. */
  refreshed(primary: string, secondary: string, e: Entry): void {
    this.store.touch(primary, secondary, e);
    this.disk?.store(primary, secondary, e);
  }

  /** delete removes every variant of primary from both tiers. */
  delete(primary: string): number {
    this.partials.delete(primary);
    return this.store.delete(primary) + (this.disk?.delete(primary) ?? 0);
  }

  /** close waits for the disk tier's writes and closes it (its index), at shutdown. */
  async close(): Promise<void> {
    const disk = this.disk;
    this.disk = undefined;
    await disk?.close();
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

  /**
   * purge removes what the filter selects from both tiers (a soft purge by tag marks it stale instead) and returns how many responses it removed: the
   * larger of the two tiers' counts, since a response is usually in both.
   */
  purge(f: PurgeFilter): number {
    const both = (inMemory: number, onDisk: number | undefined) => Math.max(inMemory, onDisk ?? 0);
    if ("all" in f)
      return both(
        this.store.purge(() => true) + this.partials.purge(() => true),
        this.disk?.purge(() => true),
      );
    if ("tag" in f) return both(this.store.purgeTag(f.tag, f.soft === true), this.disk?.purgeTag(f.tag, f.soft === true));
    if ("url" in f) {
      const rest = f.url.replace(/^https?:\/\//i, "");
      const slash = rest.indexOf("/");
      const host = slash < 0 ? rest : rest.slice(0, slash);
      const key = (normalizeHostHeader(host) ?? host.toLowerCase()) + (slash < 0 ? "/" : rest.slice(slash));
      this.partials.delete(`http://${key}`);
      this.partials.delete(`https://${key}`);
      return both(
        this.store.delete(`http://${key}`) + this.store.delete(`https://${key}`),
        this.disk && this.disk.delete(`http://${key}`) + this.disk.delete(`https://${key}`),
      );
    }
    const host = f.host.toLowerCase();
    const prefix = f.prefix ?? "/";
    const match = (k: string) => k.startsWith(`http://${host}${prefix}`) || k.startsWith(`https://${host}${prefix}`);
    return both(this.store.purge(match) + this.partials.purge(match), this.disk?.purge(match));
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
