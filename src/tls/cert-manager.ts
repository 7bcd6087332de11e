/** Certificates of every TLS site: loaded from storage, issued (internal CA, ACME) or taken from the config (manual), renewed on schedule, and handed to the HTTPS listener. State outlives reloads. */
import { AcmeError } from "../acme/acme-error.ts";
import type { AcmeIssuer } from "../acme/issuer.ts";
import { certId, fetchRenewalInfo, type RenewalWindow } from "../acme/ari.ts";
import { renewAt, retryDelay } from "../acme/renewal-time.ts";
import type { AcmeConfig, Config, SiteConfig } from "../config/types.ts";
import { CertProblem, coversAll, inspectBundle, nameCovers, type CertBundle } from "../lib/cert-info.ts";
import { acmeOrders, certificateExpiry, certificateRenewal } from "../observability/gateway-metrics.ts";
import { log } from "../observability/log.ts";
import type { InternalCa } from "./internal-ca.ts";
import { FileStorage, type Storage } from "./storage.ts";

/** TlsEntry is one Bun.serve `tls` entry: a certificate for one SNI name (none: the fallback). */
export type TlsEntry = { readonly serverName?: string; readonly cert: string; readonly key: string };

/** FALLBACK_NAME is the only name on the certificate that handshakes for unknown names get: a reserved name (RFC 6761) that no site can claim. */
export const FALLBACK_NAME = "gatehouse.invalid";
const MAX_TIMER = 2 ** 31 - 1;
const ARI_RECHECK_MS = 6 * 3600_000;

type Managed = {
  readonly site: string;
  lastError: string | undefined;
  nextCheck: number;
  readonly mode: "acme" | "internal" | "manual";
  readonly hosts: readonly string[];
  bundle: CertBundle | undefined;
  failures: number;
  timer: Timer | undefined;
  busy: boolean;
  window: RenewalWindow | undefined;
  /** ariRetryMs is how long the CA asked us to wait before asking for renewal information again (Retry-After, RFC 9773 §4.3). */
  ariRetryMs?: number;
};

function identity(s: SiteConfig): string {
  return `${s.tls.mode}|${[...s.hosts].sort().join(",")}`;
}

/** CertManager is the process's certificate registry; `onChange` fires when the set of served certificates changed (the HTTPS listener then swaps). */
export class CertManager {
  private readonly managed = new Map<string, Managed & { id: string }>();
  private storage: Storage | undefined;
  private ca: InternalCa | undefined;
  private fallback: CertBundle | undefined;
  private issuer: AcmeIssuer | undefined;
  private issuerKey = "";
  private acmeCfg: AcmeConfig | undefined;
  private disposed = false;

  constructor(private readonly onChange: () => void) {}

  /** prepare makes the registry match a validated config before it goes live: loads stored certificates, issues internal ones, starts ACME orders in the background. Throws only when certs_dir is unusable. */
  async prepare(config: Config): Promise<void> {
    const g = config.global;
    const tlsSites = g.listen.https ? config.sites.filter((s) => s.tls.mode !== "off") : [];
    if (!(this.storage instanceof FileStorage) || this.storage.root !== g.certsDir) {
      this.storage = new FileStorage(g.certsDir);
      this.ca = undefined;
      this.fallback = undefined;
    }
    if (g.listen.https && !this.fallback) {
      this.fallback = await this.loadFallback();
      log.info("internal CA ready; trust its certificate to use tls = \"internal\" sites without warnings", { ca_cert: this.storage.describe("internal-ca/ca.pem") });
    }
    this.acmeCfg = g.acme;
    const key = JSON.stringify({ ...g.acme, dns: g.acme.dns && { ...g.acme.dns, tsig: { ...g.acme.dns.tsig, secret: Buffer.from(g.acme.dns.tsig.secret).toString("base64") } } });
    if (tlsSites.some((s) => s.tls.mode === "acme") && key !== this.issuerKey) {
      // acme-client and its dependencies cost about 35 MB of memory: loaded only when a site uses ACME.
      const { AcmeIssuer } = await import("../acme/issuer.ts");
      this.issuer = new AcmeIssuer(g.acme, this.storage);
      this.issuerKey = key;
    }
    const wanted = new Set(tlsSites.map((s) => s.name));
    for (const [name, m] of this.managed) {
      if (!wanted.has(name)) this.drop(name, m);
    }
    for (const site of tlsSites) {
      const id = identity(site);
      const cur = this.managed.get(site.name);
      if (site.tls.mode === "manual") {
        if (cur) this.drop(site.name, cur);
        this.managed.set(site.name, { id, site: site.name, lastError: undefined, nextCheck: 0, mode: "manual", hosts: site.hosts, bundle: site.tls.manual, failures: 0, timer: undefined, busy: false, window: undefined });
        this.expiryMetric(site.name, site.tls.manual);
        continue;
      }
      if (cur && cur.id === id) continue;
      if (cur) this.drop(site.name, cur);
      const m = { id, site: site.name, lastError: undefined as string | undefined, nextCheck: 0, mode: site.tls.mode as "acme" | "internal", hosts: site.hosts, bundle: undefined as CertBundle | undefined, failures: 0, timer: undefined, busy: false, window: undefined };
      this.managed.set(site.name, m);
      const stored = await this.loadStored(site.name);
      // A stored certificate keeps serving the hosts it covers until a new one is in place, even when the site's hosts changed.
      if (stored && stored.notAfter > Date.now()) m.bundle = stored;
      if (m.mode === "internal" && (!stored || !coversAll(stored, m.hosts) || renewAt(stored, Date.now(), { fraction: 2 / 3 }) <= Date.now())) {
        await this.renew(m, false);
      }
      this.expiryMetric(site.name, m.bundle);
      // ACME: ask the CA's renewal information (RFC 9773) at once, so a certificate it wants replaced (revoked, say) is renewed now.
      this.schedule(m, m.bundle && coversAll(m.bundle, m.hosts) && m.mode === "internal" ? undefined : 0);
    }
  }

  /** entries returns the `tls` array for Bun.serve: the fallback first (unknown and missing SNI), then one entry per host name that a served certificate covers. */
  entries(): TlsEntry[] {
    const out: TlsEntry[] = [];
    if (this.fallback) out.push({ cert: this.fallback.certPem, key: this.fallback.keyPem });
    for (const m of this.managed.values()) {
      const b = m.bundle;
      if (!b) continue;
      for (const h of m.hosts) {
        if (h.startsWith("[") || /^[0-9.]+$/.test(h)) continue; // SNI carries names only (RFC 6066 §3)
        if (b.names.some((n) => nameCovers(n, h))) out.push({ serverName: h, cert: b.certPem, key: b.keyPem });
      }
    }
    return out;
  }

  /** bundle returns what a site serves now. */
  bundle(site: string): CertBundle | undefined {
    return this.managed.get(site)?.bundle;
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

  /** renewNow starts a renewal of an ACME or internal certificate at once (the old one serves until the new one is in place); false when there is no such certificate. */
  renewNow(site: string): boolean {
    const m = this.managed.get(site);
    if (!m || m.mode === "manual" || this.disposed) return false;
    clearTimeout(m.timer);
    void this.renew(m, true);
    return true;
  }

  /** dispose stops every timer; orders in flight finish but change nothing. */
  dispose(): void {
    this.disposed = true;
    for (const m of this.managed.values()) clearTimeout(m.timer);
  }

  private drop(name: string, m: Managed): void {
    clearTimeout(m.timer);
    m.timer = undefined;
    this.managed.delete(name);
    certificateExpiry.remove(name);
    certificateRenewal.remove(name);
  }

  private expiryMetric(name: string, b: CertBundle | undefined): void {
    if (b) certificateExpiry.labels(name).value = Math.floor(b.notAfter / 1000);
    else certificateExpiry.remove(name);
  }

  private async loadStored(site: string): Promise<CertBundle | undefined> {
    const st = this.storage!;
    let certPem: string | undefined;
    let keyPem: string | undefined;
    try {
      certPem = await st.load(`sites/${site}/cert.pem`);
      keyPem = await st.load(`sites/${site}/key.pem`);
    } catch (e) {
      log.error("cannot read a stored certificate", { site, path: st.describe(`sites/${site}`), error: String((e as Error).message ?? e) });
      return undefined;
    }
    if (certPem === undefined || keyPem === undefined) return undefined;
    try {
      return inspectBundle(certPem, keyPem);
    } catch (e) {
      const why = e instanceof CertProblem ? e.message : String(e);
      log.error("stored certificate is unusable; it is left in place and a new one will be obtained", { site, path: st.describe(`sites/${site}/cert.pem`), problem: why });
      return undefined;
    }
  }

  /** internalCa opens (or makes) the internal CA; @peculiar/x509 costs about 20 MB, so it is loaded only to issue. */
  private async internalCa(): Promise<InternalCa> {
    if (!this.ca) {
      const { InternalCa } = await import("./internal-ca.ts");
      this.ca = await InternalCa.open(this.storage!);
    }
    return this.ca;
  }

  /** loadFallback reads the stored fallback certificate (for unknown SNI names), or issues and stores one valid for ten years. */
  private async loadFallback(): Promise<CertBundle> {
    const st = this.storage!;
    const [certPem, keyPem, caPem] = await Promise.all([st.load("internal-ca/fallback.pem"), st.load("internal-ca/fallback.key"), st.load("internal-ca/ca.pem")]);
    if (certPem && keyPem && caPem) {
      try {
        const b = inspectBundle(certPem, keyPem);
        if (b.notAfter > Date.now() + 30 * 86_400_000 && b.names.includes(FALLBACK_NAME)) return b;
      } catch (e) {
        log.warn("stored fallback certificate is unusable; a new one is made", { path: st.describe("internal-ca/fallback.pem"), problem: String((e as Error).message ?? e) });
      }
    }
    const b = inspect(await (await this.internalCa()).issue([FALLBACK_NAME], 3650 * 86_400_000));
    await st.store("internal-ca/fallback.key", b.keyPem, { secret: true });
    await st.store("internal-ca/fallback.pem", b.certPem);
    return b;
  }

  /** keepUnusable copies stored files that fail verification aside (NAME.corrupt-TIME) before a new certificate replaces them: nothing in certs/ is lost. */
  private async keepUnusable(site: string): Promise<void> {
    const st = this.storage!;
    const certPem = await st.load(`sites/${site}/cert.pem`).catch(() => undefined);
    const keyPem = await st.load(`sites/${site}/key.pem`).catch(() => undefined);
    if (certPem === undefined && keyPem === undefined) return;
    try {
      inspectBundle(certPem ?? "", keyPem ?? "");
    } catch {
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      if (certPem !== undefined) await st.store(`sites/${site}/cert.pem.corrupt-${stamp}`, certPem);
      if (keyPem !== undefined) await st.store(`sites/${site}/key.pem.corrupt-${stamp}`, keyPem, { secret: true });
      log.warn("unusable certificate files kept aside", { site, path: st.describe(`sites/${site}/cert.pem.corrupt-${stamp}`) });
    }
  }

  /** schedule sets the site's next renewal check: `delay` ms from now, or by the certificate's renewal time (ARI window when the CA gives one). */
  private schedule(m: Managed, delay?: number): void {
    clearTimeout(m.timer);
    if (this.disposed || m.mode === "manual") return;
    const now = Date.now();
    let at = now + (delay ?? 0);
    if (delay === undefined && m.bundle) {
      at = renewAt(m.bundle, now, { window: m.window, fraction: m.mode === "acme" ? this.acmeCfg?.renewFraction ?? 2 / 3 : 2 / 3 });
      const recheck = m.ariRetryMs ?? ARI_RECHECK_MS;
      if (m.mode === "acme" && at > now + recheck && this.issuer) at = now + recheck + Math.random() * 60_000;
    }
    m.nextCheck = at;
    certificateRenewal.labels(m.site).value = Math.floor(at / 1000);
    m.timer = setTimeout(() => void this.tick(m), Math.min(MAX_TIMER, Math.max(0, at - now)));
    m.timer.unref?.();
  }

  private async tick(m: Managed): Promise<void> {
    if (this.disposed || this.managed.get(m.site) !== m) return;
    try {
      if (m.mode === "acme" && m.bundle && coversAll(m.bundle, m.hosts)) {
        await this.refreshWindow(m);
        if (renewAt(m.bundle, Date.now(), { window: m.window, fraction: this.acmeCfg?.renewFraction ?? 2 / 3 }) > Date.now()) return this.schedule(m);
      }
      await this.renew(m, true);
    } catch (e) {
      log.error("certificate renewal check failed", { site: m.site, error: String((e as Error)?.stack ?? e) });
      this.schedule(m, retryDelay(++m.failures));
    }
  }

  private async refreshWindow(m: Managed): Promise<void> {
    const dir = await this.issuer!.directory().catch(() => undefined);
    if (!dir?.renewalInfo || !m.bundle) return;
    try {
      const info = await fetchRenewalInfo(dir.renewalInfo, certId(m.bundle.certPem));
      m.window = info.window;
      m.ariRetryMs = info.retryAfterMs;
    } catch (e) {
      log.warn("acme renewal information unavailable; using the default renewal time", { site: m.site, error: String((e as Error).message ?? e) });
    }
  }

  /** renew obtains a new certificate for m, stores it, serves it; on failure the old one keeps serving and a retry is scheduled with backoff. */
  private async renew(m: Managed, notify: boolean): Promise<void> {
    if (m.busy) return;
    m.busy = true;
    const st = this.storage!;
    const t0 = performance.now();
    let release: (() => Promise<void>) | undefined;
    try {
      release = await st.lock(`site-${m.site}`);
      // Another node (or an earlier process) may have obtained one meanwhile.
      const stored = await this.loadStored(m.site);
      let fresh: CertBundle | undefined;
      if (stored && coversAll(stored, m.hosts) && stored.fingerprint !== m.bundle?.fingerprint && renewAt(stored, Date.now(), { fraction: 2 / 3 }) > Date.now()) fresh = stored;
      if (!fresh) {
        const issued = m.mode === "internal" ? await (await this.internalCa()).issue(m.hosts) : await this.issuer!.obtain(m.site, m.hosts);
        fresh = inspect(issued);
        await this.keepUnusable(m.site);
        await st.store(`sites/${m.site}/key.pem`, fresh.keyPem, { secret: true });
        await st.store(`sites/${m.site}/cert.pem`, fresh.certPem);
        await st.store(`sites/${m.site}/meta.json`, JSON.stringify({ issuer: m.mode, directory: m.mode === "acme" ? this.acmeCfg?.directory : undefined, names: fresh.names, not_after: new Date(fresh.notAfter).toISOString(), obtained: new Date().toISOString() }, null, 2) + "\n");
        if (m.mode === "acme") acmeOrders.labels("success").value++;
        log.info("certificate obtained", { site: m.site, issuer: m.mode, names: fresh.names, not_after: new Date(fresh.notAfter).toISOString(), ms: Math.round(performance.now() - t0) });
      }
      if (this.managed.get(m.site) !== m) return;
      m.bundle = fresh;
      m.failures = 0;
      m.lastError = undefined;
      m.window = undefined;
      this.expiryMetric(m.site, fresh);
      this.schedule(m);
      if (notify) this.onChange();
    } catch (e) {
      m.failures++;
      m.lastError = String((e as Error).message ?? e);
      const ae = e instanceof AcmeError ? e : undefined;
      if (m.mode === "acme") acmeOrders.labels("failure").value++;
      const delay = retryDelay(m.failures, { retryAfterMs: ae?.retryAfterMs, rateLimited: ae?.rateLimited });
      log.error("certificate not obtained; the current one keeps serving", {
        site: m.site, issuer: m.mode, step: ae?.step, error: String((e as Error).message ?? e), failures: m.failures,
        serving: m.bundle ? new Date(m.bundle.notAfter).toISOString() : "none", retry_in_s: Math.round(delay / 1000),
        ...(ae?.rateLimited ? { hint: "the CA rate-limits this account or these names: wait for the retry, and check for duplicate gatehouse instances or a loop of config changes" } : {}),
      });
      if (this.managed.get(m.site) === m) this.schedule(m, delay);
    } finally {
      m.busy = false;
      await release?.().catch(() => undefined);
    }
  }
}

function inspect(p: { certPem: string; keyPem: string }): CertBundle {
  return inspectBundle(p.certPem, p.keyPem);
}
