/** FileStorage: certificate storage as files under certs/, with locks that are directories in which their holder beats. */
import { type Dirent, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, normalize, sep } from "node:path";
import { writeFileAtomic } from "../lib/atomic-write.ts";
import { log } from "../observability/log.ts";
import type { LockOptions, Release, Storage } from "./storage.ts";

/** LOCK_REFRESH_MS is how often a holder beats in its lock (certmagic refreshes every 5 s). */
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

  async delete(key: string): Promise<void> {
    rmSync(this.path(key), { force: true });
  }

  async list(under = ""): Promise<string[]> {
    const out: string[] = [];
    const walk = (rel: string) => {
      let entries: Dirent[];
      try {
        entries = readdirSync(join(this.root, rel), { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
        throw e;
      }
      for (const e of entries) {
        const key = rel === "" ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) {
          if (key !== "locks") walk(key);
        } else if (e.isFile() && !(e.name.startsWith(".") && e.name.endsWith(".tmp")) && key.startsWith(under)) out.push(key);
      }
    };
    walk("");
    return out.sort();
  }

  async store(key: string, value: string, opts: { secret?: boolean } = {}): Promise<void> {
    const p = this.path(key);
    mkdirSync(dirname(p), { recursive: true, mode: 0o700 });
    writeFileAtomic(p, value, opts.secret ? 0o600 : 0o644);
  }

  /**
   * lock takes locks/NAME (a directory: mkdir is atomic), beats in it every refreshMs while held, and takes over a lock whose beat has not moved for staleMs.
   * Staleness is timed on the waiter's own clock from what it reads in the lock, never from file times: nodes that share certs/ over NFS may disagree about the
   * time, and NFS may cache file times.
   */
  async lock(name: string, opts: LockOptions = {}): Promise<Release> {
    const timeoutMs = opts.timeoutMs ?? LOCK_TIMEOUT_MS;
    const staleMs = opts.staleMs ?? this.staleMs;
    const dir = this.path(`locks/${name}`);
    mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
    const deadline = Date.now() + timeoutMs;
    const token = `${process.pid}-${crypto.randomUUID()}`;
    // What this waiter last saw in the lock, and when (its own clock) that last changed.
    let seen: string | undefined;
    let since = Number.NaN;
    for (;;) {
      try {
        // mkdir is atomic: exactly one process creates the directory.
        mkdirSync(dir, { mode: 0o700 });
        writeFileSync(join(dir, "owner"), JSON.stringify({ token, pid: process.pid, time: new Date().toISOString() }));
        writeFileSync(join(dir, `beat-${token}`), "0");
        return this.held(name, dir, token);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      const now = Date.now();
      const look = observe(dir);
      if (look !== seen || Number.isNaN(since)) {
        seen = look;
        since = now;
      } else if (now - since > staleMs) {
        // Its holder stopped beating: dead, or frozen for several intervals. Renaming is atomic: of several waiters that found it stale, one takes it away.
        this.takeOver(name, dir, `${dir}.stale-${token}`, seen);
        since = Number.NaN;
        continue;
      }
      if (now > deadline) throw new Error(`lock ${name} is held (${dir}); another gatehouse may be obtaining this certificate`);
      await Bun.sleep(this.pollMs);
    }
  }

  /** takeOver sets an abandoned lock aside and removes it; a lock that changed hands since the waiter judged it (taken over and locked anew) is given back. */
  private takeOver(name: string, dir: string, aside: string, judged: string | undefined): void {
    try {
      renameSync(dir, aside);
    } catch {
      return; // released, or another waiter took it first
    }
    if (observe(aside) === judged) {
      rmSync(aside, { recursive: true, force: true });
      return;
    }
    try {
      renameSync(aside, dir);
    } catch (e) {
      // A third taker locked in the meantime: the lock set aside cannot go back, and its holder will find it lost.
      log.warn("a storage lock taken over twice at once could not be given back; its holder loses it", {
        lock: name,
        path: dir,
        error: String((e as Error).message ?? e),
      });
      rmSync(aside, { recursive: true, force: true });
    }
  }

  /** held starts the beat of a lock just taken (a counter in a file of its own, written only while the lock's owner is this holder) and returns its release. */
  private held(name: string, dir: string, token: string): Release {
    const ours = (): boolean | undefined => {
      try {
        return readFileSync(join(dir, "owner"), "utf8").includes(`"${token}"`);
      } catch {
        return undefined; // gone, or set aside by a waiter for a moment
      }
    };
    let beat = 0;
    const timer = setInterval(() => {
      try {
        const mine = ours();
        if (mine === true) writeFileSync(join(dir, `beat-${token}`), String(++beat));
        else if (mine === false) {
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

/** observe reads what tells a lock's life: its owner and that owner's beat ("" parts when missing); it changes whenever the holder beats. */
function observe(dir: string): string {
  const read = (f: string): string => {
    try {
      return readFileSync(join(dir, f), "utf8");
    } catch {
      return "";
    }
  };
  const owner = read("owner");
  const token = /"token":"([^"]+)"/.exec(owner)?.[1];
  return `${owner}\n${token === undefined ? "" : read(`beat-${token}`)}`;
}
