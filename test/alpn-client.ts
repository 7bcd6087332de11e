/** A TLS-ALPN-01 validation as a CA makes it (RFC 8737 §3): a handshake offering only acme-tls/1 with the name as SNI, and what the certificate it got proves. */
import * as x509 from "@peculiar/x509";
import { crypto as acmeCrypto } from "acme-client";
import { connect } from "node:tls";

/** ACME_IDENTIFIER_OID is the acmeIdentifier extension (RFC 8737 §6.1). */
export const ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31";

/** AlpnHandshake is what a handshake got: the protocol the server chose (false: none), the leaf certificate as PEM. */
export type AlpnHandshake = { readonly protocol: string | false; readonly certPem: string };

/** handshake connects to 127.0.0.1:port with SNI name offering the ALPN protocols, and closes after the handshake. */
export function handshake(port: number, name: string, alpn: string[] = ["acme-tls/1"]): Promise<AlpnHandshake> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, servername: name, ALPNProtocols: alpn, rejectUnauthorized: false }, () => {
      const raw = s.getPeerCertificate().raw;
      const b64 = raw
        .toString("base64")
        .match(/.{1,64}/g)!
        .join("\n");
      resolve({ protocol: s.alpnProtocol ?? false, certPem: `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n` });
      s.destroy();
    });
    s.once("error", reject);
    s.setTimeout(5000, () => s.destroy(new Error(`no handshake with 127.0.0.1:${port} within 5 s`)));
  });
}

/**
 * proves says whether a handshake passes RFC 8737 §3 for name and keyAuthorization: acme-tls/1 negotiated, the name the certificate's only SAN, and a critical
 * acmeIdentifier extension holding SHA-256(keyAuthorization) (checked with acme-client's own verifier).
 */
export function proves(h: AlpnHandshake, name: string, keyAuthorization: string): boolean {
  if (h.protocol !== "acme-tls/1") return false;
  const cert = new x509.X509Certificate(h.certPem);
  const ext = cert.getExtension(ACME_IDENTIFIER_OID);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (!ext?.critical || san?.names.items.length !== 1 || san.names.items[0]!.value !== name) return false;
  return acmeCrypto.isAlpnCertificateAuthorizationValid(h.certPem, keyAuthorization);
}

/** NO_PROTOCOL is the error of a handshake whose offered protocols the server speaks none of (RFC 7301 §3.2): acme-tls/1 for a name not being validated. */
export const NO_PROTOCOL = "ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL";

/** challengeSeen is what a CA would find for name: the key authorization when a handshake proves it, [] when it proves something else or is refused. */
export async function challengeSeen(port: number, name: string, keyAuthorization: string): Promise<string[]> {
  try {
    return proves(await handshake(port, name), name, keyAuthorization) ? [keyAuthorization] : [];
  } catch (e) {
    if ((e as { code?: string }).code === NO_PROTOCOL) return [];
    throw e;
  }
}

/** names lists the DNS names of a handshake's certificate. */
export function names(h: AlpnHandshake): string[] {
  const san = new x509.X509Certificate(h.certPem).getExtension(x509.SubjectAlternativeNameExtension);
  return san?.names.items.map((n) => n.value) ?? [];
}
