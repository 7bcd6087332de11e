/** The running gateway: loads config, owns the live generation and the listeners, reloads atomically and drains on shutdown. */
import { loadConfig, loadConfigSnapshotAsync, type ConfigFiles } from "./config/load.ts";
import { yieldToRequests } from "./lib/slices.ts";
import { problemLines } from "./config/problems.ts";
import type { Config } from "./config/types.ts";
import { buildGeneration, buildGenerationAsync, type Generation } from "./generation.ts";
import { recordReload, removePidFile, writePidFile, type ReloadOutcome } from "./instance-files.ts";
import { adminAllows } from "./proxy/policy/admin-access.ts";
import { adminApp, type AdminState } from "./observability/admin.ts";
import { ReloadHistory } from "./observability/reload-history.ts";
import { gatherStatus } from "./observability/status-data.ts";
import { setHealthCollector, setInflightCollector } from "./observability/gateway-metrics.ts";
import { log } from "./observability/log.ts";
import { createFetchHandler } from "./proxy/bun-serve.ts";
import { frontHandler, frontRefused } from "./front/entry.ts";
import { frontSettings } from "./front/settings.ts";
import { openSockets } from "./proxy/websocket.ts";
import { openPipes } from "./front/tunnel.ts";
import { Listeners } from "./front/listeners.ts";
import { ResponseCache } from "./cache/response-cache.ts";
import { Http01Tokens } from "./tls/acme/http01.ts";
import { AlpnChallenges } from "./tls/acme/tls-alpn01.ts";
import { nativeOf } from "./front/tls-contexts.ts";
import { CertManager, type CertPlan } from "./tls/cert-manager.ts";
import { SharedPurges } from "./shared-purges.ts";
import { openStorage } from "./tls/storage-open.ts";
import { EndpointRegistry } from "./upstream/endpoint.ts";
import { DiscoveryRegistry } from "./upstream/discovery-registry.ts";
import { HealthChecks } from "./upstream/health-check.ts";
import type { TlsSet } from "./front/listeners.ts";
import { TcpRoutes } from "./tcp/routes.ts";
import { cidrMatcher } from "./lib/cidr.ts";
import { parseAddress } from "./config/locations.ts";

/** GatewayOptions say where the config is and, for the built-in default (or a worker's snapshot from its supervisor), its text. */
export type GatewayOptions = {
  readonly configPath: string;
  readonly files?: ConfigFiles;
  readonly pid: number;
  /**
   * worker: one of several worker processes under a supervisor: public listeners shared with its siblings (SO_REUSEPORT), no admin listener, no pid or status
   * file, certificates only loaded from storage (the supervisor obtains them).
   */
  readonly worker?: boolean;
  /** takeover: this instance replaces a running one (`gatehouse upgrade`): it binds its listeners beside the old instance's, which drains once this one serves. */
  readonly takeover?: boolean;
  /**
   * challenges: the HTTP-01 tokens to answer (a worker passes the table its supervisor fills, also before the gateway starts); default: a new one of this
   * gateway's own.
   */
  readonly challenges?: Http01Tokens;
  /** alpnChallenges: the TLS-ALPN-01 certificates to serve, like challenges (made with front/tls-contexts.ts's nativeOf); default: a new table of its own. */
  readonly alpnChallenges?: AlpnChallenges;
};

/** Gateway is the process's one instance: start(), reload() any number of times, then shutdown(). */
export class Gateway {
  private gen: Generation | undefined;
  private nextId = 1;
  private draining = false;
  private seq = 0;
  private pidFile: string | undefined;
  private reloadChain: Promise<unknown> = Promise.resolve();
  /** reloads are the last (re)load outcomes, for the status page. */
  private readonly reloads = new ReloadHistory();
  private readonly endpoints = new EndpointRegistry();
  private readonly health = new HealthChecks();
  private readonly discovery = new DiscoveryRegistry();
  /** building is the generation being activated (between build and swap), whose endpoints must not be forgotten meanwhile. */
  private building: Generation | undefined;
  /** compiling is set while a sliced build runs (before `building` exists). */
  private compiling = false;
  private readonly listeners: Listeners;
  /** tcp are the [[tcp]] routes' listeners, endpoints and connections. */
  private readonly tcp: TcpRoutes;
  private readonly certs: CertManager;
  /** purges are the cache purges shared with other nodes (a worker has none: its supervisor shares). */
  private readonly purges = new SharedPurges((filter) => this.cache.purge(filter));
  /** challenges are the HTTP-01 tokens this gateway's issuer publishes and its plain HTTP listener answers. */
  private readonly challenges: Http01Tokens;
  /** files are the texts of the live config when they came from memory (built-in default, a supervisor's snapshot); undefined: read from disk. */
  private files: ConfigFiles | undefined;
  /** state is what the admin API asks; a worker's supervisor asks it over IPC instead. */
  readonly state: AdminState;
  /** cache is created with the defaults and sized by each config as it goes live. */
  private readonly cache = new ResponseCache(256 * 1024 ** 2, 8 * 1024 ** 2);

  constructor(private readonly opts: GatewayOptions) {
    this.files = opts.files;
    this.challenges = opts.challenges ?? new Http01Tokens();
    // The TLS-ALPN-01 certificates this gateway's issuer publishes and its HTTPS listener serves to acme-tls/1 handshakes.
    const alpn = opts.alpnChallenges ?? new AlpnChallenges(nativeOf);
    this.certs = new CertManager(() => void this.certificatesChanged(), {
      storage: openStorage,
      follower: opts.worker,
      challenges: this.challenges,
      alpnChallenges: alpn,
      ...(opts.worker ? {} : { sharedStorage: (st) => this.purges.use(st) }),
    });
    this.state = {
      ready: () => this.gen !== undefined && !this.draining,
      certificates: () => this.certs.describe(),
      renewCertificate: (name) => this.certs.renewNow(name),
      purge: (filter) => this.cache.purge(filter),
      sharePurge: (filter) => this.purges.share(filter),
      upstreams: () => [...this.endpoints.describe(performance.now()), ...this.tcp.describe(performance.now())],
      // At the first start the admin listener is bound while the generation is built: that one judges.
      allowed: (ip) => adminAllows((this.gen ?? this.building)?.config.global, ip),
      status: () => gatherStatus(this.state, this.gen?.config, this.reloads.list()),
    };
    const admin = adminApp(this.state);
    this.listeners = new Listeners(
      {
        front: {
          http: frontHandler(() => this.gen!.view, "http"),
          https: frontHandler(() => this.gen!.view, "https"),
          refused: frontRefused,
          alpnChallenge: (name) => alpn.context(name),
        },
        https: createFetchHandler(() => this.gen!.view, "https"),
        admin: admin.fetch,
      },
      { shared: opts.worker, takeover: opts.takeover },
    );
    // [limits] max_connections and max_connections_per_client count every public listener's connections together, [[tcp]] ones included.
    this.tcp = new TcpRoutes({ shared: opts.worker, takeover: opts.takeover, caps: this.listeners.connectionCaps });
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

  private load(files = this.files): Config {
    return loadConfig(this.opts.configPath, files);
  }

  /** loadLive loads for a reload: without stalling the requests being served. */
  private async loadLive(files = this.files): Promise<Config> {
    return (await loadConfigSnapshotAsync(this.opts.configPath, files)).config;
  }

  /** listen is what this process binds: everything, or in a worker the public listeners only (the supervisor holds the admin one). */
  private listen(g: Config["global"]): Config["global"]["listen"] {
    return this.opts.worker ? { ...g.listen, admin: undefined } : g.listen;
  }

  /**
   * poolsChanged follows DNS discovery: new endpoints of the live generation get their health checks, departed ones lose them (and their metric series); the
   * endpoints of a generation being built are kept too.
   */
  private poolsChanged(gen: Generation): void {
    if (this.gen !== gen) return;
    if (this.compiling) {
      // A sliced build is creating endpoints that no generation holds yet: nothing is forgotten until it is done.
      this.health.reconcile(gen.health());
      return;
    }
    const keep = gen.endpoints();
    if (this.building) for (const e of this.building.endpoints()) keep.add(e);
    this.endpoints.retain(keep);
    this.health.reconcile(gen.health());
  }

  private tlsSet(plan?: CertPlan): TlsSet {
    const entries = this.certs.entries(plan);
    return { entries, digest: entries.map((e) => `${e.serverName ?? ""}=${e.fingerprint}`).join(",") };
  }

  /**
   * certificatesChanged swaps the HTTPS listener to the certificates the registry serves now (after a renewal or a first issuance); it waits for any reload in
   * progress.
   */
  private certificatesChanged(): Promise<unknown> {
    const run = this.reloadChain.then(() => {
      if (!this.gen || this.draining) return;
      try {
        this.listeners.apply(this.listen(this.gen.config.global), this.tlsSet());
      } catch (e) {
        log.error("cannot start the HTTPS listener with the new certificates; the old one keeps serving", { error: String((e as Error).message ?? e) });
      }
      this.tcp.certificates((site) => this.certs.siteEntry(site));
    });
    this.reloadChain = run;
    return run;
  }

  /** activate builds a generation and makes it live; `sliced` (a reload) builds it without stalling the requests being served. */
  private async activate(config: Config, sliced = false): Promise<Generation> {
    const g = config.global;
    let gen: Generation | undefined;
    // Discovery may report changes while a sliced build is under way: they concern this generation only once it exists.
    const deps = {
      endpoints: this.endpoints,
      discovery: this.discovery,
      listenerIdleMs: g.listen.idleTimeout,
      cache: this.cache,
      challenges: this.challenges,
      poolsChanged: () => gen && this.poolsChanged(gen),
    };
    if (sliced) {
      this.compiling = true;
      try {
        gen = await buildGenerationAsync(config, deps, this.nextId++);
      } finally {
        this.compiling = false;
      }
    } else gen = buildGeneration(config, deps, this.nextId++);
    this.building = gen;
    // The [[tcp]] plan while it is neither committed nor aborted.
    let tcp: Awaited<ReturnType<TcpRoutes["prepare"]>> | undefined;
    try {
      await this.discovery.ready(gen.discoveries);
      const plan = await this.certs.prepare(config);
      const trusted = g.listen.proxyProtocol.length > 0 ? cidrMatcher(g.listen.proxyProtocol) : undefined;
      const servers = g.resolver.servers.map((t) => parseAddress(t)!).map((a) => ({ host: a.hostname, port: a.port }));
      tcp = await this.tcp.prepare(g.tcp, (site) => this.certs.siteEntry(site, plan), trusted, servers);
      this.listeners.apply(this.listen(g), g.listen.https ? this.tlsSet(plan) : undefined, frontSettings(g));
      this.certs.commit(plan); // only now: a config whose listeners failed to bind changes no certificate state
      this.tcp.commit(tcp, g.shutdownGrace);
      tcp = undefined;
    } catch (e) {
      // A half-built generation leaves nothing behind: no discovery subscriptions, no discoveries only it started, no [[tcp]] listeners it bound.
      if (tcp !== undefined) this.tcp.abort(tcp);
      gen.dispose();
      this.discovery.retain(this.gen?.discoveries ?? new Set());
      if (this.gen) this.endpoints.retain(this.gen.endpoints()); // nor endpoints (and their metric series) only it made
      throw e;
    } finally {
      this.building = undefined;
    }
    this.cache.configure(g.cache.maxSize, g.cache.maxObjectSize, g.cache.disk, g.cache.passTagFields);
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
    const status = { pid: this.opts.pid, seq: this.seq, result, time: new Date().toISOString(), problems };
    recordReload(status, this.pidFile);
    this.reloads.add(status);
  }

  /** start loads the config and binds the listeners; throws ConfigError (or a bind error) and binds nothing when that fails. */
  async start(): Promise<void> {
    const config = this.load();
    const gen = await this.activate(config);
    if (this.opts.worker) {
      log.info("started", { config: config.global.file, sites: config.sites.length, routes: gen.routeNames.size, generation: gen.id });
      return;
    }
    this.pidFile = writePidFile(config.global.pidFile, this.opts.pid);
    this.writeStatus("success", []);
    log.info("started", { config: config.global.file, sites: config.sites.length, routes: gen.routeNames.size, generation: gen.id });
  }

  /**
   * reload re-reads everything (or takes the given texts: a worker gets its supervisor's snapshot) and swaps atomically; on any problem the running config
   * stays and the problems are logged in `gatehouse check` format. Reloads run one at a time.
   */
  reload(files?: ConfigFiles): Promise<ReloadOutcome> {
    const run = this.reloadChain.then(() => this.reloadNow(files ?? this.files));
    this.reloadChain = run;
    return run;
  }

  private async reloadNow(files: ConfigFiles | undefined): Promise<ReloadOutcome> {
    if (this.draining) return { ok: false, problems: ["the gateway is shutting down"] };
    const t0 = performance.now();
    this.seq++;
    try {
      const config = await this.loadLive(files);
      await yieldToRequests(); // the load's last slice and the build would otherwise run back to back
      const gen = await this.activate(config, true);
      this.files = files;
      this.writeStatus("success", []);
      log.info("config reloaded", {
        generation: gen.id,
        sites: gen.config.sites.length,
        routes: gen.routeNames.size,
        ms: Math.round((performance.now() - t0) * 10) / 10,
      });
      const workers = gen.config.global.workers;
      if (!this.opts.worker && workers !== 1) log.warn("workers takes effect at the next start; this instance stays one process", { workers });
      return { ok: true, problems: [] };
    } catch (e) {
      const problems = problemLines(e);
      this.writeStatus("failure", problems);
      log.error("config rejected; the running config stays", { problems, generation: this.gen?.id });
      return { ok: false, problems };
    }
  }

  /**
   * adoptStoredCertificates (a worker's) serves the certificates its supervisor stored since the last look, swapping the HTTPS listener when any changed; it
   * waits for a reload in progress.
   */
  adoptStoredCertificates(): Promise<void> {
    const run = this.reloadChain.then(async () => {
      if (!this.gen || this.draining || !(await this.certs.refresh())) return;
      try {
        this.listeners.apply(this.listen(this.gen.config.global), this.tlsSet());
      } catch (e) {
        log.error("cannot start the HTTPS listener with the new certificates; the old one keeps serving", { error: String((e as Error).message ?? e) });
      }
      this.tcp.certificates((site) => this.certs.siteEntry(site));
    });
    this.reloadChain = run.catch(() => undefined);
    return run;
  }

  /** handOver closes the admin listener at once: the instance that replaces this one (`gatehouse upgrade`) answers there while this one drains. */
  handOver(): Promise<void> {
    return this.listeners.closeAdmin();
  }

  /** shutdown stops accepting, lets in-flight requests finish within graceMs, closes WebSockets with 1001, then everything. */
  async shutdown(graceMs: number): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.certs.dispose();
    this.purges.stop();
    this.health.stopAll();
    this.discovery.retain(new Set());
    this.tcp.stopAccepting();
    log.info("draining", {
      inflight: this.listeners.pending(),
      websockets: openSockets.size + openPipes.size,
      tcp_connections: this.tcp.open(),
      grace_ms: graceMs,
    });
    for (const ws of openSockets) ws.close(1001, "gateway shutting down");
    for (const pipe of openPipes) pipe.shutdown();
    let timer: Timer | undefined;
    const expired = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs)));
    // TCP routes' connections go on until they end or the grace period does, like requests in flight.
    const drained = Promise.all([this.listeners.closePublic(false), this.tcp.drained()]);
    const timedOut = await Promise.race([drained.then(() => false), expired]);
    clearTimeout(timer);
    if (timedOut) {
      log.warn("grace period over; closing the remaining connections", { inflight: this.listeners.pending(), tcp_connections: this.tcp.open() });
      await this.listeners.closePublic(true);
    }
    this.tcp.closeAll();
    await this.listeners.closeAll();
    // After the last request: its file is written, the disk tier's index closed with the last-use times.
    await this.cache.close();
    removePidFile(this.pidFile, this.opts.pid);
    log.info("stopped");
    log.flushNow();
  }

  /** inflight is the number of requests being answered now. */
  inflight(): number {
    return this.listeners.pending();
  }
}
