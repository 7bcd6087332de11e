/** The Solver seam: how control of a name is proven to an ACME CA (RFC 8555 §8), one implementation per challenge type. */
import type { AcmeConfig } from "../../config/types.ts";

/** ChallengeType is a challenge gatehouse can answer: HTTP-01 (RFC 8555 §8.3), DNS-01 (§8.4) or TLS-ALPN-01 (RFC 8737). */
export type ChallengeType = AcmeConfig["challenge"];

/**
 * Challenge is one thing to prove: for which site (logs), the identifier (a wildcard's base name), the CA's token, and the key authorization (for DNS-01
 * already its digest, as the TXT value; for TLS-ALPN-01 the plain key authorization, whose digest the challenge certificate carries).
 */
export type Challenge = { readonly site: string; readonly identifier: string; readonly token: string; readonly keyAuthorization: string };

/** Solver makes a key authorization visible where the CA looks, then takes it away. */
export interface Solver {
  /** type is the challenge type this solver answers; the issuer picks the CA's challenge of this type. */
  readonly type: ChallengeType;
  /** presentStep names the present step in an order's errors and logs ("http-01-publish", "dns-update"). */
  readonly presentStep: string;
  /** present resolves once the CA may be told to validate; it throws when the answer could not be put in place. */
  present(c: Challenge): Promise<void>;
  /** cleanUp removes what present put in place; it is called after every present, also a failed one, and never throws. */
  cleanUp(c: Challenge): Promise<void>;
}

/**
 * Waiter is the optional ability of a solver whose answer takes a while to become visible (DNS): wait resolves once the CA can see it, and throws when it does
 * not in time.
 */
export interface Waiter {
  /** waitStep names the wait in an order's errors and logs ("dns-check"). */
  readonly waitStep: string;
  wait(c: Challenge): Promise<void>;
}

/** waits says whether a solver has a wait step. */
export function waits(s: Solver): s is Solver & Waiter {
  return typeof (s as Partial<Waiter>).wait === "function";
}
