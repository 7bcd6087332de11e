/** ACME end to end against a real CA (Debian's pebble) and a real DNS server (bind9), through the gateway. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, origin, startGateway, tempDir, type TestGateway } from "./harness.ts";
import { Testbed } from "./testbed.ts";
import { tlsGet } from "./tls-client.ts";

const up = origin((req) => new Response(`hello from ${req.headers.get("host")}`));
let tb: Testbed;
let http01Port: number;
let issuerRoot: string;
let gw: TestGateway;
let httpsPort: number;

function acmeTable(extra = ""): string {
  return `[acme]\ndirectory = "${tb.env.ACME_DIRECTORY_URL}"\nemail = "ops@app.test"\nca_file = "${tb.env.ACME_API_CA_CERT}"\n${extra}`;
}

function dnsTable(secret = tb.env.TSIG_SECRET): string {
  return `challenge = "dns-01"\n[acme.dns]\nserver = "127.0.0.1:${tb.env.DNS_PORT}"\ntsig_key_name = "${tb.env.TSIG_KEY_NAME}"\ntsig_secret = "${secret}"\n`;
}

async function metric(g: TestGateway, name: string): Promise<string | undefined> {
  const text = await (await fetch(`${g.admin}/metrics`)).text();
  return text
    .split("\n")
    .find((l) => l.startsWith(name))
    ?.split(" ")
    .pop();
}

beforeAll(async () => {
  http01Port = freePort();
  tb = Testbed.start({ http01Port });
  issuerRoot = readFileSync(tb.env.ACME_ISSUER_ROOT, "utf8");
  httpsPort = freePort();
  gw = await startGateway({
    httpPort: http01Port,
    listenExtra: `https = "127.0.0.1:${httpsPort}"`,
    extra: acmeTable(),
    routes: { app: `hosts = ["app.test"]\ntls = "acme"\nupstreams = ["http://127.0.0.1:${up.port}"]\n` },
  });
});

afterAll(async () => {
  await gw?.cleanup();
  tb?.stop();
  up.stop(true);
});

test("HTTP-01: the gateway obtains a certificate in the background and serves a chain that verifies against the CA's root", async () => {
  const line = await gw.waitForLog((l) => l.msg === "certificate obtained", 20_000);
  console.log(`http-01 issuance against pebble: ${line.ms} ms`);
  expect(line.names).toEqual(["app.test"]);
  await gw.waitForLog((l) => l.msg === "https listener now serves the new certificates");
  const res = await tlsGet(httpsPort, "app.test", "app.test", "/", issuerRoot);
  expect(res.authorizationError).toBeUndefined();
  expect(res.authorized).toBe(true);
  expect(res.body).toBe("hello from app.test");
  expect(res.cert.subjectaltname).toBe("DNS:app.test");
  expect(await metric(gw, 'gatehouse_acme_orders_total{result="success"}')).toBe("1");
  expect(Number(await metric(gw, 'gatehouse_certificate_expiry_timestamp_seconds{name="app"}'))).toBeGreaterThan(Date.now() / 1000 + 86_400);
  const [cert] = (await (await fetch(`${gw.admin}/certificates`)).json()) as { name: string; source: string; failures: number }[];
  expect(cert).toMatchObject({ name: "app", source: "acme", failures: 0 });
});

test("a restart reuses the stored account and certificate without a new order", async () => {
  const served = await tlsGet(httpsPort, "app.test", "app.test");
  const port = freePort();
  const gw2 = await startGateway({
    top: `certs_dir = "${join(gw.dir, "certs")}"`,
    listenExtra: `https = "127.0.0.1:${port}"`,
    extra: acmeTable(),
    routes: { app: `hosts = ["app.test"]\ntls = "acme"\nupstreams = ["http://127.0.0.1:${up.port}"]\n` },
  });
  try {
    const res = await tlsGet(port, "app.test", "app.test", "/", issuerRoot);
    expect(res.authorized).toBe(true);
    expect(res.cert.fingerprint256).toBe(served.cert.fingerprint256);
    await Bun.sleep(300);
    expect(gw2.logs.filter((l) => l.msg === "certificate obtained" || l.msg === "acme account registered")).toEqual([]);
    expect(await metric(gw2, 'gatehouse_acme_orders_total{result="success"}')).toBe("0");
    // The start says which stored certificate it serves (issue 15, item 4); no site is internal, so no word of the internal CA.
    const reused = gw2.logs.find((l) => l.msg === "stored certificate in use");
    expect(reused).toMatchObject({ site: "app", names: ["app.test"], replaced_soon: false });
    expect(Date.parse(String(reused!.not_after))).toBe(new Date(served.cert.valid_to).getTime());
    expect(gw2.logs.some((l) => l.msg.startsWith("internal CA ready"))).toBe(false);
  } finally {
    await gw2.cleanup();
  }
});

test("a forced renewal under keep-alive load swaps the certificate with no failed request", async () => {
  const before = await tlsGet(httpsPort, "app.test", "app.test");
  let ok = 0;
  let failed = 0;
  const errors = new Set<string>();
  const stopAt = Date.now() + 2500;
  const worker = async () => {
    while (Date.now() < stopAt) {
      try {
        const r = await fetch(`https://127.0.0.1:${httpsPort}/`, { headers: { host: "app.test" }, tls: { ca: issuerRoot, serverName: "app.test" } });
        if ((await r.text()) === "hello from app.test") ok++;
        else failed++;
      } catch (e) {
        failed++;
        errors.add(String(e));
      }
    }
  };
  const load = Promise.all(Array.from({ length: 8 }, worker));
  await Bun.sleep(500);
  const from = gw.logs.length;
  expect((await fetch(`${gw.admin}/certificates/app/renew`, { method: "POST" })).status).toBe(202);
  await gw.waitForLog((l) => l.msg === "https listener now serves the new certificates", 20_000, from);
  await load;
  console.log(`renewal under load: ${ok} requests, ${failed} failed ${[...errors].join("; ")}`);
  expect(failed).toBe(0);
  expect(ok).toBeGreaterThan(100);
  const after = await tlsGet(httpsPort, "app.test", "app.test", "/", issuerRoot);
  expect(after.authorized).toBe(true);
  expect(after.cert.fingerprint256).not.toBe(before.cert.fingerprint256);
  // The second order used the stored account: it was registered once, at the first order.
  expect(gw.logs.filter((l) => l.msg === "acme account registered").length).toBe(1);
});

test("the CA down during renewal: the old certificate keeps serving, a retry is scheduled, the metric counts the failure", async () => {
  const port = freePort();
  const dead = freePort();
  const certs = copyCerts(`https://127.0.0.1:${dead}/dir`);
  const gw3 = await startGateway({
    top: `certs_dir = "${certs}"`,
    listenExtra: `https = "127.0.0.1:${port}"`,
    extra: `[acme]\ndirectory = "https://127.0.0.1:${dead}/dir"\nca_file = "${tb.env.ACME_API_CA_CERT}"\n`,
    routes: { app: `hosts = ["app.test"]\ntls = "acme"\nupstreams = ["http://127.0.0.1:${up.port}"]\n` },
  });
  try {
    const served = await tlsGet(port, "app.test", "app.test", "/", issuerRoot);
    expect(served.authorized).toBe(true);
    const planned = await metric(gw3, 'gatehouse_certificate_renewal_planned_timestamp_seconds{name="app"}');
    expect(Number(planned)).toBeGreaterThan(0);
    expect((await fetch(`${gw3.admin}/certificates/app/renew`, { method: "POST" })).status).toBe(202);
    const line = await gw3.waitForLog((l) => l.msg.startsWith("certificate not obtained"), 10_000);
    expect(line.step).toBe("directory");
    expect(String(line.error)).toContain(`cannot fetch the ACME directory https://127.0.0.1:${dead}/dir`);
    expect(Number(line.retry_in_s)).toBeGreaterThan(30);
    expect(await metric(gw3, 'gatehouse_acme_orders_total{result="failure"}')).toBe("1");
    const [state] = (await (await fetch(`${gw3.admin}/certificates`)).json()) as { failures: number; next_check: string; last_error: string }[];
    expect(state!.failures).toBe(1);
    expect(Date.parse(state!.next_check)).toBeGreaterThan(Date.now() + 30_000);
    // The planned renewal does not move with the retries: it is what an overdue alert compares with (issue 15, item 4).
    expect(await metric(gw3, 'gatehouse_certificate_renewal_planned_timestamp_seconds{name="app"}')).toBe(planned);
    const still = await tlsGet(port, "app.test", "app.test", "/", issuerRoot);
    expect(still.cert.fingerprint256).toBe(served.cert.fingerprint256);
    expect(still.status).toBe(200);
  } finally {
    await gw3.cleanup();
  }
});

/**
 * copyCerts copies the first gateway's certificates for another gateway whose [acme] directory is `directory`, recording that CA as their issuer (a certificate
 * from another CA would be replaced at once).
 */
function copyCerts(directory: string): string {
  const dir = tempDir("gatehouse-certs-");
  cpSync(join(gw.dir, "certs"), dir, { recursive: true });
  const metaPath = join(dir, "sites/app/meta.json");
  writeFileSync(metaPath, JSON.stringify({ ...JSON.parse(readFileSync(metaPath, "utf8")), directory }));
  return dir;
}

/**
 * fakeDirectory plays a CA in front of Pebble: Pebble's directory, plus the endpoints in `own` (path → handler) that the directory names instead of Pebble's.
 */
async function fakeDirectory(own: Record<string, { key: string; handle: (req: Request) => Response }>) {
  const pebbleDir = (await (await fetch(tb.env.ACME_DIRECTORY_URL, { tls: { ca: readFileSync(tb.env.ACME_API_CA_CERT, "utf8") } })).json()) as Record<
    string,
    unknown
  >;
  const server: import("bun").Server<undefined> = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req): Response {
      const path = new URL(req.url).pathname;
      if (path === "/dir")
        return Response.json({ ...pebbleDir, ...Object.fromEntries(Object.entries(own).map(([p, o]) => [o.key, `http://127.0.0.1:${server.port}${p}`])) });
      const hit = Object.entries(own).find(([p]) => path.startsWith(p));
      return hit ? hit[1].handle(req) : new Response("not found", { status: 404 });
    },
  });
  return { server, url: `http://127.0.0.1:${server.port}/dir` };
}

/** ariDirectory offers renewalInfo (RFC 9773) answering `window`, and records the certificate ids asked for. */
async function ariDirectory(window: { start: Date; end: Date }) {
  const asked: string[] = [];
  const ca = await fakeDirectory({
    "/renewal-info": {
      key: "renewalInfo",
      handle: (req) => {
        asked.push(new URL(req.url).pathname.slice("/renewal-info/".length));
        return Response.json({ suggestedWindow: { start: window.start.toISOString(), end: window.end.toISOString() } }, { headers: { "retry-after": "3600" } });
      },
    },
  });
  return { ...ca, asked };
}

test("ARI: a renewal window in the past (a revoked certificate, say) makes the gateway replace a valid certificate at once; a future window is kept", async () => {
  const { certId } = await import("../src/tls/acme/ari.ts");
  for (const past of [true, false]) {
    const now = Date.now();
    const ca = await ariDirectory(
      past ? { start: new Date(now - 7200_000), end: new Date(now - 3600_000) } : { start: new Date(now + 86_400_000), end: new Date(now + 2 * 86_400_000) },
    );
    const certs = copyCerts(ca.url);
    const oldCert = readFileSync(join(certs, "sites/app/cert.pem"), "utf8");
    const g = await startGateway({
      top: `certs_dir = "${certs}"`,
      listenExtra: `https = "127.0.0.1:${freePort()}"`,
      extra: `[acme]\ndirectory = "${ca.url}"\nca_file = "${tb.env.ACME_API_CA_CERT}"\nchallenge = "dns-01"\n${dnsTable().split("\n").slice(1).join("\n")}`,
      routes: { app: `hosts = ["app.test"]\ntls = "acme"\nupstreams = ["http://127.0.0.1:${up.port}"]\n` },
    });
    try {
      if (past) {
        await g.waitForLog((l) => l.msg === "certificate obtained", 20_000);
        expect(readFileSync(join(certs, "sites/app/cert.pem"), "utf8")).not.toBe(oldCert);
      } else {
        const deadline = Date.now() + 5000;
        while (ca.asked.length === 0 && Date.now() < deadline) await Bun.sleep(20);
        await Bun.sleep(200);
        const [state] = (await (await fetch(`${g.admin}/certificates`)).json()) as {
          renewal_window: { start: string } | null;
          next_check: string;
          renewal_planned: string;
        }[];
        expect(Date.parse(state!.renewal_window!.start)).toBe(now + 86_400_000);
        // The planned renewal is a point in the CA's window, not the next look at it.
        const planned = Date.parse(state!.renewal_planned);
        expect(planned).toBeGreaterThanOrEqual(now + 86_400_000);
        expect(planned).toBeLessThanOrEqual(now + 2 * 86_400_000);
        expect(await metric(g, 'gatehouse_certificate_renewal_planned_timestamp_seconds{name="app"}')).toBe(String(Math.floor(planned / 1000)));
        // Before the window, the next look is when the CA's Retry-After (1 h) says, plus up to a minute of jitter.
        expect(Date.parse(state!.next_check)).toBeGreaterThanOrEqual(now + 3600_000);
        expect(Date.parse(state!.next_check)).toBeLessThanOrEqual(Date.now() + 3661_000);
        expect(g.logs.some((l) => l.msg === "certificate obtained")).toBe(false);
      }
      expect(ca.asked[0]).toBe(certId(oldCert));
    } finally {
      await g.cleanup();
      ca.server.stop(true);
    }
  }
});

test("a rate-limited order is logged with the CA's detail and advice, and retried after the CA's Retry-After, not sooner", async () => {
  const ca = await fakeDirectory({
    "/new-order": {
      key: "newOrder",
      handle: () =>
        Response.json(
          { type: "urn:ietf:params:acme:error:rateLimited", detail: "too many certificates already issued for: app.test" },
          { status: 429, headers: { "retry-after": "7200", "content-type": "application/problem+json" } },
        ),
    },
  });
  const g = await startGateway({
    listenExtra: `https = "127.0.0.1:${freePort()}"`,
    extra: `[acme]\ndirectory = "${ca.url}"\nca_file = "${tb.env.ACME_API_CA_CERT}"\n`,
    routes: { app: `hosts = ["app.test"]\ntls = "acme"\nupstreams = ["http://127.0.0.1:${up.port}"]\n` },
  });
  try {
    const line = await g.waitForLog((l) => l.msg.startsWith("certificate not obtained"), 10_000);
    expect(line.step).toBe("new-order");
    expect(String(line.error)).toContain("too many certificates already issued for: app.test");
    expect(String(line.hint)).toContain("rate-limits");
    expect(line.retry_in_s).toBeGreaterThanOrEqual(7200);
    const step = g.logs.find((l) => l.msg === "acme order step failed");
    expect(step?.problem).toBe("urn:ietf:params:acme:error:rateLimited");
  } finally {
    await g.cleanup();
    ca.server.stop(true);
  }
});

test("DNS-01: a wildcard certificate through RFC 2136 updates to bind, records cleaned up afterwards", async () => {
  const port = freePort();
  const gw4 = await startGateway({
    listenExtra: `https = "127.0.0.1:${port}"`,
    extra: acmeTable(dnsTable()),
    routes: { wild: `hosts = ["*.app.test"]\ntls = "acme"\nupstreams = ["http://127.0.0.1:${up.port}"]\n` },
  });
  try {
    const line = await gw4.waitForLog((l) => l.msg === "certificate obtained", 30_000);
    console.log(`dns-01 wildcard issuance against pebble + bind: ${line.ms} ms`);
    await gw4.waitForLog((l) => l.msg === "https listener now serves the new certificates");
    const res = await tlsGet(port, "x.app.test", "x.app.test", "/", issuerRoot);
    expect(res.authorized).toBe(true);
    expect(res.cert.subjectaltname).toBe("DNS:*.app.test");
    expect(res.body).toBe("hello from x.app.test");
    const { queryTxt } = await import("../src/tls/acme/dns-update.ts");
    expect(await queryTxt({ host: "127.0.0.1", port: Number(tb.env.DNS_PORT) }, "_acme-challenge.app.test")).toEqual([]);
  } finally {
    await gw4.cleanup();
  }
});

test("DNS-01 with a wrong TSIG secret fails with a clear error naming the key", async () => {
  const gw5 = await startGateway({
    listenExtra: `https = "127.0.0.1:${freePort()}"`,
    extra: acmeTable(dnsTable(Buffer.from("not the secret at all, 32 bytes!").toString("base64"))),
    routes: { wild: `hosts = ["*.app.test"]\ntls = "acme"\nupstreams = ["http://127.0.0.1:${up.port}"]\n` },
  });
  try {
    const line = await gw5.waitForLog((l) => l.msg.startsWith("certificate not obtained"), 20_000);
    expect(line.step).toBe("dns-update");
    expect(String(line.error)).toContain("BADSIG");
    expect(String(line.error)).toContain(tb.env.TSIG_KEY_NAME);
  } finally {
    await gw5.cleanup();
  }
});
