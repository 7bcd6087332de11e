/** Which solver proves each ACME site's names: the choice is a function of the site, over one solver per challenge type. */
import type { AcmeConfig, SiteConfig } from "../../config/types.ts";
import type { DnsUpdateOptions } from "./dns-update.ts";
import { Dns01Solver } from "./dns01-solver.ts";
import type { Http01Tokens } from "./http01.ts";
import { Http01Solver } from "./http01-solver.ts";
import type { ChallengeType, Solver } from "./solver.ts";
import type { AlpnChallenges } from "./tls-alpn01.ts";
import { TlsAlpn01Solver } from "./tls-alpn01-solver.ts";

/** Answerers are the tables where solvers put their answers for the listeners: HTTP-01 tokens and TLS-ALPN-01 certificates. */
export type Answerers = { readonly http01: Http01Tokens; readonly tlsAlpn01: AlpnChallenges };

/** challengeFor is the challenge type that proves a site's names: the route file's [acme] challenge, else config.toml's. */
export function challengeFor(site: SiteConfig, acme: AcmeConfig): ChallengeType {
  return site.acme?.challenge ?? acme.challenge;
}

/** dnsUpdateOptions are the RFC 2136 settings of [acme.dns]; it throws when the table is missing (the config check requires it for dns-01). */
export function dnsUpdateOptions(acme: AcmeConfig): DnsUpdateOptions {
  const d = acme.dns;
  if (!d) throw new Error("the dns-01 challenge needs [acme.dns]");
  return { server: { host: d.server.hostname, port: d.server.port }, key: { name: d.tsig.name, algorithm: d.tsig.algorithm, secret: d.tsig.secret } };
}

function make(t: ChallengeType, acme: AcmeConfig, answerers: Answerers): Solver {
  switch (t) {
    case "http-01":
      return new Http01Solver(answerers.http01);
    case "dns-01":
      return new Dns01Solver(dnsUpdateOptions(acme));
    case "tls-alpn-01":
      return new TlsAlpn01Solver(answerers.tlsAlpn01);
  }
}

/** solversFor maps each of the sites to its solver; sites with the same challenge share one instance. */
export function solversFor(sites: readonly SiteConfig[], acme: AcmeConfig, answerers: Answerers): Map<string, Solver> {
  const byType = new Map<ChallengeType, Solver>();
  const out = new Map<string, Solver>();
  for (const site of sites) {
    const t = challengeFor(site, acme);
    let s = byType.get(t);
    if (!s) byType.set(t, (s = make(t, acme, answerers)));
    out.set(site.name, s);
  }
  return out;
}
