/** The internal CA (tls = "internal"): a local root made on first start and kept in storage, issuing short-lived certificates for development names such as localhost. */
import * as x509 from "@peculiar/x509";
import { webcrypto } from "node:crypto";
import { isIpLiteral } from "../lib/cert-info.ts";
import type { Storage } from "./storage.ts";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY = 86_400_000;
/** LEAF_LIFETIME_MS is how long an internal certificate is valid; it is renewed at two thirds, like an ACME one. */
export const LEAF_LIFETIME_MS = 7 * DAY;
const CA_CERT = "internal-ca/ca.pem";
const CA_KEY = "internal-ca/ca.key";

function pemKey(der: ArrayBuffer): string {
  return `${x509.PemConverter.encode(der, "PRIVATE KEY")}\n`;
}

function serial(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[0]! &= 0x7f; // positive INTEGER
  return Buffer.from(b).toString("hex");
}

/** InternalCa signs leaf certificates with the stored root. */
export class InternalCa {
  private constructor(
    readonly certPem: string,
    private readonly cert: x509.X509Certificate,
    private readonly key: CryptoKey,
  ) {}

  /** open loads the CA from storage, or makes and stores a new one (10 years, key 0600) when there is none. */
  static async open(storage: Storage): Promise<InternalCa> {
    const certPem = await storage.load(CA_CERT);
    const keyPem = await storage.load(CA_KEY);
    if (certPem && keyPem) {
      const cert = new x509.X509Certificate(certPem);
      const key = await webcrypto.subtle.importKey("pkcs8", x509.PemConverter.decode(keyPem)[0]!, ALG, false, ["sign"]);
      return new InternalCa(certPem, cert, key as CryptoKey);
    }
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=gatehouse internal CA ${new Date(now).toISOString().slice(0, 10)}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3650 * DAY),
      keys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pem = `${cert.toString("pem")}\n`;
    await storage.store(CA_KEY, pemKey(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)), { secret: true });
    await storage.store(CA_CERT, pem);
    return new InternalCa(pem, cert, keys.privateKey);
  }

  /**
   * issue makes a key and a certificate for names (DNS names or IP addresses), valid from a minute ago for lifetimeMs; returns PEMs (chain: leaf, then the
   * root).
   */
  async issue(names: readonly string[], lifetimeMs = LEAF_LIFETIME_MS): Promise<{ certPem: string; keyPem: string }> {
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
    const now = Date.now();
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${names[0]}`,
      issuer: this.cert.subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + lifetimeMs),
      signingAlgorithm: ALG,
      publicKey: keys.publicKey,
      signingKey: this.key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(
          names.map((n) => (isIpLiteral(n) ? { type: "ip", value: n.replace(/^\[|\]$/g, "") } : { type: "dns", value: n })),
        ),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    return { certPem: `${leaf.toString("pem")}\n${this.certPem}`, keyPem: pemKey(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)) };
  }
}
