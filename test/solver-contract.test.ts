/** HTTP-01, DNS-01 and TLS-ALPN-01 run the Solver contract against the real testbed: Pebble validates, bind9 takes the RFC 2136 updates. */
import { rmSync } from "node:fs";
import { Dns01Solver, challengeName } from "../src/tls/acme/dns01-solver.ts";
import { queryTxt } from "../src/tls/acme/dns-update.ts";
import { Http01Tokens } from "../src/tls/acme/http01.ts";
import { Http01Solver } from "../src/tls/acme/http01-solver.ts";
import { solverContract } from "../src/tls/acme/solver.contract.ts";
import { AlpnChallenges } from "../src/tls/acme/tls-alpn01.ts";
import { TlsAlpn01Solver } from "../src/tls/acme/tls-alpn01-solver.ts";
import { FALLBACK_NAME } from "../src/tls/cert-manager.ts";
import { FileStorage } from "../src/tls/file-storage.ts";
import { InternalIssuer } from "../src/tls/internal-issuer.ts";
import { FrontServer } from "../src/front/h1-server.ts";
import { nativeOf, TlsContexts } from "../src/front/tls-contexts.ts";
import { challengeSeen } from "./alpn-client.ts";
import { freePort, tempDir } from "./harness.ts";
import { Testbed } from "./testbed.ts";

let seq = 0;

function setup(tlsAlpn01Port?: number) {
  const http01Port = freePort();
  const tb = Testbed.start({ http01Port, tlsAlpn01Port });
  const dir = tempDir("gatehouse-solver-");
  const acme = {
    directory: tb.env.ACME_DIRECTORY_URL,
    email: "ops@app.test",
    caFile: tb.env.ACME_API_CA_CERT,
    challenge: "http-01" as const,
    dns: undefined,
    renewFraction: 2 / 3,
  };
  const cleanup = () => {
    tb.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return { http01Port, tb, acme, storage: new FileStorage(dir), cleanup };
}

solverContract("Http01Solver", async () => {
  const { http01Port, acme, storage, cleanup } = setup();
  const tokens = new Http01Tokens();
  // A supervisor whose worker did not take the token: publish fails after the local table has it.
  const refusing = new Http01Tokens();
  refusing.publisher = { publish: async () => Promise.reject(new Error("worker 1 did not take the token")), withdraw: async () => undefined };
  // The plain HTTP listener, as the gateway's handler answers: before any routing, from the token table.
  const listener = Bun.serve({
    port: http01Port,
    hostname: "127.0.0.1",
    fetch: (req) => {
      const path = new URL(req.url).pathname;
      return (tokens.answer(path) ?? refusing.answer(path))?.toResponse() ?? new Response("no such token", { status: 404 });
    },
  });
  return {
    solver: new Http01Solver(tokens),
    broken: new Http01Solver(refusing),
    identifier: () => `http-${++seq}.test`,
    seen: async (c) => {
      const res = await fetch(`http://127.0.0.1:${http01Port}/.well-known/acme-challenge/${c.token}`);
      return res.status === 200 ? [await res.text()] : [];
    },
    outstanding: async () => [...tokens.pending(), ...refusing.pending()].map(([, v]) => v),
    acme,
    storage,
    cleanup: async () => {
      listener.stop(true);
      cleanup();
    },
  };
});

solverContract("Dns01Solver (bind9)", async () => {
  const { tb, acme, storage, cleanup } = setup();
  const server = { host: "127.0.0.1", port: Number(tb.env.DNS_PORT) };
  const key = { name: tb.env.TSIG_KEY_NAME, algorithm: "hmac-sha256" as const, secret: new Uint8Array(Buffer.from(tb.env.TSIG_SECRET, "base64")) };
  const wrongKey = { ...key, secret: new Uint8Array(Buffer.from("not the secret at all, 32 bytes!")) };
  return {
    solver: new Dns01Solver({ server, key }),
    broken: new Dns01Solver({ server, key: wrongKey }),
    identifier: () => `dns-${++seq}.test`,
    seen: (c) => queryTxt(server, challengeName(c.identifier)),
    outstanding: (identifier) => queryTxt(server, challengeName(identifier)),
    acme,
    storage,
    cleanup: async () => cleanup(),
  };
});

solverContract("TlsAlpn01Solver", async () => {
  const tlsPort = freePort();
  const { acme, storage, cleanup } = setup(tlsPort);
  const alpn = new AlpnChallenges(nativeOf);
  // A supervisor whose worker did not take the certificate: publish fails after the local table has it.
  const refusing = new AlpnChallenges(nativeOf);
  refusing.publisher = { publish: async () => Promise.reject(new Error("worker 1 did not take the certificate")), withdraw: async () => undefined };
  // The HTTPS listener as the gateway binds it: the raw TLS front end with the fallback certificate, answering acme-tls/1 from the tables.
  const fallback = await new InternalIssuer(storage).issueFor([FALLBACK_NAME]);
  const contexts = new TlsContexts();
  contexts.set([{ cert: fallback.certPem, key: fallback.keyPem, fingerprint: "fallback" }]);
  const listener = new FrontServer({
    hostname: "127.0.0.1",
    port: tlsPort,
    handler: () => new Response("not a challenge"),
    tls: contexts,
    alpnChallenge: (name) => alpn.context(name) ?? refusing.context(name),
  });
  return {
    solver: new TlsAlpn01Solver(alpn),
    broken: new TlsAlpn01Solver(refusing),
    identifier: () => `alpn-${++seq}.test`,
    seen: (c) => challengeSeen(tlsPort, c.identifier, c.keyAuthorization),
    outstanding: async (identifier) => [...alpn.pending(), ...refusing.pending()].filter((a) => a.name === identifier).map((a) => a.keyAuthorization),
    acme,
    storage,
    cleanup: async () => {
      await listener.stop(true);
      cleanup();
    },
  };
});
