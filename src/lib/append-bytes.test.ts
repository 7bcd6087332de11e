import { expect, test } from "bun:test";
import { appendBytes } from "./append-bytes.ts";

test("appends grow one buffer of the caller's own and never write into a buffer handed over", () => {
  const handed = new Uint8Array([1, 2, 3, 9, 9]).subarray(0, 3);
  let r = appendBytes(new Uint8Array(0), false, handed);
  expect([r.bytes === handed, r.owned]).toEqual([true, false]);
  r = appendBytes(r.bytes, r.owned, new Uint8Array([4]));
  expect([[...r.bytes], r.owned, [...handed.subarray(0, 3)], handed.buffer.byteLength]).toEqual([[1, 2, 3, 4], true, [1, 2, 3], 5]);
  expect(new Uint8Array(handed.buffer)[3]).toBe(9);
  const own = r.bytes.buffer;
  r = appendBytes(r.bytes, r.owned, new Uint8Array([5, 6]));
  expect([[...r.bytes], r.bytes.buffer === own]).toEqual([[1, 2, 3, 4, 5, 6], true]);
});
