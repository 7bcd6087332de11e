/** DNS client for ACME DNS-01: zone discovery, TXT queries, and TSIG-signed RFC 2136 updates that add or delete one TXT record. */
import { DnsTransportError, type DnsTarget, dnsAddress as addr, exchange as exchangeOver } from "../../lib/dns-transport.ts";
import {
  randomId16,
  CLASS,
  OPCODE,
  TYPE,
  decodeHeader,
  decodeMessage,
  encodeMessage,
  isSubdomain,
  normalizeName,
  parseTxt,
  rcodeName,
  tsigErrorName,
  type DecodedMessage,
  type ResourceRecord,
  txtData,
} from "../../lib/dns-wire.ts";
import { signMessage, verifyTsig, type TsigKey } from "../../lib/dns-tsig.ts";

export type { TsigKey } from "../../lib/dns-tsig.ts";

/** DnsServer is where queries and updates go: an IP address (or host name) and port, usually the zone's primary. */
export type DnsServer = DnsTarget;
/**
 * DnsUpdateOptions says where to send updates and how to sign them; zone skips discovery, timeoutMs bounds the whole call (default 5000), clock (ms, default
 * Date.now) signs and checks TSIG times.
 */
export type DnsUpdateOptions = {
  readonly server: DnsServer;
  readonly key: TsigKey;
  readonly timeoutMs?: number;
  readonly zone?: string;
  readonly clock?: () => number;
};

/** DEFAULT_TIMEOUT_MS bounds one public call: discovery, UDP tries and any TCP retry together. */
export const DEFAULT_TIMEOUT_MS = 5000;

/**
 * DnsUpdateError is a refused or failed update: rcode name (e.g. "NOTAUTH", "REFUSED"), TSIG error name if any (e.g. "BADSIG", "BADKEY", "BADTIME"), and a
 * message that tells an operator what to check (key name, secret, allow-update / update-policy in named.conf, server address); rcode is "TIMEOUT" or "NETWORK"
 * when no answer came.
 */
export class DnsUpdateError extends Error {
  override readonly name = "DnsUpdateError";
  constructor(
    message: string,
    readonly rcode: string,
    readonly tsigError?: string,
  ) {
    super(message);
  }
}

/** Budget is one public call's time limit, shared by all its steps. */
type Budget = { readonly deadline: number; readonly timeoutMs: number };
const budgetOf = (timeoutMs: number): Budget => ({ deadline: Date.now() + timeoutMs, timeoutMs });

/** transportError says what an operator should check when no answer came. */
function transportError(server: DnsServer, e: DnsTransportError, budget: Budget): DnsUpdateError {
  const at = addr(server);
  const why = (e.sysError?.message ?? "").toLowerCase();
  if (e.proto === "udp") {
    switch (e.stage) {
      case "timeout":
        return new DnsUpdateError(
          `no answer from ${at} over udp after ${e.tries} tries (timeout ${budget.timeoutMs} ms): check the server address and port, that named runs and listens there, and that no firewall drops dns`,
          "TIMEOUT",
        );
      case "send":
        return new DnsUpdateError(`sending to ${at} over udp failed: ${why}: check the server address`, "NETWORK");
      case "socket":
        return new DnsUpdateError(
          `udp to ${at} failed (${e.sysError?.code === "ECONNREFUSED" ? "port unreachable, nothing listens there" : why}): check the server address and port and that named runs`,
          "NETWORK",
        );
      default:
        return new DnsUpdateError(`udp to ${at} failed (${why}): check the server address and port`, "NETWORK");
    }
  }
  switch (e.stage) {
    case "timeout":
      return new DnsUpdateError(
        `no answer from ${at} over tcp (timeout ${budget.timeoutMs} ms): check the server address and port and that named accepts tcp`,
        "TIMEOUT",
      );
    case "closed":
      return new DnsUpdateError(`${at} closed the tcp connection without answering`, "NETWORK");
    default:
      return new DnsUpdateError(`tcp to ${at} failed (${why}): check the server address and port and that named runs`, "NETWORK");
  }
}

/** exchange sends wire (UDP, TCP when too large or truncated) and returns the answer with its id; the answer must parse (RFC 1035 §4.2.1, RFC 7766 §5). */
async function exchange(server: DnsServer, wire: Uint8Array, budget: Budget): Promise<DecodedMessage & { wire: Uint8Array }> {
  if (!Number.isInteger(server.port) || server.port < 1 || server.port > 65535)
    throw new DnsUpdateError(`dns server port ${server.port} is not 1-65535: check the server port`, "NETWORK");
  const id = (wire[0]! << 8) | wire[1]!;
  // Any answer with our id; query() then checks that it echoes the question.
  const ours = (msg: Uint8Array): true | undefined => {
    const h = decodeHeader(msg);
    return h?.qr && h.id === id ? true : undefined;
  };
  let answer: Uint8Array;
  try {
    answer = (await exchangeOver(server, wire, budget.deadline, ours)).wire;
  } catch (err) {
    throw err instanceof DnsTransportError ? transportError(server, err, budget) : err;
  }
  try {
    return { ...decodeMessage(answer), wire: answer };
  } catch (err) {
    throw new DnsUpdateError(`${addr(server)} sent a ${(err as Error).message}`, "FORMERR");
  }
}

/** query asks one question, unsigned; the answer must echo it. */
async function query(server: DnsServer, name: string, type: number, budget: Budget): Promise<DecodedMessage> {
  const id = randomId16();
  const wire = encodeMessage({
    id,
    qr: false,
    opcode: OPCODE.QUERY,
    aa: false,
    tc: false,
    rd: false,
    ra: false,
    rcode: 0,
    questions: [{ name, type, class: CLASS.IN }],
    answers: [],
    authorities: [],
    additionals: [],
  });
  const res = await exchange(server, wire, budget);
  const q = res.questions[0];
  if (q && (q.name !== name || q.type !== type)) throw new DnsUpdateError(`${addr(server)} answered another question (${q.name} type ${q.type})`, "FORMERR");
  return res;
}

async function findZoneBy(server: DnsServer, name: string, budget: Budget): Promise<string> {
  const target = normalizeName(name);
  let last = "NOERROR";
  for (let n = target; ; n = n.includes(".") ? n.slice(n.indexOf(".") + 1) : "") {
    const res = await query(server, n, TYPE.SOA, budget);
    last = rcodeName(res.rcode);
    // The apex answers its SOA; below it, NOERROR (no data) and NXDOMAIN carry the zone's SOA in authority (RFC 2308 §2).
    const soa = [...res.answers, ...(res.rcode === 0 || res.rcode === 3 ? res.authorities : [])].find(
      (rr) => rr.type === TYPE.SOA && isSubdomain(target, rr.name),
    );
    if (soa) return soa.name;
    if (n === "") break;
  }
  throw new DnsUpdateError(
    `${addr(server)} is not authoritative for ${target} or any parent (last answer ${last}): check the server address and that it serves the zone`,
    last,
  );
}

/**
 * findZone walks up from name with SOA queries until the server names the enclosing zone; returns its apex without trailing dot. Bounded by timeoutMs in total.
 */
export async function findZone(server: DnsServer, name: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string> {
  return findZoneBy(server, name, budgetOf(timeoutMs));
}

/** queryTxt returns the TXT values (character-strings joined) the server answers for name now, [] for NXDOMAIN or no data; it needs no key. */
export async function queryTxt(server: DnsServer, name: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string[]> {
  const res = await query(server, normalizeName(name), TYPE.TXT, budgetOf(timeoutMs));
  if (res.rcode === 3) return [];
  if (res.rcode !== 0)
    throw new DnsUpdateError(
      `txt query for ${normalizeName(name)} at ${addr(server)} answered ${rcodeName(res.rcode)}: check that the server serves this name`,
      rcodeName(res.rcode),
    );
  return res.answers.filter((rr) => rr.type === TYPE.TXT).map((rr) => parseTxt(rr.data));
}

/** addTxt adds one TXT record (RFC 2136 §2.5.1), finding the zone first unless opts.zone is set; resolves once the server signed a NOERROR. */
export async function addTxt(opts: DnsUpdateOptions, name: string, value: string, ttl = 60): Promise<void> {
  await update(opts, name, (n) => ({ name: n, type: TYPE.TXT, class: CLASS.IN, ttl, data: txtData(value) }));
}

/** deleteTxt deletes exactly the TXT record with this value (class NONE, RFC 2136 §2.5.4), leaving other values; deleting a missing one succeeds (§3.4.2.4). */
export async function deleteTxt(opts: DnsUpdateOptions, name: string, value: string): Promise<void> {
  await update(opts, name, (n) => ({ name: n, type: TYPE.TXT, class: CLASS.NONE, ttl: 0, data: txtData(value) }));
}

/** addRecord adds one record of any type from raw rdata (RFC 2136 §2.5.1), e.g. A, AAAA or SRV for service discovery; otherwise like addTxt. */
export async function addRecord(opts: DnsUpdateOptions, name: string, type: number, data: Uint8Array, ttl = 60): Promise<void> {
  await update(opts, name, (n) => ({ name: n, type, class: CLASS.IN, ttl, data }));
}

/** deleteRecord deletes exactly the record with this type and rdata (class NONE, RFC 2136 §2.5.4); deleting a missing one succeeds (§3.4.2.4). */
export async function deleteRecord(opts: DnsUpdateOptions, name: string, type: number, data: Uint8Array): Promise<void> {
  await update(opts, name, (n) => ({ name: n, type, class: CLASS.NONE, ttl: 0, data }));
}

async function update(opts: DnsUpdateOptions, name: string, record: (name: string) => ResourceRecord): Promise<void> {
  const budget = budgetOf(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const n = normalizeName(name);
  const zone = opts.zone !== undefined ? normalizeName(opts.zone) : await findZoneBy(opts.server, n, budget);
  if (!isSubdomain(n, zone)) throw new DnsUpdateError(`${n} is not inside zone ${zone}: check the zone option`, "NOTZONE");
  const msg = encodeMessage({
    id: randomId16(),
    qr: false,
    opcode: OPCODE.UPDATE,
    aa: false,
    tc: false,
    rd: false,
    ra: false,
    rcode: 0,
    questions: [{ name: zone, type: TYPE.SOA, class: CLASS.IN }],
    answers: [],
    authorities: [record(n)],
    additionals: [],
  });
  const nowSec = (): number => Math.floor((opts.clock ?? Date.now)() / 1000);
  const { wire, mac } = signMessage(msg, opts.key, nowSec());
  const res = await exchange(opts.server, wire, budget);
  const rcode = rcodeName(res.rcode);
  const ctx = `dns update of ${n} in zone ${zone} at ${addr(opts.server)}`;
  let check: ReturnType<typeof verifyTsig>;
  try {
    check = verifyTsig(res.wire, res, opts.key, mac, nowSec());
  } catch (err) {
    throw new DnsUpdateError(`${ctx}: the answer's tsig is ${(err as Error).message}`, rcode, "FORMERR");
  }
  if (check.status === "bad") {
    throw new DnsUpdateError(
      `${ctx}: the answer (${rcode}) failed tsig verification, ${check.reason}: it may be forged or altered in transit; check that ${addr(opts.server)} is the server holding key "${opts.key.name}"`,
      rcode,
      tsigErrorName(check.error),
    );
  }
  const tsigError = check.status === "unsigned" ? undefined : tsigErrorName(check.tsig.error);
  // RFC 8945 §5.2.3: a BADTIME answer carries the server's time in Other Data.
  const other = check.status === "unsigned" ? undefined : check.tsig.other;
  const skew = other?.length === 6 ? Buffer.from(other).readUIntBE(0, 6) - nowSec() : undefined;
  if (check.status === "verified" && res.rcode === 0 && !tsigError) return;
  if (check.status === "unsigned" && res.rcode === 0) {
    throw new DnsUpdateError(
      `${ctx}: NOERROR without a tsig cannot be trusted: check that ${addr(opts.server)} is the primary server holding key "${opts.key.name}"`,
      rcode,
    );
  }
  throw new DnsUpdateError(
    `${ctx} failed: ${rcode}${tsigError ? `/${tsigError}` : ""}${check.status === "unsigned" ? " (unsigned answer)" : ""}, ${advice(opts, zone, rcode, tsigError, check.status === "unsigned", skew)}`,
    rcode,
    tsigError,
  );
}

/** advice says what an operator should check for a failed update. */
function advice(opts: DnsUpdateOptions, zone: string, rcode: string, tsigError: string | undefined, unsigned: boolean, skew?: number): string {
  const key = `"${opts.key.name}"`;
  switch (tsigError) {
    case "BADSIG":
      return `the server knows key ${key} but the signature did not verify: check that the secret (base64) and algorithm (${opts.key.algorithm}) match the key statement in named.conf`;
    case "BADKEY":
      return `the server has no key ${key} with algorithm ${opts.key.algorithm}: check the key name and algorithm against the key statement in named.conf and that named.conf includes it`;
    case "BADTIME":
      return `this host's clock and the server's differ by more than the 300 s fudge${skew === undefined ? "" : ` (server is ${skew} s ahead)`}: check ntp on both`;
    case "BADTRUNC":
      return `the server wants a longer mac: this client sends full-length macs, so check the key's algorithm`;
  }
  switch (rcode) {
    case "REFUSED":
      return unsigned
        ? `the server did not accept the update as signed by ${key}: check allow-update / update-policy for zone "${zone}" in named.conf names that key, and that ${addr(opts.server)} is the zone's primary`
        : `key ${key} is valid but may not change this name: check that allow-update / update-policy for zone "${zone}" in named.conf grants it TXT records here`;
    case "NOTAUTH":
      return `the server is not authoritative for zone "${zone}": check the zone name and that ${addr(opts.server)} is its primary`;
    case "NOTZONE":
      return `the name is outside zone "${zone}": check the zone option`;
    case "SERVFAIL":
      return `the server could not apply it: check named's log (zone loaded, journal writable)`;
    case "NOTIMP":
      return `the server does not do rfc 2136 updates: check that ${addr(opts.server)} is a primary for "${zone}"`;
    case "FORMERR":
      return `the server could not parse the update: check for a middlebox that alters dns`;
    default:
      return `check named's log on ${addr(opts.server)}`;
  }
}
