/** A small stub resolver for upstream discovery: A, AAAA and SRV with recursion desired, servers tried in order, UDP with TCP fallback on truncation (RFC 1035 §4.2, RFC 7766 §5), CNAME chains followed, negative TTLs from the SOA (RFC 2308 §5). */
import { DnsTransportError, type DnsTarget, dnsAddress as addr, exchange, type Matcher } from "../lib/dns-transport.ts";
import {
  randomId16,
  CLASS,
  OPCODE,
  TYPE,
  decodeHeader,
  decodeMessage,
  encodeMessage,
  normalizeName,
  parseA,
  parseAaaa,
  parseSrv,
  rcodeName,
  readName,
  soaMinimum,
  type DecodedMessage,
} from "../lib/dns-wire.ts";

/** ResolverServer is a recursive resolver (or an authoritative server) to ask: an IP address and port. */
export type ResolverServer = DnsTarget;
/** RecordType is a question type the resolver asks. */
export type RecordType = "A" | "AAAA" | "SRV";
/** AddressRecord is one A or AAAA answer: the address in text form (RFC 5952 for IPv6) and its TTL in seconds. */
export type AddressRecord = { readonly address: string; readonly ttl: number };
/** SrvRecord is one SRV answer (RFC 2782) with its TTL in seconds; target "" (the root) means the service is not available. */
export type SrvRecord = { readonly target: string; readonly port: number; readonly priority: number; readonly weight: number; readonly ttl: number };
/** RecordOf maps a question type to its record shape. */
export type RecordOf<T extends RecordType> = T extends "SRV" ? SrvRecord : AddressRecord;
/**
 * ResolveResult is an answer: records (empty for NXDOMAIN or NODATA) and ttl in seconds, the smallest TTL of the records and CNAMEs used, or for a negative
 * answer min(SOA TTL, SOA MINIMUM) (RFC 2308 §5), 0 without a SOA.
 */
export type ResolveResult<R = AddressRecord | SrvRecord> = { readonly records: readonly R[]; readonly ttl: number };
/** ResolveAttempt is how one server failed: rcode name, or "TIMEOUT", "NETWORK", "FORMERR" (bad answer), and why. */
export type ResolveAttempt = { readonly server: string; readonly rcode: string; readonly detail: string };

/**
 * ResolveError is a question no server answered usefully; rcode and server are the last attempt's ("SERVFAIL", "REFUSED", "TIMEOUT", "NETWORK", ...), attempts
 * has them all in order.
 */
export class ResolveError extends Error {
  override readonly name = "ResolveError";
  readonly rcode: string;
  readonly server: string;
  constructor(
    readonly question: string,
    readonly attempts: readonly ResolveAttempt[],
  ) {
    super(`resolving ${question} failed: ${attempts.length === 0 ? "no dns servers configured" : attempts.map((a) => `${a.server} ${a.detail}`).join("; ")}`);
    const last = attempts.at(-1);
    this.rcode = last?.rcode ?? "NETWORK";
    this.server = last?.server ?? "";
  }
}

/** MAX_CNAME_HOPS bounds a CNAME chain, in one answer and across re-asks. */
const MAX_CNAME_HOPS = 8;

/** Failure is one server's failure inside resolve, turned into a ResolveAttempt. */
class Failure extends Error {
  constructor(
    readonly rcode: string,
    detail: string,
  ) {
    super(detail);
  }
}

/** matcher accepts a response with our id, opcode QUERY and exactly our question; names compare case-insensitively. */
function matcher(id: number, name: string, type: number): Matcher<DecodedMessage> {
  return (msg) => {
    const h = decodeHeader(msg);
    if (!h?.qr || h.id !== id || h.opcode !== OPCODE.QUERY) return undefined;
    try {
      const m = decodeMessage(msg);
      const q = m.questions[0];
      return m.questions.length === 1 && q!.name === name && q!.type === type && q!.class === CLASS.IN ? m : undefined;
    } catch {
      return undefined;
    }
  };
}

/** failureOf turns a transport failure into one server's attempt. */
function failureOf(e: DnsTransportError): Failure {
  if (e.kind === "TIMEOUT") return new Failure("TIMEOUT", `did not answer over ${e.proto} within the timeout`);
  if (e.stage === "closed") return new Failure("NETWORK", "closed the tcp connection without an answer");
  return new Failure(
    "NETWORK",
    `${e.proto} failed: ${e.sysError?.code === "ECONNREFUSED" ? "connection refused" : (e.sysError?.message ?? e.stage).toLowerCase()}`,
  );
}

/**
 * readAnswer extracts the records for name from one answer, following CNAMEs inside it; next is set when the chain leaves the answer without a final answer, to
 * be asked again.
 */
export function readAnswer<T extends RecordType>(
  msg: DecodedMessage & { wire: Uint8Array },
  name: string,
  type: T,
): ResolveResult<RecordOf<T>> & { next?: string } {
  const code = TYPE[type];
  let current = normalizeName(name);
  let ttl = Infinity;
  for (let hop = 0; ; hop++) {
    const matches = msg.answers.filter((rr) => rr.name === current && rr.type === code && rr.class === CLASS.IN);
    if (matches.length > 0) {
      const records = matches.map((rr) => {
        ttl = Math.min(ttl, rr.ttl);
        if (type === "SRV") return { ...parseSrv(msg.wire, rr), ttl: rr.ttl };
        return { address: type === "A" ? parseA(rr.data) : parseAaaa(rr.data), ttl: rr.ttl };
      });
      return { records: records as RecordOf<T>[], ttl };
    }
    const cname = msg.answers.find((rr) => rr.name === current && rr.type === TYPE.CNAME && rr.class === CLASS.IN);
    if (!cname) break;
    if (hop >= MAX_CNAME_HOPS) throw new Failure("FORMERR", `sent a cname chain longer than ${MAX_CNAME_HOPS}`);
    ttl = Math.min(ttl, cname.ttl);
    current = readName(msg.wire, cname.offset!);
  }
  // RFC 2308 §5: a negative answer lives min(SOA TTL, SOA MINIMUM); without a SOA it should not be cached at all.
  const soa = msg.authorities.find((rr) => rr.type === TYPE.SOA && rr.class === CLASS.IN);
  if (soa) return { records: [], ttl: Math.min(ttl, soa.ttl, soaMinimum(soa.data)) };
  const negative = { records: [], ttl: Number.isFinite(ttl) ? ttl : 0 };
  // A CNAME to a name outside the server's data (no SOA, NOERROR): the chain goes on elsewhere.
  return current !== normalizeName(name) && msg.rcode === 0 ? { ...negative, next: current } : negative;
}

/** ask sends one question to each server in turn until one gives NOERROR or NXDOMAIN with a readable answer. */
async function ask<T extends RecordType>(
  name: string,
  type: T,
  servers: readonly ResolverServer[],
  timeoutMs: number,
): Promise<ResolveResult<RecordOf<T>> & { next?: string }> {
  const attempts: ResolveAttempt[] = [];
  for (const server of servers) {
    const id = randomId16();
    const wire = encodeMessage({
      id,
      qr: false,
      opcode: OPCODE.QUERY,
      aa: false,
      tc: false,
      rd: true,
      ra: false,
      rcode: 0,
      questions: [{ name, type: TYPE[type], class: CLASS.IN }],
      answers: [],
      authorities: [],
      additionals: [],
    });
    const deadline = Date.now() + timeoutMs;
    const match = matcher(id, name, TYPE[type]);
    try {
      if (!Number.isInteger(server.port) || server.port < 1 || server.port > 65535) throw new Failure("NETWORK", `has port ${server.port}, not 1-65535`);
      // No EDNS: answers over 512 bytes come truncated over UDP (RFC 1035 §4.2.1), so exchange asks again over TCP (RFC 7766 §5).
      const got = await exchange(server, wire, deadline, match).catch((e) => Promise.reject(e instanceof DnsTransportError ? failureOf(e) : e));
      const res = { ...got.answer, wire: got.wire };
      if (res.rcode !== 0 && res.rcode !== 3) throw new Failure(rcodeName(res.rcode), `answered ${rcodeName(res.rcode)}`);
      try {
        return readAnswer(res, name, type);
      } catch (err) {
        throw err instanceof Failure ? err : new Failure("FORMERR", `sent a bad answer: ${(err as Error).message}`);
      }
    } catch (err) {
      const f = err instanceof Failure ? err : new Failure("NETWORK", (err as Error).message.toLowerCase());
      attempts.push({ server: addr(server), rcode: f.rcode, detail: f.rcode === "TIMEOUT" ? `${f.message} (${timeoutMs} ms)` : f.message });
    }
  }
  throw new ResolveError(`${name} ${type}`, attempts);
}

/**
 * resolve asks servers in order (each gets timeoutMs for UDP and any TCP retry) and returns the records of type for name, following CNAMEs (re-asking when a
 * chain leaves an answer, at most 8 hops); NXDOMAIN and NODATA are answers with no records. Rejects with ResolveError when no server answers NOERROR or
 * NXDOMAIN, and with a plain Error for a malformed name.
 */
export async function resolve<T extends RecordType>(
  name: string,
  type: T,
  servers: readonly ResolverServer[],
  timeoutMs: number,
): Promise<ResolveResult<RecordOf<T>>> {
  let qname = normalizeName(name);
  let ttl = Infinity;
  for (let hop = 0; hop <= MAX_CNAME_HOPS; hop++) {
    const r = await ask(qname, type, servers, timeoutMs);
    ttl = Math.min(ttl, r.ttl);
    if (r.next === undefined) return { records: r.records, ttl };
    qname = r.next;
  }
  throw new ResolveError(`${normalizeName(name)} ${type}`, [
    { server: servers.map(addr).join(","), rcode: "FORMERR", detail: `cname chain longer than ${MAX_CNAME_HOPS}` },
  ]);
}
