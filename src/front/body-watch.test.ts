import { expect, test } from "bun:test";
import { BODY_PACE_GRACE_MS, BodyPace, MIN_BODY_RATE } from "./body-watch.ts";

test("any pace within the grace; after it, an average under the minimum is too slow", () => {
  const p = new BodyPace(0);
  expect(p.tooSlow(BODY_PACE_GRACE_MS, 0)).toBe(false);
  expect(p.tooSlow(BODY_PACE_GRACE_MS + 2000, 2 * MIN_BODY_RATE)).toBe(false);
  expect(p.tooSlow(BODY_PACE_GRACE_MS + 2000, 2 * MIN_BODY_RATE - 1)).toBe(true);
});

test("time paused by back-pressure does not count against the client", () => {
  const p = new BodyPace(0);
  p.pause(1000);
  p.pause(2000);
  p.resume(61_000);
  p.resume(62_000);
  // 62 s since the start, 60 of them paused by us: still within the grace.
  expect(p.tooSlow(62_000, 0)).toBe(false);
  expect(p.tooSlow(60_000 + BODY_PACE_GRACE_MS + 2000, 2 * MIN_BODY_RATE - 1)).toBe(true);
});
