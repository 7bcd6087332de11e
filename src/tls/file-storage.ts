/** FileStorage: certificate storage as files under certs/, with locks that are directories kept fresh by their holder. */
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { dirname, join, normalize, sep } from "node:path";
import { writeFileAtomic } from "../lib/atomic-write.ts";
import { log } from "../observability/log.ts";
import type { LockOptions, Release, Storage } from "./storage.ts";

/** LOCK_REFRESH_MS is how often a holder touches its lock (certmagic does every 5 s). */
export const LOCK_REFRESH_MS = 5_000;
/**
 * LOCK_STALE_MS is how long a lock may go without a refresh before a waiter takes it over: four missed refreshes, so a slow disk or a busy event loop is not
 * taken for a dead holder.
 */
export const LOCK_STALE_MS = 4 * LOCK_REFRESH_MS;
const LOCK_TIMEOUT_MS = 120_000;
const LOCK_POLL_MS = 100;

/**
 * FileStorageOptions tune the locks (tests shorten them): refreshMs between a holder's touches, staleMs without one before a lock counts as abandoned, pollMs
 * between a waiter's looks.
 */
export type FileStorageOptions = { readonly lockRefreshMs?: number; readonly lockStaleMs?: number; readonly lockPollMs?: number };

/** FileStorage keeps each key as a file under root; writes are temp file, fsync, rename, fsync of the directory; secrets are 0600 and directories 0700. */
export class FileStorage implements Storage {
  private readonly refreshMs: number;
  private readonly staleMs: number;
  private readonly pollMs: number;

  constructor(
    readonly root: string,
    opts: FileStorageOptions = {},
  ) {
    this.refreshMs = opts.lockRefreshMs ?? LOCK_REFRESH_MS;
    this.staleMs = opts.lockStaleMs ?? LOCK_STALE_MS;
    this.pollMs = opts.lockPollMs ?? LOCK_POLL_MS;
  }

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

  /** lock takes locks/NAME (a directory: mkdir is atomic), touches it every refreshMs while held, and takes over one untouched for staleMs. */
  async lock(name: string, opts: LockOptions = {}): Promise<Release> {
    const timeoutMs = opts.timeoutMs ?? LOCK_TIMEOUT_MS;
    const staleMs = opts.staleMs ?? this.staleMs;
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
        return this.held(name, dir, owner, token);
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
        // Its holder stopped refreshing it: dead, or frozen for several intervals. Renaming is atomic: of several waiters that found it stale, one takes it
        // away.
        const aside = `${dir}.stale-${token}`;
        try {
          renameSync(dir, aside);
          // Between our look and the rename another waiter may have taken it over and locked anew (or its holder refreshed it): give a fresh lock back.
          if (Date.now() - statSync(aside).mtimeMs <= staleMs) renameSync(aside, dir);
          else rmSync(aside, { recursive: true, force: true });
        } catch {
          // another waiter took it first
        }
        continue;
      }
      if (Date.now() > deadline) throw new Error(`lock ${name} is held (${dir}); another gatehouse may be obtaining this certificate`);
      await Bun.sleep(this.pollMs);
    }
  }

  /** held starts the refresh of a lock just taken and returns its release. */
  private held(name: string, dir: string, owner: string, token: string): Release {
    const ours = (): boolean | undefined => {
      try {
        return readFileSync(owner, "utf8").includes(`"${token}"`);
      } catch {
        return undefined; // gone, or set aside by a waiter for a moment
      }
    };
    const timer = setInterval(() => {
      try {
        const mine = ours();
        if (mine === true) {
          const now = new Date();
          utimesSync(dir, now, now);
        } else if (mine === false) {
          clearInterval(timer);
          log.warn("storage lock was taken over while held; its holder went too long without refreshing it", { lock: name, path: dir });
        }
      } catch (e) {
        log.warn("cannot refresh a storage lock; it is tried again", { lock: name, path: dir, error: String((e as Error).message ?? e) });
      }
    }, this.refreshMs);
    timer.unref?.();
    return async () => {
      clearInterval(timer);
      // Release only our own lock: after a take-over it belongs to someone else.
      if (ours()) rmSync(dir, { recursive: true, force: true });
    };
  }
}
