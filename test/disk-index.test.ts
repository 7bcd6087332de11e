/** The disk tier's index under several writing processes at once (a node's workers): no call fails for a busy database, and the byte total stays the sum of the rows. */
import { afterAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { BUN, tempDir } from "./harness.ts";

const dir = tempDir("gatehouse-index-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("three processes putting and removing the same names for a second: none of their calls fails, and the total is the sum of the rows", async () => {
  const path = join(dir, "index.db");
  const procs = [1, 2, 3].map((id) =>
    Bun.spawn([BUN, join(import.meta.dir, "disk-index-writer.ts"), path, "1000", String(id)], { stdout: "pipe", stderr: "pipe" }),
  );
  const results = await Promise.all(procs.map(async (p) => JSON.parse((await new Response(p.stdout).text()).trim()) as { calls: number; failed: number }));
  for (const r of results) {
    expect(r.calls).toBeGreaterThan(100);
    expect(r.failed).toBe(0);
  }
  const db = new Database(path, { readonly: true });
  const sum = (db.query("SELECT COALESCE(SUM(size), 0) AS s FROM objects").get() as { s: number }).s;
  const total = (db.query("SELECT bytes FROM totals").get() as { bytes: number }).bytes;
  db.close();
  expect(total).toBe(sum);
});
