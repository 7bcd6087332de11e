/** The PROXY protocol version 2 header (HAProxy's spec §2.2) that a [[tcp]] route with send_proxy_protocol = 2 writes to its upstream: the client's address and the one it connected to. */
import { isIPv4, isIPv6 } from "../lib/ip.ts";
import type { ProxyAddress } from "../front/proxy-protocol.ts";

/** V2_SIGNATURE opens every version 2 header: "\r\n\r\n\0\r\nQUIT\n". */
const V2_SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
/** PROXY_COMMAND is version 2 (high nibble) with the PROXY command (low nibble 1): the connection was relayed for a client. */
const PROXY_COMMAND = 0x21;
/** TCP4 and TCP6 are the address family and transport bytes: AF_INET or AF_INET6 (high nibble), STREAM (low nibble). */
const TCP4 = 0x11;
const TCP6 = 0x21;

/** v4Bytes is the 4 bytes of a dotted IPv4 address, or of an IPv4-mapped IPv6 one (::ffff:a.b.c.d); undefined for any other. */
function v4Bytes(address: string): number[] | undefined {
  const text = address.toLowerCase().startsWith("::ffff:") && isIPv4(address.slice(7)) ? address.slice(7) : address;
  return isIPv4(text) ? text.split(".").map(Number) : undefined;
}

/** v6Bytes is the 16 bytes of an IPv6 address in any text form RFC 4291 §2.2 allows (an IPv4 address becomes ::ffff:a.b.c.d). */
function v6Bytes(address: string): number[] {
  const v4 = v4Bytes(address);
  if (v4 !== undefined && !address.includes(":")) return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4];
  let text = address.replace(/%.*$/, "");
  let tail: number[] = [];
  const dotted = /:(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    tail = dotted[1]!.split(".").map(Number);
    text = `${text.slice(0, dotted.index)}:0:0`;
  }
  const [head, rest] = text.split("::") as [string, string | undefined];
  const groups = (s: string) => (s === "" ? [] : s.split(":").map((g) => Number.parseInt(g, 16)));
  const h = groups(head);
  const r = rest === undefined ? [] : groups(rest);
  const all = rest === undefined ? h : [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
  const bytes = all.flatMap((g) => [g >> 8, g & 0xff]);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** PP2_TYPE_AUTHORITY, PP2_TYPE_SSL and its PP2_SUBTYPE_SSL_VERSION are the TLVs (spec §2.2.1-2.2.5) that tell the upstream how the client came. */
const PP2_TYPE_AUTHORITY = 0x02;
const PP2_TYPE_SSL = 0x20;
const PP2_SUBTYPE_SSL_VERSION = 0x21;
/** PP2_CLIENT_SSL: the client connected over TLS (which gatehouse terminated). */
const PP2_CLIENT_SSL = 0x01;

/** ClientTls says how a client whose TLS gatehouse terminated connected: the protocol version ("TLSv1.3") and the server name it asked for, when known. */
export type ClientTls = { readonly version?: string; readonly serverName?: string };

function tlv(type: number, value: readonly number[]): number[] {
  return [type, value.length >> 8, value.length & 0xff, ...value];
}

/** tlsTlvs are the TLVs of a terminated TLS connection: PP2_TYPE_SSL (client flag SSL, verify 0: no client certificate to fail) and the SNI as authority. */
function tlsTlvs(t: ClientTls): number[] {
  const ascii = (s: string) => [...Buffer.from(s, "latin1")];
  const version = t.version === undefined ? [] : tlv(PP2_SUBTYPE_SSL_VERSION, ascii(t.version));
  const ssl = tlv(PP2_TYPE_SSL, [PP2_CLIENT_SSL, 0, 0, 0, 0, ...version]);
  return t.serverName === undefined ? ssl : [...tlv(PP2_TYPE_AUTHORITY, ascii(t.serverName)), ...ssl];
}

/**
 * proxyV2Header is the header that names source (the client) and destination (the address it connected to) for the upstream: TCP over IPv4 when both are
 * IPv4 (mapped ones included), else TCP over IPv6 (an IPv4 address then mapped). With tls (a terminate route) it carries PP2_TYPE_SSL, so that an upstream
 * such as dovecot treats the client as secured, and the server name as PP2_TYPE_AUTHORITY. It throws when an address is no IP address (a bug: sockets report
 * addresses).
 */
export function proxyV2Header(source: ProxyAddress, destination: ProxyAddress, tls?: ClientTls): Uint8Array {
  for (const a of [source, destination]) if (!isIPv4(a.address) && !isIPv6(a.address)) throw new Error(`not an IP address: ${a.address}`);
  const s4 = v4Bytes(source.address);
  const d4 = v4Bytes(destination.address);
  const v4 = s4 !== undefined && d4 !== undefined;
  const addresses = v4 ? [...s4, ...d4] : [...v6Bytes(source.address), ...v6Bytes(destination.address)];
  const ports = [source.port >> 8, source.port & 0xff, destination.port >> 8, destination.port & 0xff];
  const tlvs = tls === undefined ? [] : tlsTlvs(tls);
  const length = addresses.length + 4 + tlvs.length;
  return Uint8Array.from([...V2_SIGNATURE, PROXY_COMMAND, v4 ? TCP4 : TCP6, length >> 8, length & 0xff, ...addresses, ...ports, ...tlvs]);
}
