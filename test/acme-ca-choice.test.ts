/** A CA per site and issuer fallback, end to end against two real CAs (two Debian pebbles, the second requiring External Account Binding as ZeroSSL does). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, origin, startGateway, type LogLine, type TestGateway } from "./harness.ts";
import { Testbed } from "./testbed.ts";
import { tlsGet } from "./tls-client.ts";

const up = origin((req) => new Response(`hello from ${req.headers.get("host")}`));
/** EAB is the External Account Binding the second CA requires (Pebble takes the MAC key base64url, as ZeroSSL hands it out). */
const EAB = { kid: "gatehouse-test", hmacKey: Buffer.from("a 32-byte MAC key for the tests!").toString("base64url") };
let http01Port: number;
let one: Testbed;
let two: Testbed;
let oneRoot: string;
let twoRoot: string;

beforeAll(() => {
  http01Port = freePort();
  // Both CAs validate HTTP-01 on the same port: the gateway's plain HTTP listener.
  one = Testbed.start({ http01Port });
  two = Testbed.start({ http01Port, eab: EAB });
  oneRoot = readFileSync(one.env.ACME_ISSUER_ROOT, "utf8");
  twoRoot = readFileSync(two.env.ACME_ISSUER_ROOT, "utf8");
});

afterAll(() => {
  one?.stop();
  two?.stop();
  up.stop(true);
});

const route = (host: string, acme = "") => `hosts = ["${host}"]\ntls = "acme"\nupstreams = ["http://127.0.0.1:${up.port}"]\n${acme}`;
const caTable = (tb: Testbed, extra = "") => `[acme]\ndirectory = "${tb.env.ACME_DIRECTORY_URL}"\nca_file = "${tb.env.ACME_API_CA_CERT}"\n${extra}`;
const eabKeys = `eab_kid = "${EAB.kid}"\neab_hmac_key = "${EAB.hmacKey}"\n`;

/** servedBy waits (bounded) until host's certificate over TLS verifies against root, and returns its fingerprint. */
async function servedBy(port: number, host: string, root: string, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await tlsGet(port, host, host, "/", root);
    if (res.authorized) {
      expect(res.body).toBe(`hello from ${host}`);
      return res.cert.fingerprint256;
    }
    if (Date.now() > deadline) throw new Error(`${host} is not served with a certificate of the expected CA: ${res.authorizationError}`);
    await Bun.sleep(50);
  }
}

const obtained = (site: string) => (l: LogLine) => l.msg === "certificate obtained" && l.site === site;
const notObtained = (site: string) => (l: LogLine) => l.msg.startsWith("certificate not obtained") && l.site === site;

test("two sites, two CAs: each site orders from its own [acme] directory (with its own account, e-mail and EAB), its chain verifies to its CA's root only; moving a site to the other CA orders anew while the stored certificate serves", async () => {
  const t0 = performance.now();
  const httpsPort = freePort();
  const gw = await startGateway({
    httpPort: http01Port,
    listenExtra: `https = "127.0.0.1:${httpsPort}"`,
    extra: caTable(one, 'email = "ops@app.test"\n'),
    routes: {
      first: route("first.test"),
      second: route("second.test", caTable(two, `email = "second@app.test"\n${eabKeys}`)),
    },
  });
  try {
    const [a, b] = await Promise.all([gw.waitForLog(obtained("first"), 20_000), gw.waitForLog(obtained("second"), 20_000)]);
    expect(a).toMatchObject({ ca: one.env.ACME_DIRECTORY_URL, fallback: false });
    expect(b).toMatchObject({ ca: two.env.ACME_DIRECTORY_URL, fallback: false });
    const firstPrint = await servedBy(httpsPort, "first.test", oneRoot);
    await servedBy(httpsPort, "second.test", twoRoot);
    // Each chain verifies to its own CA's root and not to the other's.
    expect((await tlsGet(httpsPort, "first.test", "first.test", "/", twoRoot)).authorized).toBe(false);
    expect((await tlsGet(httpsPort, "second.test", "second.test", "/", oneRoot)).authorized).toBe(false);

    // One account at each CA, each under its own directory's key; the second with its own e-mail and the EAB key id.
    const registered = gw.logs.filter((l) => l.msg === "acme account registered");
    expect(registered.map((l) => [l.directory, l.email, l.eab_kid]).sort()).toEqual(
      [
        [one.env.ACME_DIRECTORY_URL, "ops@app.test", undefined],
        [two.env.ACME_DIRECTORY_URL, "second@app.test", EAB.kid],
      ].sort(),
    );
    const certs = join(gw.dir, "certs");
    const byPort = (tb: Testbed) => readdirSync(join(certs, "acme")).find((d) => d.startsWith(`127.0.0.1_${new URL(tb.env.ACME_DIRECTORY_URL).port}-`));
    const oneDir = byPort(one);
    const twoDir = byPort(two);
    expect(oneDir).toBeDefined();
    expect(twoDir).toBeDefined();
    expect(oneDir).not.toBe(twoDir);
    expect(existsSync(join(certs, "acme", oneDir!, "account.key"))).toBe(true);
    const twoAccounts = readdirSync(join(certs, "acme", twoDir!, "accounts"));
    expect(twoAccounts.length).toBe(1);
    expect(JSON.parse(readFileSync(join(certs, "acme", twoDir!, "accounts", twoAccounts[0]!, "account.json"), "utf8"))).toMatchObject({
      directory: two.env.ACME_DIRECTORY_URL,
      email: "second@app.test",
      eab_kid: EAB.kid,
    });
    const meta = (site: string) => JSON.parse(readFileSync(join(certs, "sites", site, "meta.json"), "utf8")) as { directory: string };
    expect(meta("first").directory).toBe(one.env.ACME_DIRECTORY_URL);
    expect(meta("second").directory).toBe(two.env.ACME_DIRECTORY_URL);
    console.log(`two CAs, two certificates: ${Math.round(performance.now() - t0)} ms`);

    // Moved to the second CA without its EAB key: the CA refuses the account, and the first CA's certificate keeps serving.
    gw.writeRoute("first", route("first.test", caTable(two)));
    let from = gw.logs.length;
    expect((await gw.reload()).msg).toBe("config reloaded");
    const inUse = await gw.waitForLog((l) => l.msg === "stored certificate in use" && l.site === "first", 5000, from);
    expect(inUse).toMatchObject({ ca: one.env.ACME_DIRECTORY_URL, replaced_soon: true });
    const refused = await gw.waitForLog(notObtained("first"), 20_000, from);
    expect(refused).toMatchObject({ step: "account", ca: two.env.ACME_DIRECTORY_URL });
    expect(String(refused.error)).toContain("externalAccountBinding");
    expect(await servedBy(httpsPort, "first.test", oneRoot)).toBe(firstPrint);

    // With the key, the reload retries at once (not at the backoff's next try): a certificate of the second CA.
    gw.writeRoute("first", route("first.test", caTable(two, eabKeys)));
    from = gw.logs.length;
    expect((await gw.reload()).msg).toBe("config reloaded");
    expect(await gw.waitForLog(obtained("first"), 20_000, from)).toMatchObject({ ca: two.env.ACME_DIRECTORY_URL });
    expect(await servedBy(httpsPort, "first.test", twoRoot)).not.toBe(firstPrint);
    expect(meta("first").directory).toBe(two.env.ACME_DIRECTORY_URL);
  } finally {
    await gw.cleanup();
  }
});

test("fallback: orders at a dead CA fail twice, the third goes to [[acme.fallback]] and is served; a restart with the CA still dead keeps that certificate", async () => {
  const t0 = performance.now();
  const dead = `https://127.0.0.1:${freePort()}/dir`; // nothing listens there
  const httpsPort = freePort();
  const config = {
    httpPort: http01Port,
    listenExtra: `https = "127.0.0.1:${httpsPort}"`,
    extra: `[acme]\ndirectory = "${dead}"\nemail = "ops@app.test"\nca_file = "${one.env.ACME_API_CA_CERT}"\n[[acme.fallback]]\ndirectory = "${one.env.ACME_DIRECTORY_URL}"\n`,
    routes: { app: route("fallback.test") },
  };
  const gw = await startGateway(config);
  let gw2: TestGateway | undefined;
  try {
    // The first attempt runs at start; the next ones are asked for through the admin API, as the retry timer would after its backoff (1 min, 2 min).
    const first = await gw.waitForLog(notObtained("app"), 10_000);
    expect(first).toMatchObject({ step: "directory", ca: dead, failures: 1 });
    expect(gw.logs.some((l) => l.msg.startsWith("certificate order moves"))).toBe(false);
    let from = gw.logs.length;
    expect((await fetch(`${gw.admin}/certificates/app/renew`, { method: "POST" })).status).toBe(202);
    const moved = await gw.waitForLog((l) => l.msg === "certificate order moves to the fallback CA", 10_000, from);
    expect(moved).toMatchObject({ site: "app", from: dead, to: one.env.ACME_DIRECTORY_URL, failed_attempts: 2 });
    expect(String(moved.last_error)).toContain(`cannot fetch the ACME directory ${dead}`);
    const [state] = (await (await fetch(`${gw.admin}/certificates`)).json()) as { order_ca: string; failures: number }[];
    expect(state).toMatchObject({ order_ca: one.env.ACME_DIRECTORY_URL, failures: 2 });

    from = gw.logs.length;
    expect((await fetch(`${gw.admin}/certificates/app/renew`, { method: "POST" })).status).toBe(202);
    expect(await gw.waitForLog(obtained("app"), 20_000, from)).toMatchObject({ ca: one.env.ACME_DIRECTORY_URL, fallback: true });
    const print = await servedBy(httpsPort, "fallback.test", oneRoot);
    const [after] = (await (await fetch(`${gw.admin}/certificates`)).json()) as Record<string, unknown>[];
    // Served from the fallback; the next order (at renewal time) starts at the site's own CA again.
    expect(after).toMatchObject({ ca: one.env.ACME_DIRECTORY_URL, order_ca: dead, failures: 0 });
    expect(Date.parse(String(after!.renewal_planned))).toBeGreaterThan(Date.now() + 86_400_000);
    expect(Date.parse(String(after!.next_check))).toBeGreaterThan(Date.now() + 3600_000);
    expect(await gw.metric('gatehouse_acme_orders_total{result="failure"}')).toBe("2");
    expect(await gw.metric('gatehouse_acme_orders_total{result="success"}')).toBe("1");
    console.log(`two failed orders and one at the fallback: ${Math.round(performance.now() - t0)} ms`);

    // Restart, the site's CA still dead: the fallback's certificate is the site's, not stale; nothing is ordered.
    expect(await gw.stop()).toBe(0);
    gw2 = await startGateway({ ...config, top: `certs_dir = "${join(gw.dir, "certs")}"` });
    const inUse = await gw2.waitForLog((l) => l.msg === "stored certificate in use", 5000);
    expect(inUse).toMatchObject({ site: "app", ca: one.env.ACME_DIRECTORY_URL, replaced_soon: false });
    expect(await servedBy(httpsPort, "fallback.test", oneRoot)).toBe(print);
    await Bun.sleep(1000); // the first check runs at once after start; an order at the dead CA would fail within milliseconds
    const orders = gw2.logs.filter((l) => ["certificate obtained", "acme order step failed"].includes(l.msg) || l.msg.startsWith("certificate not obtained"));
    expect(orders).toEqual([]);
    expect(await gw2.metric('gatehouse_acme_orders_total{result="failure"}')).toBe("0");
    expect(await gw2.metric('gatehouse_acme_orders_total{result="success"}')).toBe("0");
  } finally {
    await gw2?.cleanup();
    await gw.cleanup();
  }
});
