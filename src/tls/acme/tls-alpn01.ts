/** TLS-ALPN-01 challenge answers (RFC 8737): the challenge certificates of the names being proven now, served by the HTTPS listener to acme-tls/1 handshakes. */

/** AlpnAnswer is one challenge certificate: for which name, proving which key authorization, and its PEM certificate and key. */
export type AlpnAnswer = { readonly name: string; readonly keyAuthorization: string; readonly cert: string; readonly key: string };

/**
 * AlpnPublisher makes a challenge certificate answerable wherever the CA's connection may land (every worker, when a supervisor runs them) and withdraws it;
 * publish resolves only once every listener can answer.
 */
export interface AlpnPublisher {
  publish(answer: AlpnAnswer): Promise<void>;
  withdraw(name: string, keyAuthorization: string): Promise<void>;
}

/** ContextOf turns a certificate and key into what the HTTPS listener hands its TLS handshake (front/tls-contexts.ts's nativeOf); it throws on a bad pair. */
export type ContextOf = (cert: string, key: string) => unknown;

type Entry = { readonly answer: AlpnAnswer; readonly context: unknown };

/**
 * AlpnChallenges is one process's table of TLS-ALPN-01 certificates: the solver publishes into it, the HTTPS listener answers from it, and an optional publisher
 * carries each certificate to other processes. Without contextOf (a supervisor, which serves no public listener) it only keeps and relays them.
 */
export class AlpnChallenges {
  /** byName holds each name's answers in the order they were added; a handshake gets the newest. */
  private readonly byName = new Map<string, Entry[]>();
  /** publisher is called by publish and withdraw besides this table (the supervisor sets one that reaches its workers); undefined: this process only. */
  publisher: AlpnPublisher | undefined;

  constructor(private readonly contextOf?: ContextOf) {}

  /** add serves a challenge certificate in this process until remove; it throws (and changes nothing) when the pair cannot be loaded. */
  add(answer: AlpnAnswer): void {
    const name = answer.name.toLowerCase();
    const context = this.contextOf?.(answer.cert, answer.key);
    const list = (this.byName.get(name) ?? []).filter((e) => e.answer.keyAuthorization !== answer.keyAuthorization);
    list.push({ answer, context });
    this.byName.set(name, list);
  }

  /** remove withdraws the certificate that proves keyAuthorization for name, leaving the name's others in place; safe to call twice. */
  remove(name: string, keyAuthorization: string): void {
    const key = name.toLowerCase();
    const list = this.byName.get(key)?.filter((e) => e.answer.keyAuthorization !== keyAuthorization);
    if (list === undefined) return;
    if (list.length === 0) this.byName.delete(key);
    else this.byName.set(key, list);
  }

  /** pending lists the answers served now (for a worker that starts meanwhile, and for tests). */
  pending(): AlpnAnswer[] {
    return [...this.byName.values()].flatMap((list) => list.map((e) => e.answer));
  }

  /** publish serves a certificate here and through the publisher; it resolves when the CA may be told to validate, and throws when some listener could not take it. */
  async publish(answer: AlpnAnswer): Promise<void> {
    this.add(answer);
    await this.publisher?.publish(answer);
  }

  /** withdraw removes a certificate here and through the publisher; it never throws. */
  async withdraw(name: string, keyAuthorization: string): Promise<void> {
    this.remove(name, keyAuthorization);
    await this.publisher?.withdraw(name, keyAuthorization).catch(() => undefined);
  }

  /**
   * context is the TLS context of the challenge certificate for a server name being validated now, or undefined (one size check and one Map lookup per
   * acme-tls/1 handshake): other names get their normal certificate.
   */
  context(name: string): unknown {
    if (this.byName.size === 0) return undefined;
    const list = this.byName.get(name.toLowerCase());
    return list === undefined ? undefined : list[list.length - 1]!.context;
  }
}
