/** Certificates of every TLS site: loaded from storage, issued (internal CA, ACME) or taken from the config (manual), renewed on schedule, and handed to the HTTPS listener. State outlives reloads. */
import type { AcmeConfig, Config, ExportConfig } from "../config/types.ts";
import { inspectBundle, isIpLiteral, nameCovers, type CertBundle } from "../lib/cert-info.ts";
import { certificateExpiry, certificateRenewal, certificateRenewalPlanned } from "../observability/gateway-metrics.ts";
import { log } from "../observability/log.ts";
import type { Http01Tokens } from "./acme/http01.ts";
import type { AlpnChallenges } from "./acme/tls-alpn01.ts";
import { renewAt, retryDelay } from "./acme/renewal-time.ts";
import type { Solver } from "./acme/solver.ts";
import { solversFor } from "./acme/solvers.ts";
import { AcmeIssuers, siteDirectory } from "./acme-issuers.ts";
import { InternalIssuer } from "./internal-issuer.ts";
import { issuersFor, type Issuer, type Issuers } from "./issuer.ts";
import { CertExporter } from "./export.ts";
import { describeManaged, fits, managedEntry, unpack, type Managed } from "./managed.ts";
import { RenewalScheduler } from "./renewal-scheduler.ts";
import { SharedFollow } from "./shared-follow.ts";
import { SiteCertStore, type Stored } from "./site-store.ts";
import type { Storage, StorageFactory } from "./storage.ts";
import { SHARED_SYNC_MS, sharedOf, storageKey } from "./storage-open.ts";

/** TlsEntry is one Bun.serve `tls` entry: a certificate for one SNI name (none: the fallback), with its fingerprint to tell sets apart. */
export type TlsEntry = { readonly serverName?: string; readonly cert: string; readonly key: string; readonly fingerprint: string };

/** FALLBACK_NAME is the only name on the certificate that handshakes for unknown names get: a reserved name (RFC 6761) that no site can claim. */
export const FALLBACK_NAME = "gatehouse.invalid";
const TEN_YEARS = 3650 * 86_400_000;

/** PlanIssuers are a plan's issuers, the internal one with its fallback-making ability, the ACME ones per CA and account. */
type PlanIssuers = Issuers & { readonly internal: InternalIssuer; readonly acme: AcmeIssuers | undefined };

/**
 * CertPlan is the registry as a new config would have it, built by prepare() without touching the running one and made live by commit() once the listeners took
 * it.
 */
export type CertPlan = {
  readonly store: SiteCertStore;
  /** certsDir is the storage key (storageKey) store was opened for: the same one in the next config reuses it. */
  readonly certsDir: string;
  readonly fallback: CertBundle | undefined;
  readonly issuers: PlanIssuers;
  /** solvers map each ACME site to the solver that proves its names (empty in a follower). */
  readonly solvers: ReadonlyMap<string, Solver>;
  readonly acme: AcmeConfig;
  readonly managed: ReadonlyMap<string, Managed>;
  /** adopt holds newer certificates found in storage for sites that did not change (obtained by another node, restored by hand). */
  readonly adopt: ReadonlyMap<Managed, Stored>;
  /** shared: the storage is shared with other nodes (etcd), and HTTP-01 tokens go through it. */
  readonly shared: boolean;
  /** retry holds failing entries whose CAs or accounts the new config changed (a fixed EAB key, another CA): tried again at once, from the first CA. */
  readonly retry: ReadonlySet<Managed>;
  /** exports are the [export] tables of the sites, by site name. */
  readonly exports: ReadonlyMap<string, ExportConfig>;
};

function sameIssuers(a: readonly Issuer[], b: readonly Issuer[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** RESUME_SPREAD_MS spreads the renewals that resume when the shared storage answers again. */
const RESUME_SPREAD_MS = 3000;

/**
 * CertManagerOptions: storage opens a certs_dir (again when a reload changes it); challenges are the HTTP-01 tokens and alpnChallenges the TLS-ALPN-01
 * certificates ACME orders publish; a follower (a worker process) only loads certificates from storage and never issues, orders or renews; the process that
 * leads (the supervisor) does, and tells it when to look again (refresh).
 */
export type CertManagerOptions = {
  readonly storage: StorageFactory;
  readonly challenges: Http01Tokens;
  readonly alpnChallenges: AlpnChallenges;
  readonly follower?: boolean;
  /** sharedStorage is told at each commit which storage is shared with other nodes now (undefined: none); shared cache purges go through it. */
  readonly sharedStorage?: (s: Storage | undefined) => void;
};

/**
 * CertManager is the process's certificate registry; `onChange` fires when the set of served certificates changed outside a reload (the HTTPS listener then
 * swaps).
 */
export class CertManager {
  private managed: ReadonlyMap<string, Managed> = new Map();
  private store: SiteCertStore | undefined;
  private certsDir: string | undefined;
  private fallback: CertBundle | undefined;
  /** following re-reads the shared storage (syncEvery). */
  private readonly following = new SharedFollow();
  /** caAnnounced: the internal CA has been logged as ready (once, when the first site with tls = "internal" came). */
  private caAnnounced = false;
  private issuers: PlanIssuers | undefined;
  private solvers: ReadonlyMap<string, Solver> = new Map();
  private acme: AcmeConfig | undefined;
  private disposed = false;
  private readonly follower: boolean;
  private readonly scheduler: RenewalScheduler;
  /** exporter copies certificates to other daemons' files; only the process that leads has one (followers never export). */
  private readonly exporter: CertExporter | undefined;

  constructor(
    private readonly onChange: () => void,
    private readonly opts: CertManagerOptions,
  ) {
    this.follower = opts.follower ?? false;
    this.exporter = this.follower ? undefined : new CertExporter();
    this.scheduler = new RenewalScheduler(
      {
        live: (m) => this.live(m),
        store: () => this.store,
        issuersOf: (m) => issuersFor(m.site, m.mode, this.issuers),
        renewFraction: (m) => (m.mode === "acme" ? (this.acme?.renewFraction ?? 2 / 3) : 2 / 3),
        renewed: (m) => {
          this.expiryMetric(m);
          this.exporter?.offer(m.site, m.hosts, m.bundle);
          this.onChange();
        },
      },
      this.follower,
    );
  }

  /**
   * prepare works out the certificates a validated config needs, without changing what runs: loads and verifies stored certificates (every reload), issues
   * internal ones, makes the fallback. Throws only when certs_dir is unusable.
   */
  async prepare(config: Config): Promise<CertPlan> {
    const g = config.global;
    // A certificate-only site has its certificate without an HTTPS listener too (for its [export]).
    // A site whose certificate a [[tcp]] route terminates TLS with has it without an HTTPS listener too.
    const tcpSites = new Set(g.tcp.filter((t) => t.mode === "terminate").map((t) => t.site));
    const tlsSites = config.sites.filter((s) => s.tls.mode !== "off" && (g.listen.https !== undefined || s.certificateOnly || tcpSites.has(s.name)));
    const store = this.store && this.certsDir === storageKey(g) ? this.store : new SiteCertStore(this.opts.storage(g));
    const same = store === this.store;
    const internal = same && this.issuers ? this.issuers.internal : new InternalIssuer(store.storage);
    let fallback = same ? this.fallback : undefined;
    if (g.listen.https && this.follower) {
      // The leader made (or renewed) it before this follower was asked to load; a follower never makes a CA of its own.
      fallback = (await store.loadFallback()) ?? fallback;
      if (!fallback) throw new Error(`${store.storage.describe("internal-ca/fallback.pem")}: no fallback certificate in storage (the supervisor makes it)`);
    } else if (g.listen.https && !fallback) {
      fallback = await store.fallback(FALLBACK_NAME, async () => inspectBundle(...unpack(await internal.issueFor([FALLBACK_NAME], TEN_YEARS))));
    }
    // The internal CA signs the fallback certificate whatever the sites are; it is news to the operator only when a site uses it.
    if (!this.follower && !this.caAnnounced && tlsSites.some((s) => s.tls.mode === "internal")) {
      this.caAnnounced = true;
      log.info('internal CA ready; trust its certificate to use tls = "internal" sites without warnings', {
        ca_cert: store.storage.describe("internal-ca/ca.pem"),
      });
    }
    const acmeSites = this.follower ? [] : tlsSites.filter((s) => s.tls.mode === "acme");
    // One issuer per CA and account that some site uses; those that stay are kept (with the same storage).
    const acme = await AcmeIssuers.plan(same ? this.issuers?.acme : undefined, acmeSites, g.acme, store.storage, (site) => this.solvers.get(site));
    const issuers: PlanIssuers = { internal, acme };
    const solvers = solversFor(acmeSites, g.acme, { http01: this.opts.challenges, tlsAlpn01: this.opts.alpnChallenges });
    const managed = new Map<string, Managed>();
    const adopt = new Map<Managed, Stored>();
    const retry = new Set<Managed>();
    for (const site of tlsSites) {
      // The site's own CA is part of its certificate's identity: moving the site to another CA orders a new one (the stored one serves until then).
      const id = [site.tls.mode, [...site.hosts].sort().join(","), g.certsDir, site.tls.mode === "acme" ? siteDirectory(site, g.acme) : ""].join("|");
      const cur = this.managed.get(site.name);
      if (site.tls.mode === "manual") {
        managed.set(site.name, managedEntry(site, id, site.tls.manual, false));
        continue;
      }
      const stored = await store.load(site.name);
      if (this.follower) {
        // Storage is the truth for a follower: whatever the leader stored last, while it is valid.
        const usable = stored && stored.bundle.notAfter > Date.now() ? stored : undefined;
        if (cur && cur.id === id) {
          managed.set(site.name, cur);
          if (usable && usable.bundle.fingerprint !== cur.bundle?.fingerprint) adopt.set(cur, usable);
        } else managed.set(site.name, Object.assign(managedEntry(site, id, usable?.bundle, false), { meta: usable?.meta }));
        continue;
      }
      // The site's own CA or one of its fallback CAs: a certificate from either is the site's until its renewal time.
      const chain = issuersFor(site.name, site.tls.mode, issuers);
      const ofIssuer = (s: Stored) => fits(s, site.hosts, chain);
      if (cur && cur.id === id) {
        managed.set(site.name, cur);
        const b = stored?.bundle;
        if (b && ofIssuer(stored!) && b.fingerprint !== cur.bundle?.fingerprint && b.notAfter >= (cur.bundle?.notAfter ?? 0)) adopt.set(cur, stored!);
        else if (cur.failures > 0 && !sameIssuers(chain, issuersFor(site.name, site.tls.mode, this.issuers))) retry.add(cur);
        continue;
      }
      // A stored certificate keeps serving the hosts it covers until the one the config asks for is in place.
      const usable = stored && stored.bundle.notAfter > Date.now() ? stored : undefined;
      const m = managedEntry(site, id, usable?.bundle, false);
      m.meta = usable?.meta;
      m.stale = !usable || !ofIssuer(usable);
      m.restored = usable !== undefined;
      managed.set(site.name, m);
      if (m.mode === "acme")
        m.firstDelay = 0; // an order, or a look at the CA's renewal information (RFC 9773): a revoked certificate is replaced at once
      else if (m.stale || renewAt(m.bundle!, Date.now(), { fraction: 2 / 3 }) <= Date.now()) await this.issueInternal(m, store, internal);
    }
    const exports = new Map(tlsSites.flatMap((s) => (s.export ? [[s.name, s.export] as const] : [])));
    return { store, certsDir: storageKey(g), shared: g.storage.backend === "etcd", fallback, issuers, solvers, acme: g.acme, managed, adopt, retry, exports };
  }

  /** commit makes a plan live (after the HTTPS listener took its entries): drops what left, starts the timers of what is new, serves adopted certificates. */
  commit(plan: CertPlan): void {
    // With shared storage, HTTP-01 tokens go through it too (the CA's request may reach another node), without a local copy: they live for minutes.
    const shared = plan.shared ? sharedOf(plan.store.storage) : undefined;
    this.opts.challenges.shared = shared;
    this.opts.sharedStorage?.(shared);
    const old = this.managed;
    for (const [name, m] of old) if (plan.managed.get(name) !== m) this.drop(name, m);
    Object.assign(this, {
      store: plan.store,
      certsDir: plan.certsDir,
      fallback: plan.fallback,
      issuers: plan.issuers,
      solvers: plan.solvers,
      acme: plan.acme,
      managed: plan.managed,
    });
    // What other nodes store is followed (the new store's watch).
    this.syncEvery(plan.shared ? SHARED_SYNC_MS : undefined);
    for (const [name, m] of plan.managed) {
      if (!m.restored || old.get(name) === m) continue;
      // A certificate taken from storage at start (or for a site that came with a reload): which one serves, and whether it is the one the config asks for.
      log.info("stored certificate in use", {
        site: name,
        names: m.bundle!.names,
        not_after: new Date(m.bundle!.notAfter).toISOString(),
        issuer: m.bundle!.issuer,
        ...(m.meta?.directory ? { ca: m.meta.directory } : {}),
        replaced_soon: m.stale,
      });
    }
    for (const m of plan.retry) {
      Object.assign(m, { ca: 0, caFailures: 0 });
      this.scheduler.schedule(m, 0);
    }
    for (const [m, { bundle: b, meta }] of plan.adopt) {
      Object.assign(m, { bundle: b, meta, window: undefined });
      log.info("newer stored certificate adopted", { site: m.site, not_after: new Date(b.notAfter).toISOString() });
      this.expiryMetric(m);
      this.scheduler.schedule(m);
    }
    for (const m of plan.managed.values()) {
      if (old.get(m.site) === m) continue;
      this.expiryMetric(m);
      if (m.mode === "manual") {
        if (m.bundle && m.bundle.notAfter < Date.now())
          log.warn("manual certificate has expired; clients will refuse it", { site: m.site, not_after: new Date(m.bundle.notAfter).toISOString() });
      } else this.scheduler.schedule(m, m.firstDelay);
    }
    // Loaded at start, adopted, or for a site whose [export] came or changed: the files change only when they hold another certificate.
    this.exporter?.configure(plan.exports);
    for (const m of plan.managed.values()) this.exporter?.offer(m.site, m.hosts, m.bundle);
  }

  /**
   * entries returns the `tls` array for Bun.serve, of the live registry or of a plan: the fallback first (unknown and missing SNI), then one entry per host
   * name that a served certificate covers.
   */
  entries(plan?: CertPlan): TlsEntry[] {
    const fallback = plan ? plan.fallback : this.fallback;
    const out: TlsEntry[] = [];
    if (fallback) out.push({ cert: fallback.certPem, key: fallback.keyPem, fingerprint: fallback.fingerprint });
    for (const m of (plan ? plan.managed : this.managed).values()) {
      const b = plan?.adopt.get(m)?.bundle ?? m.bundle;
      if (!b) continue;
      for (const h of m.hosts) {
        if (isIpLiteral(h)) continue; // SNI carries names only (RFC 6066 §3)
        if (b.names.some((n) => nameCovers(n, h))) out.push({ serverName: h, cert: b.certPem, key: b.keyPem, fingerprint: b.fingerprint });
      }
    }
    return out;
  }

  /** siteEntry is the certificate a site serves now (or in a plan), for a [[tcp]] route that terminates TLS with it; undefined while it has none. */
  siteEntry(site: string, plan?: CertPlan): TlsEntry | undefined {
    const m = (plan ? plan.managed : this.managed).get(site);
    const b = m === undefined ? undefined : (plan?.adopt.get(m)?.bundle ?? m.bundle);
    return b === undefined ? undefined : { cert: b.certPem, key: b.keyPem, fingerprint: b.fingerprint };
  }

  /** describe lists each TLS site's certificate for the admin API (describeManaged), with the state of its [export] (null: none, or a follower). */
  describe(): unknown[] {
    return [...this.managed.values()].map((m) => ({ ...describeManaged(m, this.issuers), export: this.exporter?.describe(m.site) ?? null }));
  }

  /**
   * refresh (a follower's) reads every ACME and internal certificate from storage again and serves the ones the leader replaced; true when anything changed
   * (the caller swaps the HTTPS listener).
   */
  async refresh(): Promise<boolean> {
    if (!this.store || this.disposed) return false;
    let changed = false;
    for (const m of this.managed.values()) {
      if (m.mode === "manual") continue;
      const s = await this.store.load(m.site);
      const b = s?.bundle;
      if (!b || b.fingerprint === m.bundle?.fingerprint || b.notAfter <= Date.now() || !this.live(m)) continue;
      // A node that orders itself takes only a newer certificate: another node renewed it (storage shared through etcd).
      if (!this.follower && b.notAfter < (m.bundle?.notAfter ?? 0)) continue;
      Object.assign(m, { bundle: b, meta: s!.meta });
      this.expiryMetric(m);
      if (!this.follower) {
        Object.assign(m, { window: undefined, stale: false, failures: 0, lastError: undefined });
        log.info("certificate renewed by another node adopted", { site: m.site, not_after: new Date(b.notAfter).toISOString() });
        this.exporter?.offer(m.site, m.hosts, b);
        this.scheduler.schedule(m);
      }
      changed = true;
    }
    return changed;
  }

  /**
   * syncEvery follows the shared storage (re-read every `ms`, and on etcd's watch), so that a certificate another node obtained is served here too; a change
   * fires onChange, as a renewal here does. undefined: nothing to follow (certs_dir, which only this node writes).
   */
  private syncEvery(ms: number | undefined): void {
    if (ms === undefined || this.follower) {
      this.following.stop();
      return;
    }
    const reread = () =>
      void this.refresh().then(
        (changed) => changed && this.onChange(),
        (e) => log.warn("cannot re-read the shared certificate storage", { error: String((e as Error)?.message ?? e) }),
      );
    this.following.follow(this.store?.storage, ms, { reread, reachable: () => this.resumeRenewals() });
  }

  /**
   * resumeRenewals retries, within a few seconds, every renewal whose last attempt failed at the shared storage (not at the CA, whose backoff and Retry-After
   * stand), rather than at its backoff; the spread keeps the nodes from all asking at once.
   */
  private resumeRenewals(): void {
    const sites: string[] = [];
    for (const m of this.managed.values()) {
      if (!m.waitsForStorage || m.failures === 0 || m.busy || m.mode === "manual" || !this.live(m)) continue;
      sites.push(m.site);
      this.scheduler.schedule(m, Math.random() * RESUME_SPREAD_MS);
    }
    if (sites.length > 0) log.info("storage reachable again; renewals that waited for it resume", { sites });
  }

  /**
   * renewNow starts a renewal of an ACME or internal certificate at once (the old one serves until the new one is in place); false when there is no such
   * certificate, or in a follower.
   */
  renewNow(site: string): boolean {
    const m = this.managed.get(site);
    if (!m || m.mode === "manual" || this.disposed || this.follower) return false;
    this.scheduler.renewNow(m);
    return true;
  }

  /** dispose stops every timer; orders in flight finish but change nothing. */
  dispose(): void {
    this.disposed = true;
    this.following.stop();
    this.exporter?.dispose();
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
    certificateRenewalPlanned.remove(name);
  }

  private expiryMetric(m: Managed): void {
    if (m.bundle) certificateExpiry.labels(m.site).value = Math.floor(m.bundle.notAfter / 1000);
    else certificateExpiry.remove(m.site);
  }

  /** issueInternal gives a new entry an internal certificate before it goes live; a failure leaves it to the retry timer. */
  private async issueInternal(m: Managed, store: SiteCertStore, issuer: Issuer): Promise<void> {
    try {
      const b = inspectBundle(...unpack(await issuer.issue(m.site, m.hosts)));
      await store.save(m.site, b, issuer.meta);
      log.info("certificate obtained", { site: m.site, issuer: "internal", names: b.names, not_after: new Date(b.notAfter).toISOString() });
      Object.assign(m, { bundle: b, meta: issuer.meta, stale: false });
    } catch (e) {
      m.failures = 1;
      m.lastError = String((e as Error).message ?? e);
      m.firstDelay = retryDelay(1);
      log.error("certificate not obtained; the current one keeps serving", {
        site: m.site,
        issuer: "internal",
        error: m.lastError,
        retry_in_s: Math.round(m.firstDelay / 1000),
      });
    }
  }
}
