/** The contract every Storage implementation passes: values, missing keys, and locks that exclude, wait, time out, survive a long holder and are taken over from a dead one. */
import { afterAll, describe, expect, test } from "bun:test";
import type { Storage } from "./storage.ts";

/** CONTRACT_LOCK_TIMING is the lock timing a harness must give its clients: refresh every refreshMs, stale after staleMs without one. */
export const CONTRACT_LOCK_TIMING = { refreshMs: 50, staleMs: 300 } as const;

/** StorageHarness is one backend under test, its clients opened with CONTRACT_LOCK_TIMING. */
export type StorageHarness = {
  /** open returns a new client of the backend (as another gateway node would hold). */
  open(): Storage;
  /** holdElsewhere takes the lock in another process, which keeps it fresh until die() kills it without releasing. */
  holdElsewhere(name: string): Promise<{ die(): Promise<void> }>;
  /** cleanup removes the backend. */
  cleanup(): Promise<void>;
};

/** storageContract runs the Storage suite against one implementation; make is called once. */
export function storageContract(name: string, make: () => Promise<StorageHarness>): void {
  const { refreshMs, staleMs } = CONTRACT_LOCK_TIMING;
  let h: StorageHarness | undefined;
  const harness = async (): Promise<StorageHarness> => (h ??= await make());
  afterAll(async () => h?.cleanup());

  describe(`Storage contract: ${name}`, () => {
    test("load returns undefined for a missing key and what store wrote, the last value winning; other clients see it", async () => {
      const a = (await harness()).open();
      const b = (await harness()).open();
      expect(await a.load("contract/missing.pem")).toBeUndefined();
      await a.store("contract/x/cert.pem", "one");
      await a.store("contract/x/key.pem", "secret", { secret: true });
      await a.store("contract/x/cert.pem", "two");
      expect(await b.load("contract/x/cert.pem")).toBe("two");
      expect(await b.load("contract/x/key.pem")).toBe("secret");
      expect(a.describe("contract/x/cert.pem")).toContain("contract/x/cert.pem");
    });

    test("delete removes a key for every client, and a missing one is no error", async () => {
      const a = (await harness()).open();
      await a.store("contract/gone.txt", "x");
      await a.delete("contract/gone.txt");
      expect(await (await harness()).open().load("contract/gone.txt")).toBeUndefined();
      await a.delete("contract/never.txt");
    });

    test("list gives the keys under a prefix, sorted, without locks held meanwhile", async () => {
      const a = (await harness()).open();
      await a.store("listed/b/cert.pem", "1");
      await a.store("listed/a/key.pem", "2", { secret: true });
      await a.store("listedx/other.pem", "3");
      const release = await a.lock("listed-lock");
      try {
        expect(await a.list("listed/")).toEqual(["listed/a/key.pem", "listed/b/cert.pem"]);
        const all = await (await harness()).open().list();
        expect(all).toContain("listedx/other.pem");
        expect(all.some((k) => k.startsWith("locks/"))).toBe(false);
      } finally {
        await release();
      }
    });

    test("a lock excludes: the second taker waits until the first releases, a wait past its timeout fails, other names are free", async () => {
      const a = (await harness()).open();
      const b = (await harness()).open();
      const order: string[] = [];
      const releaseA = await a.lock("contract-excl");
      const second = b.lock("contract-excl", { timeoutMs: 5000 }).then((r) => {
        order.push("b locked");
        return r;
      });
      await expect(b.lock("contract-excl", { timeoutMs: 100 })).rejects.toThrow();
      const other = await b.lock("contract-other", { timeoutMs: 100 });
      await other();
      await Bun.sleep(150);
      order.push("a releases");
      await releaseA();
      const releaseB = await second;
      expect(order).toEqual(["a releases", "b locked"]);
      await releaseB();
    });

    test("a holder that works longer than the stale age keeps its lock: it is refreshed while held", async () => {
      const a = (await harness()).open();
      const b = (await harness()).open();
      const releaseA = await a.lock("contract-long");
      const t0 = performance.now();
      await expect(b.lock("contract-long", { timeoutMs: 4 * staleMs })).rejects.toThrow();
      expect(performance.now() - t0).toBeGreaterThanOrEqual(4 * staleMs);
      await releaseA();
      const releaseB = await b.lock("contract-long", { timeoutMs: 1000 });
      await releaseB();
    });

    test("a lock held by a live process is not taken over however long it holds it; once that process dies it is, after about the stale age", async () => {
      const held = await (await harness()).holdElsewhere("contract-dead");
      const b = (await harness()).open();
      await expect(b.lock("contract-dead", { timeoutMs: 3 * staleMs })).rejects.toThrow();
      await held.die();
      const t0 = performance.now();
      const release = await b.lock("contract-dead", { timeoutMs: 10 * staleMs });
      // Not at once: the last refresh was at most refreshMs before the death, and the lock counts as abandoned only staleMs after it.
      expect(performance.now() - t0).toBeGreaterThanOrEqual(staleMs - refreshMs - 50);
      await release();
    });

    test("an old release handle (its lock released, then taken by another) leaves the current holder's lock alone", async () => {
      const a = (await harness()).open();
      const b = (await harness()).open();
      const releaseB = await b.lock("contract-old");
      await releaseB();
      const releaseA = await a.lock("contract-old", { timeoutMs: 1000 });
      await releaseB();
      await expect(b.lock("contract-old", { timeoutMs: 2 * staleMs })).rejects.toThrow();
      await releaseA();
      const again = await b.lock("contract-old", { timeoutMs: 1000 });
      await again();
    });
  });
}
