import { expect, test } from "bun:test";
import { limitBody } from "./body.ts";
import { BufferBudget, bufferBody } from "./body-buffer.ts";

function source(parts: string[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (i < parts.length) c.enqueue(Buffer.from(parts[i++]!));
      else c.close();
    },
  });
}

const text = async (s: ReadableStream<Uint8Array>) => Buffer.from(await Bun.readableStreamToBytes(s)).toString();

test("a body within the limit comes back whole and holds the budget until released", async () => {
  const b = new BufferBudget(1000);
  const r = await bufferBody(limitBody(source(["ab", "cd"]), 1 << 20), 10, b);
  expect(r.kind).toBe("whole");
  if (r.kind === "whole") expect(Buffer.from(r.bytes).toString()).toBe("abcd");
  expect(b.held).toBe(4);
  r.release();
  r.release();
  expect(b.held).toBe(0);
});

test("a body past the limit, or past the budget's cap, streams on whole: what was read first, then the rest", async () => {
  for (const [limit, cap] of [
    [5, 1000],
    [100, 5],
  ] as const) {
    const b = new BufferBudget(cap);
    const r = await bufferBody(limitBody(source(["abc", "def", "ghi"]), 1 << 20), limit, b);
    expect(r.kind).toBe("stream");
    if (r.kind === "stream") {
      // Not begun until its consumer reads it: until then it may still go to another endpoint.
      expect(r.started()).toBe(false);
      expect(await text(r.stream)).toBe("abcdefghi");
      expect(r.started()).toBe(true);
    }
    r.release();
    expect(b.held).toBe(0);
  }
});

test("a body over max_body_size rejects and gives its bytes back", async () => {
  const b = new BufferBudget(1000);
  const big = limitBody(source(["abc", "def"]), 4);
  await expect(bufferBody(big, 10, b)).rejects.toThrow();
  expect([big.state.tooLarge, b.held]).toEqual([true, 0]);
});
