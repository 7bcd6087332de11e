/** DNS messages on the wire (RFC 1035 §4, RFC 2136): encoding, decoding and record data, shared by the ACME DNS-01 client and upstream discovery. */

/** TYPE holds the RR type codes the clients use (RFC 1035 §3.2.2, RFC 3596 §2.1, RFC 2782, RFC 8945 §4.2). */
export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, TXT: 16, AAAA: 28, SRV: 33, TSIG: 250, ANY: 255 } as const;
/** CLASS holds class codes; NONE deletes one RR in an update (RFC 2136 §2.5.4), ANY marks TSIG (RFC 8945 §4.2). */
export const CLASS = { IN: 1, NONE: 254, ANY: 255 } as const;
/** OPCODE holds the two opcodes used: standard query and UPDATE (RFC 2136 §2.2). */
export const OPCODE = { QUERY: 0, UPDATE: 5 } as const;

/** RCODE_NAMES maps header rcodes to their mnemonics (RFC 1035 §4.1.1, RFC 2136 §2.2). */
export const RCODE_NAMES: readonly string[] = [
  "NOERROR",
  "FORMERR",
  "SERVFAIL",
  "NXDOMAIN",
  "NOTIMP",
  "REFUSED",
  "YXDOMAIN",
  "YXRRSET",
  "NXRRSET",
  "NOTAUTH",
  "NOTZONE",
];
/** TSIG_ERROR_NAMES maps TSIG error fields to their mnemonics (RFC 8945 §3, assigned numbers). */
export const TSIG_ERROR_NAMES: Readonly<Record<number, string>> = { 16: "BADSIG", 17: "BADKEY", 18: "BADTIME", 22: "BADTRUNC" };

/** rcodeName names a header rcode, "RCODE<n>" when it has no mnemonic here. */
export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? `RCODE${rcode}`;
}

/** tsigErrorName names a TSIG error field (which may also hold an rcode), undefined for 0 (no error). */
export function tsigErrorName(error: number): string | undefined {
  return error === 0 ? undefined : (TSIG_ERROR_NAMES[error] ?? RCODE_NAMES[error] ?? `TSIGERR${error}`);
}

/** Question is one entry of the question section; in an UPDATE it is the zone section (RFC 2136 §2.3). */
export type Question = { readonly name: string; readonly type: number; readonly class: number };
/** ResourceRecord is an RR with raw rdata; offset is where rdata starts in the decoded message (for compressed names inside it). */
export type ResourceRecord = {
  readonly name: string;
  readonly type: number;
  readonly class: number;
  readonly ttl: number;
  readonly data: Uint8Array;
  readonly offset?: number;
};
/** Header is the fixed 12-byte header without the counts (RFC 1035 §4.1.1). */
export type Header = {
  readonly id: number;
  readonly qr: boolean;
  readonly opcode: number;
  readonly aa: boolean;
  readonly tc: boolean;
  readonly rd: boolean;
  readonly ra: boolean;
  readonly rcode: number;
};
/** Message is a whole message; for an UPDATE the sections are zone, prerequisite, update, additional (RFC 2136 §2). */
export type Message = Header & {
  readonly questions: readonly Question[];
  readonly answers: readonly ResourceRecord[];
  readonly authorities: readonly ResourceRecord[];
  readonly additionals: readonly ResourceRecord[];
};
/** DecodedMessage is a Message plus the offset of its last RR, where a TSIG must sit (RFC 8945 §5.2). */
export type DecodedMessage = Message & { readonly lastRecordOffset: number };

/** normalizeName lower-cases an ASCII name and drops the trailing dot ("" is the root); it throws on non-ASCII or bad label lengths (RFC 1035 §2.3.4). */
export function normalizeName(name: string): string {
  if (!/^[\x21-\x7e]*$/.test(name)) throw new Error(`dns name ${JSON.stringify(name)} must be printable ascii (use punycode)`);
  const n = name.toLowerCase().replace(/\.$/, "");
  if (n === "") return "";
  if (n.length > 253 || n.split(".").some((l) => l.length === 0 || l.length > 63))
    throw new Error(`dns name ${JSON.stringify(name)} has an empty or too long label`);
  return n;
}

/** isSubdomain tells whether name equals zone or lies under it; both normalized. */
export function isSubdomain(name: string, zone: string): boolean {
  return zone === "" || name === zone || name.endsWith(`.${zone}`);
}

/** encodeName writes a name uncompressed and lower-cased: the canonical form TSIG digests (RFC 8945 §4.3.3). */
export function encodeName(name: string): Uint8Array {
  const n = normalizeName(name);
  const out: number[] = [];
  for (const label of n === "" ? [] : n.split(".")) out.push(label.length, ...Buffer.from(label, "latin1"));
  out.push(0);
  return Uint8Array.from(out);
}

/** Writer appends big-endian fields to a growing byte list. */
export class Writer {
  private readonly bytes: number[] = [];
  u8(v: number): this {
    this.bytes.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.u8(v >>> 8).u8(v);
  }
  u32(v: number): this {
    return this.u16(Math.floor(v / 0x10000)).u16(v);
  }
  u48(v: number): this {
    return this.u16(Math.floor(v / 0x100000000)).u32(v % 0x100000000);
  } // RFC 8945 §4.2: Time Signed
  raw(b: Uint8Array): this {
    for (const x of b) this.bytes.push(x);
    return this;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

/** encodeMessage writes a message without name compression; the counts come from the section lengths. */
export function encodeMessage(m: Message): Uint8Array {
  const flags =
    (m.qr ? 0x8000 : 0) | ((m.opcode & 0xf) << 11) | (m.aa ? 0x400 : 0) | (m.tc ? 0x200 : 0) | (m.rd ? 0x100 : 0) | (m.ra ? 0x80 : 0) | (m.rcode & 0xf);
  const w = new Writer().u16(m.id).u16(flags).u16(m.questions.length).u16(m.answers.length).u16(m.authorities.length).u16(m.additionals.length);
  for (const q of m.questions) w.raw(encodeName(q.name)).u16(q.type).u16(q.class);
  for (const rr of [...m.answers, ...m.authorities, ...m.additionals]) {
    w.raw(encodeName(rr.name)).u16(rr.type).u16(rr.class).u32(rr.ttl).u16(rr.data.length).raw(rr.data);
  }
  return w.done();
}

/** Reader reads big-endian fields with bounds checks; it throws "malformed dns message" past the end. */
export class Reader {
  constructor(
    readonly buf: Uint8Array,
    public pos = 0,
  ) {}
  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new Error("malformed dns message: truncated");
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    return (this.u8() << 8) | this.u8();
  }
  u32(): number {
    return this.u16() * 0x10000 + this.u16();
  }
  u48(): number {
    return this.u16() * 0x100000000 + this.u32();
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    return this.buf.subarray(this.pos, (this.pos += n));
  }
  /** name follows compression pointers (RFC 1035 §4.1.4); each must point strictly backwards, so loops are impossible. */
  name(): string {
    const labels: string[] = [];
    let pos = this.pos;
    let jumped = false;
    for (;;) {
      if (pos >= this.buf.length) throw new Error("malformed dns message: name runs past the end");
      const len = this.buf[pos]!;
      if ((len & 0xc0) === 0xc0) {
        if (pos + 1 >= this.buf.length) throw new Error("malformed dns message: truncated pointer");
        const target = ((len & 0x3f) << 8) | this.buf[pos + 1]!;
        if (target >= pos) throw new Error("malformed dns message: forward compression pointer");
        if (!jumped) this.pos = pos + 2;
        jumped = true;
        pos = target;
      } else if (len & 0xc0) {
        throw new Error("malformed dns message: unknown label type");
      } else if (len === 0) {
        if (!jumped) this.pos = pos + 1;
        return labels.join(".").toLowerCase();
      } else {
        if (pos + 1 + len > this.buf.length) throw new Error("malformed dns message: label runs past the end");
        labels.push(Buffer.from(this.buf.subarray(pos + 1, pos + 1 + len)).toString("latin1"));
        pos += 1 + len;
      }
    }
  }
}

/** decodeHeader reads the id and flags, or undefined when buf is shorter than a header. */
export function decodeHeader(buf: Uint8Array): Header | undefined {
  if (buf.length < 12) return undefined;
  const id = (buf[0]! << 8) | buf[1]!;
  const f = (buf[2]! << 8) | buf[3]!;
  return {
    id,
    qr: (f & 0x8000) !== 0,
    opcode: (f >> 11) & 0xf,
    aa: (f & 0x400) !== 0,
    tc: (f & 0x200) !== 0,
    rd: (f & 0x100) !== 0,
    ra: (f & 0x80) !== 0,
    rcode: f & 0xf,
  };
}

/** decodeMessage parses a whole message, names decompressed and lower-cased; it throws "malformed dns message: ..." on bad input. */
export function decodeMessage(buf: Uint8Array): DecodedMessage {
  const header = decodeHeader(buf);
  if (!header) throw new Error("malformed dns message: shorter than a header");
  const r = new Reader(buf, 4);
  const counts = [r.u16(), r.u16(), r.u16(), r.u16()] as const;
  const questions: Question[] = [];
  for (let i = 0; i < counts[0]; i++) questions.push({ name: r.name(), type: r.u16(), class: r.u16() });
  let lastRecordOffset = -1;
  const section = (n: number): ResourceRecord[] => {
    const out: ResourceRecord[] = [];
    for (let i = 0; i < n; i++) {
      lastRecordOffset = r.pos;
      const name = r.name(),
        type = r.u16(),
        klass = r.u16(),
        ttl = r.u32(),
        len = r.u16();
      const offset = r.pos;
      out.push({ name, type, class: klass, ttl, data: r.bytes(len), offset });
    }
    return out;
  };
  const answers = section(counts[1]),
    authorities = section(counts[2]),
    additionals = section(counts[3]);
  return { ...header, questions, answers, authorities, additionals, lastRecordOffset };
}

/** txtData encodes a TXT value as rdata, split into character-strings of at most 255 bytes (RFC 1035 §3.3.14). */
export function txtData(value: string): Uint8Array {
  const bytes = Buffer.from(value, "utf8");
  const w = new Writer();
  if (bytes.length === 0) w.u8(0);
  for (let i = 0; i < bytes.length; i += 255) {
    const chunk = bytes.subarray(i, i + 255);
    w.u8(chunk.length).raw(chunk);
  }
  return w.done();
}

/** parseTxt joins the character-strings of one TXT RR into one value, undoing txtData's split (RFC 1035 §3.3.14). */
export function parseTxt(data: Uint8Array): string {
  const r = new Reader(data);
  const parts: Uint8Array[] = [];
  while (r.pos < data.length) parts.push(r.bytes(r.u8()));
  return Buffer.concat(parts).toString("utf8");
}

/**
 * readName decodes the name at offset in a whole message, following compression pointers (RFC 1035 §4.1.4), e.g. a CNAME's target; it throws "malformed dns
 * message: ..." on bad input.
 */
export function readName(wire: Uint8Array, offset: number): string {
  return new Reader(wire, offset).name();
}

/** parseA reads A rdata as a dotted quad (RFC 1035 §3.4.1); it throws unless the rdata is 4 bytes. */
export function parseA(data: Uint8Array): string {
  if (data.length !== 4) throw new Error(`malformed dns message: a rdata of ${data.length} bytes`);
  return data.join(".");
}

/**
 * parseAaaa reads AAAA rdata (RFC 3596 §2.2) in RFC 5952 §4 text form: lower case, no leading zeros, the first longest run of two or more zero groups as "::".
 */
export function parseAaaa(data: Uint8Array): string {
  if (data.length !== 16) throw new Error(`malformed dns message: aaaa rdata of ${data.length} bytes`);
  const g = Array.from({ length: 8 }, (_, i) => ((data[2 * i]! << 8) | data[2 * i + 1]!).toString(16));
  let best = -1,
    bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === "0") j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = Math.max(j, i + 1);
  }
  return best < 0 ? g.join(":") : `${g.slice(0, best).join(":")}::${g.slice(best + bestLen).join(":")}`;
}

/** addressData encodes an IPv4 address as A rdata or an IPv6 address (no embedded IPv4) as AAAA rdata; it throws on anything else. */
export function addressData(ip: string): Uint8Array {
  const bad = (): never => {
    throw new Error(`${JSON.stringify(ip)} is not an ip address`);
  };
  if (ip.includes(".")) {
    const octets = ip.split(".").map((o) => (/^\d{1,3}$/.test(o) && Number(o) < 256 ? Number(o) : bad()));
    return octets.length === 4 ? Uint8Array.from(octets) : bad();
  }
  const groups = (s: string): number[] => (s === "" ? [] : s.split(":").map((x) => (/^[0-9a-f]{1,4}$/i.test(x) ? parseInt(x, 16) : bad())));
  const halves = ip.split("::");
  if (halves.length > 2) bad();
  const head = groups(halves[0]!),
    tail = halves.length === 2 ? groups(halves[1]!) : [];
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) bad();
  const w = new Writer();
  for (const x of [...head, ...new Array<number>(fill).fill(0), ...tail]) w.u16(x);
  return w.done();
}

/** SrvData is SRV rdata (RFC 2782); target "" is the root: "the service is decidedly not available at this domain". */
export type SrvData = { readonly priority: number; readonly weight: number; readonly port: number; readonly target: string };

/** srvData encodes SRV rdata with an uncompressed target, as RFC 2782 requires. */
export function srvData(srv: SrvData): Uint8Array {
  return new Writer().u16(srv.priority).u16(srv.weight).u16(srv.port).raw(encodeName(srv.target)).done();
}

/** parseSrv reads the SRV rdata of rr, decoded from wire; the target is read through compression pointers even though RFC 2782 forbids them there. */
export function parseSrv(wire: Uint8Array, rr: ResourceRecord): SrvData {
  const r = rr.offset === undefined ? new Reader(rr.data) : new Reader(wire, rr.offset);
  if (rr.data.length < 7) throw new Error(`malformed dns message: srv rdata of ${rr.data.length} bytes`);
  return { priority: r.u16(), weight: r.u16(), port: r.u16(), target: r.name() };
}

/** soaMinimum reads MINIMUM, the last field of SOA rdata (RFC 1035 §3.3.13), which bounds the negative-caching TTL (RFC 2308 §5). */
export function soaMinimum(data: Uint8Array): number {
  if (data.length < 22) throw new Error(`malformed dns message: soa rdata of ${data.length} bytes`);
  return new Reader(data, data.length - 4).u32();
}

/** randomId16 is a random DNS message id (RFC 5452 §9.2), from Web Crypto (no node:crypto on the start-up path). */
export function randomId16(): number {
  return crypto.getRandomValues(new Uint16Array(1))[0]!;
}
