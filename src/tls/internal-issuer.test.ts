/** The internal CA runs the Issuer contract, unit-fast: a temporary storage, no network. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileStorage } from "./file-storage.ts";
import { InternalCa } from "./internal-ca.ts";
import { InternalIssuer } from "./internal-issuer.ts";
import { issuerContract } from "./issuer.contract.ts";

issuerContract("InternalIssuer (the internal CA)", async () => {
  const root = mkdtempSync(join(tmpdir(), "gatehouse-internal-issuer-"));
  const storage = new FileStorage(root);
  // The CA made here is the one the issuer must sign with: it opens the CA in storage, never a new one.
  const trustedRoot = (await InternalCa.open(storage)).certPem;
  return {
    issuer: new InternalIssuer(storage),
    names: ["app.test", "*.app.test"],
    trustedRoot,
    cleanup: async () => rmSync(root, { recursive: true, force: true }),
  };
});
