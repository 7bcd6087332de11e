/** The TLS-ALPN-01 solver (RFC 8737): a self-signed certificate for the name carrying the key authorization's digest, served by the HTTPS listener (every worker's, under a supervisor) to acme-tls/1 handshakes. */
import type { AlpnChallenges } from "./tls-alpn01.ts";
import type { Challenge, Solver } from "./solver.ts";

/** TlsAlpn01Solver publishes challenge certificates in one process's table (and through its publisher, to every worker). */
export class TlsAlpn01Solver implements Solver {
  readonly type = "tls-alpn-01";
  readonly presentStep = "tls-alpn-01-publish";

  constructor(private readonly challenges: AlpnChallenges) {}

  /** present resolves once every HTTPS listener answers acme-tls/1 for the identifier with the challenge certificate; it throws when some could not take it. */
  async present(c: Challenge): Promise<void> {
    // @peculiar/x509 is loaded here, as by the internal CA: only a gateway that proves a name with TLS-ALPN-01 pays for it.
    const { alpnCertificate } = await import("./alpn-certificate.ts");
    const { cert, key } = await alpnCertificate(c.identifier, c.keyAuthorization);
    await this.challenges.publish({ name: c.identifier, keyAuthorization: c.keyAuthorization, cert, key });
  }

  /** cleanUp withdraws the certificate everywhere; it never throws. */
  cleanUp(c: Challenge): Promise<void> {
    return this.challenges.withdraw(c.identifier, c.keyAuthorization);
  }
}
