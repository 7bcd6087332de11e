/** Certificate storage: a small key-value interface with locks, so that a later backend can be shared by several gateway nodes (FileStorage keeps it in certs/). */
import type { GlobalConfig } from "../config/types.ts";

/**
 * LockOptions bound one wait for a lock: timeoutMs (default 120 s) before giving up, and staleMs to override after how long without a refresh another holder's
 * lock counts as abandoned.
 */
export type LockOptions = { readonly timeoutMs?: number; readonly staleMs?: number };

/** Release gives a held lock back and stops its refresh; it leaves alone a lock that another holder has taken over meanwhile. */
export type Release = () => Promise<void>;

/** Storage holds certificates, keys and ACME accounts under slash-separated keys ("sites/shop/key.pem"). */
export interface Storage {
  /** load returns the value or undefined when the key does not exist; other failures throw. */
  load(key: string): Promise<string | undefined>;
  /** store replaces the value atomically: a reader sees the old value or the new one. secret values are readable by the owner only. */
  store(key: string, value: string, opts?: { secret?: boolean }): Promise<void>;
  /**
   * lock waits for the named lock (at most timeoutMs) and returns its release; while held, the lock is refreshed in the background, so it lasts however long
   * its holder works, and one whose holder died (no refresh for the stale age) is taken over.
   */
  lock(name: string, opts?: LockOptions): Promise<Release>;
  /** delete removes a key (gone already: nothing to do); only for what is short-lived by nature (challenge tokens), never because something failed. */
  delete(key: string): Promise<void>;
  /** list gives every key stored under the key prefix `under` ("" for all), locks and half-written files left out, sorted (`gatehouse storage copy`). */
  list(under?: string): Promise<string[]>;
  /** watch (where the backend can) calls onChange with keys changed under `under` by anyone, until the returned stop; best effort, alongside re-reads. */
  watch?(under: string, onChange: (keys: string[]) => void): () => void;
  /** onReachable (shared storage only) calls cb each time the storage answers again after it could not be reached, until the returned stop. */
  onReachable?(cb: () => void): () => void;
  /** describe names where a key lives, for log lines. */
  describe(key: string): string;
}

/** StorageFactory opens the storage a config names; the certificate manager calls it again when a reload changes it (storageKey). */
export type StorageFactory = (g: GlobalConfig) => Storage;
