/** The HTTP-01 solver (RFC 8555 §8.3): the key authorization is served by the plain HTTP listener (every worker's, under a supervisor) from a token table. */
import type { Http01Tokens } from "./http01.ts";
import type { Challenge, Solver } from "./solver.ts";

/** Http01Solver publishes tokens in one process's table (and through its publisher, to every worker). */
export class Http01Solver implements Solver {
  readonly type = "http-01";
  readonly presentStep = "http-01-publish";

  constructor(private readonly tokens: Http01Tokens) {}

  /** present resolves once every listener answers the token; it throws when some could not take it. */
  present(c: Challenge): Promise<void> {
    return this.tokens.publish(c.token, c.keyAuthorization);
  }

  /** cleanUp withdraws the token everywhere; it never throws. */
  cleanUp(c: Challenge): Promise<void> {
    return this.tokens.withdraw(c.token);
  }
}
