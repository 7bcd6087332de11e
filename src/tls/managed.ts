/** One TLS site's certificate state in the registry (Managed), shared by the certificate manager and the renewal scheduler. */
import type { SiteConfig } from "../config/types.ts";
import { coversAll, type CertBundle } from "../lib/cert-info.ts";
import type { RenewalWindow } from "./acme/ari.ts";
import { issuedBy, issuersFor, type Issuer, type Issuers } from "./issuer.ts";
import type { Stored, StoredMeta } from "./site-store.ts";

/** Managed is a site's certificate as the registry serves and renews it; it lives as long as the site's mode, hosts, storage and CA stay (its id). */
export type Managed = {
  /** id changes when anything that decides the certificate changes: mode, hosts, storage, CA. */
  readonly id: string;
  readonly site: string;
  readonly mode: "acme" | "internal" | "manual";
  readonly hosts: readonly string[];
  bundle: CertBundle | undefined;
  /** stale: the served certificate is not what the config asks for (other issuer or CA, hosts missing); renewed at once. */
  stale: boolean;
  failures: number;
  lastError: string | undefined;
  /** waitsForStorage: the last renewal failed at the storage (its lock, a read or the save), not at the CA; it resumes when the storage answers again. */
  waitsForStorage?: boolean;
  timer: Timer | undefined;
  nextCheck: number;
  /** planned is when the served certificate is due for renewal (its ARI window or renew_fraction), fixed per certificate and window: the overdue alert's mark. */
  planned: number | undefined;
  /** plannedFor says which certificate and window `planned` was chosen for. */
  plannedFor: string | undefined;
  /** restored: the entry began with a certificate from storage (logged once, when the plan that made it goes live). */
  restored?: boolean;
  /** firstDelay is when a new entry's first check runs once committed (undefined: at its renewal time). */
  firstDelay: number | undefined;
  busy: boolean;
  window: RenewalWindow | undefined;
  /** ariRetryMs is how long the CA asked us to wait before asking for renewal information again (Retry-After, RFC 9773 §4.3). */
  ariRetryMs?: number;
  /** meta says where the served certificate came from (for ACME, which CA directory); undefined when unknown. */
  meta: StoredMeta | undefined;
  /** ca is the index, in the site's chain of issuers, of the one the next order goes to (0: the site's own CA). */
  ca: number;
  /** caFailures counts the failed orders in a row at that issuer; after FALLBACK_AFTER of them the next order goes to the next CA. */
  caFailures: number;
};

/** managedEntry is a new entry for a site, serving bundle (when any). */
export function managedEntry(site: SiteConfig, id: string, bundle: CertBundle | undefined, stale: boolean): Managed {
  return {
    id,
    site: site.name,
    mode: site.tls.mode as Managed["mode"],
    hosts: site.hosts,
    bundle,
    stale,
    failures: 0,
    lastError: undefined,
    timer: undefined,
    nextCheck: 0,
    planned: undefined,
    plannedFor: undefined,
    firstDelay: undefined,
    busy: false,
    window: undefined,
    meta: undefined,
    ca: 0,
    caFailures: 0,
  };
}

/**
 * fits says whether a stored certificate is one the config asks for: it covers every host and comes from one of the site's issuers (for ACME, its own CA
 * directory or a fallback CA's: a certificate from a fallback is the site's certificate until its renewal time).
 */
export function fits(s: Stored, hosts: readonly string[], issuers: readonly Pick<Issuer, "meta">[]): boolean {
  return coversAll(s.bundle, hosts) && issuers.some((i) => issuedBy(s.meta, i));
}

/** unpack turns an issued pair into inspectBundle's arguments. */
export function unpack(p: { certPem: string; keyPem: string }): [string, string] {
  return [p.certPem, p.keyPem];
}

/** describeManaged is one entry of GET /certificates: names, validity, issuer, CA, next renewal check, failures and the last error. */
export function describeManaged(m: Managed, issuers: Issuers | undefined): Record<string, unknown> {
  return {
    name: m.site,
    source: m.mode,
    hosts: m.hosts,
    names: m.bundle?.names ?? [],
    not_before: m.bundle ? new Date(m.bundle.notBefore).toISOString() : null,
    not_after: m.bundle ? new Date(m.bundle.notAfter).toISOString() : null,
    issuer: m.bundle?.issuer ?? null,
    // ca: the ACME directory the served certificate came from; order_ca: where the next order goes (another than the site's own after failures).
    ca: m.meta?.directory ?? null,
    order_ca: m.mode === "acme" ? (issuersFor(m.site, m.mode, issuers)[m.ca]?.meta.directory ?? null) : null,
    fingerprint_sha256: m.bundle?.fingerprint ?? null,
    next_check: m.mode === "manual" ? null : new Date(m.nextCheck).toISOString(),
    renewal_planned: m.mode === "manual" || m.planned === undefined ? null : new Date(m.planned).toISOString(),
    renewal_window: m.window ? { start: new Date(m.window.start).toISOString(), end: new Date(m.window.end).toISOString() } : null,
    failures: m.failures,
    last_error: m.lastError ?? null,
  };
}
