import { expect, test } from "bun:test";
import { ConnectionLimits } from "./connection-limits.ts";

test("each client is capped on its own, all clients together on the total; a release makes room again", () => {
  const l = new ConnectionLimits(5, 2);
  expect([l.admit("127.0.0.2"), l.admit("127.0.0.2"), l.admit("127.0.0.2")]).toEqual([undefined, undefined, "client"]);
  expect([l.admit("127.0.0.3"), l.admit("127.0.0.3"), l.admit("127.0.0.4")]).toEqual([undefined, undefined, undefined]);
  expect(l.admit("127.0.0.5")).toBe("total");
  expect([l.total, l.countOf("127.0.0.2"), l.countOf("127.0.0.5")]).toEqual([5, 2, 0]);
  l.release("127.0.0.2");
  expect(l.admit("127.0.0.5")).toBeUndefined();
  expect(l.admit("127.0.0.2")).toBe("total");
});

test("a client that closed everything leaves nothing behind, and a release too many changes nothing", () => {
  const l = new ConnectionLimits(10, 10);
  for (let i = 0; i < 1000; i++) {
    l.admit(`10.0.${i >> 8}.${i & 255}`);
    l.release(`10.0.${i >> 8}.${i & 255}`);
  }
  l.release("10.9.9.9");
  expect(l.total).toBe(0);
  expect((l as unknown as { perClient: Map<string, number> }).perClient.size).toBe(0);
});
