/** Storage shared through etcd with a local copy in certs_dir: etcd is the truth while it answers; when it does not, the node serves what it copied last. */
import { log } from "../observability/log.ts";
import { storageUp } from "../observability/gateway-metrics.ts";
import type { LockOptions, Release, Storage } from "./storage.ts";

/**
 * MirroredStorage reads and writes the shared storage and keeps every value it saw in the local one. A read that the shared storage cannot answer is
 * answered from the local copy (so a node restarted while etcd is down still serves its certificates); writes and locks need the shared storage and throw
 * without it (a renewal is retried later). Nothing is ever deleted, here or there, because the shared storage failed.
 */
export class MirroredStorage implements Storage {
  private down = false;
  private readonly reachable = new Set<() => void>();

  /** shared is the storage shared by the nodes (what has no need of a local copy uses it alone); label names it in log lines (never a password). */
  constructor(
    readonly shared: Storage,
    private readonly local: Storage,
    private readonly label: string,
  ) {
    storageUp.labels().value = 1;
  }

  private up(): void {
    storageUp.labels().value = 1;
    if (!this.down) return;
    this.down = false;
    log.info("storage reachable again", { storage: this.label });
    for (const cb of this.reachable) cb();
  }

  /** onReachable calls cb each time the shared storage answers again after a failure (renewals that waited for it resume). */
  onReachable(cb: () => void): () => void {
    this.reachable.add(cb);
    return () => this.reachable.delete(cb);
  }

  private failed(e: unknown, what: string): void {
    if (!this.down)
      log.error("storage unreachable; serving the local copy, renewals wait for it", {
        storage: this.label,
        during: what,
        error: String((e as Error)?.message ?? e),
      });
    this.down = true;
    storageUp.labels().value = 0;
  }

  async load(key: string): Promise<string | undefined> {
    let value: string | undefined;
    try {
      value = await this.shared.load(key);
    } catch (e) {
      this.failed(e, `load ${key}`);
      return this.local.load(key);
    }
    this.up();
    // Copied as a secret: the local copy of anything (a private key among it) is readable by this user only.
    if (value !== undefined && (await this.local.load(key).catch(() => undefined)) !== value) {
      await this.local.store(key, value, { secret: true }).catch((e) => log.warn("cannot keep the local copy", { key, error: String(e) }));
    }
    return value;
  }

  async store(key: string, value: string, opts?: { secret?: boolean }): Promise<void> {
    try {
      await this.shared.store(key, value, opts);
    } catch (e) {
      this.failed(e, `store ${key}`);
      throw e;
    }
    this.up();
    await this.local.store(key, value, { secret: true });
  }

  async lock(name: string, opts?: LockOptions): Promise<Release> {
    try {
      const release = await this.shared.lock(name, opts);
      this.up();
      return release;
    } catch (e) {
      this.failed(e, `lock ${name}`);
      throw e;
    }
  }

  /** delete removes the key from the shared storage (throwing when it cannot: the key stays there) and from the local copy. */
  async delete(key: string): Promise<void> {
    await this.shared.delete(key);
    await this.local.delete(key);
  }

  /** watch watches the shared storage. */
  watch(under: string, onChange: (keys: string[]) => void): () => void {
    return this.shared.watch?.(under, onChange) ?? (() => undefined);
  }

  /** list lists the shared storage (the local copy is no source of truth for what exists). */
  list(under?: string): Promise<string[]> {
    return this.shared.list(under);
  }

  describe(key: string): string {
    return this.shared.describe(key);
  }
}
