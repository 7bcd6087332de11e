/** [[tcp]] routes and what names their clients and upstreams: upstream names discovered through DNS (A records, SRV), and a PROXY preamble from a trusted source passed on in the PROXY v2 header. */
import { afterAll, describe, expect, test } from "bun:test";
import net from "node:net";
import { parseProxyHeader } from "../src/front/proxy-protocol.ts";
import { addressData, srvData, TYPE } from "../src/lib/dns-wire.ts";
import { addRecord, deleteRecord, type DnsUpdateOptions } from "../src/tls/acme/dns-update.ts";
import { freePort, startGateway, type TestGateway, writeConfig } from "./harness.ts";
import { connect, type Origin, route, tcpOrigin, waitFor } from "./tcp-helpers.ts";
import { Testbed } from "./testbed.ts";

const origins: Origin[] = [];
const gateways: TestGateway[] = [];
afterAll(async () => {
  for (const g of gateways) await g.cleanup();
  for (const o of origins) o.stop();
});

describe("PROXY protocol in", () => {
  test("a source listen.proxy_protocol trusts may open with a PROXY preamble: the client it names is the one the upstream's PROXY v2 header names", async () => {
    const o = await tcpOrigin("pp", (sock) => sock.on("data", () => sock.write("ok")));
    origins.push(o);
    const port = freePort();
    const gw = await startGateway({ listenExtra: 'proxy_protocol = ["127.0.0.0/8"]', extra: route("pp", port, [o.port], "send_proxy_protocol = 2") });
    gateways.push(gw);
    const c = await connect(port);
    await c.says("PROXY TCP4 203.0.113.7 192.0.2.1 5555 25\r\nhello", "ok");
    await waitFor(() => (o.received[0]?.byteLength ?? 0) >= 28 + 5);
    const got = o.received[0]!;
    expect(parseProxyHeader(got)).toEqual({
      kind: "proxy",
      source: { address: "203.0.113.7", port: 5555 },
      destination: { address: "192.0.2.1", port: 25 },
      bytes: 28,
    });
    // The preamble itself is not passed on; what followed it is.
    expect(got.subarray(28).toString()).toBe("hello");
    c.socket.end();
  });

  test("a route listening on [::1] names its IPv6 client and address in the PROXY v2 header (TCP over IPv6)", async () => {
    const o = await tcpOrigin("pp6", (sock) => sock.on("data", () => sock.write("ok")));
    origins.push(o);
    const port = freePort();
    const gw = await startGateway({ extra: route("pp6", port, [o.port], "send_proxy_protocol = 2").replace(`"127.0.0.1:${port}"`, `"[::1]:${port}"`) });
    gateways.push(gw);
    const c = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: "::1", port }, () => resolve(s));
      s.once("error", reject);
    });
    c.write("hello6");
    await waitFor(() => (o.received[0]?.byteLength ?? 0) >= 52 + 6);
    const got = o.received[0]!;
    expect(got[13]).toBe(0x21); // AF_INET6, STREAM
    expect(parseProxyHeader(got)).toEqual({
      kind: "proxy",
      source: { address: "::1", port: c.localPort! },
      destination: { address: "::1", port },
      bytes: 52,
    });
    expect(got.subarray(52).toString()).toBe("hello6");
    c.end();
  });
});

describe("dns discovery", () => {
  test("a named upstream is discovered through [resolver]: its addresses are the endpoints, followed as its records change", async () => {
    const tb = Testbed.start();
    const port = freePort();
    // Two origins on one port at two loopback addresses: two pods of a service.
    const pods = ["127.0.0.2", "127.0.0.3"].map((ip) => Bun.listen({ hostname: ip, port, socket: { data: (s) => void s.write(`${ip}\n`), open() {} } }));
    const opts: DnsUpdateOptions = {
      server: { host: "127.0.0.1", port: Number(tb.env.DNS_PORT) },
      key: { name: tb.env.TSIG_KEY_NAME, algorithm: "hmac-sha256", secret: new Uint8Array(Buffer.from(tb.env.TSIG_SECRET, "base64")) },
    };
    const name = "imap.svcs.test";
    try {
      await addRecord(opts, name, TYPE.A, addressData("127.0.0.2"), 1);
      const tcpPort = freePort();
      const gw = await startGateway({
        extra: `[resolver]\nservers = ["127.0.0.1:${tb.env.DNS_PORT}"]\n[[tcp]]\nname = "dns"\nlisten = "127.0.0.1:${tcpPort}"\nmode = "plain"\nupstreams = ["tcp://${name}:${port}"]\n`,
      });
      gateways.push(gw);
      const ask = async () => {
        const c = await connect(tcpPort);
        const text = await c.says("?", "\n");
        c.socket.end();
        return text.trim();
      };
      expect(await ask()).toBe("127.0.0.2");
      await addRecord(opts, name, TYPE.A, addressData("127.0.0.3"), 1);
      await deleteRecord(opts, name, TYPE.A, addressData("127.0.0.2"));
      const deadline = Date.now() + 8000;
      let got = await ask();
      while (got !== "127.0.0.3" && Date.now() < deadline) {
        await Bun.sleep(100);
        got = await ask();
      }
      expect(got).toBe("127.0.0.3");
      const rows = (await (await fetch(`${gw.admin}/upstreams`)).json()) as { kind?: string; route: string; upstream: string }[];
      expect(rows.filter((r) => r.kind === "tcp" && r.route === "dns").map((r) => r.upstream)).toEqual([`tcp://127.0.0.3:${port}`]);
      // tcp+srv://: the SRV record gives the target and the port.
      const svc = "_imap._tcp.svcs.test";
      await addRecord(opts, svc, TYPE.SRV, srvData({ priority: 10, weight: 1, port, target: name }), 1);
      const srvPort = freePort();
      writeConfig(gw.dir, gw.httpPort, gw.adminPort, {
        extra: `[resolver]\nservers = ["127.0.0.1:${tb.env.DNS_PORT}"]\n${route("srv", srvPort, []).replace("upstreams = []", `upstreams = ["tcp+srv://${svc}"]`)}`,
      });
      expect((await gw.reload()).msg).toBe("config reloaded");
      const c = await connect(srvPort);
      expect((await c.says("?", "\n")).trim()).toBe("127.0.0.3");
      c.socket.end();
    } finally {
      for (const p of pods) p.stop(true);
      tb.stop();
    }
  }, 30_000);
});
