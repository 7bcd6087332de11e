/** Cache purges shared by the nodes of a cluster: a purge on one node's admin listener is published in the shared storage (etcd), and every other node applies it to its own cache. */
import { randomBytes } from "node:crypto";
import { log } from "./observability/log.ts";
import type { PurgeFilter } from "./observability/admin.ts";
import type { Storage } from "./tls/storage.ts";

/** PURGES is where purges are published; each is one key, `purges/AT-NODE-SEQ/FILTER` (FILTER as base64url JSON), with an empty value. */
const PURGES = "purges/";
/** KEEP_MS is how long a published purge stays: long enough for a watch that broke to find it when it opens again; older ones are removed by any node. */
const KEEP_MS = 60_000;

/** Shared is what a purge says of the other nodes: told (published), or not told and why. */
export type Shared = { readonly shared: true } | { readonly shared: false; readonly error: string };

type Published = { readonly key: string; readonly at: number; readonly node: string; readonly filter: PurgeFilter };

function parse(key: string): Published | undefined {
  const [, head, body] = key.split("/");
  const [at, node] = (head ?? "").split("-");
  try {
    const filter = JSON.parse(Buffer.from(body ?? "", "base64url").toString("utf8")) as PurgeFilter;
    const ok = typeof filter === "object" && filter !== null && ("all" in filter || "url" in filter || "host" in filter || "tag" in filter);
    return ok && node && Number.isFinite(Number(at)) ? { key, at: Number(at), node, filter } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * SharedPurges publishes this node's purges and applies the other nodes'. It follows the storage the certificate manager last made live (use); with storage
 * that is not shared (certs_dir) it does nothing. A purge is applied once per node, however often its key is reported.
 */
export class SharedPurges {
  private readonly node = randomBytes(6).toString("hex");
  private seq = 0;
  private storage: Storage | undefined;
  private unwatch: (() => void) | undefined;
  /** applied are the keys of purges applied here (or published from here), with their time, forgotten after 2 × KEEP_MS. */
  private readonly applied = new Map<string, number>();

  /** apply purges this node's cache (every worker's) and returns how many responses went. */
  constructor(private readonly apply: (filter: PurgeFilter) => Promise<number> | number) {}

  /** use follows the purges published in storage: the shared storage of the live config, or undefined when it has none. */
  use(storage: Storage | undefined): void {
    const shared = storage?.watch ? storage : undefined;
    if (shared === this.storage) return;
    this.unwatch?.();
    this.unwatch = undefined;
    this.storage = shared;
    if (!shared) return;
    this.unwatch = shared.watch!(PURGES, (keys) => {
      // An empty list: the watch was broken and is open again; what it missed is looked for.
      if (keys.length === 0) void this.scan(shared, true);
      else for (const k of keys) void this.received(k, false);
    });
    // Watched first, then listed: what was published before this node followed is not applied (its cache is newer than those purges); old keys are swept.
    void this.scan(shared, false);
  }

  /** share publishes a purge this node's admin listener made, for the other nodes; undefined when the storage is not shared. */
  async share(filter: PurgeFilter): Promise<Shared | undefined> {
    const storage = this.storage;
    if (!storage) return undefined;
    const at = Date.now();
    const key = `${PURGES}${at}-${this.node}-${++this.seq}/${Buffer.from(JSON.stringify(filter)).toString("base64url")}`;
    this.remember(key);
    try {
      await storage.store(key, "");
      // Gone after KEEP_MS; if this node is not there to remove it, the next node that scans does.
      setTimeout(() => void storage.delete(key).catch(() => undefined), KEEP_MS).unref?.();
      return { shared: true };
    } catch (e) {
      const error = String((e as Error).message ?? e);
      log.warn("cache purge not passed on to the other nodes", { filter, error });
      return { shared: false, error };
    }
  }

  /** stop stops following. */
  stop(): void {
    this.use(undefined);
  }

  /** remember records a purge as applied here (by this node's clock: another node's may differ), forgetting those older than 2 × KEEP_MS. */
  private remember(key: string): void {
    const now = Date.now();
    if (this.applied.size >= 64) for (const [k, t] of this.applied) if (now - t > 2 * KEEP_MS) this.applied.delete(k);
    this.applied.set(key, now);
  }

  /**
   * received applies a published purge once. One the watch reports live is applied whatever its time says (another node's clock may be behind); one found
   * by a scan only when it is younger than KEEP_MS. A purge that fails here (a worker that did not answer) is tried again after a second, twice at most.
   */
  private async received(key: string, scanned: boolean, tries = 3): Promise<void> {
    const p = parse(key);
    if (!p || this.applied.has(key)) return;
    if (scanned && Date.now() - p.at > KEEP_MS) return;
    this.remember(key);
    try {
      const purged = await this.apply(p.filter);
      log.info("cache purge from another node applied", { filter: p.filter, purged, from_node: p.node });
    } catch (e) {
      this.applied.delete(key);
      const again = tries > 1;
      log.warn("cache purge from another node failed here", { filter: p.filter, error: String((e as Error).message ?? e), tried_again: again });
      if (again) setTimeout(() => void this.received(key, scanned, tries - 1), 1000).unref?.();
    }
  }

  /**
   * scan lists what is published: young purges are applied (when `apply`) or marked as seen, old ones removed. A list that fails is tried again (1 s,
   * doubling) until KEEP_MS has passed: the watch that asked for it is open already and will not ask again.
   */
  private async scan(storage: Storage, apply: boolean, pause = 1000, until = Date.now() + KEEP_MS): Promise<void> {
    let keys: string[];
    try {
      keys = await storage.list(PURGES);
    } catch {
      if (this.storage === storage && Date.now() + pause < until) setTimeout(() => void this.scan(storage, apply, pause * 2, until), pause).unref?.();
      return;
    }
    const now = Date.now();
    for (const key of keys) {
      const p = parse(key);
      if (!p || now - p.at > KEEP_MS) await storage.delete(key).catch(() => undefined);
      else if (apply) await this.received(key, true);
      else this.remember(key);
    }
  }
}
