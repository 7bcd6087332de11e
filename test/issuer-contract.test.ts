/** The ACME issuer runs the Issuer contract against Pebble, proving names with HTTP-01 on a loopback listener. */
import { readFileSync, rmSync } from "node:fs";
import { Http01Tokens } from "../src/tls/acme/http01.ts";
import { Http01Solver } from "../src/tls/acme/http01-solver.ts";
import { AcmeIssuer } from "../src/tls/acme/issuer.ts";
import { FileStorage } from "../src/tls/file-storage.ts";
import { issuerContract } from "../src/tls/issuer.contract.ts";
import { freePort, tempDir } from "./harness.ts";
import { Testbed } from "./testbed.ts";

issuerContract("AcmeIssuer (Pebble)", async () => {
  const http01Port = freePort();
  const tb = Testbed.start({ http01Port });
  const tokens = new Http01Tokens();
  const listener = Bun.serve({
    port: http01Port,
    hostname: "127.0.0.1",
    fetch: (req) => tokens.answer(new URL(req.url).pathname)?.toResponse() ?? new Response("no such token", { status: 404 }),
  });
  const dir = tempDir("gatehouse-acme-issuer-");
  const solver = new Http01Solver(tokens);
  const acme = {
    directory: tb.env.ACME_DIRECTORY_URL,
    email: "ops@app.test",
    caFile: tb.env.ACME_API_CA_CERT,
    challenge: "http-01" as const,
    dns: undefined,
    renewFraction: 2 / 3,
  };
  return {
    issuer: new AcmeIssuer(acme, new FileStorage(dir), () => solver),
    names: ["issuer-a.test", "issuer-b.test"],
    trustedRoot: readFileSync(tb.env.ACME_ISSUER_ROOT, "utf8"),
    // Outside the testbed's zone: the CA's lookup of the name fails, so it cannot be validated.
    refused: ["nowhere.example"],
    cleanup: async () => {
      listener.stop(true);
      tb.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
