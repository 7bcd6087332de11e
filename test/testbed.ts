/** The ACME testbed for tests: Debian's pebble (a real RFC 8555 CA) and bind9 (RFC 2136 + TSIG) on loopback ports of their own, started by test/acme-testbed/start.sh (a copy of ../shared/acme-testbed). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, freePort, tempDir } from "./harness.ts";

/** TestbedEnv is what start.sh publishes in env.json. */
export type TestbedEnv = {
  ACME_DIRECTORY_URL: string;
  ACME_API_CA_CERT: string;
  ACME_ISSUER_ROOT: string;
  ACME_MGMT_URL: string;
  ACME_HTTP01_PORT: string;
  ACME_ZONE: string;
  DNS_SERVER: string;
  DNS_PORT: string;
  TSIG_KEY_NAME: string;
  TSIG_ALGORITHM: string;
  TSIG_SECRET: string;
  ACME_TESTBED_DIR: string;
};

const SCRIPTS = join(ROOT, "test/acme-testbed");

/** Testbed is one running pebble + named pair; stop() ends both and removes its state. */
export class Testbed {
  private constructor(
    readonly env: TestbedEnv,
    readonly dir: string,
  ) {}

  /**
   * start runs start.sh on free loopback ports; HTTP-01 validation connects to http01Port (give the gateway's HTTP listener that port), TLS-ALPN-01 validation
   * to tlsAlpn01Port (give it the HTTPS listener). With eab, Pebble requires External Account Binding with that key id and (base64url) MAC key.
   */
  static start(opts: { http01Port?: number; tlsAlpn01Port?: number; eab?: { kid: string; hmacKey: string } } = {}): Testbed {
    const dir = tempDir("gatehouse-testbed-");
    const env = {
      ...process.env,
      PEBBLE_PORT: String(freePort()),
      PEBBLE_MGMT_PORT: String(freePort()),
      DNS_PORT: String(freePort()),
      HTTP01_PORT: String(opts.http01Port ?? freePort()),
      TLSALPN01_PORT: String(opts.tlsAlpn01Port ?? freePort()),
      ...(opts.eab ? { PEBBLE_EAB_KID: opts.eab.kid, PEBBLE_EAB_HMAC_KEY: opts.eab.hmacKey } : {}),
    };
    const r = Bun.spawnSync(["bash", join(SCRIPTS, "start.sh"), dir], { env, stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`acme testbed did not start: ${r.stderr.toString()}${r.stdout.toString()}`);
    return new Testbed(JSON.parse(readFileSync(join(dir, "env.json"), "utf8")) as TestbedEnv, dir);
  }

  stop(): void {
    Bun.spawnSync(["bash", join(SCRIPTS, "stop.sh"), this.dir, "--purge"]);
  }
}
