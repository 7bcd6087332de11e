import { expect, test } from "bun:test";
import { isProxyError, parseProxyHeader } from "./proxy-protocol.ts";

const latin1 = (s: string) => Buffer.from(s, "latin1");
const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const v2 = (verCmd: number, family: number, block: number[]) => Uint8Array.from([...SIG, verCmd, family, block.length >> 8, block.length & 0xff, ...block]);
const errorOf = (b: Uint8Array) => {
  const r = parseProxyHeader(b);
  if (!isProxyError(r)) throw new Error(`expected a refusal, got ${JSON.stringify(r)}`);
  return r.error;
};

test("v1: TCP4 and TCP6 give the client's address and port, and where HTTP starts", () => {
  const line = "PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n";
  expect(parseProxyHeader(latin1(`${line}GET / HTTP/1.1\r\n`))).toEqual({
    kind: "proxy",
    source: { address: "192.0.2.10", port: 56324 },
    destination: { address: "198.51.100.1", port: 443 },
    bytes: line.length,
  });
  const six = parseProxyHeader(latin1("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"));
  expect(six).toMatchObject({ kind: "proxy", source: { address: "2001:db8::1", port: 1 }, destination: { port: 65535 } });
  expect(parseProxyHeader(latin1("PROXY UNKNOWN\r\n"))).toEqual({ kind: "local", bytes: 15 });
});

test("v1: incomplete is undefined; malformed lines are refused", () => {
  const line = "PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n";
  for (let cut = 1; cut < line.length; cut++) expect(parseProxyHeader(latin1(line.slice(0, cut)))).toBeUndefined();
  for (const bad of [
    "PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\n",
    "PROXY TCP4 192.0.2.10 198.51.100.1 56324\r\n",
    "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",
    "PROXY TCP6 192.0.2.10 2001:db8::2 1 2\r\n",
    "PROXY TCP4 192.0.2.10 198.51.100.1 65536 443\r\n",
    "PROXY TCP4 192.0.2.10 198.51.100.1 0443 443\r\n",
    "PROXY TCP4  192.0.2.10 198.51.100.1 1 443\r\n",
    "PROXY UDP4 192.0.2.10 198.51.100.1 1 443\r\n",
    "proxy TCP4 192.0.2.10 198.51.100.1 1 443\r\n",
  ]) {
    expect(errorOf(latin1(bad))).toBeString();
  }
  expect(errorOf(latin1(`PROXY TCP4 ${"1".repeat(120)}`))).toContain("longer than 107");
});

test("v2: PROXY over IPv4 and IPv6, TLVs skipped, LOCAL and UNSPEC carry no client", () => {
  const ipv4 = [192, 0, 2, 10, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb];
  const tlv = [0x04, 0x00, 0x02, 0xaa, 0xbb]; // a NOOP TLV after the addresses
  expect(parseProxyHeader(v2(0x21, 0x11, [...ipv4, ...tlv]))).toEqual({
    kind: "proxy",
    source: { address: "192.0.2.10", port: 56324 },
    destination: { address: "198.51.100.1", port: 443 },
    bytes: 16 + 17,
  });
  const src6 = [0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1];
  const mapped = [...new Array(10).fill(0), 0xff, 0xff, 203, 0, 113, 7];
  const r6 = parseProxyHeader(v2(0x21, 0x21, [...src6, ...mapped, 0, 80, 1, 187]));
  expect(r6).toEqual({ kind: "proxy", source: { address: "2001:db8::1", port: 80 }, destination: { address: "::ffff:203.0.113.7", port: 443 }, bytes: 52 });
  expect(parseProxyHeader(v2(0x20, 0x11, ipv4))).toEqual({ kind: "local", bytes: 28 });
  expect(parseProxyHeader(v2(0x21, 0x00, []))).toEqual({ kind: "local", bytes: 16 });
});

test("v2: incomplete is undefined; another version, command or family, or a short block is refused", () => {
  const full = v2(0x21, 0x11, [192, 0, 2, 10, 198, 51, 100, 1, 0, 1, 0, 2]);
  for (let cut = 1; cut < full.length; cut++) expect(parseProxyHeader(full.subarray(0, cut))).toBeUndefined();
  expect(errorOf(v2(0x11, 0x11, []))).toContain("version");
  expect(errorOf(v2(0x22, 0x11, []))).toContain("command");
  expect(errorOf(v2(0x21, 0x11, [1, 2, 3]))).toContain("shorter");
  expect(errorOf(v2(0x21, 0x31, []))).toContain("family");
  expect(errorOf(Uint8Array.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0b]))).toContain("not a PROXY");
});

test("a connection that starts with anything else is refused at once", () => {
  expect(errorOf(latin1("GET / HTTP/1.1\r\n"))).toContain("does not start with");
  expect(errorOf(latin1("\u0016\u0003\u0001"))).toContain("does not start with");
  expect(parseProxyHeader(new Uint8Array())).toBeUndefined();
});
