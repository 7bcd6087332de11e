/** ACME with workers = 2 against a real CA (Debian's pebble): one order in the supervisor, HTTP-01 answered by whichever worker the CA reaches, the certificate served by every worker. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { freePort, origin, startGateway, type LogLine, type TestGateway } from "./harness.ts";
import { Testbed } from "./testbed.ts";
import { tlsGet } from "./tls-client.ts";

const up = origin((req) => new Response(`hello from ${req.headers.get("host")}`));
let tb: Testbed;
let gw: TestGateway;
let httpsPort: number;
let issuerRoot: string;

beforeAll(async () => {
  const http01Port = freePort();
  tb = Testbed.start({ http01Port });
  issuerRoot = readFileSync(tb.env.ACME_ISSUER_ROOT, "utf8");
  httpsPort = freePort();
  gw = await startGateway({
    top: "workers = 2",
    httpPort: http01Port,
    listenExtra: `https = "127.0.0.1:${httpsPort}"`,
    extra: `[acme]\ndirectory = "${tb.env.ACME_DIRECTORY_URL}"\nemail = "ops@app.test"\nca_file = "${tb.env.ACME_API_CA_CERT}"\n`,
    routes: { app: `hosts = ["app.test"]\ntls = "acme"\nupstreams = ["http://127.0.0.1:${up.port}"]\n` },
  });
});

afterAll(async () => {
  await gw?.cleanup();
  tb?.stop();
  up.stop(true);
});

/** swapped waits until every worker serves the certificates stored after log line `from`. */
async function swapped(from: number): Promise<void> {
  for (const worker of [1, 2]) await gw.waitForLog((l) => l.msg === "https listener now serves the new certificates" && l.worker === worker, 20_000, from);
}

/** served opens n new TLS connections (the kernel spreads them over the workers) and returns the certificate fingerprints they got. */
async function served(n: number): Promise<Set<string>> {
  const fingerprints = new Set<string>();
  for (let i = 0; i < n; i++) {
    const res = await tlsGet(httpsPort, "app.test", "app.test", "/", issuerRoot);
    expect(res.authorized).toBe(true);
    expect(res.body).toBe("hello from app.test");
    fingerprints.add(res.cert.fingerprint256);
  }
  return fingerprints;
}

const fromWorkers = (lines: LogLine[], msg: string) => lines.filter((l) => l.msg === msg && l.worker !== undefined);

test("one order, in the supervisor; HTTP-01 answered by the workers; every worker serves the issued certificate", async () => {
  const obtained = await gw.waitForLog((l) => l.msg === "certificate obtained" && l.worker === undefined, 20_000);
  expect(obtained.names).toEqual(["app.test"]);
  await swapped(0);
  const from = gw.logs.length;
  const fingerprints = await served(30);
  expect(fingerprints.size).toBe(1);
  const by = new Set(
    gw.logs
      .slice(from)
      .filter((l) => l.msg === "access" && l.host === "app.test" && l.status === 200)
      .map((l) => l.worker),
  );
  expect([...by].sort()).toEqual([1, 2]);

  expect(await gw.metric('gatehouse_acme_orders_total{result="success"}')).toBe("1");
  expect(gw.logs.filter((l) => l.msg === "certificate obtained")).toHaveLength(1);
  // Workers never order, register an account or make a CA: they only load what the supervisor stored.
  for (const msg of [
    "certificate obtained",
    "acme account registered",
    "acme account key created",
    'internal CA ready; trust its certificate to use tls = "internal" sites without warnings',
  ])
    expect(fromWorkers(gw.logs, msg)).toEqual([]);
  // The CA's validation request reached a worker, which had the token.
  const challenges = gw.logs.filter((l) => l.msg === "access" && String(l.path).startsWith("/.well-known/acme-challenge/"));
  expect(challenges.length).toBeGreaterThan(0);
  expect(challenges.every((l) => l.status === 200 && l.worker !== undefined)).toBe(true);
  // Counted and logged under a route of their own, not as unrouted requests (issue 15, item 4).
  expect(challenges.every((l) => l.route === "acme-challenge")).toBe(true);
  expect(Number(await gw.metric('gatehouse_requests_total{route="acme-challenge",code="200"}'))).toBe(challenges.length);
  expect(Number(await gw.metric('gatehouse_certificate_expiry_timestamp_seconds{name="app"}'))).toBeGreaterThan(Date.now() / 1000 + 86_400);
  const [cert] = (await (await fetch(`${gw.admin}/certificates`)).json()) as { name: string; source: string; failures: number }[];
  expect(cert).toMatchObject({ name: "app", source: "acme", failures: 0 });
});

test("a renewal through the supervisor's admin API reaches every worker; /metrics still passes promtool", async () => {
  const [before] = await served(1);
  const from = gw.logs.length;
  expect((await fetch(`${gw.admin}/certificates/app/renew`, { method: "POST" })).status).toBe(202);
  await gw.waitForLog((l) => l.msg === "certificate obtained" && l.worker === undefined, 20_000, from);
  await swapped(from);
  const after = await served(20);
  expect(after.size).toBe(1);
  expect(after.has(before!)).toBe(false);
  expect(await gw.metric('gatehouse_acme_orders_total{result="success"}')).toBe("2");
  expect(await gw.metric("gatehouse_tls_certificate_updates_total")).toBe("4"); // two in each worker, in place
  const text = await (await fetch(`${gw.admin}/metrics`)).text();
  const promtool = Bun.spawnSync(["promtool", "check", "metrics"], { stdin: new TextEncoder().encode(text) });
  expect(promtool.stderr.toString() + promtool.stdout.toString()).toBe("");
  expect(promtool.exitCode).toBe(0);
});
