import { afterAll, afterEach, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import type { SiteConfig } from "../config/types.ts";
import { log } from "../observability/log.ts";
import { AcmeError } from "./acme/acme-error.ts";
import { FileStorage } from "./file-storage.ts";
import { InternalIssuer } from "./internal-issuer.ts";
import type { Issued, Issuer } from "./issuer.ts";
import { inspectBundle } from "../lib/cert-info.ts";
import { fits, managedEntry, type Managed, unpack } from "./managed.ts";
import { FALLBACK_AFTER, RenewalScheduler } from "./renewal-scheduler.ts";
import { SiteCertStore } from "./site-store.ts";

const dir = mkdtempSync(join(tmpdir(), "gatehouse-scheduler-"));
const store = new SiteCertStore(new FileStorage(dir));
const internal = new InternalIssuer(store.storage);
const lines: Record<string, unknown>[] = [];
log.setSink((chunk) => {
  for (const l of chunk.split("\n")) if (l) lines.push(JSON.parse(l));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const entries: Managed[] = [];
afterEach(() => {
  for (const m of entries.splice(0)) clearTimeout(m.timer);
});

/** FakeCa plays one ACME CA: it fails while `failing` (with `error`), else issues from the internal CA; it records each order. */
class FakeCa implements Issuer {
  readonly meta;
  orders = 0;
  failing = true;
  error: () => Error = () => new AcmeError("directory", `cannot fetch the ACME directory ${this.directory}: ECONNREFUSED`);
  constructor(readonly directory: string) {
    this.meta = { issuer: "acme", directory };
  }
  async issue(_site: string, names: readonly string[]): Promise<Issued> {
    this.orders++;
    if (this.failing) throw this.error();
    return internal.issueFor(names);
  }
}

function setup(chain: Issuer[]) {
  const site = { name: `s${entries.length}-${Math.random().toString(36).slice(2, 8)}`, hosts: ["a.example"], tls: { mode: "acme" } } as unknown as SiteConfig;
  const m = managedEntry(site, "id", undefined, true);
  entries.push(m);
  const renewed: Managed[] = [];
  const scheduler = new RenewalScheduler(
    { live: () => true, store: () => store, issuersOf: () => chain, renewFraction: () => 2 / 3, renewed: (x) => renewed.push(x) },
    false,
  );
  /** attempt runs one renewal (as POST /certificates/NAME/renew does) and waits until it ended. */
  const attempt = async () => {
    const before = m.failures + renewed.length;
    scheduler.renewNow(m);
    const deadline = Date.now() + 5000;
    while (m.failures + renewed.length === before && Date.now() < deadline) await Bun.sleep(2);
    while (m.busy && Date.now() < deadline) await Bun.sleep(2);
    await Bun.sleep(5); // the log line is written on the next turn
  };
  return { m, renewed, attempt };
}

const moves = (site: string) => lines.filter((l) => l.site === site && String(l.msg).startsWith("certificate order moves"));

test(`after ${FALLBACK_AFTER} failed orders in a row at the site's CA the next goes to the fallback CA; its certificate is the site's, and the next renewal starts at the site's CA again`, async () => {
  const primary = new FakeCa("https://primary.example/dir");
  const fallback = new FakeCa("https://fallback.example/dir");
  fallback.failing = false;
  const { m, renewed, attempt } = setup([primary, fallback]);
  await attempt();
  expect([m.failures, m.ca, primary.orders, fallback.orders]).toEqual([1, 0, 1, 0]);
  expect(moves(m.site)).toEqual([]);
  await attempt();
  expect([m.failures, m.ca, primary.orders, fallback.orders]).toEqual([2, 1, 2, 0]);
  expect(moves(m.site)).toMatchObject([
    {
      level: "warn",
      msg: "certificate order moves to the fallback CA",
      from: primary.directory,
      to: fallback.directory,
      last_error: `cannot fetch the ACME directory ${primary.directory}: ECONNREFUSED`,
    },
  ]);
  await attempt();
  expect([primary.orders, fallback.orders]).toEqual([2, 1]);
  expect(renewed).toEqual([m]);
  expect(m).toMatchObject({ failures: 0, ca: 0, caFailures: 0, stale: false, meta: fallback.meta });
  const obtained = lines.find((l) => l.site === m.site && l.msg === "certificate obtained");
  expect(obtained).toMatchObject({ ca: fallback.directory, fallback: true });
  // Stored with the fallback's directory: a certificate of the site (not stale), whichever of its CAs it came from; not one of a site without that CA.
  const stored = (await store.load(m.site))!;
  expect(stored.meta).toMatchObject({ issuer: "acme", directory: fallback.directory });
  expect(fits(stored, m.hosts, [primary, fallback])).toBe(true);
  expect(fits(stored, m.hosts, [primary])).toBe(false);
  // The next renewal asks the site's own CA first.
  primary.failing = false;
  await attempt();
  expect([primary.orders, fallback.orders]).toEqual([3, 1]);
  expect(m.meta).toEqual(primary.meta);
});

test("the CAs are tried in turn, back to the first after the last; a single CA is retried where it is", async () => {
  const a = new FakeCa("https://a.example/dir");
  const b = new FakeCa("https://b.example/dir");
  const { m, attempt } = setup([a, b]);
  for (let i = 0; i < 2 * FALLBACK_AFTER; i++) await attempt();
  expect([a.orders, b.orders, m.ca]).toEqual([FALLBACK_AFTER, FALLBACK_AFTER, 0]);
  expect(moves(m.site).map((l) => [l.msg, l.from, l.to])).toEqual([
    ["certificate order moves to the fallback CA", a.directory, b.directory],
    ["certificate order moves back to the site's own CA", b.directory, a.directory],
  ]);
  const solo = setup([new FakeCa("https://solo.example/dir")]);
  for (let i = 0; i < 3; i++) await solo.attempt();
  expect([solo.m.ca, solo.m.failures]).toEqual([0, 3]);
  expect(moves(solo.m.site)).toEqual([]);
});

test("a CA's Retry-After holds for that CA only: once the order moves to the fallback, the next attempt is not put off by it", async () => {
  const limited = new FakeCa("https://limited.example/dir");
  limited.error = () => new AcmeError("new-order", "too many certificates", "urn:ietf:params:acme:error:rateLimited", 7200_000);
  const fallback = new FakeCa("https://fallback.example/dir");
  const { m, attempt } = setup([limited, fallback]);
  await attempt();
  expect(m.nextCheck - Date.now()).toBeGreaterThan(7000_000);
  await attempt();
  expect(m.ca).toBe(1);
  // retryDelay(2) without the CA's 2 h: 2 min ± 20 %.
  expect(m.nextCheck - Date.now()).toBeLessThan(150_000);
});

test("a certificate another node stored and this one adopted while it waited for the lock is not ordered again (one order per certificate)", async () => {
  const ca = new FakeCa("https://one.example/dir");
  ca.failing = false;
  const { m, renewed } = setup([ca]);
  // Another node holds the lock while it obtains the certificate.
  const release = await store.storage.lock(`site-${m.site}`);
  const scheduler = new RenewalScheduler(
    { live: () => true, store: () => store, issuersOf: () => [ca], renewFraction: () => 2 / 3, renewed: (x) => renewed.push(x) },
    false,
  );
  scheduler.renewNow(m);
  await Bun.sleep(50);
  expect(m.busy).toBe(true);
  const theirs = inspectBundle(...unpack(await internal.issueFor(m.hosts)));
  await store.save(m.site, theirs, ca.meta);
  // The watch delivers it here before the lock is given back.
  Object.assign(m, { bundle: theirs, meta: ca.meta });
  await release();
  const deadline = Date.now() + 5000;
  while (m.busy && Date.now() < deadline) await Bun.sleep(5);
  expect(ca.orders).toBe(0);
  expect(m.bundle?.fingerprint).toBe(theirs.fingerprint);
});

test("a renewal that failed at the storage waits for it (waitsForStorage); one that failed at the CA does not, so the storage's return does not cut the CA's backoff short", async () => {
  const ca = new FakeCa("https://ca.example/dir");
  const { m, attempt } = setup([ca]);
  await attempt();
  expect([m.failures, m.waitsForStorage]).toEqual([1, false]);
  const down = new SiteCertStore({
    ...store.storage,
    load: (k: string) => store.storage.load(k),
    lock: () => Promise.reject(new Error("etcd unreachable for /v3/lease/grant")),
  } as unknown as FileStorage);
  const site = { name: `down-${Math.random().toString(36).slice(2, 8)}`, hosts: ["b.example"], tls: { mode: "acme" } } as unknown as SiteConfig;
  const w = managedEntry(site, "id", undefined, true);
  entries.push(w);
  const scheduler = new RenewalScheduler(
    { live: () => true, store: () => down, issuersOf: () => [ca], renewFraction: () => 2 / 3, renewed: () => undefined },
    false,
  );
  scheduler.renewNow(w);
  const deadline = Date.now() + 5000;
  while (w.failures === 0 && Date.now() < deadline) await Bun.sleep(2);
  expect([w.failures, w.waitsForStorage]).toEqual([1, true]);
  expect(ca.orders).toBe(1); // only the first entry's order: the second never reached the CA
});
