/** The contract every challenge Solver passes against a real CA: present makes the answer visible where the CA looks, cleanUp takes it away (and is harmless when nothing was presented), a failed present says so, and the CA validates an order proven with it. */
import { afterAll, describe, expect, test } from "bun:test";
import type { AcmeCa } from "../../config/types.ts";
import { inspectBundle } from "../../lib/cert-info.ts";
import type { Storage } from "../storage.ts";
import { AcmeIssuer } from "./issuer.ts";
import { waits, type Challenge, type Solver } from "./solver.ts";

/** SolverHarness is one solver under test, wired to a running ACME testbed. */
export type SolverHarness = {
  readonly solver: Solver;
  /**
   * broken is a solver of the same type that cannot put its answer in place (a worker that refuses the token, a wrong TSIG key); what it did put in place is
   * visible to seen() too.
   */
  readonly broken: Solver;
  /** identifier returns a new name the testbed's CA can validate. */
  identifier(): string;
  /** seen returns the key authorizations the CA would find for c now. */
  seen(c: Challenge): Promise<string[]>;
  /** outstanding returns every answer still in place for an identifier (HTTP-01 answers are per token, so all of them). */
  outstanding(identifier: string): Promise<string[]>;
  /** acme is the testbed's CA and an account there; storage keeps the account. */
  readonly acme: AcmeCa;
  readonly storage: Storage;
  cleanup(): Promise<void>;
};

function challenge(identifier: string): Challenge {
  const rand = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
  return { site: "contract", identifier, token: rand(), keyAuthorization: rand() };
}

/** solverContract runs the Solver suite against one implementation; make is called once. */
export function solverContract(name: string, make: () => Promise<SolverHarness>): void {
  let h: SolverHarness | undefined;
  const harness = async (): Promise<SolverHarness> => (h ??= await make());
  afterAll(async () => h?.cleanup());

  describe(`Solver contract: ${name}`, () => {
    test("present makes the key authorization visible where the CA looks; cleanUp takes it away", async () => {
      const { solver, identifier, seen } = await harness();
      const c = challenge(identifier());
      expect(await seen(c)).not.toContain(c.keyAuthorization);
      await solver.present(c);
      if (waits(solver)) await solver.wait(c);
      expect(await seen(c)).toContain(c.keyAuthorization);
      await solver.cleanUp(c);
      expect(await seen(c)).not.toContain(c.keyAuthorization);
    });

    test("cleanUp of an answer never presented resolves and leaves the other answers for the same name in place", async () => {
      const { solver, identifier, seen } = await harness();
      const c1 = challenge(identifier());
      const c2 = challenge(c1.identifier);
      await solver.present(c1);
      if (waits(solver)) await solver.wait(c1);
      await solver.cleanUp(c2);
      expect(await seen(c1)).toContain(c1.keyAuthorization);
      await solver.cleanUp(c1);
      expect(await seen(c1)).not.toContain(c1.keyAuthorization);
    });

    test("a present that cannot put its answer in place rejects; the cleanUp after it resolves and leaves nothing behind", async () => {
      const { broken, identifier, seen } = await harness();
      const c = challenge(identifier());
      await expect(broken.present(c)).rejects.toThrow();
      await broken.cleanUp(c);
      expect(await seen(c)).not.toContain(c.keyAuthorization);
    });

    test("the CA validates it: an order proven with this solver is issued, and the answers are gone afterwards", async () => {
      const { solver, identifier, acme, storage, outstanding } = await harness();
      const name = identifier();
      const issued = await new AcmeIssuer(acme, storage, () => solver).issue("contract", [name]);
      expect(inspectBundle(issued.certPem, issued.keyPem).names).toEqual([name]);
      expect(await outstanding(name)).toEqual([]);
    });
  });
}
