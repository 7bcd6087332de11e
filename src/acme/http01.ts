/** HTTP-01 challenge answers (RFC 8555 §8.3): tokens the issuer is proving now, answered on the plain HTTP listener before any routing. */

/** CHALLENGE_PREFIX is the path under which the CA fetches key authorizations. */
export const CHALLENGE_PREFIX = "/.well-known/acme-challenge/";

const pending = new Map<string, string>();

/** addToken publishes a key authorization until removeToken. */
export function addToken(token: string, keyAuthorization: string): void {
  pending.set(token, keyAuthorization);
}

/** removeToken withdraws a token; safe to call twice. */
export function removeToken(token: string): void {
  pending.delete(token);
}

/** answerChallenge returns the key authorization for a token this gateway is proving now, or undefined (one string compare on the hot path): other tokens go to the site, whose own ACME client may be asking. */
export function answerChallenge(path: string): Response | undefined {
  if (pending.size === 0 || !path.startsWith(CHALLENGE_PREFIX)) return undefined;
  const value = pending.get(path.slice(CHALLENGE_PREFIX.length));
  return value === undefined ? undefined : new Response(value, { headers: { "content-type": "application/octet-stream" } });
}
