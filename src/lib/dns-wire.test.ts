import { describe, expect, test } from "bun:test";
import {
  CLASS,
  OPCODE,
  TYPE,
  decodeMessage,
  encodeMessage,
  encodeName,
  normalizeName,
  parseTxt,
  rcodeName,
  tsigErrorName,
  txtData,
  type Message,
} from "./dns-wire.ts";
import { signMessage, tsigMac, verifyTsig, type TsigKey } from "./dns-tsig.ts";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));

const query = (over: Partial<Message> = {}): Message => ({
  id: 0x1234,
  qr: false,
  opcode: OPCODE.QUERY,
  aa: false,
  tc: false,
  rd: false,
  ra: false,
  rcode: 0,
  questions: [{ name: "_acme-challenge.app.test", type: TYPE.TXT, class: CLASS.IN }],
  answers: [],
  authorities: [],
  additionals: [],
  ...over,
});

describe("names", () => {
  test("are lower-cased, trailing dot optional, root is empty", () => {
    expect(normalizeName("App.TEST.")).toBe("app.test");
    expect(normalizeName(".")).toBe("");
    expect(hex(encodeName("App.Test."))).toBe("036170700474657374" + "00");
    expect(hex(encodeName(""))).toBe("00");
  });

  test("reject empty labels, labels over 63 bytes and non-ascii", () => {
    expect(() => normalizeName("a..test")).toThrow("empty or too long label");
    expect(() => normalizeName(`${"a".repeat(64)}.test`)).toThrow("empty or too long label");
    expect(() => normalizeName("bücher.test")).toThrow("punycode");
  });
});

describe("messages", () => {
  test("round-trip header flags and all four sections", () => {
    const rr = { name: "x.test", type: TYPE.TXT, class: CLASS.NONE, ttl: 0, data: txtData("v") };
    const m = query({
      qr: true,
      opcode: OPCODE.UPDATE,
      aa: true,
      tc: true,
      rd: true,
      ra: true,
      rcode: 9,
      answers: [rr],
      authorities: [{ ...rr, class: CLASS.IN, ttl: 0x7fffffff }],
      additionals: [rr],
    });
    const d = decodeMessage(encodeMessage(m));
    expect({ ...d, lastRecordOffset: 0 }).toMatchObject({ ...m, lastRecordOffset: 0, answers: [{ ...rr, data: rr.data }] });
    expect(d.authorities[0]!.ttl).toBe(0x7fffffff);
    expect(rcodeName(d.rcode)).toBe("NOTAUTH");
  });

  test("decode follows compression pointers (RFC 1035 §4.1.4)", () => {
    // header: id 1, QR, 1 question, 1 answer; question app.test TXT IN; answer owner = pointer to offset 12.
    const wire = unhex("0001800000010001000000000361707004746573740000100001" + "c00c" + "00100001" + "0000003c" + "0003" + "026869");
    const d = decodeMessage(wire);
    expect(d.answers[0]!.name).toBe("app.test");
    expect(parseTxt(d.answers[0]!.data)).toBe("hi");
  });

  test("decode rejects pointer loops, forward pointers and truncation", () => {
    expect(() => decodeMessage(unhex("000180000001000000000000c00c00100001"))).toThrow("forward compression pointer");
    expect(() => decodeMessage(unhex("000180000001000000000000c00e00100001"))).toThrow("forward compression pointer");
    expect(() => decodeMessage(unhex("0001800000010000000000000361"))).toThrow("malformed dns message");
    expect(() => decodeMessage(unhex("0001"))).toThrow("shorter than a header");
  });

  test("TXT values over 255 bytes become several character-strings (RFC 1035 §3.3.14)", () => {
    const value = "a".repeat(255) + "b".repeat(255) + "c".repeat(90);
    const data = txtData(value);
    expect(data.length).toBe(600 + 3);
    expect([data[0], data[256], data[512]]).toEqual([255, 255, 90]);
    expect(parseTxt(data)).toBe(value);
    expect(hex(txtData(""))).toBe("00");
  });
});

// Known answers captured from bind's nsupdate 9.18 (`update add _acme-challenge.app.test. 60 TXT "known-answer"`, zone test.)
// with key "kat-key.example"; each packet is the update followed by the TSIG RR nsupdate computed.
const KAT = {
  "hmac-sha256": {
    secret: "Z2F0ZWhvdXNlLWtub3duLWFuc3dlci1zaGEyNTYhISE=",
    packet:
      "103728000001000000010001047465737400000600010f5f61636d652d6368616c6c656e676503617070047465737400001000010000003c000d0c6b6e6f776e2d616e73776572076b61742d6b6579076578616d706c650000fa00ff00000000003d0b686d61632d7368613235360000006b06cbc0012c0020e66abf322505f2bf13ac179c4d4138df9afa56a8a785edf56b3039adbca0d0e9103700000000",
    mac: "e66abf322505f2bf13ac179c4d4138df9afa56a8a785edf56b3039adbca0d0e9",
    time: 0x6b06cbc0,
  },
  "hmac-sha512": {
    secret: "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2traw==",
    packet:
      "a14f28000001000000010001047465737400000600010f5f61636d652d6368616c6c656e676503617070047465737400001000010000003c000d0c6b6e6f776e2d616e73776572076b61742d6b6579076578616d706c650000fa00ff00000000005d0b686d61632d7368613531320000006b06cbc1012c0040341eebf65cb991d2fd783cff3c8ba056be0eb92d8ebeda79f9cecc343897af7aee6c9b36d07875b5503c94f555c266634e69c2ad17fe6733cd7ca0c9edc28734a14f00000000",
    mac: "341eebf65cb991d2fd783cff3c8ba056be0eb92d8ebeda79f9cecc343897af7aee6c9b36d07875b5503c94f555c266634e69c2ad17fe6733cd7ca0c9edc28734",
    time: 0x6b06cbc1,
  },
} as const;

describe("tsig", () => {
  for (const algorithm of ["hmac-sha256", "hmac-sha512"] as const) {
    test(`${algorithm} MAC matches nsupdate's known answer (RFC 8945 §4.3.3)`, () => {
      const kat = KAT[algorithm];
      const key: TsigKey = { name: "KAT-key.example.", algorithm, secret: new Uint8Array(Buffer.from(kat.secret, "base64")) };
      const packet = unhex(kat.packet);
      const d = decodeMessage(packet);
      const unsigned = packet.slice(0, d.lastRecordOffset);
      unsigned[11] = 0; // ARCOUNT without the TSIG
      expect(hex(tsigMac(key, unsigned, { keyName: key.name, algorithm, timeSigned: kat.time, fudge: 300, error: 0, other: new Uint8Array(0) }))).toBe(kat.mac);
      const signed = signMessage(unsigned, key, kat.time);
      expect(hex(signed.wire)).toBe(kat.packet);
      expect(hex(signed.mac)).toBe(kat.mac);
      // a server verifies a request with no request MAC
      expect(verifyTsig(packet, d, key, undefined, kat.time + 10).status).toBe("verified");
    });
  }

  const key: TsigKey = { name: "acme-update", algorithm: "hmac-sha256", secret: new Uint8Array(32).fill(7) };
  const now = 1_700_000_000;
  const exchange = (tamper?: (wire: Uint8Array) => void, responseKey = key) => {
    const request = signMessage(encodeMessage(query({ opcode: OPCODE.UPDATE })), key, now);
    const response = signMessage(encodeMessage(query({ qr: true, opcode: OPCODE.UPDATE })), responseKey, now + 1, request.mac).wire;
    tamper?.(response);
    return { request, response, decoded: decodeMessage(response) };
  };

  test("a response signed over the request MAC verifies (RFC 8945 §4.3.1)", () => {
    const { request, response, decoded } = exchange();
    const check = verifyTsig(response, decoded, key, request.mac, now);
    expect(check.status).toBe("verified");
    expect(verifyTsig(response, decoded, key, new Uint8Array(32), now)).toMatchObject({ status: "bad", error: 16 });
  });

  test("a flipped MAC bit, another key, a stale time or a missing TSIG fail", () => {
    const flipped = exchange((w) => {
      w[w.length - 10]! ^= 1;
    });
    expect(verifyTsig(flipped.response, flipped.decoded, key, flipped.request.mac, now)).toMatchObject({ status: "bad", error: 16 });
    const other = exchange(undefined, { ...key, name: "other-key" });
    expect(verifyTsig(other.response, other.decoded, key, other.request.mac, now)).toMatchObject({ status: "bad", error: 17 });
    const ok = exchange();
    expect(verifyTsig(ok.response, ok.decoded, key, ok.request.mac, now + 1000)).toMatchObject({ status: "bad", error: 18 });
    const plain = encodeMessage(query({ qr: true }));
    expect(verifyTsig(plain, decodeMessage(plain), key, ok.request.mac, now).status).toBe("unsigned");
  });

  test("error names follow RFC 8945 §3 and RFC 2136 §2.2", () => {
    expect([16, 17, 18, 22, 0].map(tsigErrorName)).toEqual(["BADSIG", "BADKEY", "BADTIME", "BADTRUNC", undefined]);
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(rcodeName)).toEqual([
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
    ]);
  });
});
