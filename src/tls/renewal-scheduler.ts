/** The renewal scheduler: one timer per managed certificate, set by its renewal time (the CA's ARI window when it gives one), rechecks of that window, retries with backoff after a failure, and the move to a fallback CA when orders keep failing. */
import { inspectBundle } from "../lib/cert-info.ts";
import { acmeOrders, certificateRenewal, certificateRenewalPlanned } from "../observability/gateway-metrics.ts";
import { log } from "../observability/log.ts";
import { AcmeError } from "./acme/acme-error.ts";
import { renewAt, retryDelay } from "./acme/renewal-time.ts";
import { issuedBy, type Issuer, type RenewalAdvisor } from "./issuer.ts";
import { fits, unpack, type Managed } from "./managed.ts";
import type { SiteCertStore, Stored } from "./site-store.ts";

const MAX_TIMER = 2 ** 31 - 1;
/** ARI_RECHECK_MS is how often the CA's renewal window is asked again when the certificate is not due before (RFC 9773 §4.3 suggests a few times a day). */
const ARI_RECHECK_MS = 6 * 3600_000;
/** FALLBACK_AFTER is how many failed orders in a row at one CA move the next order to the next CA of the site (as Caddy does). */
export const FALLBACK_AFTER = 2;

/** RenewalHost is the registry the scheduler works for; it is asked at each step, because the live store and issuers change with reloads. */
export interface RenewalHost {
  /** live says whether m is still served (not dropped by a reload, registry not disposed). */
  live(m: Managed): boolean;
  /** store is where certificates are stored now; undefined before the first commit. */
  store(): SiteCertStore | undefined;
  /** issuersOf are the issuers m's site chooses now, in the order orders try them (its own CA first, then fallback CAs); empty when it has none. */
  issuersOf(m: Managed): readonly Issuer[];
  /** renewFraction is how far into m's lifetime it is renewed without an ARI window. */
  renewFraction(m: Managed): number;
  /** renewed is told that m serves a new certificate (metrics, then the HTTPS listener swaps). */
  renewed(m: Managed): void;
}

function advisor(i: Issuer | undefined): RenewalAdvisor | undefined {
  return i && typeof (i as Partial<RenewalAdvisor>).renewalInfo === "function" ? (i as Issuer & RenewalAdvisor) : undefined;
}

function directoryOf(i: Issuer | undefined): string | undefined {
  return i?.meta.directory;
}

/** RenewalScheduler renews the ACME and internal certificates of its host; a follower's never runs (it only loads what the leader stored). */
export class RenewalScheduler {
  constructor(
    private readonly host: RenewalHost,
    private readonly follower: boolean,
  ) {}

  /** schedule sets m's next renewal check: `delay` ms from now, or by the certificate's renewal time (the CA's ARI window when it gives one). */
  schedule(m: Managed, delay?: number): void {
    clearTimeout(m.timer);
    if (!this.host.live(m) || m.mode === "manual" || this.follower) return;
    const now = Date.now();
    let at = now + (delay ?? 0);
    if (m.bundle) {
      // One planned time per certificate and window (renewAt draws a random point in the window): a retry does not move it, so it can be overdue.
      const key = `${m.bundle.fingerprint}|${m.window?.start}|${m.window?.end}|${this.host.renewFraction(m)}`;
      if (m.plannedFor !== key) {
        // Drawn as of the certificate's start, with a draw fixed by its fingerprint: the same time after a restart or an upgrade, in the past when overdue.
        const draw = (Number.parseInt(m.bundle.fingerprint.replace(/:/g, "").slice(0, 8), 16) || 0) / 2 ** 32;
        m.planned = renewAt(m.bundle, m.bundle.notBefore, { window: m.window, fraction: this.host.renewFraction(m), rand: () => draw });
        m.plannedFor = key;
      }
      certificateRenewalPlanned.labels(m.site).value = Math.floor(m.planned! / 1000);
    }
    if (delay === undefined && m.bundle) {
      at = Math.max(now, m.planned!);
      const recheck = m.ariRetryMs ?? ARI_RECHECK_MS;
      if (this.advisorOf(m) && at > now + recheck) at = now + recheck + Math.random() * 60_000;
    }
    m.nextCheck = at;
    certificateRenewal.labels(m.site).value = Math.floor(at / 1000);
    m.timer = setTimeout(() => void this.tick(m), Math.min(MAX_TIMER, Math.max(0, at - now)));
    m.timer.unref?.();
  }

  /** renewNow starts m's renewal at once, in place of its timer. */
  renewNow(m: Managed): void {
    clearTimeout(m.timer);
    void this.renew(m);
  }

  private async tick(m: Managed): Promise<void> {
    if (!this.host.live(m)) return;
    try {
      if (this.advisorOf(m) && m.bundle && !m.stale) {
        await this.refreshWindow(m);
        if (!this.host.live(m)) return;
        if (renewAt(m.bundle, Date.now(), { window: m.window, fraction: this.host.renewFraction(m) }) > Date.now()) return this.schedule(m);
      }
      await this.renew(m);
    } catch (e) {
      log.error("certificate renewal check failed", { site: m.site, error: String((e as Error)?.stack ?? e) });
      this.schedule(m, retryDelay(++m.failures));
    }
  }

  /** advisorOf is who says when m's certificate is due (ARI): the CA that issued it (a fallback CA's certificate asks that CA), else the site's own CA. */
  private advisorOf(m: Managed): RenewalAdvisor | undefined {
    const chain = this.host.issuersOf(m);
    return advisor((m.meta && chain.find((i) => issuedBy(m.meta!, i))) ?? chain[0]);
  }

  private async refreshWindow(m: Managed): Promise<void> {
    try {
      const info = await this.advisorOf(m)?.renewalInfo(m.bundle!.certPem);
      if (!info) return;
      m.window = info.window;
      m.ariRetryMs = info.retryAfterMs;
    } catch (e) {
      log.warn("acme renewal information unavailable; using the default renewal time", { site: m.site, error: String((e as Error).message ?? e) });
    }
  }

  /**
   * renew obtains a new certificate for m under the storage lock, from the CA its chain points at now, stores it, serves it; on failure the old one keeps
   * serving and a retry is scheduled with backoff, at the next CA of the chain after FALLBACK_AFTER failures in a row at this one.
   */
  private async renew(m: Managed): Promise<void> {
    const store = this.host.store();
    if (m.busy || !store) return;
    m.busy = true;
    const t0 = performance.now();
    let release: (() => Promise<void>) | undefined;
    const chain = this.host.issuersOf(m);
    if (m.ca >= chain.length) Object.assign(m, { ca: 0, caFailures: 0 }); // a reload shortened the chain
    const issuer = chain[m.ca];
    let asked = false;
    // A failure before the CA is asked, or at the save after it answered, is the storage's (a lock, a read, a write).
    let atStorage = issuer !== undefined;
    // What was served when this renewal was decided: a certificate adopted from another node while waiting for the lock is not the one to replace.
    const replacing = m.bundle?.fingerprint;
    try {
      if (!issuer) throw new Error(`no issuer for site ${m.site} (tls = "${m.mode}")`);
      release = await store.storage.lock(`site-${m.site}`);
      // Another node (or an earlier process) may have obtained one meanwhile.
      const stored = await store.load(m.site);
      let fresh: Stored | undefined;
      if (
        stored &&
        fits(stored, m.hosts, chain) &&
        stored.bundle.fingerprint !== replacing &&
        renewAt(stored.bundle, Date.now(), { fraction: 2 / 3 }) > Date.now()
      )
        fresh = stored;
      if (!fresh) {
        asked = true;
        atStorage = false;
        const b = inspectBundle(...unpack(await issuer.issue(m.site, m.hosts)));
        atStorage = true;
        await store.save(m.site, b, issuer.meta);
        fresh = { bundle: b, meta: issuer.meta };
        if (m.mode === "acme") acmeOrders.labels("success").value++;
        log.info("certificate obtained", {
          site: m.site,
          issuer: m.mode,
          ...(m.mode === "acme" ? { ca: directoryOf(issuer), fallback: m.ca > 0 } : {}),
          names: b.names,
          not_after: new Date(b.notAfter).toISOString(),
          ms: Math.round(performance.now() - t0),
        });
      }
      if (!this.host.live(m)) return;
      // The next renewal starts again at the site's own CA.
      Object.assign(m, {
        bundle: fresh.bundle,
        meta: fresh.meta,
        stale: false,
        failures: 0,
        lastError: undefined,
        waitsForStorage: false,
        window: undefined,
        ca: 0,
        caFailures: 0,
      });
      this.schedule(m);
      this.host.renewed(m);
    } catch (e) {
      m.failures++;
      m.lastError = String((e as Error).message ?? e);
      m.waitsForStorage = atStorage;
      const ae = e instanceof AcmeError ? e : undefined;
      if (m.mode === "acme") acmeOrders.labels("failure").value++;
      let delay = retryDelay(m.failures, { retryAfterMs: ae?.retryAfterMs, rateLimited: ae?.rateLimited });
      const from = m.ca;
      if (asked && ++m.caFailures >= FALLBACK_AFTER && chain.length > 1) {
        Object.assign(m, { ca: (m.ca + 1) % chain.length, caFailures: 0 });
        // A CA's Retry-After and rate limit hold for that CA only: the next attempt goes elsewhere.
        delay = retryDelay(m.failures);
      }
      log.error("certificate not obtained; the current one keeps serving", {
        site: m.site,
        issuer: m.mode,
        ...(m.mode === "acme" ? { ca: directoryOf(issuer) } : {}),
        step: ae?.step,
        error: m.lastError,
        failures: m.failures,
        serving: m.bundle ? new Date(m.bundle.notAfter).toISOString() : "none",
        retry_in_s: Math.round(delay / 1000),
        ...(ae?.rateLimited
          ? {
              hint: "the CA rate-limits this account or these names: wait for the retry, and check for duplicate gatehouse instances or a loop of config changes",
            }
          : {}),
      });
      if (m.ca !== from)
        log.warn(m.ca === 0 ? "certificate order moves back to the site's own CA" : "certificate order moves to the fallback CA", {
          site: m.site,
          from: directoryOf(chain[from]),
          to: directoryOf(chain[m.ca]),
          failed_attempts: FALLBACK_AFTER,
          last_error: m.lastError,
          retry_in_s: Math.round(delay / 1000),
        });
      this.schedule(m, delay);
    } finally {
      m.busy = false;
      await release?.().catch(() => undefined);
    }
  }
}
