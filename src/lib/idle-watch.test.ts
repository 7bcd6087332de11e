/** The shared idle sweep: each watched thing expires after its own limit, including one whose limit was made shorter, while many long-lived ones are not walked on every tick. */
import { expect, test } from "bun:test";
import { unwatch, type Watched, watch } from "./idle-watch.ts";

test("a short limit expires on time beside many long ones; a limit made shorter (and watched again) expires by its new deadline; unwatched never expires", async () => {
  const expired: string[] = [];
  const make = (name: string, limit: number): Watched => ({ last: performance.now(), limit, expire: () => expired.push(name) });
  const many = Array.from({ length: 9000 }, (_, i) => make(`long${i}`, 60_000));
  for (const w of many) watch(w);
  const short = make("short", 300);
  watch(short);
  const shortened = make("shortened", 60_000);
  watch(shortened);
  const gone = make("gone", 100);
  watch(gone);
  unwatch(gone);
  // Made shorter after the sweep learned its long deadline: given to watch again, as the front end does.
  await Bun.sleep(300);
  shortened.limit = 300;
  shortened.last = performance.now();
  watch(shortened);
  const deadline = Date.now() + 3000;
  while (expired.length < 2 && Date.now() < deadline) await Bun.sleep(20);
  expect(expired.sort()).toEqual(["short", "shortened"]);
  for (const w of many) unwatch(w);
  unwatch(shortened);
});
