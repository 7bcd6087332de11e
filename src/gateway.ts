/** The running gateway: loads config, owns the live generation and the listeners, reloads atomically and drains on shutdown. */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { loadConfig, type ConfigFiles } from "./config/load.ts";
import { ConfigError, formatProblem } from "./config/problems.ts";
import type { Config } from "./config/types.ts";
import { buildGeneration, type Generation } from "./generation.ts";
import { writeFileAtomic } from "./lib/atomic-write.ts";
import { adminApp } from "./observability/admin.ts";
import { configLastReloadSuccess, configLastReloadTime, configReloads, setHealthCollector, setInflightCollector } from "./observability/gateway-metrics.ts";
import { log } from "./observability/log.ts";
import { createFetchHandler } from "./proxy/handler.ts";
import { openSockets } from "./proxy/websocket.ts";
import { Listeners } from "./server.ts";
import { ResponseCache } from "./cache/response-cache.ts";
import { CertManager, type CertPlan } from "./tls/cert-manager.ts";
import { EndpointRegistry } from "./upstream/endpoint.ts";
import { DiscoveryRegistry } from "./upstream/discovery-registry.ts";
import { HealthChecks } from "./upstream/health-check.ts";
import type { TlsSet } from "./server.ts";

/** ReloadStatus is what the instance writes next to its pid file after each (re)load, for `gatehouse reload` to read. */
export type ReloadStatus = { pid: number; seq: number; result: "success" | "failure"; time: string; problems: string[] };

/** statusPath is where the reload status of the instance with this pid file lives. */
export function statusPath(pidFile: string): string {
  return `${pidFile}.status`;
}

/** GatewayOptions say where the config is and, for the built-in default, its text. */
export type GatewayOptions = { readonly configPath: string; readonly files?: ConfigFiles; readonly pid: number };

function problemsOf(e: unknown): string[] {
  return e instanceof ConfigError ? e.problems.map(formatProblem) : [String((e as Error)?.message ?? e)];
}

/** Gateway is the process's one instance: start(), reload() any number of times, then shutdown(). */
export class Gateway {
  private gen: Generation | undefined;
  private nextId = 1;
  private draining = false;
  private seq = 0;
  private pidFile: string | undefined;
  private reloadChain: Promise<unknown> = Promise.resolve();
  private readonly endpoints = new EndpointRegistry();
  private readonly health = new HealthChecks();
  private readonly discovery = new DiscoveryRegistry();
  /** building is the generation being activated (between build and swap), whose endpoints must not be forgotten meanwhile. */
  private building: Generation | undefined;
  private readonly listeners: Listeners;
  private readonly certs = new CertManager(() => void this.certificatesChanged());
  /** cache is created with the defaults and sized by each config as it goes live. */
  private readonly cache = new ResponseCache(256 * 1024 ** 2, 8 * 1024 ** 2);

  constructor(private readonly opts: GatewayOptions) {
    const admin = adminApp({
      ready: () => this.gen !== undefined && !this.draining,
      certificates: () => this.certs.describe(),
      renewCertificate: (name) => this.certs.renewNow(name),
      purge: (filter) => this.cache.purge(filter),
      upstreams: () => this.endpoints.describe(performance.now()),
    });
    this.listeners = new Listeners({ http: createFetchHandler(() => this.gen!.view, "http"), https: createFetchHandler(() => this.gen!.view, "https"), admin: admin.fetch });
    setHealthCollector((g) => {
      g.retain(() => false);
      const now = performance.now();
      for (const e of this.endpoints.all()) g.labels(e.route, e.url).value = e.available(now) ? 1 : 0;
    });
    setInflightCollector((g) => (g.labels().value = this.listeners.pending()));
  }

  /** config is the live configuration. */
  get config(): Config | undefined {
    return this.gen?.config;
  }

  private load(): Config {
    return loadConfig(this.opts.configPath, this.opts.files);
  }

  /** poolsChanged follows DNS discovery: new endpoints of the live generation get their health checks, departed ones lose them (and their metric series); the endpoints of a generation being built are kept too. */
  private poolsChanged(gen: Generation): void {
    if (this.gen !== gen) return;
    const keep = gen.endpoints();
    if (this.building) for (const e of this.building.endpoints()) keep.add(e);
    this.endpoints.retain(keep);
    this.health.reconcile(gen.health());
  }

  private tlsSet(plan?: CertPlan): TlsSet {
    const entries = this.certs.entries(plan);
    return { entries, digest: entries.map((e) => `${e.serverName ?? ""}=${e.fingerprint}`).join(",") };
  }

  /** certificatesChanged swaps the HTTPS listener to the certificates the registry serves now (after a renewal or a first issuance); it waits for any reload in progress. */
  private certificatesChanged(): Promise<unknown> {
    const run = this.reloadChain.then(() => {
      if (!this.gen || this.draining) return;
      try {
        this.listeners.apply(this.gen.config.global.listen, this.tlsSet());
      } catch (e) {
        log.error("cannot start the HTTPS listener with the new certificates; the old one keeps serving", { error: String((e as Error).message ?? e) });
      }
    });
    this.reloadChain = run;
    return run;
  }

  private async activate(config: Config): Promise<Generation> {
    const g = config.global;
    const gen = buildGeneration(config, { endpoints: this.endpoints, discovery: this.discovery, listenerIdleMs: g.listen.idleTimeout, cache: this.cache, poolsChanged: () => this.poolsChanged(gen) }, this.nextId++);
    this.building = gen;
    try {
      await this.discovery.ready(gen.discoveries);
      const plan = await this.certs.prepare(config);
      this.listeners.apply(g.listen, g.listen.https ? this.tlsSet(plan) : undefined);
      this.certs.commit(plan); // only now: a config whose listeners failed to bind changes no certificate state
    } catch (e) {
      // A half-built generation leaves nothing behind: no discovery subscriptions, no discoveries only it started.
      gen.dispose();
      this.discovery.retain(this.gen?.discoveries ?? new Set());
      throw e;
    } finally {
      this.building = undefined;
    }
    this.cache.configure(g.cache.maxSize, g.cache.maxObjectSize);
    const old = this.gen;
    this.gen = gen; // the swap: requests that arrive from now on see the new generation
    old?.dispose();
    this.endpoints.retain(gen.endpoints());
    this.health.reconcile(gen.health());
    this.discovery.retain(gen.discoveries);
    log.setLevel(g.log.level);
    log.access = g.log.access;
    return gen;
  }

  private writeStatus(result: "success" | "failure", problems: string[]): void {
    if (this.seq > 0) configReloads.labels(result).value++; // the start (seq 0) is not a reload
    configLastReloadSuccess.labels().value = result === "success" ? 1 : 0;
    configLastReloadTime.labels().value = Date.now() / 1000;
    if (!this.pidFile) return;
    const status: ReloadStatus = { pid: this.opts.pid, seq: this.seq, result, time: new Date().toISOString(), problems };
    try {
      writeFileAtomic(statusPath(this.pidFile), JSON.stringify(status) + "\n");
    } catch (e) {
      log.warn("cannot write the reload status file", { path: statusPath(this.pidFile), error: String(e) });
    }
  }

  /** start loads the config and binds the listeners; throws ConfigError (or a bind error) and binds nothing when that fails. */
  async start(): Promise<void> {
    const config = this.load();
    const gen = await this.activate(config);
    this.pidFile = config.global.pidFile;
    try {
      writeFileAtomic(this.pidFile, `${this.opts.pid}\n`);
    } catch (e) {
      log.warn("cannot write the pid file; `gatehouse reload` will not find this instance", { path: this.pidFile, error: String(e) });
      this.pidFile = undefined;
    }
    this.writeStatus("success", []);
    log.info("started", { config: config.global.file, sites: config.sites.length, routes: gen.routeNames.size, generation: gen.id });
  }

  /** reload re-reads everything and swaps atomically; on any problem the running config stays and the problems are logged in `gatehouse check` format. Reloads run one at a time. */
  reload(): Promise<boolean> {
    const run = this.reloadChain.then(() => this.reloadNow());
    this.reloadChain = run;
    return run;
  }

  private async reloadNow(): Promise<boolean> {
    if (this.draining) return false;
    const t0 = performance.now();
    this.seq++;
    try {
      const gen = await this.activate(this.load());
      this.writeStatus("success", []);
      log.info("config reloaded", { generation: gen.id, sites: gen.config.sites.length, routes: gen.routeNames.size, ms: Math.round((performance.now() - t0) * 10) / 10 });
      return true;
    } catch (e) {
      const problems = problemsOf(e);
      this.writeStatus("failure", problems);
      log.error("config rejected; the running config stays", { problems, generation: this.gen?.id });
      return false;
    }
  }

  /** shutdown stops accepting, lets in-flight requests finish within graceMs, closes WebSockets with 1001, then everything. */
  async shutdown(graceMs: number): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.certs.dispose();
    this.health.stopAll();
    this.discovery.retain(new Set());
    log.info("draining", { inflight: this.listeners.pending(), websockets: openSockets.size, grace_ms: graceMs });
    for (const ws of openSockets) ws.close(1001, "gateway shutting down");
    let timer: Timer | undefined;
    const expired = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs)));
    const timedOut = await Promise.race([this.listeners.closePublic(false).then(() => false), expired]);
    clearTimeout(timer);
    if (timedOut) {
      log.warn("grace period over; closing the remaining connections", { inflight: this.listeners.pending() });
      await this.listeners.closePublic(true);
    }
    await this.listeners.closeAll();
    if (this.pidFile && existsSync(this.pidFile) && readFileSync(this.pidFile, "utf8").trim() === String(this.opts.pid)) {
      rmSync(this.pidFile, { force: true });
      rmSync(statusPath(this.pidFile), { force: true });
    }
    log.info("stopped");
    log.flushNow();
  }

  /** inflight is the number of requests being answered now. */
  inflight(): number {
    return this.listeners.pending();
  }
}

