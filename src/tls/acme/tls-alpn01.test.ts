import { describe, expect, test } from "bun:test";
import { crypto as acmeCrypto } from "acme-client";
import * as x509 from "@peculiar/x509";
import tls from "node:tls";
import { ACME_IDENTIFIER_OID, alpnCertificate } from "./alpn-certificate.ts";
import { AlpnChallenges, type AlpnAnswer } from "./tls-alpn01.ts";

/** contextOf stands for the front end's nativeOf: it loads the pair the way the listener will, and says which certificate a context is. */
const contextOf = (cert: string, key: string) => {
  tls.createSecureContext({ cert, key });
  return `ctx:${new x509.X509Certificate(cert).serialNumber}`;
};

async function answer(name: string, keyAuthorization = `token-${Math.random()}.thumb`): Promise<AlpnAnswer> {
  return { name, keyAuthorization, ...(await alpnCertificate(name, keyAuthorization)) };
}

const serialOf = (a: AlpnAnswer) => `ctx:${new x509.X509Certificate(a.cert).serialNumber}`;

describe("alpnCertificate", () => {
  test("is the RFC 8737 §3 certificate: the name as its only SAN, a critical acmeIdentifier with SHA-256 of the key authorization, usable for TLS", async () => {
    const { cert, key } = await alpnCertificate("app.test", "tok.thumb");
    const c = new x509.X509Certificate(cert);
    expect(c.getExtension(x509.SubjectAlternativeNameExtension)?.names.items.map((n) => [n.type, n.value])).toEqual([["dns", "app.test"]]);
    expect(c.getExtension(ACME_IDENTIFIER_OID)?.critical).toBe(true);
    // acme-client's own verifier, independent of how the extension was made.
    expect(acmeCrypto.isAlpnCertificateAuthorizationValid(cert, "tok.thumb")).toBe(true);
    expect(acmeCrypto.isAlpnCertificateAuthorizationValid(cert, "tok.other")).toBe(false);
    expect(c.notAfter.getTime()).toBeGreaterThan(Date.now());
    expect(() => tls.createSecureContext({ cert, key })).not.toThrow();
  });
});

describe("AlpnChallenges", () => {
  test("serves the newest certificate of a name, case-insensitively, and nothing for other names", async () => {
    const t = new AlpnChallenges(contextOf);
    expect(t.context("app.test")).toBeUndefined();
    const a = await answer("App.Test");
    await t.publish(a);
    expect(t.context("app.test")).toBe(serialOf(a));
    expect(t.context("APP.TEST")).toBe(serialOf(a));
    expect(t.context("other.test")).toBeUndefined();
    const b = await answer("app.test");
    await t.publish(b);
    expect(t.context("app.test")).toBe(serialOf(b));
  });

  test("withdraw removes only the certificate of its key authorization; twice is harmless", async () => {
    const t = new AlpnChallenges(contextOf);
    const a = await answer("app.test");
    const b = await answer("app.test");
    t.add(a);
    t.add(b);
    await t.withdraw("app.test", "never-presented");
    expect(t.pending().map((p) => p.keyAuthorization)).toEqual([a.keyAuthorization, b.keyAuthorization]);
    await t.withdraw("app.test", b.keyAuthorization);
    expect(t.context("app.test")).toBe(serialOf(a));
    await t.withdraw("app.test", a.keyAuthorization);
    await t.withdraw("app.test", a.keyAuthorization);
    expect(t.context("app.test")).toBeUndefined();
    expect(t.pending()).toEqual([]);
  });

  test("a pair that cannot be loaded is refused and changes nothing", async () => {
    const t = new AlpnChallenges(contextOf);
    const a = await answer("app.test");
    t.add(a);
    const other = await answer("app.test");
    expect(() => t.add({ ...other, key: a.key })).toThrow();
    expect(t.context("app.test")).toBe(serialOf(a));
    expect(t.pending()).toHaveLength(1);
  });

  test("publish goes through the publisher and rejects with it (the answer stays here until withdraw); withdraw never throws", async () => {
    const t = new AlpnChallenges(contextOf);
    const sent: string[] = [];
    t.publisher = {
      publish: async (x) => {
        sent.push(`+${x.name}`);
        throw new Error("worker 2 did not take it");
      },
      withdraw: async (name) => {
        sent.push(`-${name}`);
        throw new Error("worker 2 is gone");
      },
    };
    const a = await answer("app.test");
    await expect(t.publish(a)).rejects.toThrow("worker 2 did not take it");
    expect(t.context("app.test")).toBe(serialOf(a));
    await t.withdraw("app.test", a.keyAuthorization);
    expect(t.context("app.test")).toBeUndefined();
    expect(sent).toEqual(["+app.test", "-app.test"]);
  });

  test("without contextOf (a supervisor) it keeps and relays answers but serves none", async () => {
    const t = new AlpnChallenges();
    const a = await answer("app.test");
    await t.publish(a);
    expect(t.pending()).toEqual([a]);
    expect(t.context("app.test")).toBeUndefined();
  });
});
