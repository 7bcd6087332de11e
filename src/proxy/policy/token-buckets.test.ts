import { expect, test } from "bun:test";
import type { RateLimit } from "../../config/policy-types.ts";
import { acquireBuckets } from "./bucket-registry.ts";
import { Buckets } from "./token-buckets.ts";

const limit = (over: Partial<RateLimit> = {}): RateLimit => ({
  text: "client",
  key: { kind: "client" },
  perSecond: 2,
  rate: "2/s",
  window: 1,
  burst: 3,
  maxKeys: 100,
  ...over,
});

test("a bucket starts full, refills at the rate up to its burst, and says how long until its next token", () => {
  const b = new Buckets(limit());
  const a = b.bucket("a", 1000);
  expect(a.tokens).toBe(3);
  a.tokens = 0;
  expect(b.bucket("a", 1250).tokens).toBeCloseTo(0.5);
  expect(b.waitSeconds(b.bucket("a", 1250))).toBe(1);
  expect(b.bucket("a", 60_000).tokens).toBe(3);
});

test("the keys tracked stay within max_keys whatever the key space; the least recently used goes first", () => {
  const b = new Buckets(limit({ maxKeys: 3 }));
  for (const k of ["a", "b", "c"]) b.bucket(k, 0).tokens = 0;
  b.bucket("a", 0); // a is now the most recent; b the least
  b.bucket("d", 0);
  expect(b.size).toBe(3);
  // b was dropped: it comes back full; a and c kept their (empty) buckets.
  expect(b.bucket("a", 0).tokens).toBe(0);
  expect(b.bucket("b", 0).tokens).toBe(3);
  for (let i = 0; i < 100_000; i++) b.bucket(`k${i}`, 0);
  expect(b.size).toBe(3);
});

test("generations with the same limit share its buckets; the last release drops them", () => {
  const one = acquireBuckets("r", limit(), 0);
  const two = acquireBuckets("r", limit(), 0);
  expect(two.buckets).toBe(one.buckets);
  // A changed limit is a new set of buckets.
  const changed = acquireBuckets("r", limit({ burst: 9 }), 0);
  expect(changed.buckets).not.toBe(one.buckets);
  one.release();
  one.release(); // twice is once
  const three = acquireBuckets("r", limit(), 0);
  expect(three.buckets).toBe(two.buckets);
  two.release();
  three.release();
  changed.release();
  // Nobody holds them now: a new generation starts with fresh buckets.
  const fresh = acquireBuckets("r", limit(), 0);
  expect(fresh.buckets).not.toBe(one.buckets);
  fresh.release();
});
