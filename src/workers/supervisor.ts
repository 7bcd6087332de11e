/** The supervisor of `workers = N`: validates the config, holds the admin listener and the certificates (ACME in one place), runs N worker processes on shared public listeners, restarts them, relays reloads and merges their metrics. */
import { Http01Tokens } from "../tls/acme/http01.ts";
import { AlpnChallenges } from "../tls/acme/tls-alpn01.ts";
import { loadConfigSnapshot, loadConfigSnapshotAsync, type ConfigFiles } from "../config/load.ts";
import type { Config, GlobalConfig } from "../config/types.ts";
import { problemLines } from "../config/problems.ts";
import { recordReload, removePidFile, writePidFile, type ReloadOutcome, type ReloadStatus } from "../instance-files.ts";
import { adminAllows } from "../proxy/policy/admin-access.ts";
import { adminApp, type AdminState } from "../observability/admin.ts";
import { ReloadHistory } from "../observability/reload-history.ts";
import { gatherStatus } from "../observability/status-data.ts";
import { log } from "../observability/log.ts";
import { assertFree, Listeners, sameAddress } from "../front/listeners.ts";
import { SharedPurges } from "../shared-purges.ts";
import { assertTcpFree } from "../tcp/routes.ts";
import { CertManager } from "../tls/cert-manager.ts";
import { openStorage } from "../tls/storage-open.ts";
import { Fleet } from "./fleet.ts";
import type { DistributiveOmit, Request } from "./protocol.ts";
import { WorkerGone, type SpawnSpec } from "./worker-process.ts";
import { WorkerSet } from "./worker-set.ts";

/** SupervisorTimings are the supervisor's waits, in ms (tests shorten them). */
export type SupervisorTimings = {
  /** start: how long the start waits for every worker to be ready. */
  readonly start: number;
  /** reload: how long a worker may take to answer a reload, a purge or a `certs` message. */
  readonly reload: number;
  readonly scrape: number;
  readonly challenge: number;
  /**
   * certsRetries: how many more times a worker that did not take new certificates is asked (after certsBackoff, doubling) before it is killed, so that its
   * replacement loads them from storage.
   */
  readonly certsRetries: number;
  readonly certsBackoff: number;
};

const DEFAULT_TIMINGS: SupervisorTimings = { start: 30_000, reload: 60_000, scrape: 2_000, challenge: 5_000, certsRetries: 3, certsBackoff: 1_000 };

/** SupervisorOptions: the config file, this process's pid, how to start worker `index` (main.ts knows the executable), and optionally other timings. */
export type SupervisorOptions = {
  readonly configPath: string;
  readonly pid: number;
  readonly spawn: (index: number) => SpawnSpec;
  readonly timings?: Partial<SupervisorTimings>;
  /** takeover: this supervisor replaces a running instance (`gatehouse upgrade`): its admin listener and its workers' listeners bind beside the old ones. */
  readonly takeover?: boolean;
};

/** StartCancelled is the error of a start that shutdown() stopped (SIGTERM during the start): not a failure, nothing to report. */
export class StartCancelled extends Error {
  constructor() {
    super("stopped while starting");
  }
}

function adminOnly(listen: GlobalConfig["listen"]): GlobalConfig["listen"] {
  return { ...listen, http: undefined, https: undefined };
}

/** Supervisor is the process's one instance when workers > 1: start(), reload() any number of times, then shutdown(). */
export class Supervisor {
  private live: Config | undefined;
  /** startingGlobal is the config.toml of the first start until it is live: [admin] allow applies from the admin listener's first request. */
  private startingGlobal: GlobalConfig | undefined;
  private files: ConfigFiles | undefined;
  /** filesSeq numbers the snapshots; each worker remembers the one it runs. */
  private filesSeq = 0;
  private readonly workers: WorkerSet;
  private starting = true;
  private draining = false;
  private seq = 0;
  private pidFile: string | undefined;
  private reloadChain: Promise<unknown> = Promise.resolve();
  /** reloads are the last (re)load outcomes, for the status page. */
  private readonly reloads = new ReloadHistory();
  /** stopping is the one shutdown; a second SIGTERM waits for the same. */
  private stopping: Promise<void> | undefined;
  /** cancelStart makes a start in progress give up (shutdown during the start); startSettled resolves when start() has returned or thrown. */
  private cancelStart: (() => void) | undefined;
  private startSettled: Promise<void> = Promise.resolve();
  private readonly t: SupervisorTimings;
  /** challenges are the HTTP-01 tokens the supervisor's issuer publishes; its publisher carries them to every worker. */
  private readonly challenges = new Http01Tokens();
  /** alpnChallenges are the TLS-ALPN-01 certificates its issuer publishes, kept (no public listener here) and carried to every worker. */
  private readonly alpnChallenges = new AlpnChallenges();
  private readonly certs = new CertManager(() => void this.certificatesChanged(), {
    storage: openStorage,
    challenges: this.challenges,
    alpnChallenges: this.alpnChallenges,
    sharedStorage: (st) => this.purges.use(st),
  });
  /** purges are the cache purges shared with other nodes, applied to every worker. */
  private readonly purges = new SharedPurges((filter) => this.fleet.purge(filter));
  private readonly listeners: Listeners;
  private readonly fleet: Fleet;

  constructor(private readonly opts: SupervisorOptions) {
    this.t = { ...DEFAULT_TIMINGS, ...opts.timings };
    this.workers = new WorkerSet({
      spawn: opts.spawn,
      init: () => ({ t: "init", files: this.files!, tokens: this.challenges.pending(), alpn: this.alpnChallenges.pending() }),
      configSeq: () => this.filesSeq,
      starting: () => this.starting,
      exited: (w) => this.fleet.retire(w),
    });
    this.fleet = new Fleet(this.workers, this.t);
    const state: AdminState = {
      // One ready worker serves: a worker that crash-loops must not take the node out of its load balancer (per worker: /workers, gatehouse_workers).
      ready: () => this.live !== undefined && !this.draining && !this.starting && this.workers.anyReady(),
      certificates: () => this.certs.describe(),
      renewCertificate: (name) => this.certs.renewNow(name),
      purge: (filter) => this.fleet.purge(filter),
      sharePurge: (filter) => this.purges.share(filter),
      upstreams: () => this.fleet.upstreams(),
      metrics: () => this.fleet.metrics(),
      workers: () => this.workers.describe(),
      // Before the first config is live, the one being started judges: the admin listener is bound before certificates are prepared.
      allowed: (ip) => adminAllows(this.live?.global ?? this.startingGlobal, ip),
      status: () => gatherStatus(state, this.live, this.reloads.list()),
    };
    const unused = () => new Response(null, { status: 500 });
    this.listeners = new Listeners({ front: { http: unused, https: unused }, https: unused, admin: adminApp(state).fetch }, { takeover: opts.takeover });
    // HTTP-01 and TLS-ALPN-01: the CA's connection lands on whichever worker accepts it, so every worker must hold the answer before the CA is told to look.
    this.challenges.publisher = {
      publish: (token, keyAuthorization) => this.toEveryWorker("HTTP-01 token", { t: "challenge", token, keyAuthorization }),
      withdraw: async (token) => void (await this.fleet.broadcast({ t: "challenge", token, keyAuthorization: null }, this.t.challenge)),
    };
    this.alpnChallenges.publisher = {
      publish: ({ name, keyAuthorization, cert, key }) =>
        this.toEveryWorker("TLS-ALPN-01 certificate", { t: "alpn-challenge", name, keyAuthorization, pem: { cert, key } }),
      withdraw: async (name, keyAuthorization) =>
        void (await this.fleet.broadcast({ t: "alpn-challenge", name, keyAuthorization, pem: null }, this.t.challenge)),
    };
  }

  /** toEveryWorker hands a challenge answer to every running worker; it throws when one that is still running did not take it. */
  private async toEveryWorker(what: string, msg: DistributiveOmit<Request, "id">): Promise<void> {
    const failed = (await this.fleet.broadcast(msg, this.t.challenge)).filter((o) => !(o.error instanceof WorkerGone) && (o.error || !o.reply?.ok));
    if (failed.length > 0)
      throw new Error(
        `not every worker took the ${what}: ${failed.map((o) => o.error?.message ?? `worker ${o.worker.index}: ${o.reply?.problems?.join("; ")}`).join("; ")}`,
      );
  }

  /** config is the live configuration. */
  get config(): Config | undefined {
    return this.live;
  }

  /**
   * start validates the config, binds the admin listener, prepares the certificates, starts the workers and waits until every one is ready; throws (having
   * stopped whatever it started) when any of that fails, or StartCancelled when shutdown() was called meanwhile.
   */
  start(): Promise<void> {
    const run = this.startNow();
    this.startSettled = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async startNow(): Promise<void> {
    const snap = loadConfigSnapshot(this.opts.configPath);
    const g = snap.config.global;
    const cancelled = new Promise<never>((_, reject) => (this.cancelStart = () => reject(new StartCancelled())));
    cancelled.catch(() => undefined);
    try {
      // Taking over, the old instance holds them until this one serves.
      if (g.listen.http && !this.opts.takeover) assertFree("http", g.listen.http);
      if (g.listen.https && !this.opts.takeover) assertFree("https", g.listen.https);
      if (!this.opts.takeover) for (const t of g.tcp) assertTcpFree(t);
      this.startingGlobal = g;
      this.listeners.apply(adminOnly(g.listen), undefined);
      this.applyLog(g);
      const plan = await Promise.race([this.certs.prepare(snap.config), cancelled]);
      this.live = snap.config;
      this.files = snap.files;
      this.filesSeq++;
      this.workers.resize(g.workers);
      this.workers.assertSpawned();
      let timer: Timer | undefined;
      const timeout = new Promise<never>(
        (_, reject) => (timer = setTimeout(() => reject(new Error(`the workers were not ready within ${this.t.start / 1000} s`)), this.t.start)),
      );
      try {
        await Promise.race([this.workers.allStarted(), timeout, cancelled]);
      } finally {
        clearTimeout(timer);
      }
      // Only now: ACME orders need a listener that answers HTTP-01.
      this.certs.commit(plan);
    } catch (e) {
      this.draining = true;
      this.cancelStart = undefined;
      this.certs.dispose();
      this.purges.stop();
      await this.workers.stopAll(1000);
      await this.listeners.closeAll();
      throw e;
    }
    this.cancelStart = undefined;
    this.starting = false;
    this.pidFile = writePidFile(g.pidFile, this.opts.pid);
    this.record({ pid: this.opts.pid, seq: 0, result: "success", time: new Date().toISOString(), problems: [] });
    log.info("started", { config: g.file, sites: snap.config.sites.length, workers: g.workers, pids: this.workers.pids() });
  }

  /** record counts a (re)load outcome in the metrics and the status file, and keeps it for the status page. */
  private record(status: ReloadStatus): void {
    recordReload(status, this.pidFile);
    this.reloads.add(status);
  }

  private applyLog(g: GlobalConfig): void {
    log.setLevel(g.log.level);
    log.access = g.log.access;
  }

  /**
   * certificatesChanged tells every worker to serve the certificates the supervisor has just stored (an issuance or renewal). A worker that does not take them
   * is asked again (certsRetries times, backing off), then killed: its replacement loads them from storage.
   */
  private async certificatesChanged(): Promise<void> {
    let to = this.workers.running();
    for (let attempt = 0; to.length > 0; attempt++) {
      const failed = (await this.fleet.broadcast({ t: "certs" }, this.t.reload, to)).filter(
        (o) => !(o.error instanceof WorkerGone) && (o.error || !o.reply?.ok),
      );
      // Only workers still running (not restarted or stopped meanwhile: a new one loads storage at its start).
      to = failed.map((o) => o.worker).filter((w) => w.alive && this.workers.isCurrent(w));
      if (to.length === 0 || this.draining) return;
      const last = attempt >= this.t.certsRetries;
      const delay = this.t.certsBackoff * 2 ** attempt;
      for (const o of failed) {
        if (!to.includes(o.worker)) continue;
        const fields = { worker: o.worker.index, pid: o.worker.pid, error: o.error?.message ?? o.reply?.problems };
        if (last) log.error("a worker did not take the new certificates; killing it so that its replacement loads them", fields);
        else log.warn("a worker did not take the new certificates; asking again", { ...fields, retry_in_ms: delay });
      }
      if (last) {
        for (const w of to) w.kill("SIGKILL");
        return;
      }
      await Bun.sleep(delay);
    }
  }

  /**
   * reload validates the config again, prepares its certificates, and relays it to every worker; it is live only when all of them took it (the others are put
   * back). Reloads run one at a time; every reload ends with a status, whatever fails.
   */
  reload(): Promise<ReloadOutcome> {
    const run = this.reloadChain.then(() => this.reloadNow()).catch((e: unknown) => this.failed(e));
    this.reloadChain = run.catch(() => undefined);
    return run;
  }

  /**
   * failed reports a reload that threw instead of returning its outcome (after the new config went live, or a bug): a failure in the status file, so `gatehouse
   * reload` hears of it.
   */
  private failed(e: unknown): ReloadOutcome {
    const problems = problemLines(e).map((p) => `reload failed: ${p}`);
    this.record({ pid: this.opts.pid, seq: this.seq, result: "failure", time: new Date().toISOString(), problems });
    log.error("reload failed", { problems });
    return { ok: false, problems };
  }

  private rejected(problems: string[]): ReloadOutcome {
    this.record({ pid: this.opts.pid, seq: this.seq, result: "failure", time: new Date().toISOString(), problems });
    log.error("config rejected; the running config stays", { problems });
    return { ok: false, problems };
  }

  private async reloadNow(): Promise<ReloadOutcome> {
    if (this.draining || !this.live) return { ok: false, problems: ["the gateway is shutting down"] };
    const t0 = performance.now();
    this.seq++;
    let snap: ReturnType<typeof loadConfigSnapshot>;
    let plan: Awaited<ReturnType<CertManager["prepare"]>>;
    try {
      snap = await loadConfigSnapshotAsync(this.opts.configPath);
      const next = snap.config.global.listen;
      const cur = this.live.global.listen;
      for (const kind of ["http", "https", "admin"] as const) if (next[kind] && !sameAddress(next[kind], cur[kind])) assertFree(kind, next[kind]);
      // The workers bind a [[tcp]] route's new address beside each other (SO_REUSEPORT): it must be free of strangers first.
      for (const t of snap.config.global.tcp) if (!this.live.global.tcp.some((o) => sameAddress(o.listen, t.listen))) assertTcpFree(t);
      plan = await this.certs.prepare(snap.config);
    } catch (e) {
      return this.rejected(problemLines(e));
    }
    const seq = this.filesSeq + 1;
    const outcomes = await this.fleet.broadcast({ t: "reload", files: snap.files }, this.t.reload);
    if (this.draining) return { ok: false, problems: ["the gateway is shutting down"] };
    const failed = outcomes.filter((o) => !(o.error instanceof WorkerGone) && (o.error || !o.reply?.ok));
    if (failed.length > 0) {
      // A worker that did not answer (in time) still has the reload queued and may apply it later, on its own: it is killed, and its
      // replacement starts on the running config. (Putting it back too would queue behind the same stuck reload, and a worker that does
      // not answer within a minute is likely wedged; SIGTERM would not be heard by a blocked event loop.)
      for (const o of failed) {
        if (!o.error) continue;
        log.error("a worker did not answer the reload; killing it so that it cannot apply it later", {
          worker: o.worker.index,
          pid: o.worker.pid,
          error: o.error.message,
        });
        o.worker.kill("SIGKILL");
      }
      // All or nothing: workers that took the new config go back to the running one.
      const took = outcomes.filter((o) => o.reply?.ok).map((o) => o.worker);
      for (const o of await this.fleet.broadcast({ t: "reload", files: this.files! }, this.t.reload, took)) {
        if (o.reply?.ok || o.error instanceof WorkerGone) continue;
        log.error("a worker could not go back to the running config; restarting it", { worker: o.worker.index, error: o.error?.message ?? o.reply?.problems });
        o.worker.kill("SIGKILL");
      }
      return this.rejected(
        failed.flatMap((o) => (o.reply?.problems?.length ? o.reply.problems : [o.error?.message ?? "failed"]).map((p) => `worker ${o.worker.index}: ${p}`)),
      );
    }
    for (const o of outcomes) if (o.reply?.ok) o.worker.configSeq = seq;
    this.live = snap.config;
    this.files = snap.files;
    this.filesSeq = seq;
    this.certs.commit(plan);
    const g = snap.config.global;
    try {
      this.listeners.apply(adminOnly(g.listen), undefined);
    } catch (e) {
      log.error("cannot bind the new admin listener; the old one keeps serving", { error: String((e as Error).message ?? e) });
    }
    this.applyLog(g);
    if (g.workers !== this.workers.size) log.info("workers changed", { from: this.workers.size, to: g.workers });
    this.workers.resize(g.workers);
    this.catchUp();
    this.record({ pid: this.opts.pid, seq: this.seq, result: "success", time: new Date().toISOString(), problems: [] });
    log.info("config reloaded", { sites: snap.config.sites.length, workers: g.workers, ms: Math.round((performance.now() - t0) * 10) / 10 });
    return { ok: true, problems: [] };
  }

  /** catchUp gives the live snapshot to workers that were (re)started with an older one while a reload ran; one that cannot take it is restarted. */
  private catchUp(): void {
    const behind = this.workers.running().filter((w) => w.configSeq !== this.filesSeq);
    if (behind.length === 0) return;
    const seq = this.filesSeq;
    void this.fleet.broadcast({ t: "reload", files: this.files! }, this.t.reload, behind).then((outcomes) => {
      for (const o of outcomes) {
        if (o.reply?.ok) o.worker.configSeq = seq;
        else if (!(o.error instanceof WorkerGone)) o.worker.kill("SIGKILL");
      }
    });
  }

  /** handOver closes the admin listener at once: the instance that replaces this one (`gatehouse upgrade`) answers there while this one drains. */
  handOver(): Promise<void> {
    return this.listeners.closeAdmin();
  }

  /**
   * shutdown relays SIGTERM to every worker (they drain within graceMs), waits for them, then closes the admin listener and removes the pid file. During the
   * start it cancels the start (which stops what it started). Called again, it returns the same promise.
   */
  shutdown(graceMs: number): Promise<void> {
    return (this.stopping ??= this.stop(graceMs));
  }

  private async stop(graceMs: number): Promise<void> {
    if (this.starting) {
      this.cancelStart?.();
      await this.startSettled;
      if (this.starting) {
        // The start was cancelled or failed: it has stopped the workers and closed the listeners.
        log.info("stopped");
        log.flushNow();
        return;
      }
    }
    if (this.draining) return;
    this.draining = true;
    this.certs.dispose();
    this.purges.stop();
    log.info("draining", { workers: this.workers.running().length, grace_ms: graceMs });
    await this.workers.stopAll(graceMs + 5000);
    await this.listeners.closeAll();
    removePidFile(this.pidFile, this.opts.pid);
    log.info("stopped");
    log.flushNow();
  }
}
