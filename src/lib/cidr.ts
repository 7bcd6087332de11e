/** IP addresses and CIDR ranges, for the trusted-proxy list. */
import { isIPv4, isIPv6 } from "./ip.ts";

/** Cidr is a parsed range: the address as a 128-bit bigint (IPv4 mapped into ::ffff:0:0/96) and its prefix length over 128 bits. */
export type Cidr = { readonly base: bigint; readonly bits: number };

const V4_MAPPED = 0xffffn << 32n;

function v4ToBig(ip: string): bigint {
  let n = 0n;
  for (const part of ip.split(".")) n = (n << 8n) | BigInt(Number(part));
  return V4_MAPPED | n;
}

function v6ToBig(ip: string): bigint {
  let tail: bigint | undefined;
  let s = ip;
  const lastColon = s.lastIndexOf(":");
  if (s.includes(".", lastColon)) {
    // ::ffff:1.2.3.4
    tail = v4ToBig(s.slice(lastColon + 1)) & 0xffffffffn;
    s = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const [head, rest] = s.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const r = rest !== undefined && rest !== "" ? rest.split(":") : [];
  const groups = rest === undefined ? h : [...h, ...Array(8 - h.length - r.length).fill("0"), ...r];
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(parseInt(g, 16));
  if (tail !== undefined) n = (n & ~0xffffffffn) | tail;
  return n;
}

/** ipToBigInt maps an IPv4 or IPv6 address to 128 bits (IPv4 as ::ffff:a.b.c.d); undefined when it is not an IP address. */
export function ipToBigInt(ip: string): bigint | undefined {
  const bare = ip.startsWith("[") && ip.endsWith("]") ? ip.slice(1, -1) : ip;
  if (isIPv4(bare)) return v4ToBig(bare);
  if (isIPv6(bare)) return v6ToBig(bare.split("%")[0]!);
  return undefined;
}

/** parseCidr reads "10.0.0.0/8", "::1", "fd00::/8" (a bare address is a /32 or /128); undefined when malformed. */
export function parseCidr(text: string): Cidr | undefined {
  const [addr, len] = text.split("/") as [string, string | undefined];
  const v4 = isIPv4(addr);
  const base = ipToBigInt(addr);
  if (base === undefined) return undefined;
  const max = v4 ? 32 : 128;
  const prefix = len === undefined ? max : /^\d+$/.test(len) ? Number(len) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return undefined;
  const bits = v4 ? 96 + prefix : prefix;
  const mask = bits === 0 ? 0n : ((1n << BigInt(bits)) - 1n) << BigInt(128 - bits);
  return { base: base & mask, bits };
}

/**
 * cidrMatcher builds a predicate over client addresses; results are memoised per address (the set of clients that reach a gateway directly is small), so the
 * hot path is one Map lookup.
 */
export function cidrMatcher(ranges: readonly Cidr[]): (ip: string) => boolean {
  if (ranges.length === 0) return () => false;
  const memo = new Map<string, boolean>();
  return (ip) => {
    let hit = memo.get(ip);
    if (hit !== undefined) return hit;
    const n = ipToBigInt(ip);
    hit =
      n !== undefined &&
      ranges.some((r) => {
        const shift = BigInt(128 - r.bits);
        return r.bits === 0 || n >> shift === r.base >> shift;
      });
    if (memo.size > 10_000) memo.clear();
    memo.set(ip, hit);
    return hit;
  };
}
