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

/** answerChallenge returns the response for a challenge path, or undefined when path is not one (one string compare on the hot path). Unknown tokens get 404. */
export function answerChallenge(path: string): Response | undefined {
  if (!path.startsWith(CHALLENGE_PREFIX)) return undefined;
  const value = pending.get(path.slice(CHALLENGE_PREFIX.length));
  if (value === undefined) return new Response("no such challenge\n", { status: 404, headers: { "content-type": "text/plain" } });
  return new Response(value, { headers: { "content-type": "application/octet-stream" } });
}
