import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileStorage } from "./file-storage.ts";

const root = mkdtempSync(join(tmpdir(), "gatehouse-storage-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

test("store writes atomically, secrets 0600, and load returns undefined for a missing key", async () => {
  const st = new FileStorage(root);
  await st.store("sites/a/key.pem", "secret", { secret: true });
  await st.store("sites/a/cert.pem", "public");
  expect(await st.load("sites/a/key.pem")).toBe("secret");
  expect(statSync(join(root, "sites/a/key.pem")).mode & 0o777).toBe(0o600);
  expect(statSync(join(root, "sites/a/cert.pem")).mode & 0o777).toBe(0o644);
  expect(await st.load("sites/b/cert.pem")).toBeUndefined();
  expect(readdirSync(join(root, "sites/a")).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  await expect(st.store("../outside", "x")).rejects.toThrow("leaves");
});

test("lock serialises holders; a release after a stale steal leaves the new holder's lock alone", async () => {
  const st = new FileStorage(root);
  const order: string[] = [];
  const release1 = await st.lock("x");
  const second = st.lock("x", { timeoutMs: 5000 }).then((r) => {
    order.push("second");
    return r;
  });
  await Bun.sleep(250);
  order.push("first-done");
  await release1();
  const release2 = await second;
  expect(order).toEqual(["first-done", "second"]);
  await expect(st.lock("x", { timeoutMs: 200 })).rejects.toThrow("lock x is held");

  // A holder that stops beating (a refresh interval longer than the test) looks abandoned: a third waiter takes the lock over
  // after the stale age; the old holder's release must not free the new holder's lock.
  const frozen = new FileStorage(root, { lockRefreshMs: 60_000 });
  await release2();
  const releaseFrozen = await frozen.lock("x", { timeoutMs: 200 });
  const release3 = await st.lock("x", { timeoutMs: 2000, staleMs: 300 });
  await releaseFrozen();
  await expect(st.lock("x", { timeoutMs: 200 })).rejects.toThrow("lock x is held");
  await release3();
  const release4 = await st.lock("x", { timeoutMs: 200 });
  await release4();
});

test("a lock directory left by a dead process without an owner file is taken once stale", async () => {
  const st = new FileStorage(root);
  mkdirSync(join(root, "locks/y"), { recursive: true });
  writeFileSync(join(root, "locks/y/junk"), "");
  const release = await st.lock("y", { timeoutMs: 1000, staleMs: 200 });
  await release();
});

test("a lock is judged by its holder's beat on the waiter's own clock, not by file times: an old mtime (another node's clock, NFS caching) does not make it stale", async () => {
  const holder = new FileStorage(root, { lockRefreshMs: 50 });
  const release = await holder.lock("z");
  const old = new Date(Date.now() - 3600_000);
  utimesSync(join(root, "locks/z"), old, old);
  await expect(new FileStorage(root).lock("z", { timeoutMs: 600, staleMs: 300 })).rejects.toThrow("lock z is held");
  await release();
});

test("a take-over that finds the lock changed hands since it was judged gives it back to its new holder", async () => {
  const st = new FileStorage(root, { lockRefreshMs: 50 });
  const release = await st.lock("w");
  const dir = join(root, "locks/w");
  // What a waiter saw before another waiter took the lock over and locked anew: not what is there now.
  (st as unknown as { takeOver(n: string, d: string, a: string, j: string): void }).takeOver("w", dir, `${dir}.stale-test`, "an older owner\n3");
  expect(readdirSync(join(root, "locks")).filter((f) => f.startsWith("w"))).toEqual(["w"]);
  await expect(new FileStorage(root).lock("w", { timeoutMs: 200, staleMs: 1000 })).rejects.toThrow("lock w is held");
  await release();
});
