/** The TLS-ALPN-01 solver on a real raw-TLS listener: acme-tls/1 handshakes for a name being proven get the challenge certificate, every other handshake the site's. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { FrontServer } from "../src/front/h1-server.ts";
import { nativeOf, TlsContexts } from "../src/front/tls-contexts.ts";
import { AlpnChallenges } from "../src/tls/acme/tls-alpn01.ts";
import { TlsAlpn01Solver } from "../src/tls/acme/tls-alpn01-solver.ts";
import { FALLBACK_NAME } from "../src/tls/cert-manager.ts";
import { FileStorage } from "../src/tls/file-storage.ts";
import { InternalIssuer } from "../src/tls/internal-issuer.ts";
import { challengeSeen, handshake, NO_PROTOCOL, names, proves } from "./alpn-client.ts";
import { freePort, tempDir } from "./harness.ts";

const dir = tempDir("gatehouse-alpn-");
const port = freePort();
const alpn = new AlpnChallenges(nativeOf);
const solver = new TlsAlpn01Solver(alpn);
let listener: FrontServer;

beforeAll(async () => {
  // As the gateway serves: the fallback certificate, a site certificate for site.test, and the challenge table.
  const issuer = new InternalIssuer(new FileStorage(dir));
  const fallback = await issuer.issueFor([FALLBACK_NAME]);
  const site = await issuer.issueFor(["site.test"]);
  const contexts = new TlsContexts();
  contexts.set([
    { cert: fallback.certPem, key: fallback.keyPem, fingerprint: "fallback" },
    { serverName: "site.test", cert: site.certPem, key: site.keyPem, fingerprint: "site" },
  ]);
  listener = new FrontServer({
    hostname: "127.0.0.1",
    port,
    handler: () => new Response("hello"),
    tls: contexts,
    alpnChallenge: (name) => alpn.context(name),
  });
});

afterAll(async () => {
  await listener?.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

const challenge = (identifier: string, keyAuthorization: string) => ({ site: "site", identifier, token: "tok", keyAuthorization });

test("while a name is proven, acme-tls/1 gets the challenge certificate; http/1.1 clients still get the site's certificate", async () => {
  const c = challenge("site.test", "tok.thumbprint-1");
  await solver.present(c);
  try {
    const h = await handshake(port, "SITE.test");
    expect(h.protocol).toBe("acme-tls/1");
    expect(proves(h, "site.test", c.keyAuthorization)).toBe(true);
    expect(proves(h, "site.test", "tok.other")).toBe(false);
    const normal = await handshake(port, "site.test", ["http/1.1"]);
    expect(normal.protocol).toBe("http/1.1");
    expect(names(normal)).toEqual(["site.test"]);
    // Another name being proven does not change what site.test's validation sees.
    expect(await challengeSeen(port, "other.test", c.keyAuthorization)).toEqual([]);
  } finally {
    await solver.cleanUp(c);
  }
});

test("after cleanUp, acme-tls/1 is refused (RFC 7301 no_application_protocol) and the name gets its normal certificate again", async () => {
  const c = challenge("site.test", "tok.thumbprint-2");
  await solver.present(c);
  expect(await challengeSeen(port, "site.test", c.keyAuthorization)).toEqual([c.keyAuthorization]);
  await solver.cleanUp(c);
  await expect(handshake(port, "site.test")).rejects.toMatchObject({ code: NO_PROTOCOL });
  expect(names(await handshake(port, "site.test", ["http/1.1"]))).toEqual(["site.test"]);
  expect(names(await handshake(port, "unknown.test", ["http/1.1"]))).toEqual([FALLBACK_NAME]);
});

test("a name with no certificate of its own (a first issuance) is proven over the fallback, which it gets again afterwards", async () => {
  const c = challenge("new.test", "tok.thumbprint-3");
  await solver.present(c);
  expect(await challengeSeen(port, "new.test", c.keyAuthorization)).toEqual([c.keyAuthorization]);
  await solver.cleanUp(c);
  expect(await challengeSeen(port, "new.test", c.keyAuthorization)).toEqual([]);
  expect(names(await handshake(port, "new.test", ["http/1.1"]))).toEqual([FALLBACK_NAME]);
});
