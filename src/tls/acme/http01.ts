/** HTTP-01 challenge answers (RFC 8555 §8.3): tokens the issuer is proving now, answered on the plain HTTP listener before any routing. */
import { Fields } from "../../lib/fields.ts";
import { Reply } from "../../lib/reply.ts";

/** CHALLENGE_PREFIX is the path under which the CA fetches key authorizations. */
export const CHALLENGE_PREFIX = "/.well-known/acme-challenge/";

/**
 * ChallengePublisher makes a token answerable wherever the CA's connection may land (every worker, when a supervisor runs them) and withdraws it; publish
 * resolves only once every listener can answer.
 */
export interface ChallengePublisher {
  publish(token: string, keyAuthorization: string): Promise<void>;
  withdraw(token: string): Promise<void>;
}

/**
 * SharedTokens is where tokens go for other nodes (storage shared through etcd): the node whose issuer proves a name publishes there, the node the CA's
 * connection reaches looks the token up there.
 */
export interface SharedTokens {
  load(key: string): Promise<string | undefined>;
  store(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
}

/** TOKEN_RE is what an ACME token looks like (base64url, RFC 8555 §8.1): anything else is never looked up in shared storage. */
const TOKEN_RE = /^[A-Za-z0-9_-]{16,128}$/;
/** MAX_LOOKUPS bounds the shared-storage lookups in flight: a flood of made-up tokens costs etcd at most this many requests at a time. */
const MAX_LOOKUPS = 16;

function tokenReply(value: string): Reply {
  return new Reply(200, Fields.from({ "content-type": "application/octet-stream" }), Buffer.from(value));
}

/**
 * Http01Tokens is one process's table of HTTP-01 tokens: the issuer publishes into it, the plain HTTP listener answers from it, and an optional publisher
 * carries each token to other processes.
 */
export class Http01Tokens {
  private readonly tokens = new Map<string, string>();
  /** publisher is called by publish and withdraw besides this table (the supervisor sets one that reaches its workers); undefined: this process only. */
  publisher: ChallengePublisher | undefined;
  /** shared carries tokens between nodes (set while the storage is etcd); undefined: this node alone. */
  shared: SharedTokens | undefined;
  private lookups = 0;

  /** add publishes a key authorization in this process until remove. */
  add(token: string, keyAuthorization: string): void {
    this.tokens.set(token, keyAuthorization);
  }

  /** remove withdraws a token; safe to call twice. */
  remove(token: string): void {
    this.tokens.delete(token);
  }

  /** pending lists the tokens published now, as [token, key authorization] pairs (for a worker that starts meanwhile). */
  pending(): [string, string][] {
    return [...this.tokens];
  }

  /**
   * publish publishes a key authorization here and through the publisher; it resolves when the CA may be told to validate, and throws when some listener could
   * not take it.
   */
  async publish(token: string, keyAuthorization: string): Promise<void> {
    this.add(token, keyAuthorization);
    await this.publisher?.publish(token, keyAuthorization);
    // Published in shared storage before the CA is told to look: its request may reach any node.
    await this.shared?.store(`challenges/http-01/${token}`, keyAuthorization);
  }

  /** withdraw removes a token here, through the publisher and from shared storage; it never throws. */
  async withdraw(token: string): Promise<void> {
    this.remove(token);
    await this.publisher?.withdraw(token).catch(() => undefined);
    await this.shared?.delete(`challenges/http-01/${token}`).catch(() => undefined);
  }

  /**
   * lookup answers a token this process does not hold from shared storage (another node is proving it); undefined at once when there is none to ask, the path
   * is no token or one held here, or too many lookups are in flight; a promise of the answer (undefined: not there) otherwise.
   */
  lookup(path: string): Promise<Reply | undefined> | undefined {
    if (this.shared === undefined || !path.startsWith(CHALLENGE_PREFIX) || this.lookups >= MAX_LOOKUPS) return undefined;
    const token = path.slice(CHALLENGE_PREFIX.length);
    // A token held here is answered by routing (answer), without asking anyone.
    if (this.tokens.has(token) || !TOKEN_RE.test(token)) return undefined;
    this.lookups++;
    return this.shared.load(`challenges/http-01/${token}`).then(
      (v) => {
        this.lookups--;
        return v === undefined ? undefined : tokenReply(v);
      },
      () => {
        this.lookups--;
        return undefined;
      },
    );
  }

  /**
   * answer returns the key authorization for a token this gateway is proving now, or undefined (one size check and one string compare on the hot path): other
   * tokens go to the site, whose own ACME client may be asking.
   */
  answer(path: string): Reply | undefined {
    if (this.tokens.size === 0 || !path.startsWith(CHALLENGE_PREFIX)) return undefined;
    const value = this.tokens.get(path.slice(CHALLENGE_PREFIX.length));
    return value === undefined ? undefined : tokenReply(value);
  }
}
