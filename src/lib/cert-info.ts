/** Reading and checking a certificate chain and its key (node:crypto): names, validity, key match. */
import type { X509Certificate } from "node:crypto";
import { nodeCrypto } from "./lazy-node.ts";

/** CertBundle is a verified certificate chain (leaf first) with its key and what the leaf says. */
export type CertBundle = {
  readonly certPem: string;
  readonly keyPem: string;
  /** names are the leaf's DNS and IP subject alternative names, lowercase ("*.example.com" for a wildcard). */
  readonly names: readonly string[];
  readonly notBefore: number;
  readonly notAfter: number;
  readonly serial: string;
  readonly issuer: string;
  readonly fingerprint: string;
};

/** CertProblem is a certificate or key that cannot be used: which of the two is at fault, and a message for the operator. */
export class CertProblem extends Error {
  constructor(
    message: string,
    readonly part: "cert" | "key" = "cert",
  ) {
    super(message);
  }
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** splitPem returns the certificates of a PEM bundle in order. */
export function splitPem(pem: string): string[] {
  return pem.match(PEM_CERT_RE) ?? [];
}

function sanNames(x: X509Certificate): string[] {
  const out: string[] = [];
  for (const part of (x.subjectAltName ?? "").split(",")) {
    const p = part.trim();
    if (p.startsWith("DNS:")) out.push(p.slice(4).toLowerCase());
    else if (p.startsWith("IP Address:")) out.push(p.slice(11).toLowerCase());
  }
  return out;
}

/**
 * inspectBundle parses a chain and key and checks that they belong together; throws CertProblem naming what is wrong. It does not judge expiry: the caller
 * compares notAfter with the clock.
 */
export function inspectBundle(certPem: string, keyPem: string): CertBundle {
  const pems = splitPem(certPem);
  if (pems.length === 0) throw new CertProblem("no PEM certificate found");
  let leaf: X509Certificate;
  try {
    const { X509Certificate: X509 } = nodeCrypto();
    leaf = new X509(pems[0]!);
    for (const p of pems.slice(1)) new X509(p);
  } catch (e) {
    throw new CertProblem(`cannot parse the certificate: ${(e as Error).message}`);
  }
  let key: ReturnType<ReturnType<typeof nodeCrypto>["createPrivateKey"]>;
  try {
    key = nodeCrypto().createPrivateKey(keyPem);
  } catch (e) {
    throw new CertProblem(`cannot parse the private key: ${(e as Error).message}`, "key");
  }
  if (!leaf.checkPrivateKey(key)) throw new CertProblem("the private key does not belong to the certificate", "key");
  const names = sanNames(leaf);
  if (names.length === 0) throw new CertProblem("the certificate has no subject alternative names (browsers ignore the common name)");
  return {
    certPem: `${pems.join("\n")}\n`,
    keyPem,
    names,
    notBefore: Date.parse(leaf.validFrom),
    notAfter: Date.parse(leaf.validTo),
    serial: leaf.serialNumber,
    issuer: leaf.issuer.replace(/\n/g, ", "),
    fingerprint: leaf.fingerprint256,
  };
}

/** isIpLiteral says whether a host is an IP address ("10.0.0.1", "[::1]", "::1") rather than a name. */
export function isIpLiteral(host: string): boolean {
  return host.startsWith("[") || host.includes(":") || /^[0-9.]+$/.test(host);
}

/** nameCovers says whether a certificate name ("a.example.com" or "*.example.com") covers host (RFC 6125 §6.4.3: the wildcard is one whole left-most label). */
export function nameCovers(name: string, host: string): boolean {
  if (name === host) return true;
  if (!name.startsWith("*.")) return false;
  const dot = host.indexOf(".");
  return dot > 0 && host.slice(dot + 1) === name.slice(2);
}

/** coversAll says whether the bundle's names cover every host. */
export function coversAll(b: CertBundle, hosts: readonly string[]): boolean {
  return hosts.every((h) => b.names.some((n) => nameCovers(n, h)));
}
