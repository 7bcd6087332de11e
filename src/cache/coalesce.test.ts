import { expect, test } from "bun:test";
import { Coalescer } from "./coalesce.ts";

test("one leader per key; followers wake when it is done; the next miss leads again", async () => {
  const c = new Coalescer();
  const a = c.join("k", 1000);
  const b = c.join("k", 1000);
  const other = c.join("j", 1000);
  expect(a.leader).toBe(true);
  expect(b.leader).toBe(false);
  expect(other.leader).toBe(true);
  let woke = false;
  if (!b.leader) void b.wait.then(() => (woke = true));
  await Bun.sleep(10);
  expect(woke).toBe(false);
  if (a.leader) a.done();
  await Bun.sleep(0);
  expect(woke).toBe(true);
  expect(c.join("k", 1000).leader).toBe(true);
});

test("a follower stops waiting after maxWaitMs even if the leader never finishes", async () => {
  const c = new Coalescer();
  c.join("k", 1000);
  const f = c.join("k", 50);
  const t0 = performance.now();
  if (!f.leader) await f.wait;
  expect(performance.now() - t0).toBeLessThan(500);
});
