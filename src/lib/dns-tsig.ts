/** TSIG (RFC 8945): signing DNS messages with a shared key and checking the signature of an answer, for RFC 2136 updates. */
import { CLASS, type DecodedMessage, encodeName, normalizeName, Reader, TYPE, Writer } from "./dns-wire.ts";
import { nodeCrypto } from "./lazy-node.ts";

/** TsigKey is a shared secret named as in named.conf's key statement. */
export type TsigKey = { readonly name: string; readonly algorithm: "hmac-sha256" | "hmac-sha512"; readonly secret: Uint8Array };
/** Tsig is a decoded TSIG RR (RFC 8945 §4.2). */
export type Tsig = {
  readonly keyName: string;
  readonly algorithm: string;
  readonly timeSigned: number;
  readonly fudge: number;
  readonly mac: Uint8Array;
  readonly originalId: number;
  readonly error: number;
  readonly other: Uint8Array;
};

/** TSIG_FUDGE is the allowed clock skew in seconds, the 300 RFC 8945 recommends. */
export const TSIG_FUDGE = 300;

/** tsigMac computes the HMAC over [request MAC], message and TSIG variables (RFC 8945 §4.3.1-4.3.3); unsigned is the message as if the TSIG were absent. */
export function tsigMac(key: TsigKey, unsigned: Uint8Array, t: Omit<Tsig, "mac" | "originalId">, requestMac?: Uint8Array): Uint8Array {
  const hash = ({ "hmac-sha256": "sha256", "hmac-sha512": "sha512" } as const)[key.algorithm];
  if (!hash) throw new Error(`tsig algorithm ${String(key.algorithm)} is not supported: use hmac-sha256 or hmac-sha512`);
  const hmac = nodeCrypto().createHmac(hash, key.secret);
  if (requestMac) hmac.update(new Writer().u16(requestMac.length).raw(requestMac).done()); // §4.3.1: MAC Size + MAC
  hmac.update(unsigned);
  // §4.3.3: key name and algorithm in canonical form, class ANY, TTL 0, then the fields after the MAC.
  hmac.update(
    new Writer()
      .raw(encodeName(t.keyName))
      .u16(CLASS.ANY)
      .u32(0)
      .raw(encodeName(t.algorithm))
      .u48(t.timeSigned)
      .u16(t.fudge)
      .u16(t.error)
      .u16(t.other.length)
      .raw(t.other)
      .done(),
  );
  return new Uint8Array(hmac.digest());
}

/** signMessage appends a TSIG RR to an encoded message (ARCOUNT+1) and returns it with its MAC; a response passes the request's MAC (RFC 8945 §4.3.1). */
export function signMessage(msg: Uint8Array, key: TsigKey, timeSigned: number, requestMac?: Uint8Array, error = 0): { wire: Uint8Array; mac: Uint8Array } {
  const t = { keyName: key.name, algorithm: `${key.algorithm}.`, timeSigned, fudge: TSIG_FUDGE, error, other: new Uint8Array(0) };
  const mac = tsigMac(key, msg, t, requestMac);
  const rdata = new Writer()
    .raw(encodeName(t.algorithm))
    .u48(timeSigned)
    .u16(TSIG_FUDGE)
    .u16(mac.length)
    .raw(mac)
    .u16((msg[0]! << 8) | msg[1]!)
    .u16(error)
    .u16(0)
    .done();
  const wire = new Writer().raw(msg).raw(encodeName(key.name)).u16(TYPE.TSIG).u16(CLASS.ANY).u32(0).u16(rdata.length).raw(rdata).done();
  const arcount = ((wire[10]! << 8) | wire[11]!) + 1;
  wire[10] = arcount >> 8;
  wire[11] = arcount & 0xff;
  return { wire, mac };
}

/** TsigCheck is the outcome of checking a message's TSIG: verified, unsigned, an error the signer reported without a MAC, or a failed check. */
export type TsigCheck =
  | { readonly status: "verified"; readonly tsig: Tsig }
  | { readonly status: "unsigned" }
  | { readonly status: "unverifiable"; readonly tsig: Tsig }
  | { readonly status: "bad"; readonly error: number; readonly reason: string };

/** verifyTsig checks the TSIG RR that must end msg (RFC 8945 §5.2, §5.4) against key, the request MAC and the clock; it never throws on a bad MAC. */
export function verifyTsig(wire: Uint8Array, msg: DecodedMessage, key: TsigKey, requestMac: Uint8Array | undefined, nowSec: number): TsigCheck {
  const all = [...msg.answers, ...msg.authorities, ...msg.additionals];
  const last = msg.additionals.at(-1);
  if (!last || last.type !== TYPE.TSIG) {
    return all.some((rr) => rr.type === TYPE.TSIG) ? { status: "bad", error: 1, reason: "the tsig record is not the last record" } : { status: "unsigned" };
  }
  if (all.filter((rr) => rr.type === TYPE.TSIG).length > 1) return { status: "bad", error: 1, reason: "more than one tsig record" }; // §5.2: FORMERR
  const r = new Reader(wire, last.offset);
  const tsig: Tsig = {
    keyName: last.name,
    algorithm: r.name(),
    timeSigned: r.u48(),
    fudge: r.u16(),
    mac: r.bytes(r.u16()),
    originalId: r.u16(),
    error: r.u16(),
    other: r.bytes(r.u16()),
  };
  if (tsig.keyName !== normalizeName(key.name))
    return { status: "bad", error: 17, reason: `signed with key "${tsig.keyName}", not "${normalizeName(key.name)}"` };
  if (tsig.algorithm !== key.algorithm) return { status: "bad", error: 17, reason: `signed with algorithm ${tsig.algorithm}, not ${key.algorithm}` };
  // §5.3.2: BADSIG and BADKEY answers carry no MAC; nothing can be verified, only reported.
  if (tsig.mac.length === 0 && tsig.error !== 0) return { status: "unverifiable", tsig };
  const unsigned = Uint8Array.from(wire.subarray(0, msg.lastRecordOffset));
  const arcount = msg.additionals.length - 1;
  unsigned[0] = tsig.originalId >> 8; // §4.3.2: digest with the original ID and ARCOUNT without the TSIG
  unsigned[1] = tsig.originalId & 0xff;
  unsigned[10] = arcount >> 8;
  unsigned[11] = arcount & 0xff;
  const expected = tsigMac(key, unsigned, tsig, requestMac);
  if (tsig.mac.length !== expected.length || !nodeCrypto().timingSafeEqual(tsig.mac, expected))
    return { status: "bad", error: 16, reason: "the mac does not verify" };
  if (tsig.error === 0 && Math.abs(nowSec - tsig.timeSigned) > tsig.fudge)
    return { status: "bad", error: 18, reason: `it was signed ${nowSec - tsig.timeSigned} s from this host's clock (fudge ${tsig.fudge} s)` };
  return { status: "verified", tsig };
}
