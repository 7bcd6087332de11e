/** Which solver proves each ACME site's names: the choice is a function of the site, over one solver per challenge type. */
import type { AcmeConfig, SiteConfig } from "../../config/types.ts";
import type { DnsUpdateOptions } from "./dns-update.ts";
import { Dns01Solver } from "./dns01-solver.ts";
import type { Http01Tokens } from "./http01.ts";
import { Http01Solver } from "./http01-solver.ts";
import type { ChallengeType, Solver } from "./solver.ts";

/**
 * challengeFor is the challenge type that proves a site's names: [acme] challenge for every site (the site is an argument so that it can later choose its own).
 */
export function challengeFor(_site: SiteConfig, acme: AcmeConfig): ChallengeType {
  return acme.challenge;
}

/** dnsUpdateOptions are the RFC 2136 settings of [acme.dns]; it throws when the table is missing (the config check requires it for dns-01). */
export function dnsUpdateOptions(acme: AcmeConfig): DnsUpdateOptions {
  const d = acme.dns;
  if (!d) throw new Error("the dns-01 challenge needs [acme.dns]");
  return { server: { host: d.server.hostname, port: d.server.port }, key: { name: d.tsig.name, algorithm: d.tsig.algorithm, secret: d.tsig.secret } };
}

/** solversFor maps each of the sites to its solver; sites with the same challenge share one instance. */
export function solversFor(sites: readonly SiteConfig[], acme: AcmeConfig, tokens: Http01Tokens): Map<string, Solver> {
  const byType = new Map<ChallengeType, Solver>();
  const make = (t: ChallengeType): Solver => (t === "http-01" ? new Http01Solver(tokens) : new Dns01Solver(dnsUpdateOptions(acme)));
  const out = new Map<string, Solver>();
  for (const site of sites) {
    const t = challengeFor(site, acme);
    let s = byType.get(t);
    if (!s) byType.set(t, (s = make(t)));
    out.set(site.name, s);
  }
  return out;
}
