/** EtcdStorage runs the Storage contract on a real etcd, then what only etcd has: a cluster down, several endpoints, secrets sealed at rest, auth. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TICKET_KEYS_KEY, ticketKeys } from "../src/tls/ticket-keys.ts";
import { EtcdStorage, type EtcdStorageOptions } from "../src/tls/etcd-storage.ts";
import { CONTRACT_LOCK_TIMING, storageContract } from "../src/tls/storage.contract.ts";
import { LockHolders } from "./lock-holder.ts";
import { startEtcd, type TestEtcd } from "./etcd.ts";
import { freePort, ROOT, tempDir } from "./harness.ts";

// The lease TTL follows staleMs (300 ms, rounded up to etcd's whole second), keep-alives every refreshMs.
const timing = { lockRefreshMs: CONTRACT_LOCK_TIMING.refreshMs, lockStaleMs: CONTRACT_LOCK_TIMING.staleMs, lockPollMs: 20 };

storageContract("EtcdStorage", async () => {
  const etcd = await startEtcd();
  const opts: EtcdStorageOptions = { endpoints: [etcd.url], prefix: "contract/", ...timing };
  const holders = new LockHolders(
    `import { EtcdStorage } from ${JSON.stringify(join(ROOT, "src/tls/etcd-storage.ts"))};`,
    (name) => `await new EtcdStorage(${JSON.stringify(opts)}).lock(${name})`,
  );
  return {
    open: () => new EtcdStorage(opts),
    holdElsewhere: (name) => holders.hold(name),
    cleanup: async () => {
      holders.killAll();
      await etcd.cleanup();
    },
  };
});

/** rawValue reads a key as stored in etcd, without EtcdStorage. */
async function rawValue(url: string, key: string): Promise<string | undefined> {
  const res = await fetch(`${url}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: Buffer.from(key).toString("base64") }) });
  const kv = ((await res.json()) as { kvs?: { value?: string }[] }).kvs?.[0];
  return kv === undefined ? undefined : Buffer.from(kv.value ?? "", "base64").toString("utf8");
}

describe("EtcdStorage on etcd", () => {
  let etcd: TestEtcd;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => etcd?.cleanup());

  test("keys live under the prefix; describe names the key, never a password", async () => {
    const s = new EtcdStorage({ endpoints: [etcd.url], prefix: "gh-test", username: undefined });
    await s.store("sites/a/cert.pem", "CERT");
    expect(await rawValue(etcd.url, "gh-test/sites/a/cert.pem")).toBe("CERT");
    expect(s.describe("sites/a/cert.pem")).toBe("etcd:gh-test/sites/a/cert.pem");
    expect(new EtcdStorage({ endpoints: [etcd.url], username: "u", password: "hunter2" }).describe("k")).toBe("etcd:gatehouse/k");
    await s.store("sites/a/empty", "");
    expect(await s.load("sites/a/empty")).toBe("");
    expect(() => s.describe("../escape")).toThrow(/not a relative path/);
  });

  test("two endpoints, the first dead: every call goes through the second", async () => {
    const dead = `http://127.0.0.1:${freePort()}`;
    const s = new EtcdStorage({ endpoints: [dead, etcd.url], ...timing });
    await s.store("multi/cert.pem", "via second");
    expect(await s.load("multi/cert.pem")).toBe("via second");
    const release = await s.lock("multi", { timeoutMs: 1000 });
    await release();
  });

  test("an endpoint that accepts but never answers is given up after the request timeout, and the next one answers", async () => {
    const mute = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const hung = `http://127.0.0.1:${mute.port}`;
      const alone = new EtcdStorage({ endpoints: [hung], timeoutMs: 300 });
      const t0 = performance.now();
      await expect(alone.load("multi/cert.pem")).rejects.toThrow(`etcd unreachable for /v3/kv/range: ${hung} (no answer within 300 ms)`);
      expect(performance.now() - t0).toBeLessThan(2000);
      const s = new EtcdStorage({ endpoints: [hung, etcd.url], timeoutMs: 300 });
      expect(await s.load("multi/cert.pem")).toBe("via second");
    } finally {
      mute.stop(true);
    }
  });

  test("secret values are sealed at rest with the key file's key and load back in clear; without the key or with another they cannot be read", async () => {
    const secretKey = new Uint8Array(randomBytes(32));
    const s = new EtcdStorage({ endpoints: [etcd.url], secretKey });
    await s.store("sealed/plain-before.pem", "written before encryption");
    await s.store("sealed/key.pem", "-----BEGIN PRIVATE KEY-----\nMIIE", { secret: true });
    await s.store("sealed/cert.pem", "-----BEGIN CERTIFICATE-----", {});
    const raw = await rawValue(etcd.url, "gatehouse/sealed/key.pem");
    expect(raw).toStartWith("gh-enc:v1:");
    expect(raw).not.toContain("PRIVATE");
    expect(await rawValue(etcd.url, "gatehouse/sealed/cert.pem")).toBe("-----BEGIN CERTIFICATE-----"); // not secret: plain
    expect(await s.load("sealed/key.pem")).toBe("-----BEGIN PRIVATE KEY-----\nMIIE");
    expect(await s.load("sealed/plain-before.pem")).toBe("written before encryption");
    await expect(new EtcdStorage({ endpoints: [etcd.url] }).load("sealed/key.pem")).rejects.toThrow(
      "etcd:gatehouse/sealed/key.pem is encrypted at rest and no encryption key is configured",
    );
    const other = new EtcdStorage({ endpoints: [etcd.url], secretKey: new Uint8Array(randomBytes(32)) });
    await expect(other.load("sealed/key.pem")).rejects.toThrow(/cannot decrypt etcd:gatehouse\/sealed\/key\.pem/);
    expect(() => new EtcdStorage({ endpoints: [etcd.url], secretKey: new Uint8Array(16) })).toThrow(/32/);
    // TLS ticket keys are secrets too: an etcd backup holds none usable.
    const keys = await ticketKeys(s);
    expect(await rawValue(etcd.url, `gatehouse/${TICKET_KEYS_KEY}`)).toStartWith("gh-enc:v1:");
    expect((await ticketKeys(s)).current.key).toEqual(keys.current.key);
  });

  test("username and password: the right ones work (a token etcd forgot is renewed), wrong ones or none fail clearly", async () => {
    // A separate etcd: auth would lock the other tests out. Its tokens live 1 s, so that the renewal is exercised.
    const secured = await startEtcd(["--auth-token-ttl=1"]);
    try {
      secured.etcdctl("user", "add", "root:s3cret-pw");
      secured.etcdctl("auth", "enable");
      const s = new EtcdStorage({ endpoints: [secured.url], username: "root", password: "s3cret-pw", ...timing });
      await s.store("auth/cert.pem", "ok");
      expect(await s.load("auth/cert.pem")).toBe("ok");
      await Bun.sleep(2500); // the token expires
      expect(await s.load("auth/cert.pem")).toBe("ok");
      const release = await s.lock("auth", { timeoutMs: 1000 });
      await release();
      const wrong = new EtcdStorage({ endpoints: [secured.url], username: "root", password: "wrong" });
      await expect(wrong.load("auth/cert.pem")).rejects.toThrow(/etcd authentication as "root" failed: .*authentication failed/);
      await expect(new EtcdStorage({ endpoints: [secured.url] }).load("auth/cert.pem")).rejects.toThrow(/user name is empty/);
    } finally {
      await secured.cleanup();
    }
  });

  test("client TLS: an https endpoint that requires a client certificate works with ca, cert and key, and refuses a client without them", async () => {
    const dir = tempDir("gatehouse-etcd-tls-");
    const openssl = (...args: string[]): void => {
      const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stdout: "pipe", stderr: "pipe" });
      if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr.toString()}`);
    };
    const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl("req", "-x509", ...EC, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test etcd CA");
    openssl("req", "-new", ...EC, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1");
    writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-out", "node.pem", "-extfile", "ext.cnf");
    const files = { caFile: join(dir, "ca.pem"), certFile: join(dir, "node.pem"), keyFile: join(dir, "node.key") };
    const secured = await startEtcd([], files);
    try {
      const read = (f: string): string => readFileSync(f, "utf8");
      const s = new EtcdStorage({ endpoints: [secured.url], tls: { ca: read(files.caFile), cert: read(files.certFile), key: read(files.keyFile) }, ...timing });
      await s.store("tls/cert.pem", "over tls");
      expect(await s.load("tls/cert.pem")).toBe("over tls");
      const release = await s.lock("tls", { timeoutMs: 1000 });
      await release();
      // Without a client certificate the handshake fails: an unreachable endpoint, not a missing key.
      const anonymous = new EtcdStorage({ endpoints: [secured.url], tls: { ca: read(files.caFile) }, timeoutMs: 1000 });
      await expect(anonymous.load("tls/cert.pem")).rejects.toThrow(`etcd unreachable for /v3/kv/range: ${secured.url} (`);
    } finally {
      await secured.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("etcd down: load, store and lock throw naming the endpoint, never undefined for a key that exists; back up, it works again", async () => {
    const s = new EtcdStorage({ endpoints: [etcd.url], timeoutMs: 1000 });
    await s.store("down/cert.pem", "kept");
    await etcd.stop();
    const unreachable = new RegExp(`etcd unreachable for /v3/kv/\\w+: ${etcd.url.replace(/[.:/]/g, "\\$&")} \\(`);
    await expect(s.load("down/cert.pem")).rejects.toThrow(unreachable);
    await expect(s.load("down/missing.pem")).rejects.toThrow(unreachable);
    await expect(s.store("down/cert.pem", "new")).rejects.toThrow(unreachable);
    await expect(s.lock("down", { timeoutMs: 500 })).rejects.toThrow(/etcd unreachable/);
    await etcd.start();
    expect(await s.load("down/cert.pem")).toBe("kept");
  });
});
