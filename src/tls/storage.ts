/** Certificate storage: a small key-value interface with locks, so that a later backend can be shared by several gateway nodes; FileStorage keeps it in certs/. */
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, normalize, sep } from "node:path";
import { writeFileAtomic } from "../lib/atomic-write.ts";

/** Storage holds certificates, keys and ACME accounts under slash-separated keys ("sites/shop/key.pem"). */
export interface Storage {
  /** load returns the value or undefined when the key does not exist; other failures throw. */
  load(key: string): Promise<string | undefined>;
  /** store replaces the value atomically: a reader sees the old value or the new one. secret values are readable by the owner only. */
  store(key: string, value: string, opts?: { secret?: boolean }): Promise<void>;
  /** lock waits for the named lock (at most timeoutMs) and returns its release; a lock left by a dead holder expires after staleMs. */
  lock(name: string, opts?: { timeoutMs?: number; staleMs?: number }): Promise<() => Promise<void>>;
  /** describe names where a key lives, for log lines. */
  describe(key: string): string;
}

/** FileStorage keeps each key as a file under root; writes are temp file, fsync, rename, fsync of the directory; secrets are 0600 and directories 0700. */
export class FileStorage implements Storage {
  constructor(readonly root: string) {}

  private path(key: string): string {
    const p = normalize(join(this.root, key));
    if (!p.startsWith(this.root + sep)) throw new Error(`storage key ${JSON.stringify(key)} leaves ${this.root}`);
    return p;
  }

  describe(key: string): string {
    return this.path(key);
  }

  async load(key: string): Promise<string | undefined> {
    try {
      return readFileSync(this.path(key), "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
  }

  async store(key: string, value: string, opts: { secret?: boolean } = {}): Promise<void> {
    const p = this.path(key);
    mkdirSync(dirname(p), { recursive: true, mode: 0o700 });
    writeFileAtomic(p, value, opts.secret ? 0o600 : 0o644);
  }

  async lock(name: string, opts: { timeoutMs?: number; staleMs?: number } = {}): Promise<() => Promise<void>> {
    const timeoutMs = opts.timeoutMs ?? 120_000;
    const staleMs = opts.staleMs ?? 10 * 60_000;
    const dir = this.path(`locks/${name}`);
    mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
    const deadline = Date.now() + timeoutMs;
    const token = `${process.pid}-${crypto.randomUUID()}`;
    const owner = join(dir, "owner");
    for (;;) {
      try {
        // mkdir is atomic: exactly one process creates the directory.
        mkdirSync(dir, { mode: 0o700 });
        writeFileSync(owner, JSON.stringify({ token, pid: process.pid, time: new Date().toISOString() }));
        return async () => {
          // Release only our own lock: after a stale steal it may belong to someone else.
          if (readFileSync(owner, "utf8").includes(`"${token}"`)) rmSync(dir, { recursive: true, force: true });
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      let age = 0;
      try {
        age = Date.now() - statSync(dir).mtimeMs;
      } catch {
        continue; // released meanwhile
      }
      if (age > staleMs) {
        // Renaming is atomic too: of several waiters that found it stale, one takes it away.
        const aside = `${dir}.stale-${token}`;
        try {
          renameSync(dir, aside);
          // Between our look and the rename another waiter may have stolen it and locked anew: give a fresh lock back.
          if (Date.now() - statSync(aside).mtimeMs <= staleMs) renameSync(aside, dir);
          else rmSync(aside, { recursive: true, force: true });
        } catch {
          // another waiter took it first
        }
        continue;
      }
      if (Date.now() > deadline) throw new Error(`lock ${name} is held (${dir}); another gatehouse may be obtaining this certificate`);
      await Bun.sleep(100);
    }
  }
}
