/** Certificates shared through etcd ([storage] backend = "etcd"): two nodes serve the same certificate, private keys are sealed in etcd, and a node restarted while etcd is down still serves from its local copy. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startEtcd, type TestEtcd } from "./etcd.ts";
import { BUN, freePort, MAIN, startGateway, tempDir, type TestGateway } from "./harness.ts";
import { tlsGet } from "./tls-client.ts";

let etcd: TestEtcd;
const shared = tempDir("gatehouse-etcd-shared-");
const keyFile = join(shared, "storage.key");
const gateways: TestGateway[] = [];
const site = { app: 'hosts = ["app.test"]\ntls = "internal"\nhttps_redirect = false\nstatic = "builtin:welcome"\n' };

beforeAll(async () => {
  etcd = await startEtcd();
  writeFileSync(keyFile, randomBytes(32).toString("base64"));
});
afterAll(async () => {
  for (const g of gateways) await g.cleanup();
  await etcd.cleanup();
  rmSync(shared, { recursive: true, force: true });
});

/** node starts a gateway on etcd, with its own certs_dir (its local copy) unless given one. */
async function node(certsDir?: string): Promise<{ g: TestGateway; port: number }> {
  const port = freePort();
  const g = await startGateway({
    top: certsDir ? `certs_dir = "${certsDir}"` : "",
    listenExtra: `https = "127.0.0.1:${port}"`,
    extra: `[storage]\nbackend = "etcd"\nendpoints = ["${etcd.url}"]\nprefix = "gh-test/"\ntimeout = "1s"\nencryption_key_file = "${keyFile}"\n`,
    routes: site,
  });
  gateways.push(g);
  return { g, port };
}

const caOf = () => etcd.etcdctl("get", "--print-value-only", "gh-test/internal-ca/ca.pem").trim();

test("two nodes on one etcd serve the same certificate; its private key is sealed in etcd, the certificate is not", async () => {
  const a = await node();
  const b = await node();
  const ca = caOf();
  expect(ca).toStartWith("-----BEGIN CERTIFICATE-----");
  const fromA = await tlsGet(a.port, "app.test", "app.test", "/", ca);
  const fromB = await tlsGet(b.port, "app.test", "app.test", "/", ca);
  expect([fromA.authorized, fromB.authorized]).toEqual([true, true]);
  expect(fromB.cert.fingerprint256).toBe(fromA.cert.fingerprint256);
  expect(etcd.etcdctl("get", "--print-value-only", "gh-test/sites/app/key.pem")).toStartWith("gh-enc:v1:");
  expect(etcd.etcdctl("get", "--print-value-only", "gh-test/sites/app/cert.pem")).toStartWith("-----BEGIN CERTIFICATE-----");
  expect(await a.g.metric("gatehouse_storage_up")).toBe("1");
  await Promise.all([a.g.stop(), b.g.stop()]);
});

test("etcd down: check says so and exits 1; a node restarted meanwhile serves its local copy, says storage is down, and deletes nothing", async () => {
  const local = tempDir("gatehouse-etcd-local-");
  const first = await node(local);
  const ca = caOf();
  const served = await tlsGet(first.port, "app.test", "app.test", "/", ca);
  await first.g.stop();
  const keysBefore = etcd.etcdctl("get", "--prefix", "--keys-only", "gh-test/");
  await etcd.stop();
  try {
    const check = Bun.spawnSync([BUN, MAIN, "check", "-c", join(first.g.dir, "config.toml")], { cwd: first.g.dir });
    expect(check.exitCode).toBe(1);
    expect(check.stderr.toString()).toContain("storage: etcd unreachable");
    const again = await node(local);
    const still = await tlsGet(again.port, "app.test", "app.test", "/", ca);
    expect(still.authorized).toBe(true);
    expect(still.cert.fingerprint256).toBe(served.cert.fingerprint256);
    // What was served came from the local copy the first start made of what etcd held.
    expect(existsSync(join(local, "sites/app/key.pem"))).toBe(true);
    expect(await again.g.metric("gatehouse_storage_up")).toBe("0");
    await again.g.waitForLog((l) => l.msg.startsWith("storage unreachable"));
    await again.g.stop();
  } finally {
    await etcd.start();
  }
  expect(etcd.etcdctl("get", "--prefix", "--keys-only", "gh-test/")).toBe(keysBefore);
  rmSync(local, { recursive: true, force: true });
});

test("gatehouse storage copy moves a lone node's certs_dir into etcd, sealing the keys, and keeps what etcd already holds; then back", async () => {
  const dir = tempDir("gatehouse-copy-");
  try {
    const certs = join(dir, "certs");
    mkdirSync(join(certs, "sites/solo"), { recursive: true });
    writeFileSync(join(certs, "sites/solo/cert.pem"), "CERT");
    writeFileSync(join(certs, "sites/solo/key.pem"), "KEY");
    writeFileSync(join(certs, "sites/solo/meta.json"), "{}");
    mkdirSync(join(certs, "locks/held"), { recursive: true });
    etcd.etcdctl("put", "copy-test/sites/solo/meta.json", '{"newer":true}');
    writeFileSync(
      join(dir, "config.toml"),
      `certs_dir = "certs"\n[listen]\nhttp = "127.0.0.1:1"\n[storage]\nbackend = "etcd"\nendpoints = ["${etcd.url}"]\nprefix = "copy-test/"\nencryption_key_file = "${keyFile}"\n`,
    );
    mkdirSync(join(dir, "routes"));
    writeFileSync(join(dir, "routes/a.toml"), 'hosts = ["a.test"]\nstatic = "builtin:welcome"\n');
    const copy = (from: string, to: string) =>
      Bun.spawnSync([BUN, MAIN, "storage", "copy", "--from", from, "--to", to, "-c", join(dir, "config.toml")], { cwd: dir });
    const up = copy("dir", "etcd");
    expect(up.stderr.toString()).toBe("");
    expect(up.exitCode).toBe(0);
    expect(up.stdout.toString()).toContain("2 keys copied from dir to etcd, 0 already there");
    expect(up.stdout.toString()).toContain("kept as they are in etcd (another value there): sites/solo/meta.json");
    expect(etcd.etcdctl("get", "--print-value-only", "copy-test/sites/solo/cert.pem").trim()).toBe("CERT");
    expect(etcd.etcdctl("get", "--print-value-only", "copy-test/sites/solo/key.pem")).toStartWith("gh-enc:v1:");
    expect(etcd.etcdctl("get", "--print-value-only", "copy-test/sites/solo/meta.json").trim()).toBe('{"newer":true}');
    expect(etcd.etcdctl("get", "--prefix", "--keys-only", "copy-test/locks")).toBe("");
    // Back into an empty certs_dir: the keys come out unsealed, readable by the owner only.
    rmSync(certs, { recursive: true, force: true });
    const down = copy("etcd", "dir");
    expect(down.exitCode).toBe(0);
    expect(readFileSync(join(certs, "sites/solo/key.pem"), "utf8")).toBe("KEY");
    expect(statSync(join(certs, "sites/solo/key.pem")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(certs, "sites/solo/meta.json"), "utf8")).toBe('{"newer":true}');
    const same = copy("dir", "dir");
    expect([same.exitCode, same.stderr.toString().trim()]).toEqual([1, "gatehouse storage copy: --from and --to are both dir"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a certificate one node renews is served by the other within seconds (etcd's watch), without a reload", async () => {
  const a = await node();
  const b = await node();
  try {
    const ca = caOf();
    const before = await tlsGet(b.port, "app.test", "app.test", "/", ca);
    expect((await fetch(`${a.g.admin}/certificates/app/renew`, { method: "POST" })).status).toBe(202);
    const t0 = Date.now();
    const deadline = Date.now() + 10_000;
    let now = before;
    while (Date.now() < deadline) {
      await Bun.sleep(250);
      now = await tlsGet(b.port, "app.test", "app.test", "/", ca);
      if (now.cert.fingerprint256 !== before.cert.fingerprint256) break;
    }
    expect(now.cert.fingerprint256).not.toBe(before.cert.fingerprint256);
    // The periodic re-read is every 30 s: this fast, it was the watch.
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(now.authorized).toBe(true);
    expect((await tlsGet(a.port, "app.test", "app.test", "/", ca)).cert.fingerprint256).toBe(now.cert.fingerprint256);
    await b.g.waitForLog((l) => l.msg === "certificate renewed by another node adopted" && l.site === "app");
  } finally {
    await Promise.all([a.g.stop(), b.g.stop()]);
  }
});

test("etcd stopped under two running nodes: both keep serving, a renewal asked meanwhile waits, and resumes within seconds once etcd is back; the other node serves it; nothing is lost", async () => {
  const a = await node();
  const b = await node();
  try {
    const ca = caOf();
    const before = await tlsGet(b.port, "app.test", "app.test", "/", ca);
    const keysBefore = etcd.etcdctl("get", "--prefix", "--keys-only", "gh-test/");
    await etcd.stop();
    let restarted = false;
    try {
      expect((await fetch(`${a.g.admin}/certificates/app/renew`, { method: "POST" })).status).toBe(202);
      const failed = await a.g.waitForLog((l) => l.msg === "certificate not obtained; the current one keeps serving" && l.site === "app", 10_000);
      // Its backoff alone would wait a minute.
      expect(Number(failed.retry_in_s)).toBeGreaterThanOrEqual(30);
      for (const n of [a, b]) {
        const r = await tlsGet(n.port, "app.test", "app.test", "/", ca);
        expect([r.authorized, r.status, r.cert.fingerprint256]).toEqual([true, 200, before.cert.fingerprint256]);
      }
      expect(await a.g.metric("gatehouse_storage_up")).toBe("0");
      await etcd.start();
      restarted = true;
    } finally {
      if (!restarted) await etcd.start();
    }
    const t0 = Date.now();
    await a.g.waitForLog((l) => l.msg === "storage reachable again; renewals that waited for it resume", 15_000);
    await a.g.waitForLog((l) => l.msg === "certificate obtained" && l.site === "app", 10_000);
    expect(Date.now() - t0).toBeLessThan(20_000);
    const deadline = Date.now() + 10_000;
    let now = before;
    while (now.cert.fingerprint256 === before.cert.fingerprint256 && Date.now() < deadline) {
      await Bun.sleep(200);
      now = await tlsGet(b.port, "app.test", "app.test", "/", ca);
    }
    expect(now.cert.fingerprint256).not.toBe(before.cert.fingerprint256);
    expect(await a.g.metric("gatehouse_storage_up")).toBe("1");
    const keysAfter = etcd.etcdctl("get", "--prefix", "--keys-only", "gh-test/");
    for (const k of keysBefore.split("\n").filter((x) => x.trim() && !x.includes("/locks/"))) expect(keysAfter).toContain(k);
  } finally {
    await Promise.all([a.g.stop(), b.g.stop()]);
  }
}, 60_000);
