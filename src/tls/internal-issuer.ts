/** The internal CA as an Issuer: tls = "internal" sites and the fallback certificate, from the root kept in storage. */
import type { InternalCa } from "./internal-ca.ts";
import type { Issued, Issuer } from "./issuer.ts";
import type { StoredMeta } from "./site-store.ts";
import type { Storage } from "./storage.ts";

/**
 * InternalIssuer issues from the internal CA of one storage; @peculiar/x509 costs about 20 MB, so the CA is opened (or made) only when something is first
 * issued.
 */
export class InternalIssuer implements Issuer {
  readonly meta: StoredMeta = { issuer: "internal" };
  private ca: Promise<InternalCa> | undefined;

  constructor(readonly storage: Storage) {}

  /** issue makes a certificate for a site's names with the default lifetime. */
  issue(_site: string, names: readonly string[]): Promise<Issued> {
    return this.issueFor(names);
  }

  /** issueFor makes a certificate for names valid for lifetimeMs (default: the internal CA's leaf lifetime). */
  async issueFor(names: readonly string[], lifetimeMs?: number): Promise<Issued> {
    return (await this.open()).issue(names, lifetimeMs);
  }

  private open(): Promise<InternalCa> {
    // One opening at a time: two first issues must not each make a CA. A failed opening is tried again next time.
    if (this.ca) return this.ca;
    const opening = import("./internal-ca.ts").then(({ InternalCa }) => InternalCa.open(this.storage));
    this.ca = opening;
    opening.catch(() => {
      if (this.ca === opening) this.ca = undefined;
    });
    return opening;
  }
}
