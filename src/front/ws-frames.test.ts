import { expect, test } from "bun:test";
import { closeFrame, FrameTracker } from "./ws-frames.ts";

/** frame builds a WebSocket frame with a payload of n bytes, masked or not, in the 7-, 16- or 64-bit length form that n needs. */
function frame(n: number, masked: boolean): Uint8Array {
  const len = n < 126 ? [n] : n < 65536 ? [126, n >> 8, n & 255] : [127, 0, 0, 0, 0, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255];
  const head = [0x82, (masked ? 0x80 : 0) | len[0]!, ...len.slice(1), ...(masked ? [1, 2, 3, 4] : [])];
  const out = new Uint8Array(head.length + n);
  out.set(head);
  return out;
}

test("boundaries are found after whole frames of every length form, masked or not, however the bytes are cut", () => {
  const frames = [frame(5, false), frame(300, true), frame(70_000, false), frame(0, true)];
  const all = Buffer.concat(frames);
  const ends = new Set<number>();
  let at = 0;
  for (const f of frames) ends.add((at += f.byteLength));
  for (const step of [1, 7, 4096]) {
    const t = new FrameTracker();
    for (let i = 0; i < all.byteLength; i += step) {
      const piece = all.subarray(i, Math.min(i + step, all.byteLength));
      expect(t.feed(piece)).toBe(true);
      const end = i + piece.byteLength;
      // At a cut that ends a frame the tracker is at a boundary; inside one (header or payload) it is not.
      if (ends.has(end)) expect(t.atBoundary).toBe(true);
      else if (step === 1) expect(t.atBoundary).toBe(false);
    }
  }
});

test("a 64-bit length past 2^53 is no WebSocket; close frames carry their code, masked from a client", () => {
  const t = new FrameTracker();
  expect(t.feed(Uint8Array.of(0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 1))).toBe(false);
  expect([...closeFrame(1001, false)]).toEqual([0x88, 2, 0x03, 0xe9]);
  const m = closeFrame(1001, true);
  expect([m[0], m[1]]).toEqual([0x88, 0x82]);
  expect([m[6]! ^ m[2]!, m[7]! ^ m[3]!]).toEqual([0x03, 0xe9]);
});
