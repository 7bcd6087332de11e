/** The Issuer seam: where a site's certificate comes from (the internal CA, an ACME CA), chosen per site by its tls mode. */
import type { TlsMode } from "../config/types.ts";
import type { RenewalInfo } from "./acme/ari.ts";
import type { StoredMeta } from "./site-store.ts";

/** Issued is a certificate chain (leaf first) and its new key, as PEM. */
export type Issued = { readonly certPem: string; readonly keyPem: string };

/** Issuer obtains certificates from one source; it holds no certificate state, so one instance serves every site that chooses it. */
export interface Issuer {
  /**
   * meta is what storage records with a certificate from this issuer, and what a stored certificate must carry to count as this issuer's (its kind and, for
   * ACME, the CA directory).
   */
  readonly meta: StoredMeta;
  /** issue obtains a chain with a new key for names (site only names the order in logs); it throws when it cannot (an AcmeError for a failed ACME step). */
  issue(site: string, names: readonly string[]): Promise<Issued>;
}

/**
 * RenewalAdvisor is the optional ability of an issuer whose CA says when to renew (ARI, RFC 9773); renewalInfo resolves undefined when the CA gives no advice.
 */
export interface RenewalAdvisor {
  renewalInfo(certPem: string): Promise<RenewalInfo | undefined>;
}

/** AcmeChains gives each ACME site its issuers, in the order its orders try them: its own CA first, then the fallback CAs. */
export interface AcmeChains {
  chainOf(site: string): readonly (Issuer & RenewalAdvisor)[];
}

/** Issuers are what a set of sites can choose from: the internal CA always, ACME CAs when some site uses one. */
export type Issuers = { readonly internal: Issuer; readonly acme: AcmeChains | undefined };

/**
 * issuersFor are the issuers of a site with this tls mode, in the order to try them: the internal CA, or the site's ACME CAs (own first, then fallbacks); empty
 * for manual (and off) sites, and for ACME where no ACME issuer was made (a follower never issues).
 */
export function issuersFor(site: string, mode: TlsMode, issuers: Issuers | undefined): readonly Issuer[] {
  if (mode === "internal") return issuers ? [issuers.internal] : [];
  if (mode === "acme") return issuers?.acme?.chainOf(site) ?? [];
  return [];
}

/** issuedBy says whether stored metadata names this issuer: every field of its meta matches. */
export function issuedBy(stored: StoredMeta, issuer: Pick<Issuer, "meta">): boolean {
  return Object.entries(issuer.meta).every(([k, v]) => stored[k as keyof StoredMeta] === v);
}
