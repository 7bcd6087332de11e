/** DNS discovery of upstreams through the real gateway: a name's addresses are the endpoints, followed as records change in bind (RFC 2136 updates), the last answer kept when DNS fails. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { addRecord, deleteRecord, type DnsUpdateOptions } from "../src/tls/acme/dns-update.ts";
import { addressData, TYPE } from "../src/lib/dns-wire.ts";
import { freePort, startGateway, type TestGateway } from "./harness.ts";
import { Testbed } from "./testbed.ts";

let tb: Testbed;
let gw: TestGateway;
let opts: DnsUpdateOptions;
const port = freePort();
// Two origins on one port at two loopback addresses: the two pods of a service.
const pods = ["127.0.0.2", "127.0.0.3"].map((ip) => Bun.serve({ hostname: ip, port, fetch: () => new Response(ip) }));
const NAME = "web.svcs.test";

beforeAll(async () => {
  tb = Testbed.start();
  opts = {
    server: { host: "127.0.0.1", port: Number(tb.env.DNS_PORT) },
    key: { name: tb.env.TSIG_KEY_NAME, algorithm: "hmac-sha256", secret: new Uint8Array(Buffer.from(tb.env.TSIG_SECRET, "base64")) },
  };
  await addRecord(opts, NAME, TYPE.A, addressData("127.0.0.2"), 1);
  gw = await startGateway({
    extra: `[resolver]\nservers = ["127.0.0.1:${tb.env.DNS_PORT}"]\n`,
    routes: { web: `hosts = ["web.test"]\nupstreams = ["http://${NAME}:${port}"]\n` },
  });
});

afterAll(async () => {
  await gw?.cleanup();
  tb?.stop();
  for (const p of pods) p.stop(true);
});

async function seen(n = 8): Promise<Set<string>> {
  const out = new Set<string>();
  for (let i = 0; i < n; i++) out.add(await (await gw.request("web.test")).text());
  return out;
}

async function until(want: string[], timeoutMs = 5000): Promise<Set<string>> {
  const deadline = Date.now() + timeoutMs;
  let got = await seen();
  while ([...got].sort().join() !== want.join() && Date.now() < deadline) {
    await Bun.sleep(100);
    got = await seen();
  }
  return got;
}

test("the name's address is the endpoint from the start", async () => {
  expect(await seen()).toEqual(new Set(["127.0.0.2"]));
});

test("scale up: a new address gets traffic within its TTL", async () => {
  await addRecord(opts, NAME, TYPE.A, addressData("127.0.0.3"), 1);
  expect(await until(["127.0.0.2", "127.0.0.3"])).toEqual(new Set(["127.0.0.2", "127.0.0.3"]));
  await gw.waitForLog((l) => l.msg === "upstream endpoints changed", 1000);
});

test("scale down: an address that leaves DNS leaves the pool", async () => {
  await deleteRecord(opts, NAME, TYPE.A, addressData("127.0.0.2"));
  expect(await until(["127.0.0.3"])).toEqual(new Set(["127.0.0.3"]));
  const view = (await (await fetch(`${gw.admin}/upstreams`)).json()) as { upstream: string }[];
  expect(view.map((u) => u.upstream)).toEqual([`http://127.0.0.3:${port}`]);
  // Its metric series go too: rolling pods must not grow the label sets without bound.
  const m = await (await fetch(`${gw.admin}/metrics`)).text();
  expect(m).toContain(`gatehouse_upstream_response_seconds_count{route="web",upstream="http://127.0.0.3:${port}"}`);
  expect(m).not.toContain(`upstream="http://127.0.0.2:${port}"`);
});

test("health checks follow DNS: an address that appears is checked, one that leaves is not", async () => {
  gw.writeRoute(
    "checked",
    `hosts = ["checked.test"]\nupstreams = ["http://${NAME}:${port}"]\n[health]\npath = "/"\ninterval = "200ms"\ntimeout = "100ms"\njitter = "10ms"\n`,
  );
  expect((await gw.reload()).msg).toBe("config reloaded");
  type View = { route: string; upstream: string; last_check: { ok: boolean } | null }[];
  const view = async () => ((await (await fetch(`${gw.admin}/upstreams`)).json()) as View).filter((u) => u.route === "checked");
  const checked = async (url: string, timeoutMs = 4000) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if ((await view()).find((u) => u.upstream === url)?.last_check?.ok) return true;
      await Bun.sleep(50);
    }
    return false;
  };
  expect(await checked(`http://127.0.0.3:${port}`)).toBe(true);
  await addRecord(opts, NAME, TYPE.A, addressData("127.0.0.2"), 1);
  expect(await checked(`http://127.0.0.2:${port}`)).toBe(true);
  await deleteRecord(opts, NAME, TYPE.A, addressData("127.0.0.2"));
  const deadline = Date.now() + 4000;
  while ((await view()).some((u) => u.upstream === `http://127.0.0.2:${port}`) && Date.now() < deadline) await Bun.sleep(50);
  expect((await view()).map((u) => u.upstream)).toEqual([`http://127.0.0.3:${port}`]);
  gw.removeRoute("checked");
  expect((await gw.reload()).msg).toBe("config reloaded");
  expect(await until(["127.0.0.3"])).toEqual(new Set(["127.0.0.3"]));
});

test("a rolling update under load: a new pod joins, the old one leaves DNS and then stops; no request fails", async () => {
  const next = Bun.serve({ hostname: "127.0.0.4", port, fetch: () => new Response("127.0.0.4") });
  let ok = 0;
  const failures: string[] = [];
  let running = true;
  const worker = async () => {
    while (running) {
      try {
        const r = await gw.request("web.test");
        if (r.status === 200) {
          await r.text();
          ok++;
        } else failures.push(`status ${r.status}: ${await r.text()}`);
      } catch (e) {
        failures.push(String(e));
      }
    }
  };
  const load = Promise.all(Array.from({ length: 4 }, worker));
  try {
    await addRecord(opts, NAME, TYPE.A, addressData("127.0.0.4"), 1);
    expect(await until(["127.0.0.3", "127.0.0.4"])).toEqual(new Set(["127.0.0.3", "127.0.0.4"]));
    await deleteRecord(opts, NAME, TYPE.A, addressData("127.0.0.3"));
    expect(await until(["127.0.0.4"])).toEqual(new Set(["127.0.0.4"]));
    await Bun.sleep(200);
    pods[1]!.stop(true); // the old pod goes away for good
    await Bun.sleep(500);
  } finally {
    running = false;
    await load;
  }
  console.log(`rolling update: ${ok} requests, ${failures.length} failed`);
  expect(failures).toEqual([]);
  expect(ok).toBeGreaterThan(100);
  next.stop(true);
  // The pool now has no live pod: put 127.0.0.3's record back for the next test.
  pods[1] = Bun.serve({ hostname: "127.0.0.3", port, fetch: () => new Response("127.0.0.3") });
  await deleteRecord(opts, NAME, TYPE.A, addressData("127.0.0.4"));
  await addRecord(opts, NAME, TYPE.A, addressData("127.0.0.3"), 1);
  expect(await until(["127.0.0.3"])).toEqual(new Set(["127.0.0.3"]));
});

test("resolver down: the last answer stays in use, the failure is logged and counted", async () => {
  tb.stop();
  await gw.waitForLog((l) => l.msg.startsWith("upstream name did not resolve"), 8000);
  expect(await seen()).toEqual(new Set(["127.0.0.3"]));
  const m = await (await fetch(`${gw.admin}/metrics`)).text();
  expect(Number(/gatehouse_upstream_dns_events_total\{route="web",result="failure"\} (\d+)/.exec(m)?.[1])).toBeGreaterThanOrEqual(1);
});
