/** The error of a failed ACME step, apart from the issuer so that callers can check it without loading acme-client. */

/** AcmeError is a failed order: the step that failed, the CA's problem type and detail, and whether the CA asked us to wait. */
export class AcmeError extends Error {
  constructor(
    readonly step: string,
    message: string,
    readonly problemType?: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }

  /** rateLimited is true for the CA's rateLimited problem (RFC 8555 §6.7). */
  get rateLimited(): boolean {
    return this.problemType === "urn:ietf:params:acme:error:rateLimited";
  }
}
