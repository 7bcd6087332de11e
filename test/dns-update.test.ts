/** Integration tests of the RFC 2136 + TSIG client against a real bind9 (test/testbed.ts), plus fake servers on loopback for what bind will not do. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import dgram from "node:dgram";
import net from "node:net";
import { DnsUpdateError, addTxt, deleteTxt, findZone, queryTxt, type DnsServer, type DnsUpdateOptions, type TsigKey } from "../src/tls/acme/dns-update.ts";
import { CLASS, TYPE, decodeMessage, encodeMessage, encodeName, txtData, type DecodedMessage } from "../src/lib/dns-wire.ts";
import { signMessage, verifyTsig } from "../src/lib/dns-tsig.ts";
import { freeUdpPort } from "./harness.ts";
import { Testbed } from "./testbed.ts";

let testbed: Testbed;
let server: DnsServer;
let key: TsigKey;
let zone: string;
let opts: DnsUpdateOptions;
let n = 0;
const unique = (label: string): string => `${label}-${Date.now().toString(36)}-${n++}._acme-challenge.app.${zone}`;

beforeAll(() => {
  testbed = Testbed.start();
  const env = testbed.env;
  server = { host: env.DNS_SERVER, port: Number(env.DNS_PORT) };
  key = { name: env.TSIG_KEY_NAME, algorithm: env.TSIG_ALGORITHM as TsigKey["algorithm"], secret: new Uint8Array(Buffer.from(env.TSIG_SECRET, "base64")) };
  zone = env.ACME_ZONE;
  opts = { server, key, timeoutMs: 3000 };
});

afterAll(() => testbed?.stop());

/** rejection awaits p and returns its DnsUpdateError, failing the test when p resolves or throws something else. */
async function rejection(p: Promise<unknown>): Promise<DnsUpdateError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DnsUpdateError);
  return err as DnsUpdateError;
}

describe("against bind9", () => {
  test("findZone finds the apex for a name deep under the zone, any case, trailing dot or not", async () => {
    expect(await findZone(server, `a.b.c.d._acme-challenge.deep.${zone.toUpperCase()}.`)).toBe(zone);
    expect(await findZone(server, zone)).toBe(zone);
    const err = await rejection(findZone(server, "gatehouse.example"));
    expect(err.rcode).toBe("REFUSED");
    expect(err.message).toContain("not authoritative for gatehouse.example");
  });

  test("addTxt is accepted by bind (our TSIG MAC verifies there) and queryTxt then sees the value", async () => {
    const name = unique("add");
    expect(await queryTxt(server, name)).toEqual([]);
    await addTxt(opts, name, "token-1");
    expect(await queryTxt(server, `${name.toUpperCase()}.`)).toEqual(["token-1"]);
  });

  test("two values on one name: deleteTxt removes only the one given", async () => {
    const name = unique("two");
    await addTxt(opts, name, "first");
    await addTxt({ ...opts, zone: `${zone}.` }, name, "second");
    expect((await queryTxt(server, name)).sort()).toEqual(["first", "second"]);
    await deleteTxt(opts, name, "first");
    expect(await queryTxt(server, name)).toEqual(["second"]);
    await deleteTxt(opts, name, "second");
    expect(await queryTxt(server, name)).toEqual([]);
  });

  test("a 700-byte value is split into character-strings, sent over TCP, and read back over TCP after TC", async () => {
    const name = unique("big");
    const value = "abcdefghij".repeat(70);
    await addTxt(opts, name, value);
    expect(await queryTxt(server, name)).toEqual([value]);
  });

  test("a wrong secret gives NOTAUTH/BADSIG and says to check the secret", async () => {
    const err = await rejection(addTxt({ ...opts, key: { ...key, secret: new Uint8Array(32).fill(1) } }, unique("badsig"), "x"));
    expect([err.rcode, err.tsigError]).toEqual(["NOTAUTH", "BADSIG"]);
    expect(err.message).toContain(`knows key "${key.name}" but the signature did not verify: check that the secret (base64) and algorithm`);
  });

  test("a wrong key name gives NOTAUTH/BADKEY and names the key", async () => {
    const err = await rejection(addTxt({ ...opts, key: { ...key, name: "no-such-key" } }, unique("badkey"), "x"));
    expect([err.rcode, err.tsigError]).toEqual(["NOTAUTH", "BADKEY"]);
    expect(err.message).toContain(`no key "no-such-key" with algorithm hmac-sha256`);
  });

  test("a clock 20 minutes behind gives NOTAUTH/BADTIME with the server's lead", async () => {
    const err = await rejection(addTxt({ ...opts, clock: () => Date.now() - 1_200_000 }, unique("badtime"), "x"));
    expect([err.rcode, err.tsigError]).toEqual(["NOTAUTH", "BADTIME"]);
    expect(err.message).toMatch(/server is 1[12]\d\d s ahead\): check ntp/);
  });

  test("an update for a zone bind does not serve gives NOTAUTH", async () => {
    const err = await rejection(addTxt({ ...opts, zone: "gatehouse.example" }, "x.gatehouse.example", "x"));
    expect([err.rcode, err.tsigError]).toEqual(["NOTAUTH", undefined]);
    expect(err.message).toContain(`not authoritative for zone "gatehouse.example"`);
  });
});

/** fakeServer answers each UDP packet and each framed TCP message (same port) with reply(request), or nothing when it returns []; it counts both. */
async function fakeServer(reply: (req: DecodedMessage, wire: Uint8Array, via: "udp" | "tcp") => Uint8Array[]) {
  const count = { udp: 0, tcp: 0 };
  const tcp = net.createServer((conn) => {
    let buf = Buffer.alloc(0);
    conn.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      count.tcp++;
      const msg = new Uint8Array(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      for (const out of reply(decodeMessage(msg), msg, "tcp")) conn.write(Buffer.concat([Buffer.from([out.length >> 8, out.length & 0xff]), out]));
    });
  });
  // The UDP port's TCP twin may be taken (by any client's ephemeral port): then another pair is tried.
  let sock: dgram.Socket;
  let port: number;
  for (;;) {
    sock = dgram.createSocket("udp4");
    sock.on("message", (msg, from) => {
      count.udp++;
      for (const out of reply(decodeMessage(msg), new Uint8Array(msg), "udp")) sock.send(out, from.port, from.address);
    });
    await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
    port = sock.address().port;
    const bound = await new Promise<boolean>((r) => {
      tcp.once("error", () => r(false));
      tcp.listen(port, "127.0.0.1", () => r(true));
    });
    if (bound) break;
    await new Promise<void>((r) => sock.close(r));
  }
  const close = async () => {
    await new Promise<void>((r) => sock.close(r));
    await new Promise<void>((r) => tcp.close(() => r()));
  };
  return { server: { host: "127.0.0.1", port }, packets: () => count.udp, tcpMessages: () => count.tcp, close };
}

const fakeKey: TsigKey = { name: "fake-key", algorithm: "hmac-sha512", secret: new Uint8Array(64).fill(9) };

/**
 * signedReply answers an update NOERROR, signed with fakeKey over the request MAC (nothing if the request does not verify); tamper may alter the bytes after
 * signing.
 */
function signedReply(req: DecodedMessage, wire: Uint8Array, tamper?: (w: Uint8Array) => void): Uint8Array[] {
  const check = verifyTsig(wire, req, fakeKey, undefined, Math.floor(Date.now() / 1000));
  if (check.status !== "verified") return [];
  const body = encodeMessage({ ...req, qr: true, rcode: 0, answers: [], authorities: [], additionals: [] });
  const out = signMessage(body, fakeKey, Math.floor(Date.now() / 1000), check.tsig.mac).wire;
  tamper?.(out);
  return [out];
}

describe("against fake servers on loopback", () => {
  test("a correctly signed answer is accepted, one with a flipped MAC byte is rejected as BADSIG, an unsigned NOERROR too", async () => {
    let mode: "ok" | "tampered" | "unsigned" = "ok";
    const fake = await fakeServer((req, wire) => {
      if (mode === "unsigned") return [encodeMessage({ ...req, qr: true, authorities: [], additionals: [] })];
      return signedReply(
        req,
        wire,
        mode === "tampered"
          ? (w) => {
              w[w.length - 20]! ^= 0x40;
            }
          : undefined,
      );
    });
    try {
      const o = { server: fake.server, key: fakeKey, zone: "fake.test", timeoutMs: 2000 };
      await addTxt(o, "_acme-challenge.fake.test", "v");
      mode = "tampered";
      const bad = await rejection(addTxt(o, "_acme-challenge.fake.test", "v"));
      expect([bad.rcode, bad.tsigError]).toEqual(["NOERROR", "BADSIG"]);
      expect(bad.message).toContain("failed tsig verification, the mac does not verify");
      mode = "unsigned";
      const unsigned = await rejection(deleteTxt(o, "_acme-challenge.fake.test", "v"));
      expect(unsigned.message).toContain("NOERROR without a tsig cannot be trusted");
    } finally {
      await fake.close();
    }
  });

  test("an update over 512 bytes goes straight to TCP, and its signed answer there is verified", async () => {
    const fake = await fakeServer((req, wire) => signedReply(req, wire));
    try {
      await addTxt({ server: fake.server, key: fakeKey, zone: "fake.test", timeoutMs: 2000 }, "x.fake.test", "y".repeat(600));
      expect([fake.packets(), fake.tcpMessages()]).toEqual([0, 1]);
    } finally {
      await fake.close();
    }
  });

  test("findZone walks up label by label until a server that gives no SOA below the apex answers the apex's SOA", async () => {
    const asked: string[] = [];
    const soa = new Uint8Array([...encodeName("ns.zone.fake"), ...encodeName("hostmaster.zone.fake"), ...new Uint8Array(20)]);
    const fake = await fakeServer((req) => {
      const q = req.questions[0]!;
      asked.push(q.name);
      const answers = q.name === "zone.fake" ? [{ name: q.name, type: TYPE.SOA, class: CLASS.IN, ttl: 5, data: soa }] : [];
      return [encodeMessage({ ...req, qr: true, rcode: q.name.endsWith("zone.fake") ? 0 : 5, answers })];
    });
    try {
      expect(await findZone(fake.server, "A.b.Zone.Fake.", 2000)).toBe("zone.fake");
      expect(asked).toEqual(["a.b.zone.fake", "b.zone.fake", "zone.fake"]);
    } finally {
      await fake.close();
    }
  });

  test("stray packets with another id are ignored, over UDP and over TCP after TC", async () => {
    const fake = await fakeServer((req, _wire, via) => {
      const answer = (id: number, text: string, tc = false) =>
        encodeMessage({
          ...req,
          id,
          qr: true,
          aa: true,
          tc,
          answers: [{ name: req.questions[0]!.name, type: 16, class: CLASS.IN, ttl: 5, data: txtData(text) }],
        });
      const stray = answer((req.id + 1) & 0xffff, "stray");
      if (req.questions[0]!.name.startsWith("big") && via === "udp") return [stray, answer(req.id, "truncated", true)];
      return [stray, answer(req.id, `real over ${via}`)];
    });
    try {
      expect(await queryTxt(fake.server, "x.fake.test", 2000)).toEqual(["real over udp"]);
      expect(await queryTxt(fake.server, "big.fake.test", 2000)).toEqual(["real over tcp"]);
      expect([fake.packets(), fake.tcpMessages()]).toEqual([2, 1]);
    } finally {
      await fake.close();
    }
  });

  test("a silent server: one retransmit, then TIMEOUT within the timeout", async () => {
    const fake = await fakeServer(() => []);
    try {
      const started = Date.now();
      const err = await rejection(addTxt({ server: fake.server, key: fakeKey, zone: "fake.test", timeoutMs: 600 }, "x.fake.test", "v"));
      const took = Date.now() - started;
      expect(took).toBeGreaterThanOrEqual(590);
      expect(took).toBeLessThan(1000);
      expect(fake.packets()).toBe(2);
      expect(err.rcode).toBe("TIMEOUT");
      expect(err.message).toContain(`no answer from 127.0.0.1:${fake.server.port} over udp after 2 tries (timeout 600 ms): check the server address and port`);
    } finally {
      await fake.close();
    }
  });

  test("nothing listening on the UDP port fails within the timeout, saying so", async () => {
    const port = await freeUdpPort();
    const started = Date.now();
    const err = await rejection(addTxt({ server: { host: "127.0.0.1", port }, key: fakeKey, timeoutMs: 1000 }, "x.fake.test", "v"));
    expect(Date.now() - started).toBeLessThan(1200);
    expect(err.rcode).toMatch(/^(NETWORK|TIMEOUT)$/);
    expect(err.message).toContain(`127.0.0.1:${port}`);
    expect(err.message).toContain("check the server address and port");
  });
});
