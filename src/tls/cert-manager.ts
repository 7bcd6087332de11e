/** Certificates of every TLS site: loaded from storage, issued (internal CA, ACME) or taken from the config (manual), renewed on schedule, and handed to the HTTPS listener. State outlives reloads. */
import { AcmeError } from "../acme/acme-error.ts";
import type { AcmeIssuer } from "../acme/issuer.ts";
import type { RenewalWindow } from "../acme/ari.ts";
import { renewAt, retryDelay } from "../acme/renewal-time.ts";
import type { AcmeConfig, Config, SiteConfig } from "../config/types.ts";
import { coversAll, inspectBundle, isIpLiteral, nameCovers, type CertBundle } from "../lib/cert-info.ts";
import { acmeOrders, certificateExpiry, certificateRenewal } from "../observability/gateway-metrics.ts";
import { log } from "../observability/log.ts";
import type { InternalCa } from "./internal-ca.ts";
import { SiteCertStore, type Stored } from "./site-store.ts";
import { FileStorage } from "./storage.ts";

/** TlsEntry is one Bun.serve `tls` entry: a certificate for one SNI name (none: the fallback), with its fingerprint to tell sets apart. */
export type TlsEntry = { readonly serverName?: string; readonly cert: string; readonly key: string; readonly fingerprint: string };

/** FALLBACK_NAME is the only name on the certificate that handshakes for unknown names get: a reserved name (RFC 6761) that no site can claim. */
export const FALLBACK_NAME = "gatehouse.invalid";
const MAX_TIMER = 2 ** 31 - 1;
const ARI_RECHECK_MS = 6 * 3600_000;
const TEN_YEARS = 3650 * 86_400_000;

type Managed = {
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
  timer: Timer | undefined;
  nextCheck: number;
  /** firstDelay is when a new entry's first check runs once committed (undefined: at its renewal time). */
  firstDelay: number | undefined;
  busy: boolean;
  window: RenewalWindow | undefined;
  /** ariRetryMs is how long the CA asked us to wait before asking for renewal information again (Retry-After, RFC 9773 §4.3). */
  ariRetryMs?: number;
};

/** CertPlan is the registry as a new config would have it, built by prepare() without touching the running one and made live by commit() once the listeners took it. */
export type CertPlan = {
  readonly store: SiteCertStore;
  readonly fallback: CertBundle | undefined;
  readonly issuer: AcmeIssuer | undefined;
  readonly issuerKey: string;
  readonly acme: AcmeConfig;
  readonly managed: ReadonlyMap<string, Managed>;
  /** adopt holds newer certificates found in storage for sites that did not change (obtained by another node, restored by hand). */
  readonly adopt: ReadonlyMap<Managed, CertBundle>;
};

function acmeKey(a: AcmeConfig): string {
  const d = a.dns;
  return [a.directory, a.email, a.caFile, a.challenge, d?.server.text, d?.tsig.name, d?.tsig.algorithm, d && Buffer.from(d.tsig.secret).toString("base64")].join("|");
}

/** CertManagerOptions: a follower (a worker process) only loads certificates from storage and never issues, orders or renews; the process that leads (the supervisor) does, and tells it when to look again (refresh). */
export type CertManagerOptions = { readonly follower?: boolean };

/** CertManager is the process's certificate registry; `onChange` fires when the set of served certificates changed outside a reload (the HTTPS listener then swaps). */
export class CertManager {
  private managed: ReadonlyMap<string, Managed> = new Map();
  private store: SiteCertStore | undefined;
  private ca: InternalCa | undefined;
  private fallback: CertBundle | undefined;
  private issuer: AcmeIssuer | undefined;
  private issuerKey = "";
  private acme: AcmeConfig | undefined;
  private disposed = false;

  private readonly follower: boolean;

  constructor(private readonly onChange: () => void, opts: CertManagerOptions = {}) {
    this.follower = opts.follower ?? false;
  }

  /** prepare works out the certificates a validated config needs, without changing what runs: loads and verifies stored certificates (every reload), issues internal ones, makes the fallback. Throws only when certs_dir is unusable. */
  async prepare(config: Config): Promise<CertPlan> {
    const g = config.global;
    const tlsSites = g.listen.https ? config.sites.filter((s) => s.tls.mode !== "off") : [];
    const store = this.store?.storage instanceof FileStorage && this.store.storage.root === g.certsDir ? this.store : new SiteCertStore(new FileStorage(g.certsDir));
    let fallback = store === this.store ? this.fallback : undefined;
    if (g.listen.https && this.follower) {
      // The leader made (or renewed) it before this follower was asked to load; a follower never makes a CA of its own.
      fallback = (await store.loadFallback()) ?? fallback;
      if (!fallback) throw new Error(`${store.storage.describe("internal-ca/fallback.pem")}: no fallback certificate in storage (the supervisor makes it)`);
    } else if (g.listen.https && !fallback) {
      fallback = await store.fallback(FALLBACK_NAME, async () => inspectBundle(...unpack(await (await this.internalCa(store)).issue([FALLBACK_NAME], TEN_YEARS))));
      log.info("internal CA ready; trust its certificate to use tls = \"internal\" sites without warnings", { ca_cert: store.storage.describe("internal-ca/ca.pem") });
    }
    const issuerKey = acmeKey(g.acme);
    let issuer = store === this.store && issuerKey === this.issuerKey ? this.issuer : undefined;
    if (!issuer && !this.follower && tlsSites.some((s) => s.tls.mode === "acme")) {
      // acme-client and its dependencies cost about 35 MB of memory: loaded only when a site uses ACME.
      const { AcmeIssuer } = await import("../acme/issuer.ts");
      issuer = new AcmeIssuer(g.acme, store.storage);
    }
    const managed = new Map<string, Managed>();
    const adopt = new Map<Managed, CertBundle>();
    for (const site of tlsSites) {
      const id = [site.tls.mode, [...site.hosts].sort().join(","), g.certsDir, site.tls.mode === "acme" ? g.acme.directory : ""].join("|");
      const cur = this.managed.get(site.name);
      if (site.tls.mode === "manual") {
        managed.set(site.name, entry(site, id, site.tls.manual, false));
        continue;
      }
      const stored = await store.load(site.name);
      if (this.follower) {
        // Storage is the truth for a follower: whatever the leader stored last, while it is valid.
        const usable = stored && stored.bundle.notAfter > Date.now() ? stored.bundle : undefined;
        if (cur && cur.id === id) {
          managed.set(site.name, cur);
          if (usable && usable.fingerprint !== cur.bundle?.fingerprint) adopt.set(cur, usable);
        } else managed.set(site.name, entry(site, id, usable, false));
        continue;
      }
      if (cur && cur.id === id) {
        managed.set(site.name, cur);
        const b = stored?.bundle;
        if (b && fits(stored!, cur, g.acme) && b.fingerprint !== cur.bundle?.fingerprint && b.notAfter >= (cur.bundle?.notAfter ?? 0)) adopt.set(cur, b);
        continue;
      }
      // A stored certificate keeps serving the hosts it covers until the one the config asks for is in place.
      const usable = stored && stored.bundle.notAfter > Date.now() ? stored : undefined;
      const m = entry(site, id, usable?.bundle, false);
      m.stale = !usable || !fits(usable, m, g.acme);
      managed.set(site.name, m);
      if (m.mode === "acme") m.firstDelay = 0; // an order, or a look at the CA's renewal information (RFC 9773): a revoked certificate is replaced at once
      else if (m.stale || renewAt(m.bundle!, Date.now(), { fraction: 2 / 3 }) <= Date.now()) await this.issueInternal(m, store);
    }
    return { store, fallback, issuer, issuerKey, acme: g.acme, managed, adopt };
  }

  /** commit makes a plan live (after the HTTPS listener took its entries): drops what left, starts the timers of what is new, serves adopted certificates. */
  commit(plan: CertPlan): void {
    const old = this.managed;
    for (const [name, m] of old) if (plan.managed.get(name) !== m) this.drop(name, m);
    if (plan.store !== this.store) this.ca = undefined;
    Object.assign(this, { store: plan.store, fallback: plan.fallback, issuer: plan.issuer, issuerKey: plan.issuerKey, acme: plan.acme, managed: plan.managed });
    for (const [m, b] of plan.adopt) {
      m.bundle = b;
      m.window = undefined;
      log.info("newer stored certificate adopted", { site: m.site, not_after: new Date(b.notAfter).toISOString() });
      this.expiryMetric(m);
      this.schedule(m);
    }
    for (const m of plan.managed.values()) {
      if (old.get(m.site) === m) continue;
      this.expiryMetric(m);
      if (m.mode === "manual") {
        if (m.bundle && m.bundle.notAfter < Date.now()) log.warn("manual certificate has expired; clients will refuse it", { site: m.site, not_after: new Date(m.bundle.notAfter).toISOString() });
      } else this.schedule(m, m.firstDelay);
    }
  }

  /** entries returns the `tls` array for Bun.serve, of the live registry or of a plan: the fallback first (unknown and missing SNI), then one entry per host name that a served certificate covers. */
  entries(plan?: CertPlan): TlsEntry[] {
    const fallback = plan ? plan.fallback : this.fallback;
    const out: TlsEntry[] = [];
    if (fallback) out.push({ cert: fallback.certPem, key: fallback.keyPem, fingerprint: fallback.fingerprint });
    for (const m of (plan ? plan.managed : this.managed).values()) {
      const b = plan?.adopt.get(m) ?? m.bundle;
      if (!b) continue;
      for (const h of m.hosts) {
        if (isIpLiteral(h)) continue; // SNI carries names only (RFC 6066 §3)
        if (b.names.some((n) => nameCovers(n, h))) out.push({ serverName: h, cert: b.certPem, key: b.keyPem, fingerprint: b.fingerprint });
      }
    }
    return out;
  }

  /** describe lists each TLS site's certificate for the admin API: names, validity, issuer, next renewal check, failures and the last error. */
  describe(): unknown[] {
    return [...this.managed.values()].map((m) => ({
      name: m.site,
      source: m.mode,
      hosts: m.hosts,
      names: m.bundle?.names ?? [],
      not_before: m.bundle ? new Date(m.bundle.notBefore).toISOString() : null,
      not_after: m.bundle ? new Date(m.bundle.notAfter).toISOString() : null,
      issuer: m.bundle?.issuer ?? null,
      fingerprint_sha256: m.bundle?.fingerprint ?? null,
      next_check: m.mode === "manual" ? null : new Date(m.nextCheck).toISOString(),
      renewal_window: m.window ? { start: new Date(m.window.start).toISOString(), end: new Date(m.window.end).toISOString() } : null,
      failures: m.failures,
      last_error: m.lastError ?? null,
    }));
  }

  /** refresh (a follower's) reads every ACME and internal certificate from storage again and serves the ones the leader replaced; true when anything changed (the caller swaps the HTTPS listener). */
  async refresh(): Promise<boolean> {
    if (!this.store || this.disposed) return false;
    let changed = false;
    for (const m of this.managed.values()) {
      if (m.mode === "manual") continue;
      const b = (await this.store.load(m.site))?.bundle;
      if (!b || b.fingerprint === m.bundle?.fingerprint || b.notAfter <= Date.now() || !this.live(m)) continue;
      m.bundle = b;
      this.expiryMetric(m);
      changed = true;
    }
    return changed;
  }

  /** renewNow starts a renewal of an ACME or internal certificate at once (the old one serves until the new one is in place); false when there is no such certificate, or in a follower. */
  renewNow(site: string): boolean {
    const m = this.managed.get(site);
    if (!m || m.mode === "manual" || this.disposed || this.follower) return false;
    clearTimeout(m.timer);
    void this.renew(m);
    return true;
  }

  /** dispose stops every timer; orders in flight finish but change nothing. */
  dispose(): void {
    this.disposed = true;
    for (const m of this.managed.values()) clearTimeout(m.timer);
  }

  private live(m: Managed): boolean {
    return !this.disposed && this.managed.get(m.site) === m;
  }

  private drop(name: string, m: Managed): void {
    clearTimeout(m.timer);
    m.timer = undefined;
    certificateExpiry.remove(name);
    certificateRenewal.remove(name);
  }

  private expiryMetric(m: Managed): void {
    if (m.bundle) certificateExpiry.labels(m.site).value = Math.floor(m.bundle.notAfter / 1000);
    else certificateExpiry.remove(m.site);
  }

  /** internalCa opens (or makes) the internal CA of a store; @peculiar/x509 costs about 20 MB, so it is loaded only to issue. */
  private async internalCa(store: SiteCertStore): Promise<InternalCa> {
    if (!this.ca || store !== this.store) {
      const { InternalCa } = await import("./internal-ca.ts");
      const ca = await InternalCa.open(store.storage);
      if (store === this.store) this.ca = ca;
      return ca;
    }
    return this.ca;
  }

  /** issueInternal gives a new entry an internal certificate before it goes live; a failure leaves it to the retry timer. */
  private async issueInternal(m: Managed, store: SiteCertStore): Promise<void> {
    try {
      const b = inspectBundle(...unpack(await (await this.internalCa(store)).issue(m.hosts)));
      await store.save(m.site, b, { issuer: "internal" });
      log.info("certificate obtained", { site: m.site, issuer: "internal", names: b.names, not_after: new Date(b.notAfter).toISOString() });
      m.bundle = b;
      m.stale = false;
    } catch (e) {
      m.failures = 1;
      m.lastError = String((e as Error).message ?? e);
      m.firstDelay = retryDelay(1);
      log.error("certificate not obtained; the current one keeps serving", { site: m.site, issuer: "internal", error: m.lastError, retry_in_s: Math.round(m.firstDelay / 1000) });
    }
  }

  /** schedule sets the site's next renewal check: `delay` ms from now, or by the certificate's renewal time (the CA's ARI window when it gives one). */
  private schedule(m: Managed, delay?: number): void {
    clearTimeout(m.timer);
    if (!this.live(m) || m.mode === "manual" || this.follower) return;
    const now = Date.now();
    let at = now + (delay ?? 0);
    if (delay === undefined && m.bundle) {
      at = renewAt(m.bundle, now, { window: m.window, fraction: m.mode === "acme" ? this.acme?.renewFraction ?? 2 / 3 : 2 / 3 });
      const recheck = m.ariRetryMs ?? ARI_RECHECK_MS;
      if (m.mode === "acme" && at > now + recheck) at = now + recheck + Math.random() * 60_000;
    }
    m.nextCheck = at;
    certificateRenewal.labels(m.site).value = Math.floor(at / 1000);
    m.timer = setTimeout(() => void this.tick(m), Math.min(MAX_TIMER, Math.max(0, at - now)));
    m.timer.unref?.();
  }

  private async tick(m: Managed): Promise<void> {
    if (!this.live(m)) return;
    try {
      if (m.mode === "acme" && m.bundle && !m.stale) {
        await this.refreshWindow(m);
        if (!this.live(m)) return;
        if (renewAt(m.bundle, Date.now(), { window: m.window, fraction: this.acme?.renewFraction ?? 2 / 3 }) > Date.now()) return this.schedule(m);
      }
      await this.renew(m);
    } catch (e) {
      log.error("certificate renewal check failed", { site: m.site, error: String((e as Error)?.stack ?? e) });
      this.schedule(m, retryDelay(++m.failures));
    }
  }

  private async refreshWindow(m: Managed): Promise<void> {
    try {
      const info = await this.issuer!.renewalInfo(m.bundle!.certPem);
      if (!info) return;
      m.window = info.window;
      m.ariRetryMs = info.retryAfterMs;
    } catch (e) {
      log.warn("acme renewal information unavailable; using the default renewal time", { site: m.site, error: String((e as Error).message ?? e) });
    }
  }

  /** renew obtains a new certificate for m, stores it, serves it; on failure the old one keeps serving and a retry is scheduled with backoff. */
  private async renew(m: Managed): Promise<void> {
    if (m.busy || !this.store) return;
    m.busy = true;
    const store = this.store;
    const t0 = performance.now();
    let release: (() => Promise<void>) | undefined;
    try {
      release = await store.storage.lock(`site-${m.site}`);
      // Another node (or an earlier process) may have obtained one meanwhile.
      const stored = await store.load(m.site);
      let fresh: CertBundle | undefined;
      if (stored && fits(stored, m, this.acme!) && stored.bundle.fingerprint !== m.bundle?.fingerprint && renewAt(stored.bundle, Date.now(), { fraction: 2 / 3 }) > Date.now()) fresh = stored.bundle;
      if (!fresh) {
        const issued = m.mode === "internal" ? await (await this.internalCa(store)).issue(m.hosts) : await this.issuer!.obtain(m.site, m.hosts);
        fresh = inspectBundle(...unpack(issued));
        await store.save(m.site, fresh, m.mode === "acme" ? { issuer: "acme", directory: this.acme?.directory } : { issuer: "internal" });
        if (m.mode === "acme") acmeOrders.labels("success").value++;
        log.info("certificate obtained", { site: m.site, issuer: m.mode, names: fresh.names, not_after: new Date(fresh.notAfter).toISOString(), ms: Math.round(performance.now() - t0) });
      }
      if (!this.live(m)) return;
      Object.assign(m, { bundle: fresh, stale: false, failures: 0, lastError: undefined, window: undefined });
      this.expiryMetric(m);
      this.schedule(m);
      this.onChange();
    } catch (e) {
      m.failures++;
      m.lastError = String((e as Error).message ?? e);
      const ae = e instanceof AcmeError ? e : undefined;
      if (m.mode === "acme") acmeOrders.labels("failure").value++;
      const delay = retryDelay(m.failures, { retryAfterMs: ae?.retryAfterMs, rateLimited: ae?.rateLimited });
      log.error("certificate not obtained; the current one keeps serving", {
        site: m.site, issuer: m.mode, step: ae?.step, error: m.lastError, failures: m.failures,
        serving: m.bundle ? new Date(m.bundle.notAfter).toISOString() : "none", retry_in_s: Math.round(delay / 1000),
        ...(ae?.rateLimited ? { hint: "the CA rate-limits this account or these names: wait for the retry, and check for duplicate gatehouse instances or a loop of config changes" } : {}),
      });
      this.schedule(m, delay);
    } finally {
      m.busy = false;
      await release?.().catch(() => undefined);
    }
  }
}

function entry(site: SiteConfig, id: string, bundle: CertBundle | undefined, stale: boolean): Managed {
  return { id, site: site.name, mode: site.tls.mode as Managed["mode"], hosts: site.hosts, bundle, stale, failures: 0, lastError: undefined, timer: undefined, nextCheck: 0, firstDelay: undefined, busy: false, window: undefined };
}

/** fits says whether a stored certificate is the one the config asks for: it covers every host and comes from the same issuer (and, for ACME, the same CA directory). */
function fits(s: Stored, m: Pick<Managed, "mode" | "hosts">, acme: AcmeConfig): boolean {
  return coversAll(s.bundle, m.hosts) && s.meta.issuer === m.mode && (m.mode !== "acme" || s.meta.directory === acme.directory);
}

function unpack(p: { certPem: string; keyPem: string }): [string, string] {
  return [p.certPem, p.keyPem];
}
