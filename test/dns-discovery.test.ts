/** DNS discovery of upstreams against a real bind9 (test/testbed.ts, records changed with TSIG-signed updates), plus fake DNS servers on loopback for failures bind will not produce on demand. */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import dgram from "node:dgram";
import { addRecord, addTxt, deleteRecord, type DnsServer, type DnsUpdateOptions, type TsigKey } from "../src/tls/acme/dns-update.ts";
import { CLASS, TYPE, addressData, decodeMessage, encodeMessage, encodeName, srvData, type DecodedMessage, type SrvData } from "../src/lib/dns-wire.ts";
import { DnsDiscovery, parseDiscoveryUrl, parseResolvConf, type DiscoveredEndpoint, type DnsDiscoveryOptions } from "../src/upstream/dns-discovery.ts";
import { ResolveError, resolve } from "../src/upstream/resolver.ts";
import { freeUdpPort } from "./harness.ts";
import { Testbed } from "./testbed.ts";

let testbed: Testbed;
let bind: DnsServer;
let opts: DnsUpdateOptions;
let base: string;
let n = 0;
const unique = (label: string): string => `${label}-${n++}.${base}`;
const FAST: DnsDiscoveryOptions = { minTtlMs: 200, maxTtlMs: 1000, failRetryMs: 300, timeoutMs: 500 };

beforeAll(async () => {
  testbed = Testbed.start();
  const env = testbed.env;
  bind = { host: env.DNS_SERVER, port: Number(env.DNS_PORT) };
  const key: TsigKey = {
    name: env.TSIG_KEY_NAME,
    algorithm: env.TSIG_ALGORITHM as TsigKey["algorithm"],
    secret: new Uint8Array(Buffer.from(env.TSIG_SECRET, "base64")),
  };
  opts = { server: bind, key, zone: env.ACME_ZONE, timeoutMs: 3000 };
  base = `disc.${env.ACME_ZONE}`;
  // The zone has "*.test A 127.0.0.1"; once disc.test exists, missing names under it are NXDOMAIN instead (RFC 4592 §2.2).
  await addTxt(opts, base, "anchor");
});
afterAll(() => testbed?.stop());

const addressType = (ip: string): number => (ip.includes(":") ? TYPE.AAAA : TYPE.A);
const add = (name: string, ip: string): Promise<void> => addRecord(opts, name, addressType(ip), addressData(ip), 1);
const del = (name: string, ip: string): Promise<void> => deleteRecord(opts, name, addressType(ip), addressData(ip));
const addSrv = (name: string, srv: SrvData): Promise<void> => addRecord(opts, name, TYPE.SRV, srvData(srv), 1);

const running: DnsDiscovery[] = [];
afterEach(() => {
  for (const d of running.splice(0)) d.stop();
});

/** discover starts a DnsDiscovery, records its changes and errors, and awaits its first attempt (bounded). */
async function discover(url: string, servers: DnsServer[], options: DnsDiscoveryOptions = FAST) {
  const d = new DnsDiscovery(url, servers, options);
  running.push(d);
  const changes: (readonly DiscoveredEndpoint[])[] = [];
  const errors: ResolveError[] = [];
  const errorTimes: number[] = [];
  d.onChange((list) => changes.push(list));
  d.onError((err) => {
    errors.push(err);
    errorTimes.push(Date.now());
  });
  d.start();
  await Promise.race([
    d.ready,
    Bun.sleep(3000).then(() => {
      throw new Error("ready did not settle within 3 s");
    }),
  ]);
  return { d, changes, errors, errorTimes, urls: () => d.endpoints().map((e) => e.url) };
}

/** waitFor polls cond every 20 ms and fails after ms; it returns how long it took. */
async function waitFor(what: string, cond: () => boolean, ms = 3000): Promise<number> {
  const started = Date.now();
  while (!cond()) {
    if (Date.now() - started > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
  return Date.now() - started;
}

describe("against bind9", () => {
  test("A records become endpoints on the URL's port; an added record appears within its TTL (scale up)", async () => {
    const name = unique("web");
    await add(name, "127.0.0.2");
    const w = await discover(`http://${name}:8080`, [bind]);
    expect(w.d.endpoints()).toEqual([{ url: "http://127.0.0.2:8080", weight: 1 }]);
    await add(name, "127.0.0.3");
    expect(await waitFor("the new endpoint", () => w.urls().length === 2)).toBeLessThan(2500); // TTL 1 s + a little
    expect(w.urls()).toEqual(["http://127.0.0.2:8080", "http://127.0.0.3:8080"]);
    expect(w.changes.length).toBe(2);
    expect(w.errors).toEqual([]);
  });

  test("a deleted record disappears (scale down)", async () => {
    const name = unique("web");
    await add(name, "127.0.0.2");
    await add(name, "127.0.0.3");
    const w = await discover(`http://${name}:8080`, [bind]);
    expect(w.urls()).toEqual(["http://127.0.0.2:8080", "http://127.0.0.3:8080"]);
    await del(name, "127.0.0.2");
    await waitFor("the endpoint to go", () => w.urls().length === 1);
    expect(w.urls()).toEqual(["http://127.0.0.3:8080"]);
  });

  test("A and AAAA together: IPv6 in brackets, https defaults to 443; an AAAA-only name works too", async () => {
    const both = unique("dual"),
      v6 = unique("v6");
    await add(both, "127.0.0.4");
    await add(both, "::1");
    await add(v6, "0:0::1");
    expect((await discover(`https://${both}`, [bind])).urls()).toEqual(["https://127.0.0.4:443", "https://[::1]:443"]);
    expect((await discover(`http://${v6.toUpperCase()}.:81`, [bind])).d.endpoints()).toEqual([{ url: "http://[::1]:81", weight: 1 }]);
    expect((await resolve(v6, "AAAA", [{ host: "::1", port: bind.port }], 1000)).records).toEqual([{ address: "::1", ttl: 1 }]); // over udp6
  });

  test("SRV: ports and weights from the records, targets' A and AAAA, weight 0 counts as 1, lowest priority with addresses wins", async () => {
    const svc = `_http._tcp.${unique("svc")}`,
      t1 = unique("t1"),
      t2 = unique("t2"),
      t3 = unique("t3"),
      nowhere = unique("nowhere");
    await add(t1, "127.0.0.5");
    await add(t2, "127.0.0.6");
    await add(t2, "::1");
    await add(t3, "127.0.0.7");
    const r1 = { priority: 10, weight: 60, port: 8081, target: t1 },
      r2 = { priority: 10, weight: 0, port: 8082, target: t2 };
    await addSrv(svc, { priority: 0, weight: 100, port: 1, target: nowhere }); // has no addresses: skipped
    await addSrv(svc, r1);
    await addSrv(svc, r2);
    await addSrv(svc, { priority: 20, weight: 5, port: 9000, target: t3 });
    const w = await discover(`srv+http://${svc}`, [bind]);
    expect(w.d.endpoints()).toEqual([
      { url: "http://127.0.0.5:8081", weight: 60 },
      { url: "http://127.0.0.6:8082", weight: 1 },
      { url: "http://[::1]:8082", weight: 1 },
    ]);
    const srv = await resolve(svc, "SRV", [bind], 1000);
    expect(srv.records.length).toBe(4);
    expect(srv.ttl).toBe(1);
    await deleteRecord(opts, svc, TYPE.SRV, srvData(r1));
    await deleteRecord(opts, svc, TYPE.SRV, srvData(r2));
    await waitFor("the fallback priority", () => w.urls()[0] === "http://127.0.0.7:9000");
    expect(w.d.endpoints()).toEqual([{ url: "http://127.0.0.7:9000", weight: 5 }]);
    expect(w.errors).toEqual([]);
  });

  test("a CNAME chain is followed to its addresses; the smallest TTL on the way counts", async () => {
    const alias = unique("alias"),
      mid = unique("mid"),
      web = unique("web");
    await addRecord(opts, alias, TYPE.CNAME, encodeName(mid), 3);
    await addRecord(opts, mid, TYPE.CNAME, encodeName(web), 1);
    await addRecord(opts, web, TYPE.A, addressData("127.0.0.8"), 2);
    expect(await resolve(alias, "A", [bind], 1000)).toEqual({ records: [{ address: "127.0.0.8", ttl: 2 }], ttl: 1 });
    expect((await discover(`http://${alias}:80`, [bind])).urls()).toEqual(["http://127.0.0.8:80"]);
  });

  test("NXDOMAIN empties the list: it is an answer, not an error, and lives the SOA's negative TTL", async () => {
    const name = unique("gone");
    await add(name, "127.0.0.9");
    const w = await discover(`http://${name}:80`, [bind]);
    expect(w.urls()).toEqual(["http://127.0.0.9:80"]);
    await del(name, "127.0.0.9");
    await waitFor("the list to empty", () => w.urls().length === 0);
    expect(w.changes.map((c) => c.length)).toEqual([1, 0]);
    expect(w.errors).toEqual([]);
    expect(await resolve(name, "A", [bind], 1000)).toEqual({ records: [], ttl: 5 }); // db.zone.in: SOA TTL 5, MINIMUM 5
  });

  test("an answer over 512 bytes comes truncated over UDP and is asked again over TCP", async () => {
    const name = unique("many");
    for (let i = 1; i <= 40; i++) await add(name, `127.0.1.${i}`);
    const r = await resolve(name, "A", [bind], 2000);
    expect(r.records.map((x) => x.address).sort()).toEqual(Array.from({ length: 40 }, (_, i) => `127.0.1.${i + 1}`).sort());
  });

  test("servers are tried in order: a dead first server is skipped; REFUSED from every server is a ResolveError naming the last", async () => {
    const name = unique("web");
    await add(name, "127.0.0.10");
    const dead = { host: "127.0.0.1", port: await freeUdpPort() };
    expect((await resolve(name, "A", [dead, bind], 1000)).records).toEqual([{ address: "127.0.0.10", ttl: 1 }]);
    const err = await resolve("gatehouse.example", "A", [dead, bind], 1000).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ResolveError);
    const e = err as ResolveError;
    expect([e.rcode, e.server, e.attempts.map((a) => a.rcode)]).toEqual(["REFUSED", `127.0.0.1:${bind.port}`, ["NETWORK", "REFUSED"]]);
    expect(e.message).toBe(
      `resolving gatehouse.example A failed: 127.0.0.1:${dead.port} udp failed: connection refused; 127.0.0.1:${bind.port} answered REFUSED`,
    );
  });
});

/** fakeDns answers each UDP query with reply(request) (nothing for []), counting queries. */
async function fakeDns(reply: (req: DecodedMessage) => Uint8Array[]) {
  const sock = dgram.createSocket("udp4");
  let queries = 0;
  sock.on("message", (msg, from) => {
    queries++;
    for (const out of reply(decodeMessage(new Uint8Array(msg)))) sock.send(out, from.port, from.address);
  });
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
  return { server: { host: "127.0.0.1", port: sock.address().port }, queries: () => queries, close: () => new Promise<void>((r) => sock.close(r)) };
}

/** answerA answers A questions with ips (TTL ttl) and anything else with NODATA (no SOA, so TTL 0); over changes the response. */
const answerA = (req: DecodedMessage, ips: readonly string[], over: Partial<DecodedMessage> = {}, ttl = 0): Uint8Array => {
  const q = req.questions[0]!;
  const answers = q.type === TYPE.A ? ips.map((ip) => ({ name: q.name, type: TYPE.A, class: CLASS.IN, ttl, data: addressData(ip) })) : [];
  return encodeMessage({ ...req, qr: true, ra: true, answers, authorities: [], additionals: [], ...over });
};

describe("against fake servers on loopback", () => {
  test("resolver down after the first answer: the last answer is kept, onError is called, retries follow every failRetryMs", async () => {
    let mode: "up" | "silent" | "servfail" | "moved" = "up";
    const fake = await fakeDns((req) => {
      if (mode === "silent") return [];
      return [answerA(req, mode === "moved" ? ["127.0.0.12"] : ["127.0.0.11"], mode === "servfail" ? { rcode: 2, answers: [] } : {})];
    });
    const w = await discover("http://web.fake.test:80", [fake.server], { ...FAST, timeoutMs: 200 });
    expect(w.urls()).toEqual(["http://127.0.0.11:80"]);
    mode = "silent";
    await waitFor("three failed refreshes", () => w.errors.length >= 3);
    expect(w.urls()).toEqual(["http://127.0.0.11:80"]);
    const gap = w.errorTimes[2]! - w.errorTimes[1]!; // failRetryMs 300 + the 200 ms query timeout
    expect(gap).toBeGreaterThanOrEqual(450);
    expect(gap).toBeLessThan(1000);
    expect([w.errors[0]!.rcode, w.errors[0]!.server]).toEqual(["TIMEOUT", `127.0.0.1:${fake.server.port}`]);
    expect(w.errors[0]!.message).toContain("resolving web.fake.test A failed");
    mode = "servfail";
    await waitFor("a SERVFAIL", () => w.errors.at(-1)!.rcode === "SERVFAIL");
    expect(w.urls()).toEqual(["http://127.0.0.11:80"]);
    mode = "moved";
    await waitFor("the new answer", () => w.urls()[0] === "http://127.0.0.12:80");
    const before = w.errors.length;
    await fake.close();
    await waitFor("a NETWORK error", () => w.errors.length > before);
    expect(w.errors.at(-1)!.rcode).toBe("NETWORK");
    expect(w.urls()).toEqual(["http://127.0.0.12:80"]);
    expect(w.changes.length).toBe(2);
  });

  test("onChange fires only when the set changes, not on every refresh nor on a new order", async () => {
    let ips = ["127.0.0.13", "127.0.0.14"];
    const fake = await fakeDns((req) => [answerA(req, ips)]);
    try {
      const w = await discover("http://web.fake.test:80", [fake.server], { ...FAST, minTtlMs: 50 });
      await waitFor("four refreshes", () => fake.queries() >= 8);
      ips = ["127.0.0.14", "127.0.0.13"];
      await waitFor("four more refreshes", () => fake.queries() >= 16);
      expect(w.changes.length).toBe(1);
      const first = w.d.endpoints();
      ips = ["127.0.0.15"];
      await waitFor("the change", () => w.changes.length === 2);
      expect(w.changes[1]).toEqual([{ url: "http://127.0.0.15:80", weight: 1 }]);
      expect(first).toEqual(w.changes[0]!);
    } finally {
      await fake.close();
    }
  });

  test("the refresh interval is the TTL clamped to [minTtlMs, maxTtlMs]", async () => {
    const long = await fakeDns((req) => [answerA(req, ["127.0.0.18"], {}, 3600)]);
    const short = await fakeDns((req) => [answerA(req, ["127.0.0.19"], {}, 0)]);
    try {
      await discover("http://web.fake.test:80", [long.server], { ...FAST, minTtlMs: 100, maxTtlMs: 200 });
      await discover("http://web.fake.test:80", [short.server], { ...FAST, minTtlMs: 400, maxTtlMs: 1000 });
      await Bun.sleep(700);
      // an A + AAAA pair per refresh: 3600 s clamped to 200 ms gives 4 refreshes in 700 ms; 0 s clamped up to 400 ms gives 2
      expect(long.queries()).toBeGreaterThanOrEqual(6);
      expect(short.queries()).toBeLessThanOrEqual(4);
    } finally {
      await long.close();
      await short.close();
    }
  });

  test("answers with another id or question are ignored; only mismatched answers end in TIMEOUT", async () => {
    let honest = true;
    const fake = await fakeDns((req) => {
      const other = { ...req, questions: [{ ...req.questions[0]!, name: "evil.fake.test" }] };
      const forged = [answerA(req, ["10.6.6.6"], { id: (req.id + 1) & 0xffff }), answerA(other, ["10.6.6.7"])];
      return honest ? [...forged, answerA(req, ["127.0.0.16"])] : forged;
    });
    try {
      expect((await resolve("web.fake.test", "A", [fake.server], 500)).records).toEqual([{ address: "127.0.0.16", ttl: 0 }]);
      honest = false;
      const err = (await resolve("web.fake.test", "A", [fake.server], 300).catch((e: unknown) => e)) as ResolveError;
      expect(err.rcode).toBe("TIMEOUT");
      expect(fake.queries()).toBe(3); // one, then one retransmit at half the timeout
    } finally {
      await fake.close();
    }
  });

  test("ready settles after a failed first attempt; stop ends the refreshes", async () => {
    const dead = { host: "127.0.0.1", port: await freeUdpPort() };
    const w = await discover("http://web.fake.test:80", [dead]);
    expect([w.urls(), w.errors.length, w.errors[0]?.rcode]).toEqual([[], 1, "NETWORK"]);
    const fake = await fakeDns((req) => [answerA(req, ["127.0.0.17"])]);
    try {
      const live = await discover("http://web.fake.test:80", [fake.server], { ...FAST, minTtlMs: 50 });
      await waitFor("two refreshes", () => fake.queries() >= 4);
      live.d.stop();
      const seen = fake.queries();
      await Bun.sleep(300);
      expect(fake.queries()).toBeLessThanOrEqual(seen + 2); // a refresh in flight may finish
      expect(live.urls()).toEqual(["http://127.0.0.17:80"]);
    } finally {
      await fake.close();
    }
  });
});

test("upstream URLs: host names with scheme ports, srv+http(s) without ports; IPs, paths and other schemes are refused", () => {
  expect(parseDiscoveryUrl("http://Web.Default.svc.cluster.local.:8080")).toEqual({
    kind: "host",
    scheme: "http",
    host: "web.default.svc.cluster.local",
    port: 8080,
  });
  expect(parseDiscoveryUrl("https://web.test/")).toEqual({ kind: "host", scheme: "https", host: "web.test", port: 443 });
  expect(parseDiscoveryUrl("srv+https://_https._tcp.Web.test")).toEqual({ kind: "srv", scheme: "https", name: "_https._tcp.web.test" });
  const cases: [string, string][] = [
    ["http://10.0.0.1:80", "names an ip address"],
    ["http://[fd00::1]:80", "names an ip address"],
    ["http://web.test/api", "has a path"],
    ["srv+http://_http._tcp.web.test:80", "has a port; with srv the records give the ports"],
    ["ftp://web.test", "has scheme ftp"],
    ["srv+ftp://x.test", "has scheme srv+ftp"],
    ["web.test:80", "has scheme web.test"],
    ["http://u:p@web.test", "has user info"],
    ["nope", "is not a URL"],
  ];
  for (const [url, why] of cases) expect(() => parseDiscoveryUrl(url)).toThrow(`upstream ${JSON.stringify(url)} ${why}`);
  expect(() => parseDiscoveryUrl("http://web.test/api")).toThrow(
    `has a path, query or fragment: expected "http://web.default.svc.cluster.local:8080" (A/AAAA of a host name) or "srv+http://`,
  );
  expect(() => new DnsDiscovery("http://web.test", [bind ?? { host: "127.0.0.1", port: 53 }], { minTtlMs: 5000, maxTtlMs: 1000 })).toThrow(
    "minTtlMs (5000) is above maxTtlMs (1000)",
  );
});

test("resolv.conf: nameserver lines only, port 53, comments and junk skipped", () => {
  expect(
    parseResolvConf("# x\nsearch default.svc.cluster.local\nnameserver 10.96.0.10\nnameserver fe80::1%eth0 ; c\nnameserver bogus\noptions ndots:5\n"),
  ).toEqual([
    { host: "10.96.0.10", port: 53 },
    { host: "fe80::1%eth0", port: 53 },
  ]);
});
