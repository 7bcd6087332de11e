/** Exporting sites' certificates to other daemons ([export]): verified, written atomically only when the files hold another, the command run after, failures retried. */
import { readFileSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { ExportConfig } from "../config/types.ts";
import { type Prepared, prepareFileAtomic, writeFileAtomic } from "../lib/atomic-write.ts";
import { coversAll, inspectBundle, type CertBundle } from "../lib/cert-info.ts";
import { certificateExportCurrent, certificateExportRuns, certificateExports } from "../observability/gateway-metrics.ts";
import { log } from "../observability/log.ts";
import { retryDelay } from "./acme/renewal-time.ts";
import { endCommands, runCommand, type RunResult } from "./export-run.ts";

/** EXPORT_RETRY_MIN_MS and EXPORT_RETRY_MAX_MS bound the backoff of a failed export (a write or the command): 5 s doubling to 1 h, ± 20 %. */
export const EXPORT_RETRY_MIN_MS = 5000;
export const EXPORT_RETRY_MAX_MS = 3600_000;

/** ExportTarget is one site's export: its settings, the certificate offered last, and how the last attempt went. */
type ExportTarget = {
  readonly site: string;
  readonly cfg: ExportConfig;
  /** key tells settings apart: a reload that keeps them keeps the target (and its state). */
  readonly key: string;
  hosts: readonly string[];
  bundle: CertBundle | undefined;
  /** runFor is the fingerprint of a certificate written to the files whose command has not run successfully yet. */
  runFor: string | undefined;
  /** exported is the fingerprint the files were last seen holding. */
  exported: string | undefined;
  busy: boolean;
  again: boolean;
  failures: number;
  lastError: string | undefined;
  lastResult: string | undefined;
  lastTime: number | undefined;
  lastRun: (RunResult & { readonly at: number }) | undefined;
  timer: Timer | undefined;
  nextRetry: number | undefined;
  disposed: boolean;
};

function readOr(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/**
 * owedPath is the marker beside an exported chain that names the certificate whose command has not run successfully yet: a command still owed when
 * gatehouse stops runs after the next start, though the files are current by then.
 */
function owedPath(cert: string): string {
  return join(dirname(cert), `.${basename(cert)}.run-owed`);
}

/** owe records, beside the chain, that its command has still to run for fingerprint; a marker that cannot be written only loses that across a restart. */
function owe(cert: string, fingerprint: string): void {
  try {
    writeFileAtomic(owedPath(cert), `${fingerprint}\n`, 0o600);
  } catch (e) {
    log.warn("cannot note the export command as owed; a restart before it runs will not run it", { cert, error: (e as Error).message });
  }
}

/** holds says whether path has exactly text, mode and (when one is set) group. */
function holds(path: string, text: string, mode: number, gid: number | undefined): boolean {
  if (readOr(path) !== text) return false;
  try {
    const s = statSync(path);
    return (s.mode & 0o7777) === mode && (gid === undefined || s.gid === gid);
  } catch {
    return false;
  }
}

/** verify throws unless b is a certificate to hand out: chain and key belong together, valid now, covering every host of the site. */
function verify(b: CertBundle, hosts: readonly string[]): void {
  const again = inspectBundle(b.certPem, b.keyPem);
  const now = Date.now();
  if (again.notAfter <= now) throw new Error(`the certificate expired at ${new Date(again.notAfter).toISOString()}`);
  if (again.notBefore > now + 300_000) throw new Error(`the certificate is not valid before ${new Date(again.notBefore).toISOString()}`);
  if (!coversAll(again, hosts)) throw new Error(`the certificate names ${again.names.join(", ")}, not every host of the site (${hosts.join(", ")})`);
}

function runSummary(r: RunResult): string {
  if (r.error) return `cannot start: ${r.error}`;
  if (r.timedOut) return `killed at its timeout${r.signal ? ` (${r.signal})` : ""}`;
  return r.signal ? `ended by ${r.signal}` : `exit status ${r.exit}`;
}

/**
 * CertExporter copies the certificates of the sites with [export] to their files and runs their commands; only the process that leads certificates has one
 * (the supervisor with workers > 1, else the gateway). Work runs off the request path, one attempt per site at a time; nothing here throws.
 */
export class CertExporter {
  private targets = new Map<string, ExportTarget>();

  /** configure sets the sites' [export] tables (at each commit); a site whose settings did not change keeps its state, one that left is forgotten. */
  configure(exports: ReadonlyMap<string, ExportConfig>): void {
    const next = new Map<string, ExportTarget>();
    for (const [site, cfg] of exports) {
      const key = JSON.stringify(cfg);
      const cur = this.targets.get(site);
      if (cur && cur.key === key) {
        next.set(site, cur);
        continue;
      }
      const t = newTarget(site, cfg, key);
      // Other settings for the same files (a fixed run, a longer timeout): what was exported stays known, and a command still owed runs.
      if (cur && cur.cfg.cert === cfg.cert && cur.cfg.key === cfg.key) Object.assign(t, { exported: cur.exported, runFor: cur.runFor });
      next.set(site, t);
    }
    for (const [site, t] of this.targets) {
      if (next.get(site) === t) continue;
      this.stop(t);
      if (!next.has(site)) for (const m of [certificateExports, certificateExportRuns, certificateExportCurrent]) m.retain((v) => v[0] !== site);
    }
    this.targets = next;
  }

  /** offer hands the certificate a site serves now (obtained, renewed, adopted or loaded) to its export, if it has one; the files change only if it differs. */
  offer(site: string, hosts: readonly string[], bundle: CertBundle | undefined): void {
    const t = this.targets.get(site);
    if (!t || !bundle) return;
    t.hosts = hosts;
    t.bundle = bundle;
    this.kick(t);
  }

  /** describe is a site's export state for GET /certificates and /status; null when it has no [export]. */
  describe(site: string): Record<string, unknown> | null {
    const t = this.targets.get(site);
    if (!t) return null;
    const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
    return {
      cert: t.cfg.cert,
      key: t.cfg.key,
      run: t.cfg.run ?? null,
      exported_fingerprint: t.exported ?? null,
      last_result: t.lastResult ?? null,
      last_time: iso(t.lastTime),
      failures: t.failures,
      last_error: t.lastError ?? null,
      next_retry: iso(t.nextRetry),
      last_run: t.lastRun
        ? { at: iso(t.lastRun.at), exit: t.lastRun.exit, signal: t.lastRun.signal, timed_out: t.lastRun.timedOut, ms: t.lastRun.ms, output: t.lastRun.output }
        : null,
    };
  }

  /** dispose stops every retry (gatehouse is stopping); a command still running is ended with its group, the marker beside its chain keeps it owed. */
  dispose(): void {
    for (const t of this.targets.values()) this.stop(t);
    this.targets = new Map();
    endCommands();
  }

  private stop(t: ExportTarget): void {
    t.disposed = true;
    clearTimeout(t.timer);
  }

  private kick(t: ExportTarget): void {
    if (t.disposed) return;
    if (t.busy) {
      t.again = true;
      return;
    }
    clearTimeout(t.timer);
    t.timer = undefined;
    t.nextRetry = undefined;
    void this.sync(t);
  }

  private async sync(t: ExportTarget): Promise<void> {
    t.busy = true;
    try {
      do {
        t.again = false;
        await this.attempt(t);
      } while (t.again && !t.disposed);
    } catch (e) {
      this.failed(t, "failure", `unexpected: ${String((e as Error)?.stack ?? e)}`);
    } finally {
      t.busy = false;
    }
  }

  /** attempt brings t's files to its certificate, then runs its command when the files changed (or its last run failed). */
  private async attempt(t: ExportTarget): Promise<void> {
    const b = t.bundle;
    if (!b || t.disposed) return;
    const { cfg, site } = t;
    try {
      verify(b, t.hosts);
    } catch (e) {
      // Not retried: the next certificate the site gets is offered again.
      Object.assign(t, { lastResult: "refused", lastError: `not exported: ${(e as Error).message}`, lastTime: Date.now() });
      certificateExports.labels(site, "refused").value++;
      if (!t.disposed) certificateExportCurrent.labels(site).value = 0;
      log.error("certificate not exported: it fails verification", { site, cert: cfg.cert, problem: (e as Error).message });
      return;
    }
    const same = holds(cfg.key, b.keyPem, cfg.keyMode, cfg.gid) && holds(cfg.cert, b.certPem, cfg.certMode, cfg.gid);
    if (!same) {
      // The contents differ (or only the mode or group): the command runs only for another certificate, not for a chmod.
      const changed = readOr(cfg.cert) !== b.certPem || readOr(cfg.key) !== b.keyPem;
      try {
        // Both files written first, then both renamed: a failure leaves the old pair in place, never a new key beside an old chain.
        const key = prepareFileAtomic(cfg.key, b.keyPem, cfg.keyMode, true, undefined, { gid: cfg.gid });
        let cert: Prepared;
        try {
          cert = prepareFileAtomic(cfg.cert, b.certPem, cfg.certMode, true, undefined, { gid: cfg.gid });
        } catch (e) {
          key.discard();
          throw e;
        }
        // Noted before the files change: a stop between the two must not lose the command.
        if (changed && cfg.run) owe(cfg.cert, b.fingerprint);
        key.commit();
        cert.commit();
      } catch (e) {
        certificateExports.labels(site, "failure").value++;
        this.failed(t, "failure", `cannot write ${(e as NodeJS.ErrnoException).path ?? cfg.cert}: ${(e as Error).message}`);
        return;
      }
      certificateExports.labels(site, "written").value++;
      log.info("certificate exported", { site, cert: cfg.cert, key: cfg.key, names: b.names, not_after: new Date(b.notAfter).toISOString(), changed });
      if (changed) t.runFor = b.fingerprint;
    } else if (t.exported !== b.fingerprint) {
      certificateExports.labels(site, "unchanged").value++;
      log.info("exported certificate is current", { site, cert: cfg.cert });
      // A command a previous run of gatehouse still owed for this certificate (it failed, or gatehouse stopped first).
      if (cfg.run && readOr(owedPath(cfg.cert))?.trim() === b.fingerprint) t.runFor = b.fingerprint;
    }
    t.exported = b.fingerprint;
    if (t.runFor === b.fingerprint && cfg.run) {
      const r = await runCommand(cfg.run, cfg.timeout);
      t.lastRun = { ...r, at: Date.now() };
      const ok = r.exit === 0 && !r.timedOut;
      certificateExportRuns.labels(site, ok ? "success" : r.timedOut ? "timeout" : "failure").value++;
      const fields = { site, argv: cfg.run, exit: r.exit, signal: r.signal, ms: r.ms, output: r.output };
      if (!ok) {
        this.failed(t, r.timedOut ? "timeout" : "failure", `command ${JSON.stringify(cfg.run[0])}: ${runSummary(r)}`, fields);
        return;
      }
      log.info("export command ran", fields);
      try {
        rmSync(owedPath(cfg.cert), { force: true });
      } catch {
        // left behind, the marker costs one more run after a restart
      }
    }
    t.runFor = undefined;
    Object.assign(t, { failures: 0, lastError: undefined, lastResult: "ok", lastTime: Date.now(), nextRetry: undefined });
    if (!t.disposed) certificateExportCurrent.labels(site).value = 1; // a site a reload removed meanwhile keeps no series
  }

  /** failed records a failed write or command and schedules the retry with backoff. */
  private failed(t: ExportTarget, result: string, error: string, fields: Record<string, unknown> = {}): void {
    // Stopping (or the site left the config): a command ended with gatehouse is owed, not failed; the marker beside the chain runs it after the next start.
    if (t.disposed) return;
    t.failures++;
    const delay = retryDelay(t.failures, { min: EXPORT_RETRY_MIN_MS, max: EXPORT_RETRY_MAX_MS });
    Object.assign(t, { lastResult: result, lastError: error, lastTime: Date.now(), nextRetry: Date.now() + delay });
    certificateExportCurrent.labels(t.site).value = 0;
    log.error("certificate export failed; retrying", { site: t.site, error, failures: t.failures, retry_in_s: Math.round(delay / 1000), ...fields });
    clearTimeout(t.timer);
    t.timer = setTimeout(() => this.kick(t), delay);
    t.timer.unref?.();
  }
}

function newTarget(site: string, cfg: ExportConfig, key: string): ExportTarget {
  return {
    site,
    cfg,
    key,
    hosts: [],
    bundle: undefined,
    runFor: undefined,
    exported: undefined,
    busy: false,
    again: false,
    failures: 0,
    lastError: undefined,
    lastResult: undefined,
    lastTime: undefined,
    lastRun: undefined,
    timer: undefined,
    nextRetry: undefined,
    disposed: false,
  };
}
