/** TLS-ALPN-01 end to end against a real CA (Debian's pebble): a site with `[acme] challenge = "tls-alpn-01"` proves its name on the HTTPS listener, alone and with workers = 2. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { freePort, origin, startGateway, type TestGateway } from "./harness.ts";
import { Testbed } from "./testbed.ts";
import { tlsGet } from "./tls-client.ts";

const up = origin((req) => new Response(`hello from ${req.headers.get("host")}`));
afterAll(() => up.stop(true));

/** Setup is one testbed whose CA validates TLS-ALPN-01 on the HTTPS port of one gateway. */
type Setup = { tb: Testbed; gw: TestGateway; httpsPort: number; issuerRoot: string };

/** setup starts a testbed and a gateway whose HTTPS listener is on the port the CA validates TLS-ALPN-01 on; the plain HTTP listener is not the CA's. */
async function setup(top = ""): Promise<Setup> {
  const httpsPort = freePort();
  const tb = Testbed.start({ tlsAlpn01Port: httpsPort });
  const gw = await startGateway({
    top,
    listenExtra: `https = "127.0.0.1:${httpsPort}"`,
    // config.toml keeps the default (http-01, which could not succeed here: nothing answers on the CA's HTTP-01 port); the site chooses tls-alpn-01.
    extra: `[acme]\ndirectory = "${tb.env.ACME_DIRECTORY_URL}"\nemail = "ops@app.test"\nca_file = "${tb.env.ACME_API_CA_CERT}"\n`,
    routes: { app: `hosts = ["app.test"]\ntls = "acme"\nupstreams = ["http://127.0.0.1:${up.port}"]\n[acme]\nchallenge = "tls-alpn-01"\n` },
  });
  return { tb, gw, httpsPort, issuerRoot: readFileSync(tb.env.ACME_ISSUER_ROOT, "utf8") };
}

/** servedVerified opens n new TLS connections and checks each got a chain that verifies against the CA's root; returns their leaf fingerprints. */
async function servedVerified(s: Setup, n: number): Promise<Set<string>> {
  const fingerprints = new Set<string>();
  for (let i = 0; i < n; i++) {
    const res = await tlsGet(s.httpsPort, "app.test", "app.test", "/", s.issuerRoot);
    expect(res.authorizationError).toBeUndefined();
    expect(res.authorized).toBe(true);
    expect(res.body).toBe("hello from app.test");
    expect(res.cert.subjectaltname).toBe("DNS:app.test");
    fingerprints.add(res.cert.fingerprint256);
  }
  return fingerprints;
}

describe("one process", () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup();
  });
  afterAll(async () => {
    await s?.gw.cleanup();
    s?.tb.stop();
  });

  test("the site proves its name on the HTTPS listener, obtains a certificate and serves a chain that verifies against the CA's root", async () => {
    const line = await s.gw.waitForLog((l) => l.msg === "certificate obtained", 20_000);
    console.log(`tls-alpn-01 issuance against pebble: ${line.ms} ms`);
    expect(line.names).toEqual(["app.test"]);
    await s.gw.waitForLog((l) => l.msg === "https listener now serves the new certificates");
    expect((await servedVerified(s, 1)).size).toBe(1);
    expect(await s.gw.metric('gatehouse_acme_orders_total{result="success"}')).toBe("1");
    // Nothing was asked of the plain HTTP listener: no HTTP-01.
    expect(s.gw.logs.filter((l) => String(l.path ?? "").startsWith("/.well-known/acme-challenge/"))).toEqual([]);
    expect(s.gw.logs.filter((l) => l.msg === "acme order step failed")).toEqual([]);
  });
});

describe("workers = 2", () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup("workers = 2");
  });
  afterAll(async () => {
    await s?.gw.cleanup();
    s?.tb.stop();
  });

  /** swapped waits until both workers serve the certificates stored after log line `from`. */
  const swapped = async (from: number) => {
    for (const worker of [1, 2]) await s.gw.waitForLog((l) => l.msg === "https listener now serves the new certificates" && l.worker === worker, 20_000, from);
  };

  test("the supervisor orders; the workers answer the CA's acme-tls/1 handshakes and serve the issued certificate", async () => {
    const obtained = await s.gw.waitForLog((l) => l.msg === "certificate obtained" && l.worker === undefined, 20_000);
    expect(obtained.names).toEqual(["app.test"]);
    await swapped(0);
    const from = s.gw.logs.length;
    expect((await servedVerified(s, 20)).size).toBe(1);
    const by = new Set(
      s.gw.logs
        .slice(from)
        .filter((l) => l.msg === "access" && l.host === "app.test" && l.status === 200)
        .map((l) => l.worker),
    );
    expect([...by].sort()).toEqual([1, 2]);
    expect(s.gw.logs.filter((l) => l.msg === "certificate obtained" && l.worker !== undefined)).toEqual([]);
  });

  test("a renewal proves the name again through the workers", async () => {
    const [before] = await servedVerified(s, 1);
    const from = s.gw.logs.length;
    expect((await fetch(`${s.gw.admin}/certificates/app/renew`, { method: "POST" })).status).toBe(202);
    await s.gw.waitForLog((l) => l.msg === "certificate obtained" && l.worker === undefined, 20_000, from);
    await swapped(from);
    const after = await servedVerified(s, 10);
    expect(after.size).toBe(1);
    expect(after.has(before!)).toBe(false);
    expect(await s.gw.metric('gatehouse_acme_orders_total{result="success"}')).toBe("2");
    expect(s.gw.logs.filter((l) => l.msg === "acme order step failed")).toEqual([]);
  });
});
