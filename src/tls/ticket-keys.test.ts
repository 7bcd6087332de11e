/** Ticket keys in storage: one set for nodes starting together, rotation under the lock, damaged values replaced, clocks a little apart. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileStorage } from "./file-storage.ts";
import { ROTATE_MS, TICKET_KEYS_KEY, ticketKeys } from "./ticket-keys.ts";

const root = mkdtempSync(join(tmpdir(), "gatehouse-ticket-keys-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

test("nodes starting at once on one storage agree on one key, stored as a secret", async () => {
  const dir = join(root, "once");
  const sets = await Promise.all([1, 2, 3, 4].map(() => ticketKeys(new FileStorage(dir), 1_000_000)));
  const keys = new Set(sets.map((s) => s.current.key.toString("hex")));
  expect(keys.size).toBe(1);
  expect(sets[0]!.current.key.length).toBe(48);
  expect(sets[0]!.previous).toBeUndefined();
  expect(statSync(join(dir, TICKET_KEYS_KEY)).mode & 0o777).toBe(0o600);
});

test("a key older than the rotation period is replaced; the one before still decrypts; one after another both rotate once", async () => {
  const st = new FileStorage(join(root, "rotate"));
  const first = await ticketKeys(st, 1_000_000);
  expect((await ticketKeys(st, 1_000_000 + ROTATE_MS - 1)).current.key).toEqual(first.current.key);
  const later = 1_000_000 + ROTATE_MS;
  const [a, b] = await Promise.all([ticketKeys(st, later), ticketKeys(new FileStorage(join(root, "rotate")), later)]);
  expect(a.current.key).toEqual(b.current.key);
  expect(a.current.key).not.toEqual(first.current.key);
  expect(a.previous?.key).toEqual(first.current.key);
  expect(a.current.since).toBe(later);
});

test("what cannot be read as keys (damaged, wrong length) is replaced, not served", async () => {
  const st = new FileStorage(join(root, "damaged"));
  await st.store(TICKET_KEYS_KEY, '{"current":{"key":"c2hvcnQ=","since":1}}', { secret: true });
  const set = await ticketKeys(st, 5);
  expect(set.current.key.length).toBe(48);
  await st.store(TICKET_KEYS_KEY, "not json", { secret: true });
  expect((await ticketKeys(st, 5)).current.key.length).toBe(48);
});

test("a key stamped a few minutes ahead of this clock (another node's runs fast) is kept, not rotated", async () => {
  const st = new FileStorage(join(root, "skew"));
  const ahead = await ticketKeys(st, 2_000_000 + 3 * 60_000);
  expect((await ticketKeys(st, 2_000_000)).current.key).toEqual(ahead.current.key);
});
