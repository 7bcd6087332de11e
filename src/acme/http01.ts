/** HTTP-01 challenge answers (RFC 8555 §8.3): tokens the issuer is proving now, answered on the plain HTTP listener before any routing. */

/** CHALLENGE_PREFIX is the path under which the CA fetches key authorizations. */
export const CHALLENGE_PREFIX = "/.well-known/acme-challenge/";

const pending = new Map<string, string>();

/** ChallengePublisher makes a token answerable wherever the CA's connection may land (every worker, when a supervisor runs them) and withdraws it; publish resolves only once every listener can answer. */
export interface ChallengePublisher {
  publish(token: string, keyAuthorization: string): Promise<void>;
  withdraw(token: string): Promise<void>;
}

let publisher: ChallengePublisher | undefined;

/** setChallengePublisher installs the publisher that publishToken and withdrawToken call besides this process's own table. */
export function setChallengePublisher(p: ChallengePublisher | undefined): void {
  publisher = p;
}

/** addToken publishes a key authorization in this process until removeToken. */
export function addToken(token: string, keyAuthorization: string): void {
  pending.set(token, keyAuthorization);
}

/** removeToken withdraws a token; safe to call twice. */
export function removeToken(token: string): void {
  pending.delete(token);
}

/** pendingTokens lists the tokens published now, as [token, key authorization] pairs (for a worker that starts meanwhile). */
export function pendingTokens(): [string, string][] {
  return [...pending];
}

/** publishToken publishes a key authorization here and through the publisher; it resolves when the CA may be told to validate, and throws when some listener could not take it. */
export async function publishToken(token: string, keyAuthorization: string): Promise<void> {
  addToken(token, keyAuthorization);
  await publisher?.publish(token, keyAuthorization);
}

/** withdrawToken removes a token here and through the publisher; it never throws. */
export async function withdrawToken(token: string): Promise<void> {
  removeToken(token);
  await publisher?.withdraw(token).catch(() => undefined);
}

/** answerChallenge returns the key authorization for a token this gateway is proving now, or undefined (one string compare on the hot path): other tokens go to the site, whose own ACME client may be asking. */
export function answerChallenge(path: string): Response | undefined {
  if (pending.size === 0 || !path.startsWith(CHALLENGE_PREFIX)) return undefined;
  const value = pending.get(path.slice(CHALLENGE_PREFIX.length));
  return value === undefined ? undefined : new Response(value, { headers: { "content-type": "application/octet-stream" } });
}
