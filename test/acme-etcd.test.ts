/** HTTP-01 across nodes sharing etcd: one node orders, the CA's validation reaches another, which finds the token in etcd and answers it. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { startEtcd, startEtcdCluster, type TestEtcd } from "./etcd.ts";
import { addressData, TYPE } from "../src/lib/dns-wire.ts";
import { addRecord, type DnsUpdateOptions, deleteRecord } from "../src/tls/acme/dns-update.ts";
import { startAcmeRecorder } from "./acme-recorder.ts";
import { freePort, startGateway, type TestGateway } from "./harness.ts";
import { Testbed } from "./testbed.ts";
import { tlsGet } from "./tls-client.ts";

let tb: Testbed;
let etcd: TestEtcd;
const gateways: TestGateway[] = [];
let http01Port: number;

beforeAll(async () => {
  http01Port = freePort();
  tb = Testbed.start({ http01Port });
  etcd = await startEtcd();
});
afterAll(async () => {
  for (const g of gateways) await g.cleanup();
  tb?.stop();
  await etcd?.cleanup();
});

/** dnsUpdate signs RFC 2136 updates to the testbed's bind with its TSIG key. */
function dnsUpdate(): DnsUpdateOptions {
  return {
    server: { host: "127.0.0.1", port: Number(tb.env.DNS_PORT) },
    key: { name: tb.env.TSIG_KEY_NAME, algorithm: "hmac-sha256", secret: new Uint8Array(Buffer.from(tb.env.TSIG_SECRET, "base64")) },
  };
}

test("the node that orders publishes its HTTP-01 token in etcd; the node the CA reaches answers it from there; the token is gone afterwards", async () => {
  const storage = `[storage]\nbackend = "etcd"\nendpoints = ["${etcd.url}"]\nprefix = "acme-etcd/"\n`;
  // B holds the port the CA validates on and orders nothing itself (its copy of the site has no TLS).
  const b = await startGateway({ httpPort: http01Port, extra: storage, routes: { app: 'hosts = ["app.test"]\nstatic = "builtin:welcome"\n' } });
  gateways.push(b);
  const httpsPort = freePort();
  const a = await startGateway({
    listenExtra: `https = "127.0.0.1:${httpsPort}"`,
    extra: `${storage}[acme]\ndirectory = "${tb.env.ACME_DIRECTORY_URL}"\nemail = "ops@app.test"\nca_file = "${tb.env.ACME_API_CA_CERT}"\n`,
    routes: { app: 'hosts = ["app.test"]\ntls = "acme"\nstatic = "builtin:welcome"\n' },
  });
  gateways.push(a);
  await a.waitForLog((l) => l.msg === "certificate obtained", 20_000);
  const res = await tlsGet(httpsPort, "app.test", "app.test", "/", readFileSync(tb.env.ACME_ISSUER_ROOT, "utf8"));
  expect(res.authorized).toBe(true);
  // The CA's requests reached B, which answered them from etcd; A saw none.
  const validations = b.accessLogs().filter((l) => String(l.path).startsWith("/.well-known/acme-challenge/"));
  expect(validations.length).toBeGreaterThan(0);
  expect(validations.every((l) => l.status === 200 && l.route === "acme-challenge")).toBe(true);
  expect(a.accessLogs().filter((l) => String(l.path).startsWith("/.well-known/acme-challenge/"))).toEqual([]);
  expect(etcd.etcdctl("get", "--prefix", "--keys-only", "acme-etcd/challenges/")).toBe("");
  // A made-up token is looked up, not found, and goes on to the site (404 from the welcome site, not a crash or a hang).
  const made = await b.request("app.test", "/.well-known/acme-challenge/AAAAAAAAAAAAAAAAAAAAAAAA");
  expect(made.status).toBe(404);
  // The CA's HTTP-01 port is the next test's.
  await Promise.all([a.stop(), b.stop()]);
});

test("three nodes on 127.0.0.2, .3 and .4 with the same ports start at once with the same ACME site: one order reaches the CA (counted at its door), the CA validates at .3, all three serve the certificate", async () => {
  const recorder = startAcmeRecorder(tb);
  // The CA answers once all three listen: the one that orders cannot be validated at a node still starting.
  recorder.hold();
  const storage = `[storage]\nbackend = "etcd"\nendpoints = ["${etcd.url}"]\nprefix = "three/"\n`;
  const acme = `[acme]\ndirectory = "${recorder.directory}"\nemail = "ops@three.test"\nca_file = "${tb.env.ACME_API_CA_CERT}"\n`;
  // The name points at .3: the CA validates there, whichever node placed the order.
  await addRecord(dnsUpdate(), "three.test", TYPE.A, addressData("127.0.0.3"), 1);
  const https = freePort();
  const addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
  const nodes = await Promise.all(
    addresses.map((address) =>
      startGateway({
        address,
        httpPort: http01Port,
        listenExtra: `https = "${address}:${https}"`,
        extra: storage + acme,
        routes: { three: 'hosts = ["three.test"]\ntls = "acme"\nstatic = "builtin:welcome"\n' },
      }),
    ),
  );
  gateways.push(...nodes);
  recorder.open();
  try {
    const root = readFileSync(tb.env.ACME_ISSUER_ROOT, "utf8");
    const fingerprints = new Set<string>();
    for (const address of addresses) {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const r = await tlsGet(https, "three.test", "three.test", "/", root, address).catch(() => undefined);
        if (r?.authorized) {
          fingerprints.add(r.cert.fingerprint256);
          break;
        }
        if (Date.now() > deadline) throw new Error(`the node on ${address} serves no certificate from the CA`);
        await Bun.sleep(200);
      }
    }
    expect(fingerprints.size).toBe(1);
    expect(recorder.orders()).toBe(1);
    expect(nodes.flatMap((g) => g.logs.filter((l) => l.msg === "certificate obtained")).length).toBe(1);
    // Every validation request reached the node on .3, which answered it (from etcd, unless it placed the order itself).
    const validations = nodes.map((g) => g.accessLogs().filter((l) => String(l.path).startsWith("/.well-known/acme-challenge/")).length);
    expect(validations[1]).toBeGreaterThan(0);
    expect([validations[0], validations[2]]).toEqual([0, 0]);
  } finally {
    recorder.stop();
    await deleteRecord(dnsUpdate(), "three.test", TYPE.A, addressData("127.0.0.3"));
    await Promise.all(nodes.map((g) => g.stop()));
  }
});

test("the ordering node killed with SIGKILL mid-order: another node takes the certificate's lock once the dead node's lease has expired, and completes it", async () => {
  const storage = `[storage]\nbackend = "etcd"\nendpoints = ["${etcd.url}"]\nprefix = "killed/"\n`;
  const acme = `[acme]\ndirectory = "${tb.env.ACME_DIRECTORY_URL}"\nemail = "ops@killed.test"\nca_file = "${tb.env.ACME_API_CA_CERT}"\n`;
  const route = { killed: 'hosts = ["killed.test"]\ntls = "acme"\nstatic = "builtin:welcome"\n' };
  // The CA's validation port answers slowly: A's order stays in flight, its token published, while A is killed.
  const slow = Bun.serve({
    hostname: "127.0.0.1",
    port: http01Port,
    fetch: async () => {
      await Bun.sleep(4000);
      return new Response("not here", { status: 404 });
    },
  });
  const a = await startGateway({ listenExtra: `https = "127.0.0.1:${freePort()}"`, extra: storage + acme, routes: route });
  gateways.push(a);
  const deadline = Date.now() + 15_000;
  while (etcd.etcdctl("get", "--prefix", "--keys-only", "killed/challenges/").trim() === "") {
    if (Date.now() > deadline) throw new Error("node A published no HTTP-01 token");
    await Bun.sleep(20);
  }
  expect(etcd.etcdctl("get", "--prefix", "--keys-only", "killed/locks/").trim()).not.toBe("");
  a.proc.kill("SIGKILL");
  await a.proc.exited;
  slow.stop(true);
  const t0 = Date.now();
  const httpsPort = freePort();
  const b = await startGateway({ httpPort: http01Port, listenExtra: `https = "127.0.0.1:${httpsPort}"`, extra: storage + acme, routes: route });
  gateways.push(b);
  const line = await b.waitForLog((l) => l.msg === "certificate obtained", 40_000);
  expect(line.names).toEqual(["killed.test"]);
  // Not before the dead node's lease (10 s) ran out: the lock held until then.
  expect(Date.now() - t0).toBeGreaterThan(5000);
  const res = await tlsGet(httpsPort, "killed.test", "killed.test", "/", readFileSync(tb.env.ACME_ISSUER_ROOT, "utf8"));
  expect(res.authorized).toBe(true);
  await b.stop();
}, 60_000);

test("a three-member etcd whose leader is killed during an order: the order completes, once", async () => {
  const cluster = await startEtcdCluster(3);
  try {
    const storage = `[storage]\nbackend = "etcd"\nendpoints = [${cluster.urls.map((u) => `"${u}"`).join(", ")}]\nprefix = "leader/"\n`;
    const acme = `[acme]\ndirectory = "${tb.env.ACME_DIRECTORY_URL}"\nemail = "ops@leader.test"\nca_file = "${tb.env.ACME_API_CA_CERT}"\n`;
    const httpsPort = freePort();
    const a = await startGateway({
      httpPort: http01Port,
      listenExtra: `https = "127.0.0.1:${httpsPort}"`,
      extra: storage + acme,
      routes: { leader: 'hosts = ["leader.test"]\ntls = "acme"\nstatic = "builtin:welcome"\n' },
    });
    gateways.push(a);
    // The order is under way once its token is in etcd: then the leader goes.
    const survivor = async () => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        for (const url of cluster.urls) {
          const res = await fetch(`${url}/v3/kv/range`, {
            method: "POST",
            body: JSON.stringify({
              key: Buffer.from("leader/challenges/").toString("base64"),
              range_end: Buffer.from("leader/challenges0").toString("base64"),
            }),
            signal: AbortSignal.timeout(500),
          }).catch(() => undefined);
          const n = res ? Number(((await res.json()) as { count?: string }).count ?? 0) : 0;
          if (n > 0) return;
        }
        if (Date.now() > deadline) throw new Error("no HTTP-01 token appeared in etcd");
        await Bun.sleep(10);
      }
    };
    await survivor();
    const leader = await cluster.leader();
    await cluster.kill(leader);
    await a.waitForLog((l) => l.msg === "certificate obtained", 30_000);
    const res = await tlsGet(httpsPort, "leader.test", "leader.test", "/", readFileSync(tb.env.ACME_ISSUER_ROOT, "utf8"));
    expect(res.authorized).toBe(true);
    await Bun.sleep(500);
    expect(a.logs.filter((l) => l.msg === "certificate obtained").length).toBe(1);
    expect(await a.metric('gatehouse_acme_orders_total{result="success"}')).toBe("1");
    await a.stop();
  } finally {
    await cluster.cleanup();
  }
}, 60_000);
