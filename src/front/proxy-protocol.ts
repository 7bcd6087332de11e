/** The PROXY protocol preamble (HAProxy's spec, versions 1 and 2) that an L4 balancer sends before HTTP or TLS: the client's address, read strictly. */
import { isIPv4, isIPv6 } from "../lib/ip.ts";

/** ProxyAddress is one end of the proxied connection. */
export type ProxyAddress = { readonly address: string; readonly port: number };

/** ProxyHeader is a parsed preamble: the client (source) and the address it connected to, or "local" (a health check by the balancer itself: no client). */
export type ProxyHeader =
  | { readonly kind: "proxy"; readonly source: ProxyAddress; readonly destination: ProxyAddress; readonly bytes: number }
  | { readonly kind: "local"; readonly bytes: number };

/** ProxyError is a preamble to refuse (the connection is closed); reason is for the log. */
export type ProxyError = { readonly error: string };

/** V2_SIGNATURE opens a version 2 preamble: "\r\n\r\n\0\r\nQUIT\n". */
const V2_SIGNATURE = Uint8Array.of(0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a);
/** V1_MAX is the longest version 1 line, CRLF included (spec §2.1). */
const V1_MAX = 107;

/** isProxyError tells a refusal from a parsed preamble. */
export function isProxyError(r: ProxyHeader | ProxyError | undefined): r is ProxyError {
  return r !== undefined && "error" in r;
}

/** parseProxyHeader reads the preamble at the start of buf: undefined while it is incomplete, a ProxyError when buf does not start with a valid one. */
export function parseProxyHeader(buf: Uint8Array): ProxyHeader | ProxyError | undefined {
  if (buf.length === 0) return undefined;
  if (buf[0] === 0x50 /* P */) return parseV1(buf);
  if (buf[0] === 0x0d) return parseV2(buf);
  return { error: "the connection does not start with a PROXY protocol preamble" };
}

function port(s: string): number {
  return /^(0|[1-9]\d{0,4})$/.test(s) && Number(s) <= 65535 ? Number(s) : -1;
}

/** parseV1 reads "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n" (spec §2.1): single spaces, addresses of the named family, decimal ports. */
function parseV1(buf: Uint8Array): ProxyHeader | ProxyError | undefined {
  const prefix = "PROXY ";
  for (let i = 0; i < Math.min(buf.length, prefix.length); i++) if (buf[i] !== prefix.charCodeAt(i)) return { error: "not a PROXY protocol preamble" };
  let end = -1;
  for (let i = 0; i < Math.min(buf.length, V1_MAX); i++) {
    if (buf[i] === 0x0a) return { error: "a PROXY v1 line ends with LF alone" };
    if (buf[i] === 0x0d) {
      if (i + 1 >= buf.length) return undefined;
      if (buf[i + 1] !== 0x0a) return { error: "a bare CR in a PROXY v1 line" };
      end = i;
      break;
    }
  }
  if (end < 0) return buf.length >= V1_MAX ? { error: `a PROXY v1 line longer than ${V1_MAX} bytes` } : undefined;
  const parts = Buffer.from(buf.buffer, buf.byteOffset, end).toString("latin1").split(" ");
  const bytes = end + 2;
  // UNKNOWN: the balancer could not tell; the connection is used as it is, with the balancer's own address (spec §2.1).
  if (parts[1] === "UNKNOWN") return { kind: "local", bytes };
  if (parts.length !== 6 || (parts[1] !== "TCP4" && parts[1] !== "TCP6")) return { error: "a PROXY v1 line is not PROXY, a family and four fields" };
  const valid = parts[1] === "TCP4" ? isIPv4 : isIPv6;
  const [, , src, dst, sp, dp] = parts as [string, string, string, string, string, string];
  const sport = port(sp);
  const dport = port(dp);
  if (!valid(src) || !valid(dst) || sport < 0 || dport < 0) return { error: "a PROXY v1 line with an invalid address or port" };
  return { kind: "proxy", source: { address: src, port: sport }, destination: { address: dst, port: dport }, bytes };
}

/** parseV2 reads the binary preamble (spec §2.2): signature, version 2, LOCAL or PROXY, the address block of its family; TLVs are skipped. */
function parseV2(buf: Uint8Array): ProxyHeader | ProxyError | undefined {
  for (let i = 0; i < Math.min(buf.length, V2_SIGNATURE.length); i++) if (buf[i] !== V2_SIGNATURE[i]) return { error: "not a PROXY protocol preamble" };
  if (buf.length < 16) return undefined;
  const verCmd = buf[12]!;
  const family = buf[13]!;
  const length = (buf[14]! << 8) | buf[15]!;
  if (verCmd >> 4 !== 2) return { error: "a PROXY v2 preamble of another version" };
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return { error: "a PROXY v2 preamble with an unknown command" };
  if (buf.length < 16 + length) return undefined;
  const bytes = 16 + length;
  // LOCAL: the balancer speaks for itself (health checks); the addresses, if any, are ignored (spec §2.2).
  if (cmd === 0) return { kind: "local", bytes };
  const a = buf.subarray(16, 16 + length);
  if (family === 0x11) {
    // TCP over IPv4: 4 + 4 address bytes, 2 + 2 port bytes.
    if (length < 12) return { error: "a PROXY v2 IPv4 block shorter than 12 bytes" };
    return {
      kind: "proxy",
      source: { address: a.subarray(0, 4).join("."), port: (a[8]! << 8) | a[9]! },
      destination: { address: a.subarray(4, 8).join("."), port: (a[10]! << 8) | a[11]! },
      bytes,
    };
  }
  if (family === 0x21) {
    if (length < 36) return { error: "a PROXY v2 IPv6 block shorter than 36 bytes" };
    return {
      kind: "proxy",
      source: { address: ipv6(a.subarray(0, 16)), port: (a[32]! << 8) | a[33]! },
      destination: { address: ipv6(a.subarray(16, 32)), port: (a[34]! << 8) | a[35]! },
      bytes,
    };
  }
  // UNSPEC or a family gatehouse does not listen for (UDP, unix sockets): the connection is used as it is.
  if (family === 0x00) return { kind: "local", bytes };
  return { error: `a PROXY v2 preamble of a family gatehouse does not take (0x${family.toString(16)})` };
}

/** ipv6 writes 16 address bytes in the compressed text form (RFC 5952), as the socket API reports peers. */
function ipv6(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  // An IPv4-mapped address reads as ::ffff:a.b.c.d, as Bun reports such peers.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `::ffff:${b.subarray(12).join(".")}`;
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** MAX_PREAMBLE bounds a PROXY protocol preamble with its TLVs (v1 lines are 107 bytes at most). */
export const MAX_PREAMBLE = 4096;
/** V1_START is how a version 1 preamble begins. */
const V1_START = Buffer.from("PROXY ");

/** looksLikePreamble says whether bytes begin like a PROXY protocol preamble, or could, being short; whole says the signature must be all there. */
export function looksLikePreamble(b: Uint8Array, whole = false): boolean {
  const sig = b[0] === 0x50 ? V1_START : b[0] === 0x0d ? V2_SIGNATURE : undefined;
  if (sig === undefined || (whole && b.byteLength < sig.byteLength)) return false;
  for (let i = 0; i < Math.min(b.byteLength, sig.byteLength); i++) if (b[i] !== sig[i]) return false;
  return true;
}

/** isPreamble says whether bytes begin with a whole PROXY protocol signature (what an untrusted source is refused for). */
export function isPreamble(b: Uint8Array): boolean {
  return looksLikePreamble(b, true);
}

/** PreambleStep is what the first bytes of a connection from a source allowed to send a preamble say. */
export type PreambleStep =
  /** wait: a preamble has begun and is not whole yet (keep the bytes). */
  | { readonly step: "wait" }
  | { readonly step: "refuse"; readonly reason: string }
  /** none: no preamble, the protocol starts at once (a balancer's health check, say). */
  | { readonly step: "none" }
  /** read: a preamble of `bytes` bytes, naming `client` (undefined for LOCAL/UNKNOWN: the peer stays the client); header is all it said. */
  | { readonly step: "read"; readonly client: string | undefined; readonly bytes: number; readonly header: ProxyHeader };

const WAIT: PreambleStep = { step: "wait" };
const NONE: PreambleStep = { step: "none" };
export const UNTRUSTED_PREAMBLE = "a PROXY protocol preamble from a source that listen.proxy_protocol does not name";

/** readPreamble reads the start of a connection from an allowed source, for the HTTP and the TLS front end alike. */
export function readPreamble(buf: Uint8Array): PreambleStep {
  if (!looksLikePreamble(buf)) return NONE;
  const p = parseProxyHeader(buf);
  if (p === undefined) return buf.byteLength > MAX_PREAMBLE ? { step: "refuse", reason: `a PROXY protocol preamble over ${MAX_PREAMBLE} bytes` } : WAIT;
  if (isProxyError(p)) return { step: "refuse", reason: p.error };
  return { step: "read", client: p.kind === "proxy" ? p.source.address : undefined, bytes: p.bytes, header: p };
}
