/** The contract every Issuer passes: a chain for exactly the names asked, a key that belongs to it and is new each time, valid now, verifying up to the trusted root, and metadata that recognises its own certificates. */
import { afterAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { inspectBundle, splitPem } from "../lib/cert-info.ts";
import { issuedBy, type Issuer } from "./issuer.ts";

/**
 * IssuerHarness is one issuer under test: names it can vouch for (two, one may be a wildcard), the root its chains verify to, optionally names it must refuse.
 */
export type IssuerHarness = {
  readonly issuer: Issuer;
  readonly names: readonly [string, string];
  readonly trustedRoot: string;
  /** refused are names the issuer cannot prove (a CA that validates refuses them); omit for an issuer that vouches for anything (the internal CA). */
  readonly refused?: readonly string[];
  cleanup(): Promise<void>;
};

/** verifiesTo says whether each certificate of a chain is signed by the next and the last by (or is) the root. */
export function verifiesTo(chainPem: string, rootPem: string): boolean {
  const chain = splitPem(chainPem).map((p) => new X509Certificate(p));
  const root = new X509Certificate(rootPem);
  for (let i = 0; i + 1 < chain.length; i++) if (!chain[i]!.verify(chain[i + 1]!.publicKey)) return false;
  const last = chain.at(-1)!;
  return last.fingerprint256 === root.fingerprint256 || last.verify(root.publicKey);
}

/** issuerContract runs the Issuer suite against one implementation; make is called once. */
export function issuerContract(name: string, make: () => Promise<IssuerHarness>): void {
  let h: IssuerHarness | undefined;
  const harness = async (): Promise<IssuerHarness> => (h ??= await make());
  afterAll(async () => h?.cleanup());

  describe(`Issuer contract: ${name}`, () => {
    test("issue returns a chain for exactly the names asked, with the key that belongs to it, valid now, that verifies up to the trusted root", async () => {
      const { issuer, names, trustedRoot } = await harness();
      const issued = await issuer.issue("contract", names);
      const b = inspectBundle(issued.certPem, issued.keyPem); // throws when the key is not the leaf's
      expect([...b.names].sort()).toEqual([...names].map((n) => n.toLowerCase()).sort());
      expect(b.notBefore).toBeLessThanOrEqual(Date.now());
      expect(b.notAfter).toBeGreaterThan(Date.now() + 86_400_000);
      expect(verifiesTo(issued.certPem, trustedRoot)).toBe(true);
      expect(new X509Certificate(splitPem(issued.certPem)[0]!).ca).toBe(false);
    });

    test("each issue makes a new key and a new certificate", async () => {
      const { issuer, names } = await harness();
      const a = await issuer.issue("contract", [names[0]]);
      const b = await issuer.issue("contract", [names[0]]);
      expect(a.keyPem).not.toBe(b.keyPem);
      expect(inspectBundle(a.certPem, a.keyPem).fingerprint).not.toBe(inspectBundle(b.certPem, b.keyPem).fingerprint);
    });

    test("meta names the issuer: a certificate stored with it counts as its own, one from another issuer does not", async () => {
      const { issuer } = await harness();
      expect(typeof issuer.meta.issuer).toBe("string");
      expect(issuedBy({ ...issuer.meta }, issuer)).toBe(true);
      expect(issuedBy({ ...issuer.meta, issuer: `not-${issuer.meta.issuer}` }, issuer)).toBe(false);
      expect(issuedBy({}, issuer)).toBe(false);
    });

    test("a name it cannot prove is refused with an error, not a certificate", async () => {
      const { issuer, refused } = await harness();
      if (!refused) return; // this issuer vouches for any name (the internal CA)
      await expect(issuer.issue("contract", refused)).rejects.toThrow();
    });
  });
}
