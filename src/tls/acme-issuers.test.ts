import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AcmeConfig, SiteAcme, SiteConfig } from "../config/types.ts";
import { AcmeIssuers } from "./acme-issuers.ts";
import { FileStorage } from "./file-storage.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function storage(): FileStorage {
  const d = mkdtempSync(join(tmpdir(), "gatehouse-acme-issuers-"));
  dirs.push(d);
  return new FileStorage(d);
}

const A = "https://a.example/dir";
const B = "https://b.example/dir";
const Z = "https://z.example/dir";
const acme: AcmeConfig = {
  directory: A,
  email: "ops@example.com",
  caFile: undefined,
  challenge: "http-01",
  dns: undefined,
  renewFraction: 2 / 3,
  fallback: [{ directory: Z, eab: { kid: "zk", hmacKey: "aGVsbG8" } }],
};
const site = (name: string, own?: Partial<SiteAcme>): SiteConfig =>
  ({ name, hosts: [`${name}.example`], tls: { mode: "acme" }, ...(own ? { acme: { challenge: undefined, ...own } } : {}) }) as unknown as SiteConfig;
const none = () => undefined;

test("one issuer per distinct CA and account, shared by the sites that use it; each site's chain is its own CA, then the fallbacks", async () => {
  const st = storage();
  const sites = [site("one"), site("two"), site("own", { directory: B }), site("mail", { email: "mail@example.com" })];
  const set = (await AcmeIssuers.plan(undefined, sites, acme, st, none))!;
  const dirsOf = (s: string) => set.chainOf(s).map((i) => i.meta.directory);
  expect(dirsOf("one")).toEqual([A, Z]);
  expect(dirsOf("own")).toEqual([B, Z]);
  expect(dirsOf("mail")).toEqual([A, Z]);
  expect(set.chainOf("one")[0]).toBe(set.chainOf("two")[0]!);
  expect(set.chainOf("mail")[0]).not.toBe(set.chainOf("one")[0]!);
  // The fallback CA takes each site's e-mail: one account per e-mail there too.
  expect(set.chainOf("one")[1]).toBe(set.chainOf("own")[1]!);
  expect(set.chainOf("mail")[1]).not.toBe(set.chainOf("one")[1]!);
  expect(set.size).toBe(5);
  expect(set.chainOf("unknown")).toEqual([]);
  expect(await AcmeIssuers.plan(set, [], acme, st, none)).toBeUndefined();
});

test("a reload keeps the issuers whose CA and account stayed and makes new ones only for what changed; other storage makes all new", async () => {
  const st = storage();
  const first = (await AcmeIssuers.plan(undefined, [site("one"), site("own", { directory: B })], acme, st, none))!;
  const again = (await AcmeIssuers.plan(first, [site("one"), site("own", { directory: B })], acme, st, none))!;
  expect(again.chainOf("one")[0]).toBe(first.chainOf("one")[0]!);
  expect(again.chainOf("own")[0]).toBe(first.chainOf("own")[0]!);
  expect(again.chainOf("own")[1]).toBe(first.chainOf("own")[1]!);
  const moved = (await AcmeIssuers.plan(first, [site("one"), site("own", { directory: B, eab: { kid: "k", hmacKey: "aGVsbG8" } })], acme, st, none))!;
  expect(moved.chainOf("one")[0]).toBe(first.chainOf("one")[0]!);
  expect(moved.chainOf("own")[0]).not.toBe(first.chainOf("own")[0]!);
  const elsewhere = (await AcmeIssuers.plan(first, [site("one")], acme, storage(), none))!;
  expect(elsewhere.chainOf("one")[0]).not.toBe(first.chainOf("one")[0]!);
});
