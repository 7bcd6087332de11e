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

  // Make the held lock look abandoned: a third waiter steals it; the old holder's release must not free the thief's lock.
  const old = new Date(Date.now() - 3600_000);
  utimesSync(join(root, "locks/x"), old, old);
  const release3 = await st.lock("x", { timeoutMs: 2000, staleMs: 60_000 });
  await release2();
  await expect(st.lock("x", { timeoutMs: 200 })).rejects.toThrow("lock x is held");
  await release3();
  const release4 = await st.lock("x", { timeoutMs: 200 });
  await release4();
});

test("a lock directory left by a dead process without an owner file is taken once stale", async () => {
  const st = new FileStorage(root);
  mkdirSync(join(root, "locks/y"), { recursive: true });
  writeFileSync(join(root, "locks/y/junk"), "");
  const old = new Date(Date.now() - 3600_000);
  utimesSync(join(root, "locks/y"), old, old);
  const release = await st.lock("y", { timeoutMs: 1000, staleMs: 60_000 });
  await release();
});
