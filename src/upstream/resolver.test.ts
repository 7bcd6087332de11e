import { describe, expect, test } from "bun:test";
import {
  CLASS,
  OPCODE,
  TYPE,
  addressData,
  decodeMessage,
  encodeMessage,
  encodeName,
  parseA,
  parseAaaa,
  parseSrv,
  soaMinimum,
  srvData,
  type ResourceRecord,
} from "../lib/dns-wire.ts";
import { ResolveError, readAnswer } from "./resolver.ts";

const rr = (name: string, type: number, ttl: number, data: Uint8Array): ResourceRecord => ({ name, type, class: CLASS.IN, ttl, data });
const soa = (ttl: number, minimum: number): ResourceRecord =>
  rr(
    "test",
    TYPE.SOA,
    ttl,
    new Uint8Array([...encodeName("ns.test"), ...encodeName("hostmaster.test"), ...new Uint8Array(16), 0, 0, minimum >> 8, minimum & 0xff]),
  );
/** answer encodes and decodes a response to name/type, as the resolver would receive it. */
const answer = (name: string, type: number, answers: ResourceRecord[], authorities: ResourceRecord[] = [], rcode = 0) => {
  const wire = encodeMessage({
    id: 7,
    qr: true,
    opcode: OPCODE.QUERY,
    aa: true,
    tc: false,
    rd: true,
    ra: true,
    rcode,
    questions: [{ name, type, class: CLASS.IN }],
    answers,
    authorities,
    additionals: [],
  });
  return { ...decodeMessage(wire), wire };
};

describe("rdata", () => {
  test("A is a dotted quad; other lengths are malformed", () => {
    expect(parseA(addressData("10.1.2.3"))).toBe("10.1.2.3");
    expect(() => parseA(new Uint8Array(5))).toThrow("malformed dns message: a rdata of 5 bytes");
  });

  test("AAAA comes out in RFC 5952 form: lower case, no leading zeros, first longest zero run as ::, never a single group", () => {
    const cases: [string, string][] = [
      ["::1", "::1"],
      ["::", "::"],
      ["FD00:0:0:0:0:0:0:1", "fd00::1"],
      ["2001:0db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["2001:db8:0:0:0:1:0:0", "2001:db8::1:0:0"],
      ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
      ["1::", "1::"],
    ];
    for (const [input, out] of cases) expect(parseAaaa(addressData(input))).toBe(out);
    expect(() => parseAaaa(new Uint8Array(4))).toThrow("aaaa rdata of 4 bytes");
    for (const badIp of ["1:2:3", "1::2::3", "1:2:3:4:5:6:7:8:9", "1.2.3", "256.1.1.1", "::ffff:1.2.3.4", "g::1"])
      expect(() => addressData(badIp)).toThrow("is not an ip address");
  });

  test("SRV reads priority, weight, port and a target, even a compressed one", () => {
    const plain = answer("_http._tcp.web.test", TYPE.SRV, [
      rr("_http._tcp.web.test", TYPE.SRV, 9, srvData({ priority: 1, weight: 20, port: 8080, target: "Pod-1.Web.Test" })),
    ]);
    expect(parseSrv(plain.wire, plain.answers[0]!)).toEqual({ priority: 1, weight: 20, port: 8080, target: "pod-1.web.test" });
    // header, question _x._tcp.a.test (a.test at offset 20), answer: name pointer to 12, SRV IN ttl 5, rdata 0 5 80 "pod" + pointer to 20
    const q = [...encodeName("_x._tcp.a.test"), 0, 33, 0, 1];
    const rdata = [0, 0, 0, 5, 0, 80, 3, 0x70, 0x6f, 0x64, 0xc0, 20];
    const wire = new Uint8Array([0, 7, 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0, ...q, 0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 5, 0, rdata.length, ...rdata]);
    const msg = decodeMessage(wire);
    expect(parseSrv(wire, msg.answers[0]!)).toEqual({ priority: 0, weight: 5, port: 80, target: "pod.a.test" });
    expect(() => parseSrv(wire, { ...msg.answers[0]!, data: new Uint8Array(6) })).toThrow("srv rdata of 6 bytes");
  });

  test("SOA MINIMUM is the last field", () => {
    expect(soaMinimum(soa(60, 300).data)).toBe(300);
    expect(() => soaMinimum(new Uint8Array(21))).toThrow("soa rdata of 21 bytes");
  });
});

describe("readAnswer", () => {
  test("records of the asked type for the name; ttl is the smallest; other names and types are ignored", () => {
    const m = answer("web.test", TYPE.A, [
      rr("web.test", TYPE.A, 30, addressData("10.0.0.1")),
      rr("web.test", TYPE.A, 10, addressData("10.0.0.2")),
      rr("other.test", TYPE.A, 1, addressData("10.0.0.9")),
      rr("web.test", TYPE.AAAA, 1, addressData("::1")),
    ]);
    expect(readAnswer(m, "Web.Test.", "A")).toEqual({
      records: [
        { address: "10.0.0.1", ttl: 30 },
        { address: "10.0.0.2", ttl: 10 },
      ],
      ttl: 10,
    });
  });

  test("a CNAME chain inside the answer is followed, its TTLs count", () => {
    const m = answer("alias.test", TYPE.AAAA, [
      rr("alias.test", TYPE.CNAME, 4, encodeName("mid.test")),
      rr("mid.test", TYPE.CNAME, 50, encodeName("web.test")),
      rr("web.test", TYPE.AAAA, 60, addressData("fd00::1")),
    ]);
    expect(readAnswer(m, "alias.test", "AAAA")).toEqual({ records: [{ address: "fd00::1", ttl: 60 }], ttl: 4 });
  });

  test("a chain that leaves the answer without a SOA is to be asked again at its end", () => {
    const m = answer("alias.test", TYPE.A, [rr("alias.test", TYPE.CNAME, 20, encodeName("web.elsewhere"))]);
    expect(readAnswer(m, "alias.test", "A")).toEqual({ records: [], ttl: 20, next: "web.elsewhere" });
  });

  test("a CNAME loop is a bad answer, not a hang", () => {
    const m = answer("a.test", TYPE.A, [rr("a.test", TYPE.CNAME, 5, encodeName("b.test")), rr("b.test", TYPE.CNAME, 5, encodeName("a.test"))]);
    expect(() => readAnswer(m, "a.test", "A")).toThrow("cname chain longer than 8");
  });

  test("NXDOMAIN and NODATA have no records and live min(SOA TTL, MINIMUM) (RFC 2308 §5), 0 without a SOA", () => {
    expect(readAnswer(answer("gone.test", TYPE.A, [], [soa(60, 30)], 3), "gone.test", "A")).toEqual({ records: [], ttl: 30 });
    expect(readAnswer(answer("web.test", TYPE.AAAA, [], [soa(10, 300)]), "web.test", "AAAA")).toEqual({ records: [], ttl: 10 });
    expect(readAnswer(answer("x.test", TYPE.A, [rr("x.test", TYPE.CNAME, 3, encodeName("y.test"))], [soa(10, 300)], 3), "x.test", "A")).toEqual({
      records: [],
      ttl: 3,
    });
    expect(readAnswer(answer("gone.test", TYPE.A, [], [], 3), "gone.test", "A")).toEqual({ records: [], ttl: 0 });
  });
});

test("ResolveError names the last server and rcode, and lists every attempt in its message", () => {
  const err = new ResolveError("web.test A", [
    { server: "127.0.0.1:53", rcode: "TIMEOUT", detail: "did not answer over udp within the timeout (100 ms)" },
    { server: "[::1]:53", rcode: "SERVFAIL", detail: "answered SERVFAIL" },
  ]);
  expect([err.rcode, err.server, err.question]).toEqual(["SERVFAIL", "[::1]:53", "web.test A"]);
  expect(err.message).toBe("resolving web.test A failed: 127.0.0.1:53 did not answer over udp within the timeout (100 ms); [::1]:53 answered SERVFAIL");
  expect(new ResolveError("x A", []).rcode).toBe("NETWORK");
});
