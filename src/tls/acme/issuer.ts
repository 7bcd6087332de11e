/** Obtaining certificates from an RFC 8555 CA with acme-client: account reuse, one order per site, each site's challenge proven by its Solver, each step's failure logged with the CA's detail. */
import * as acme from "acme-client";
import { readFileSync } from "node:fs";
import https from "node:https";
import { rootCertificates } from "node:tls";
import type { AcmeCa } from "../../config/types.ts";
import { directoryKey } from "./directory-key.ts";
import { log } from "../../observability/log.ts";
import type { Issued, Issuer, RenewalAdvisor } from "../issuer.ts";
import type { StoredMeta } from "../site-store.ts";
import type { Storage } from "../storage.ts";
import { AcmeError } from "./acme-error.ts";
import { certId, fetchRenewalInfo, parseRetryAfter, type RenewalInfo } from "./ari.ts";
import { waits, type Challenge, type Solver } from "./solver.ts";

/** Directory is the part of the CA's directory object we use. */
export type Directory = { readonly newOrder: string; readonly renewalInfo?: string; readonly meta?: { readonly termsOfService?: string } };

/** SolverChoice returns the solver that proves a site's names, undefined for a site that is not (or no longer) an ACME site. */
export type SolverChoice = (site: string) => Solver | undefined;

/**
 * trusts are the extra CAs (ca_file contents) of each ACME API origin with the agent that trusts them: acme-client sends every request of the process through
 * one axios instance, so each request gets the agent of the origin it goes to (the default agent, for an origin no issuer named, trusts them all).
 */
const trusts = new Map<string, { readonly cas: Set<string>; agent: https.Agent }>();
const allCas = new Set<string>();

function agentFor(cas: Set<string>): https.Agent {
  return new https.Agent({ ...(cas.size ? { ca: [...rootCertificates, ...cas] } : {}), keepAlive: true });
}

/** trust makes requests to directory's origin trust ca (on top of the system roots). */
function trust(directory: string, ca: string | undefined): void {
  const origin = new URL(directory).origin;
  let t = trusts.get(origin);
  if (!t) trusts.set(origin, (t = { cas: new Set(ca ? [ca] : []), agent: agentFor(new Set(ca ? [ca] : [])) }));
  else if (ca && !t.cas.has(ca)) {
    t.cas.add(ca);
    t.agent = agentFor(t.cas);
  }
  if (ca && !allCas.has(ca)) {
    allCas.add(ca);
    acme.axios.defaults.httpsAgent = agentFor(allCas);
  }
}

function originOf(url: string | undefined): string | undefined {
  try {
    return url ? new URL(url).origin : undefined;
  } catch {
    return undefined;
  }
}

type Problem = { type?: string; detail: string; retryAfterMs?: number };
type Seen = Problem & { at: number };

/**
 * seenProblems are the CA's recent problem documents (RFC 8555 §6.7): acme-client throws a bare Error with the detail only, so its axios responses are watched
 * for the type and Retry-After.
 */
const seenProblems: Seen[] = [];
let watching = false;

function watchProblems(): void {
  if (watching) return;
  watching = true;
  acme.axios.defaults.httpsAgent = agentFor(allCas);
  acme.axios.interceptors.request.use((config) => {
    const t = trusts.get(originOf(config.url) ?? "");
    if (t) config.httpsAgent = t.agent;
    return config;
  });
  // acme-client would sleep through a rate limit's Retry-After (hours) inside the order; the renewal scheduler waits instead.
  (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }).acmeSettings.retryMaxAttempts = 0;
  const capture = (res: { status: number; data?: unknown; headers: Record<string, unknown> } | undefined) => {
    const data = res?.data as { type?: unknown; detail?: unknown } | undefined;
    if (res && res.status >= 400 && typeof data?.type === "string") {
      seenProblems.push({
        at: performance.now(),
        type: data.type,
        detail: String(data.detail ?? data.type),
        retryAfterMs: parseRetryAfter(String(res.headers["retry-after"] ?? "")),
      });
      if (seenProblems.length > 32) seenProblems.shift();
    }
  };
  acme.axios.interceptors.response.use(
    (res) => {
      capture(res);
      return res;
    },
    (err: { response?: { status: number; data?: unknown; headers: Record<string, unknown> } }) => {
      capture(err.response);
      return Promise.reject(err);
    },
  );
}

function problemOf(e: unknown, since: number): Problem {
  const seen = seenProblems.findLast((p) => p.at >= since);
  const message = (e as Error)?.message ?? String(e);
  return {
    type: seen?.type ?? /urn:ietf:params:acme:error:[A-Za-z]+/.exec(message)?.[0],
    detail: message || seen?.detail || "unknown error",
    retryAfterMs: seen?.retryAfterMs,
  };
}

/**
 * AcmeIssuer obtains certificates from one directory for one account, proving each site's names with the solver solverFor picks; it holds no certificate state
 * itself. account is the storage key of the account (default: the directory's own, acme/HOST-HASH); several issuers may live in one process, each trusting
 * its own ca_file.
 */
export class AcmeIssuer implements Issuer, RenewalAdvisor {
  readonly meta: StoredMeta;
  private directoryCache: Directory | undefined;
  private readonly ca: string | undefined;

  constructor(
    private readonly cfg: AcmeCa,
    private readonly storage: Storage,
    private readonly solverFor: SolverChoice,
    private readonly account = directoryKey(cfg.directory),
  ) {
    this.meta = { issuer: "acme", directory: cfg.directory };
    this.ca = cfg.caFile ? readFileSync(cfg.caFile, "utf8") : undefined;
    // acme-client talks through its own axios instance; extra trust goes there, on top of the system roots, for this CA's origin.
    watchProblems();
    trust(cfg.directory, this.ca);
  }

  /** directory fetches (once) the CA's directory; a TLS trust problem becomes a clear error at once instead of acme-client's minute of retries. */
  async directory(): Promise<Directory> {
    if (this.directoryCache) return this.directoryCache;
    let res: Response;
    try {
      res = await fetch(this.cfg.directory, { tls: this.ca ? { ca: [...rootCertificates, this.ca] } : undefined, signal: AbortSignal.timeout(15_000) });
    } catch (e) {
      const msg = String((e as Error).message ?? e);
      const hint =
        /certificate|verify|self.signed|UNABLE_TO/i.test(msg) || /CERT|SELF_SIGNED|UNABLE/.test((e as { code?: string }).code ?? "")
          ? " (the CA's TLS certificate is not trusted: set acme.ca_file to its CA)"
          : "";
      throw new AcmeError("directory", `cannot fetch the ACME directory ${this.cfg.directory}: ${(e as { code?: string }).code ?? msg}${hint}`);
    }
    if (!res.ok) throw new AcmeError("directory", `the ACME directory ${this.cfg.directory} answered ${res.status}`);
    const d = (await res.json()) as Directory;
    if (typeof d.newOrder !== "string") throw new AcmeError("directory", `${this.cfg.directory} is not an ACME directory (no newOrder)`);
    return (this.directoryCache = d);
  }

  /**
   * renewalInfo asks the CA when to renew certPem (ARI, RFC 9773), trusting ca_file like every other call; undefined when the directory offers no renewalInfo.
   */
  async renewalInfo(certPem: string): Promise<RenewalInfo | undefined> {
    const dir = await this.directory();
    if (!dir.renewalInfo) return undefined;
    const tls = this.ca ? { ca: [...rootCertificates, this.ca] } : undefined;
    return fetchRenewalInfo(dir.renewalInfo, certId(certPem), { fetch: ((url: string, init?: RequestInit) => fetch(url, { ...init, tls })) as typeof fetch });
  }

  private async client(): Promise<acme.Client> {
    const dir = this.account;
    let accountKey = await this.storage.load(`${dir}/account.key`);
    if (!accountKey) {
      accountKey = (await acme.crypto.createPrivateEcdsaKey()).toString();
      await this.storage.store(`${dir}/account.key`, accountKey, { secret: true });
      log.info("acme account key created", { path: this.storage.describe(`${dir}/account.key`) });
    }
    const eab = this.cfg.eab;
    const client = new acme.Client({
      directoryUrl: this.cfg.directory,
      accountKey,
      backoffMin: 250,
      backoffMax: 5000,
      backoffAttempts: 12,
      // RFC 8555 §7.3.4: a CA that requires it (ZeroSSL) binds the new account to the key it handed out; sent with newAccount only.
      ...(eab ? { externalAccountBinding: { kid: eab.kid, hmacKey: eab.hmacKey } } : {}),
    });
    const t0 = performance.now();
    try {
      // With a known key, newAccount returns the existing account (RFC 8555 §7.3.1): no duplicate.
      await client.createAccount({ termsOfServiceAgreed: true, contact: this.cfg.email ? [`mailto:${this.cfg.email}`] : undefined });
    } catch (e) {
      const p = problemOf(e, t0);
      throw new AcmeError("account", `account registration failed: ${p.detail}`, p.type, p.retryAfterMs);
    }
    const url = client.getAccountUrl();
    const stored = await this.storage.load(`${dir}/account.json`);
    if (!stored || (JSON.parse(stored) as { url?: string }).url !== url) {
      const record = { url, directory: this.cfg.directory, email: this.cfg.email ?? null, eab_kid: eab?.kid ?? null };
      await this.storage.store(`${dir}/account.json`, `${JSON.stringify(record, null, 2)}\n`);
      log.info("acme account registered", { account: url, directory: this.cfg.directory, email: this.cfg.email, eab_kid: eab?.kid });
    }
    return client;
  }

  /**
   * issue runs one order for names and returns the chain with a new P-256 key; each failed step throws AcmeError with the CA's detail, after removing the
   * challenge answers it published.
   */
  async issue(site: string, names: readonly string[]): Promise<Issued> {
    const solver = this.solverFor(site);
    if (!solver) throw new AcmeError("challenge", `no challenge solver for site ${site}`);
    await this.directory();
    const client = await this.client();
    const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      try {
        return await fn();
      } catch (e) {
        if (e instanceof AcmeError) throw e;
        const p = problemOf(e, t0);
        log.warn("acme order step failed", { site, step: name, problem: p.type, detail: p.detail });
        throw new AcmeError(name, `${name}: ${p.detail}`, p.type, p.retryAfterMs);
      }
    };
    const order = await step("new-order", () => client.createOrder({ identifiers: names.map((value) => ({ type: "dns", value })) }));
    const authzs = await step("authorizations", () => client.getAuthorizations(order));
    const cleanups: (() => Promise<void>)[] = [];
    try {
      for (const authz of authzs) {
        if (authz.status === "valid") continue;
        const wanted = solver.type;
        const challenge = authz.challenges.find((c) => c.type === wanted);
        const id = (authz.wildcard ? "*." : "") + authz.identifier.value;
        if (!challenge)
          throw new AcmeError("challenge", `the CA offers no ${wanted} challenge for ${id} (offered: ${authz.challenges.map((c) => c.type).join(", ")})`);
        const keyAuth = await client.getChallengeKeyAuthorization(challenge);
        const c: Challenge = { site, identifier: authz.identifier.value, token: challenge.token, keyAuthorization: keyAuth };
        cleanups.push(() => solver.cleanUp(c));
        await step(solver.presentStep, () => solver.present(c));
        if (waits(solver)) await step(solver.waitStep, () => solver.wait(c));
        await step("challenge", () => client.completeChallenge(challenge));
        await step("validation", () => client.waitForValidStatus(challenge));
      }
      const [key, csr] = await acme.crypto.createCsr(
        { commonName: names.find((n) => n.length <= 64), altNames: [...names] },
        await acme.crypto.createPrivateEcdsaKey(),
      );
      const finalized = await step("finalize", () => client.finalizeOrder(order, csr));
      const certPem = await step("certificate", () => client.getCertificate(finalized));
      return { certPem, keyPem: key.toString() };
    } finally {
      for (const c of cleanups) await c();
    }
  }
}
