import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RenewalInfoError, certId, encodeCertId, fetchRenewalInfo, parseRetryAfter } from "../src/tls/acme/ari.ts";

// RFC 9773 §4.1 example.
const RFC_AKI = "69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4";
const RFC_ID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";
const dir = mkdtempSync(join(tmpdir(), "gatehouse-ari-"));
const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

function openssl(...args: string[]): string {
  const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}
const read = (f: string) => readFileSync(join(dir, f), "utf8");
const hex = (s: string) => Buffer.from(s.replace(/:/g, ""), "hex");

/** issueLeaf signs a fresh leaf with the test CA, optionally with a fixed serial, and returns its PEM. */
function issueLeaf(name: string, serial?: string): string {
  openssl("req", "-new", ...EC, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
  const s = serial ? ["-set_serial", serial] : [];
  openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "2", "-out", `${name}.pem`, "-extfile", "ext.cnf", ...s);
  return read(`${name}.pem`);
}

/** expectedId builds the id from openssl's own text output, independently of our DER reader. */
function expectedId(pemFile: string): string {
  const aki = /([0-9A-F]{2}(?::[0-9A-F]{2})+)/.exec(openssl("x509", "-in", pemFile, "-noout", "-ext", "authorityKeyIdentifier"))![1]!;
  let serial = /serial=([0-9A-F]+)/.exec(openssl("x509", "-in", pemFile, "-noout", "-serial"))![1]!;
  if (serial.length % 2) serial = `0${serial}`;
  if (parseInt(serial.slice(0, 2), 16) >= 0x80) serial = `00${serial}`; // DER keeps the INTEGER positive
  return encodeCertId(hex(aki), hex(serial));
}

openssl("req", "-x509", ...EC, "-keyout", "ca.key", "-out", "ca.pem", "-days", "3", "-subj", "/CN=test ca");
writeFileSync(join(dir, "ext.cnf"), "authorityKeyIdentifier=keyid:always\nbasicConstraints=CA:FALSE\n");

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("certId", () => {
  test("encodes the RFC 9773 §4.1 example bytes", () => {
    expect(encodeCertId(hex(RFC_AKI), hex("00:87:65:43:21"))).toBe(RFC_ID);
  });

  test("gives the RFC 9773 §4.1 example for an openssl certificate with that AKI and serial", () => {
    openssl(
      "req",
      "-x509",
      ...EC,
      "-keyout",
      "rfc.key",
      "-out",
      "rfc.pem",
      "-days",
      "3",
      "-subj",
      "/CN=rfc",
      "-set_serial",
      "0x87654321",
      "-addext",
      `subjectKeyIdentifier=${RFC_AKI}`,
      "-addext",
      "authorityKeyIdentifier=keyid:always",
    );
    expect(certId(read("rfc.pem"))).toBe(RFC_ID);
  });

  test("matches openssl's AKI and serial for CA-signed leaves, high-bit serials included", () => {
    for (const [name, serial] of [
      ["rand", undefined],
      ["one", "1"],
      ["low", "0x7f"],
      ["high", "0x80"],
      ["long", "0xF0112233445566778899AABBCCDDEEFF00112233"],
    ] as const) {
      const pem = issueLeaf(name, serial);
      expect(certId(pem)).toBe(expectedId(`${name}.pem`));
    }
    expect(certId(read("high.pem")).endsWith(".AIA")).toBe(true); // 0x80 is DER 00 80
    expect(certId(read("one.pem")).endsWith(".AQ")).toBe(true);
  });

  test("uses the first certificate of a chain", () => {
    const leaf = issueLeaf("chain");
    expect(certId(leaf + read("ca.pem"))).toBe(certId(leaf));
    expect(certId(leaf + read("ca.pem"))).not.toBe(certId(read("ca.pem")));
  });

  test("throws a clear Error for a certificate without AKI, garbage, or truncated DER", () => {
    openssl(
      "req",
      "-x509",
      ...EC,
      "-keyout",
      "n.key",
      "-out",
      "n.pem",
      "-days",
      "3",
      "-subj",
      "/CN=noaki",
      "-addext",
      "subjectKeyIdentifier=none",
      "-addext",
      "authorityKeyIdentifier=none",
    );
    expect(() => certId(read("n.pem"))).toThrow("certId: no Authority Key Identifier keyIdentifier");
    expect(() => certId("hello")).toThrow("certId: no PEM CERTIFICATE block found");
    const b64 = read("rfc.pem")
      .split("\n")
      .filter((l) => !l.startsWith("-----"))
      .join("");
    const cut = Buffer.from(b64, "base64").subarray(0, 120).toString("base64");
    expect(() => certId(`-----BEGIN CERTIFICATE-----\n${cut}\n-----END CERTIFICATE-----`)).toThrow("certId: truncated DER");
  });
});

describe("fetchRenewalInfo", () => {
  let handler: (req: Request) => Response | Promise<Response> = () => new Response("unset", { status: 500 });
  const seen: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) => {
      seen.push(new URL(req.url).pathname);
      return handler(req);
    },
  });
  const base = `http://127.0.0.1:${server.port}/acme/renewal-info`;
  afterAll(() => server.stop(true));
  const window = { suggestedWindow: { start: "2025-01-02T04:00:00Z", end: "2025-01-03T04:00:00.5+01:00" } };
  const ok = (retryAfter?: string, body: unknown = window) =>
    (handler = () => Response.json(body, { headers: retryAfter === undefined ? {} : { "retry-after": retryAfter } }));
  const fails = async (p: Promise<unknown>): Promise<RenewalInfoError> => {
    const e = await p.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(RenewalInfoError);
    return e as RenewalInfoError;
  };

  test("returns the window and Retry-After for a good answer, at base/certId", async () => {
    ok("21600", { ...window, explanationURL: "https://ca.example/why" });
    const info = await fetchRenewalInfo(`${base}/`, RFC_ID);
    expect(seen.at(-1)).toBe(`/acme/renewal-info/${RFC_ID}`);
    expect(info.window).toEqual({ start: Date.UTC(2025, 0, 2, 4), end: Date.UTC(2025, 0, 3, 3, 0, 0, 500), explanationURL: "https://ca.example/why" });
    expect(info.retryAfterMs).toBe(21_600_000);
  });

  test("reads Retry-After as seconds or an HTTP date, clamped to [1 min, 1 day], default 6 h", async () => {
    const cases: Array<[string | undefined, number]> = [
      ["120", 120_000],
      ["5", 60_000],
      ["999999", 86_400_000],
      [undefined, 21_600_000],
      ["soon", 21_600_000],
      [new Date(Date.now() - 3600_000).toUTCString(), 60_000],
    ];
    for (const [header, want] of cases) {
      ok(header);
      expect((await fetchRenewalInfo(base, "x.y")).retryAfterMs).toBe(want);
    }
    ok(new Date(Date.now() + 2 * 3600_000).toUTCString());
    const ms = (await fetchRenewalInfo(base, "x.y")).retryAfterMs;
    expect(Math.abs(ms - 2 * 3600_000)).toBeLessThan(3000);
    expect(parseRetryAfter("-1")).toBeUndefined();
  });

  test("throws on HTTP 404 (long-term) and 503 (temporary, with its Retry-After)", async () => {
    handler = () => new Response("no such certificate", { status: 404 });
    const e404 = await fails(fetchRenewalInfo(base, "a.b"));
    expect([e404.status, e404.temporary]).toEqual([404, false]);
    expect(e404.message).toContain("HTTP 404: no such certificate");
    handler = () => new Response("", { status: 503, headers: { "retry-after": "90" } });
    const e503 = await fails(fetchRenewalInfo(base, "a.b"));
    expect([e503.status, e503.temporary, e503.retryAfterMs]).toEqual([503, true, 90_000]);
  });

  test("throws on malformed JSON and invalid windows", async () => {
    handler = () => new Response("{not json", { headers: { "content-type": "application/json" } });
    expect((await fails(fetchRenewalInfo(base, "a.b"))).message).toContain("body is not JSON");
    const bad: Array<[unknown, string]> = [
      [{ suggestedWindow: { start: "2025-01-03T00:00:00Z", end: "2025-01-02T00:00:00Z" } }, "end is not after"],
      [{ suggestedWindow: { start: "2025-01-03T00:00:00Z", end: "2025-01-03T00:00:00Z" } }, "end is not after"],
      [{ suggestedWindow: { start: "tomorrow", end: "2025-01-03T00:00:00Z" } }, "start is not an RFC 3339"],
      [{ suggestedWindow: { start: "2025-01-03T00:00:00Z", end: 1735862400 } }, "end is not an RFC 3339"],
      [{ window: {} }, "no suggestedWindow"],
      [[1, 2], "no suggestedWindow"],
      [null, "not a JSON object"],
    ];
    for (const [body, msg] of bad) {
      ok("60", body);
      const e = await fails(fetchRenewalInfo(base, "a.b"));
      expect(e.message).toContain(msg);
      expect(e.temporary).toBe(false);
    }
  });

  test("times out a CA that does not answer", async () => {
    handler = async () => {
      await Bun.sleep(3000);
      return Response.json(window);
    };
    const t0 = performance.now();
    const e = await fails(fetchRenewalInfo(base, "slow.id", { timeoutMs: 150 }));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(e.message).toContain("timed out after 150 ms");
    expect(e.temporary).toBe(true);
  });

  test("uses the injected fetch and reports a refused connection as temporary", async () => {
    ok("60");
    const urls: string[] = [];
    const counting = ((input: string | URL | Request, init?: RequestInit) => {
      urls.push(String(input));
      return fetch(input, init);
    }) as typeof fetch;
    await fetchRenewalInfo(base, "c.d", { fetch: counting });
    expect(urls).toEqual([`${base}/c.d`]);
    const closed = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const port = closed.port;
    await closed.stop(true);
    const e = await fails(fetchRenewalInfo(`http://127.0.0.1:${port}/ari`, "c.d"));
    expect(e.temporary).toBe(true);
    expect(e.message).toContain("failed");
  });
});
