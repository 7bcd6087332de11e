import { expect, test } from "bun:test";
import { parseProxyHeader } from "../front/proxy-protocol.ts";
import { proxyV2Header } from "./proxy-v2.ts";

test("an IPv4 header round-trips through the parser, byte for byte as the spec lays it out", () => {
  const h = proxyV2Header({ address: "127.0.0.2", port: 50123 }, { address: "127.0.0.1", port: 993 });
  expect([...h.subarray(0, 16)]).toEqual([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0, 12]);
  expect([...h.subarray(16)]).toEqual([127, 0, 0, 2, 127, 0, 0, 1, 50123 >> 8, 50123 & 0xff, 993 >> 8, 993 & 0xff]);
  expect(parseProxyHeader(h)).toEqual({
    kind: "proxy",
    source: { address: "127.0.0.2", port: 50123 },
    destination: { address: "127.0.0.1", port: 993 },
    bytes: 28,
  });
});

test("IPv6 addresses, compressed or not, round-trip as TCP over IPv6", () => {
  const h = proxyV2Header({ address: "2001:db8::5", port: 1 }, { address: "fd00:0:0:0:0:0:0:1", port: 65535 });
  expect(h[13]).toBe(0x21);
  expect(h.byteLength).toBe(16 + 36);
  expect(parseProxyHeader(h)).toEqual({
    kind: "proxy",
    source: { address: "2001:db8::5", port: 1 },
    destination: { address: "fd00::1", port: 65535 },
    bytes: 52,
  });
});

test("IPv4-mapped peers are sent as IPv4; a mixed pair as IPv6 with the IPv4 one mapped", () => {
  const mapped = proxyV2Header({ address: "::ffff:10.0.0.7", port: 4000 }, { address: "::ffff:10.0.0.1", port: 465 });
  expect(parseProxyHeader(mapped)).toMatchObject({ source: { address: "10.0.0.7" }, destination: { address: "10.0.0.1" } });
  const mixed = proxyV2Header({ address: "10.0.0.7", port: 4000 }, { address: "::1", port: 465 });
  expect(parseProxyHeader(mixed)).toMatchObject({ source: { address: "::ffff:10.0.0.7", port: 4000 }, destination: { address: "::1", port: 465 } });
});

test("a name instead of an address is refused", () => {
  expect(() => proxyV2Header({ address: "example.com", port: 1 }, { address: "127.0.0.1", port: 2 })).toThrow("not an IP address");
});

test("a terminated TLS connection's header carries PP2_TYPE_AUTHORITY and PP2_TYPE_SSL (client flag SSL, verify 0, the version); the parser skips them", () => {
  const h = proxyV2Header({ address: "127.0.0.2", port: 4000 }, { address: "127.0.0.1", port: 993 }, { version: "TLSv1.3", serverName: "mail.test" });
  expect(parseProxyHeader(h)).toMatchObject({ kind: "proxy", source: { address: "127.0.0.2", port: 4000 }, bytes: h.byteLength });
  const tlvs = Buffer.from(h.subarray(28));
  expect((h[14]! << 8) | h[15]!).toBe(h.byteLength - 16);
  // PP2_TYPE_AUTHORITY: the server name.
  expect([tlvs[0], tlvs.readUInt16BE(1)]).toEqual([0x02, 9]);
  expect(tlvs.subarray(3, 12).toString()).toBe("mail.test");
  // PP2_TYPE_SSL: client = PP2_CLIENT_SSL, verify = 0, then PP2_SUBTYPE_SSL_VERSION.
  const ssl = tlvs.subarray(12);
  expect([ssl[0], ssl.readUInt16BE(1), ssl[3], ssl.readUInt32BE(4)]).toEqual([0x20, 5 + 3 + 7, 0x01, 0]);
  expect([ssl[8], ssl.readUInt16BE(9), ssl.subarray(11).toString()]).toEqual([0x21, 7, "TLSv1.3"]);
});
