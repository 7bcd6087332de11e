/** Which ACME CAs each site's certificate may come from, and one issuer per distinct CA and account (directory, e-mail, ca_file, EAB), made when a site first uses it and kept across reloads while it stays. */
import { createHash } from "node:crypto";
import type { AcmeCa, AcmeConfig, SiteConfig } from "../config/types.ts";
import { directoryKey } from "./acme/directory-key.ts";
import type { SolverChoice } from "./acme/issuer.ts";
import type { AcmeChains, Issuer, RenewalAdvisor } from "./issuer.ts";
import type { Storage } from "./storage.ts";

type AcmeCaIssuer = Issuer & RenewalAdvisor;

/** siteDirectory is the directory of the site's own CA: its [acme] directory, else config.toml's. It is part of the site's certificate identity. */
export function siteDirectory(site: SiteConfig, acme: AcmeConfig): string {
  return site.acme?.directory ?? acme.directory;
}

/**
 * siteCas lists the CAs a site's certificate may come from, in the order orders try them: the site's own (each key of its [acme] over config.toml's;
 * config.toml's EAB only with config.toml's directory), then the [[acme.fallback]] entries, whose left-out email and ca_file are the site's; no directory
 * twice.
 */
export function siteCas(site: SiteConfig, acme: AcmeConfig): AcmeCa[] {
  const own = site.acme;
  const directory = siteDirectory(site, acme);
  const email = own?.email ?? acme.email;
  const caFile = own?.caFile ?? acme.caFile;
  const eab = own?.eab ?? (directory === acme.directory ? acme.eab : undefined);
  const out: AcmeCa[] = [{ directory, email, caFile, eab }];
  for (const f of acme.fallback) {
    if (out.some((c) => c.directory === f.directory)) continue;
    out.push({ directory: f.directory, email: f.email ?? email, caFile: f.caFile ?? caFile, eab: f.eab });
  }
  return out;
}

/**
 * accountDir is where the account for ca lives in storage: under the directory's own key (acme/HOST-HASH), as it always was, for config.toml's e-mail without
 * EAB; in a sub-key of it for any other e-mail or an EAB key id, so that two accounts at one CA never share a key.
 */
export function accountDir(ca: AcmeCa, acme: AcmeConfig): string {
  const base = directoryKey(ca.directory);
  if (ca.email === acme.email && !ca.eab) return base;
  return `${base}/accounts/${hash(`${ca.email ?? ""}|${ca.eab?.kid ?? ""}`)}`;
}

function hash(s: string): string {
  return createHash("sha256").update(s).digest("hex").slice(0, 8);
}

function caKey(ca: AcmeCa, account: string): string {
  return JSON.stringify([ca.directory, ca.email ?? null, ca.caFile ?? null, ca.eab?.kid ?? null, ca.eab?.hmacKey ?? null, account]);
}

/** AcmeIssuers are the ACME issuers of one config: one per distinct CA and account, and each site's chain of them (its own CA first). */
export class AcmeIssuers implements AcmeChains {
  private constructor(
    /** storage is where these issuers keep their accounts; issuers are reused only with the same storage. */
    readonly storage: Storage,
    private readonly byKey: ReadonlyMap<string, AcmeCaIssuer>,
    private readonly chains: ReadonlyMap<string, readonly AcmeCaIssuer[]>,
  ) {}

  /**
   * plan makes the issuers that sites need, reusing prev's issuer for each CA and account that stays (same storage), so reloads keep directory caches and
   * accounts; undefined when no site uses ACME (acme-client, about 35 MB of memory, is loaded only when one does).
   */
  static async plan(
    prev: AcmeIssuers | undefined,
    sites: readonly SiteConfig[],
    acme: AcmeConfig,
    storage: Storage,
    solverFor: SolverChoice,
  ): Promise<AcmeIssuers | undefined> {
    if (sites.length === 0) return undefined;
    const reuse = prev?.storage === storage ? prev.byKey : new Map<string, AcmeCaIssuer>();
    const byKey = new Map<string, AcmeCaIssuer>();
    const chains = new Map<string, AcmeCaIssuer[]>();
    for (const site of sites) {
      const chain: AcmeCaIssuer[] = [];
      for (const ca of siteCas(site, acme)) {
        const account = accountDir(ca, acme);
        const key = caKey(ca, account);
        let issuer = byKey.get(key) ?? reuse.get(key);
        if (!issuer) {
          const { AcmeIssuer } = await import("./acme/issuer.ts");
          issuer = new AcmeIssuer(ca, storage, solverFor, account);
        }
        byKey.set(key, issuer);
        chain.push(issuer);
      }
      chains.set(site.name, chain);
    }
    return new AcmeIssuers(storage, byKey, chains);
  }

  /** chainOf is the site's issuers in the order its orders try them; empty for a site that is not an ACME site of this config. */
  chainOf(site: string): readonly AcmeCaIssuer[] {
    return this.chains.get(site) ?? [];
  }

  /** size is how many distinct issuers (CA and account) the config uses. */
  get size(): number {
    return this.byKey.size;
  }
}
