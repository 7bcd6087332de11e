/** The TLS-ALPN-01 challenge certificate (RFC 8737 §3): self-signed, the identifier its only name, the key authorization's digest in a critical acmeIdentifier extension. */
import * as x509 from "@peculiar/x509";
import { createHash, webcrypto } from "node:crypto";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** ACME_IDENTIFIER_OID is the acmeIdentifier extension (RFC 8737 §6.1). */
export const ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31";
const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
/** LIFETIME_MS: the certificate lives for one validation; a day leaves room for clocks that disagree. */
const LIFETIME_MS = 86_400_000;

/**
 * alpnCertificate makes the challenge certificate for identifier and keyAuthorization on a new P-256 key, as PEMs. Unlike acme-client's
 * createAlpnCertificate (key usage keyCertSign and cRLSign only, valid for no time at all), it is an end-entity certificate with digitalSignature, which
 * BoringSSL (Bun's TLS) serves with an EC key and which any client can complete a handshake with.
 */
export async function alpnCertificate(identifier: string, keyAuthorization: string): Promise<{ cert: string; key: string }> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const digest = createHash("sha256").update(keyAuthorization).digest();
  // RFC 8737 §3: the extension's value is the DER encoding of an OCTET STRING holding the 32-byte SHA-256 digest.
  const acmeIdentifier = Buffer.concat([Buffer.from([0x04, digest.length]), digest]);
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0]! &= 0x7f; // a positive INTEGER
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(serial).toString("hex"),
    // A CN is at most 64 characters (RFC 5280 ub-common-name); the SAN carries the name that counts.
    name: identifier.length <= 64 ? `CN=${identifier}` : "CN=tls-alpn-01 challenge",
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + LIFETIME_MS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: identifier }]),
      new x509.Extension(ACME_IDENTIFIER_OID, true, acmeIdentifier),
    ],
  });
  const key = `${x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY")}\n`;
  return { cert: `${cert.toString("pem")}\n`, key };
}
