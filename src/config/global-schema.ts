/** Reading config.toml into GlobalConfig. */
import { readAccessTable } from "./policy-schema.ts";
import { readStorage } from "./storage-schema.ts";
import { parseCidr, type Cidr } from "../lib/cidr.ts";
import { readLimits, readProxyProtocol } from "./limits-schema.ts";
import { closest } from "../lib/did-you-mean.ts";
import { readAcme } from "./acme-schema.ts";
import { readTcpRoutes } from "./tcp-schema.ts";
import { parseAddress, resolvePath } from "./locations.ts";

/** DEFAULT_DISK_SIZE bounds the disk tier when [cache] dir is set without disk_size. */
const DEFAULT_DISK_SIZE = 1024 ** 3;
import type { Reader } from "./reader.ts";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import type { Address, GlobalConfig, HashOn, HealthCheck, LogLevel, ProxyOptions, UpstreamTls } from "./types.ts";

/** LOAD_BALANCE_POLICIES are the names `load_balance` accepts. */
export const LOAD_BALANCE_POLICIES = ["round_robin", "least_requests", "hash"] as const;

function readHashOn(r: Reader, base: HashOn): HashOn {
  const v = r.string("hash_on");
  if (v === undefined) return base;
  if (v === "client") return { kind: "client" };
  const m = /^(header|cookie):([!#$%&'*+\-.^_`|~0-9A-Za-z]+)$/.exec(v);
  if (m) return { kind: m[1] as "header" | "cookie", name: m[1] === "header" ? m[2]!.toLowerCase() : m[2]! };
  r.problem("hash_on", `cannot read ${JSON.stringify(v)}`, '"client", "header:NAME" or "cookie:NAME"');
  return base;
}
const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];
const ADDRESS_EXPECTED = 'HOST:PORT such as "127.0.0.1:8080" or "[::1]:8443"';

function address(r: Reader, key: string): Address | undefined {
  const v = r.string(key);
  if (v === undefined) return undefined;
  const a = parseAddress(v);
  if (!a) r.problem(key, `cannot read ${JSON.stringify(v)} as a listen address`, ADDRESS_EXPECTED);
  return a;
}

/** DEFAULT_PROXY_OPTIONS are what a route gets when neither [proxy] nor the route says otherwise. */
export const DEFAULT_PROXY_OPTIONS: ProxyOptions = {
  loadBalance: "round_robin",
  hashOn: { kind: "client" },
  preserveHost: true,
  maxBodySize: 100 * 1024 * 1024,
  responseHeaderTimeout: 60_000,
  idleTimeout: 60_000,
  failCooldown: 10_000,
  failCooldownMax: 300_000,
  maxFails: 3,
  allUnhealthy: "try",
  maxInflight: 1000,
  slowStart: 0,
  tryTimeout: 0,
  upstreamTls: undefined,
  health: undefined,
};

function checkTryTimeout(r: Reader, tryTimeout: number, total: number): number {
  if (tryTimeout > 0 && tryTimeout >= total)
    r.problem(
      "try_timeout",
      `is not shorter than response_header_timeout (${total}ms), so it would never fire`,
      "a per-attempt deadline below response_header_timeout",
    );
  return tryTimeout;
}

function readUpstreamTls(r: Reader, base: UpstreamTls | undefined, dir: string): UpstreamTls | undefined {
  const t = r.table("upstream_tls");
  if (!t) return base;
  const pem = (key: string, what: string) => {
    const p = t.string(key);
    if (p === undefined) return undefined;
    const path = resolvePath(dir, p);
    try {
      const text = readFileSync(path, "utf8");
      if (!text.includes("-----BEGIN")) t.problem(key, `${path} is not PEM`, what);
      return text;
    } catch (e) {
      t.problem(key, `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, what);
      return undefined;
    }
  };
  const tls: UpstreamTls = {
    ca: pem("ca", "a PEM file with the CA certificates that sign the upstreams'") ?? base?.ca,
    serverName: t.string("server_name") ?? base?.serverName,
    cert: pem("cert", "a PEM client certificate chain") ?? base?.cert,
    key: pem("key", "the PEM private key of the client certificate") ?? base?.key,
  };
  if ((tls.cert === undefined) !== (tls.key === undefined))
    t.problem(tls.cert === undefined ? "cert" : "key", "is missing", "cert and key together, for a client certificate (mTLS)");
  t.done();
  return tls;
}

function readHealth(r: Reader, base: HealthCheck | undefined): HealthCheck | undefined {
  const h = r.table("health");
  if (!h) return base;
  const path = h.string("path") ?? base?.path ?? "/";
  if (!path.startsWith("/")) h.problem("path", `${JSON.stringify(path)} does not start with "/"`, 'a path such as "/healthz"');
  const expect = h.string("expect_status") ?? (base ? `${base.expectMin}-${base.expectMax}` : "200-399");
  const m = /^(\d{3})(?:-(\d{3}))?$/.exec(expect);
  if (!m || Number(m[2] ?? m[1]) < Number(m[1]))
    h.problem("expect_status", `cannot read ${JSON.stringify(expect)} as a status or range`, 'a status such as "200" or a range such as "200-399"');
  const check: HealthCheck = {
    path,
    interval: h.duration("interval", base?.interval ?? 10_000),
    timeout: h.duration("timeout", base?.timeout ?? 2_000),
    expectMin: m ? Number(m[1]) : 200,
    expectMax: m ? Number(m[2] ?? m[1]) : 399,
    healthyThreshold: h.integer("healthy_threshold", base?.healthyThreshold ?? 2, 1, 100),
    unhealthyThreshold: h.integer("unhealthy_threshold", base?.unhealthyThreshold ?? 3, 1, 100),
    jitter: h.duration("jitter", base?.jitter ?? 1_000),
    host: h.string("host") ?? base?.host,
  };
  if (check.interval < 100) h.problem("interval", "is shorter than 100ms", 'a duration such as "5s"');
  if (check.timeout >= check.interval) h.problem("timeout", "is not shorter than the interval", "a timeout below the interval, so checks do not overlap");
  h.done();
  return check;
}

/** readProxyOptions reads the forwarding keys shared by [proxy], a route file and a [[paths]] entry, on top of base. */
export function readProxyOptions(r: Reader, base: ProxyOptions, dir = ""): ProxyOptions {
  const responseHeaderTimeout = r.duration("response_header_timeout", base.responseHeaderTimeout);
  return {
    loadBalance: r.oneOf("load_balance", LOAD_BALANCE_POLICIES, base.loadBalance),
    hashOn: readHashOn(r, base.hashOn),
    preserveHost: r.bool("preserve_host", base.preserveHost),
    maxBodySize: r.size("max_body_size", base.maxBodySize),
    responseHeaderTimeout,
    idleTimeout: r.duration("idle_timeout", base.idleTimeout),
    failCooldown: r.duration("fail_cooldown", base.failCooldown),
    failCooldownMax: r.duration("fail_cooldown_max", base.failCooldownMax),
    maxFails: r.integer("max_fails", base.maxFails, 1, 1000),
    allUnhealthy: r.oneOf("all_unhealthy", ["try", "fail"] as const, base.allUnhealthy),
    maxInflight: r.integer("max_inflight", base.maxInflight, 1, 1_000_000),
    slowStart: r.duration("slow_start", base.slowStart),
    tryTimeout: checkTryTimeout(r, r.duration("try_timeout", base.tryTimeout), responseHeaderTimeout),
    upstreamTls: readUpstreamTls(r, base.upstreamTls, dir),
    health: readHealth(r, base.health),
  };
}

/** MAX_WORKERS bounds an explicit `workers` count ("auto" takes the CPU count, whatever it is). */
export const MAX_WORKERS = 1024;

/** readWorkers reads `workers = "auto" | N`: "auto" is the number of CPUs this process may use. */
function readWorkers(r: Reader): number {
  const v = r.value("workers");
  const expected = `"auto" or a whole number from 1 to ${MAX_WORKERS}`;
  if (v === undefined) return 1;
  if (v === "auto") return Math.max(1, availableParallelism());
  if (typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= MAX_WORKERS) return v;
  if (typeof v === "number") r.problem("workers", `${v} is out of range`, expected);
  else if (typeof v === "string") {
    const near = closest(v, ["auto"]);
    r.problem("workers", `${JSON.stringify(v)} is not allowed${near ? `, did you mean "auto"?` : ""}`, expected);
  } else r.problem("workers", `got ${Array.isArray(v) ? "an array" : typeof v === "object" ? "a table" : `${typeof v} ${String(v)}`}`, expected);
  return 1;
}

/** readGlobal reads every key of config.toml; problems go to the reader, defaults fill what is missing. */
export function readGlobal(r: Reader, file: string, dir: string): GlobalConfig {
  const listenR = r.table("listen");
  const listen = listenR
    ? { http: address(listenR, "http"), https: address(listenR, "https"), admin: address(listenR, "admin") }
    : { http: parseAddress("127.0.0.1:8080"), admin: parseAddress("127.0.0.1:9180") };
  const idleTimeout = listenR?.duration("idle_timeout", 75_000) ?? 75_000;
  if (idleTimeout < 1000 || idleTimeout > 255_000)
    listenR?.problem("idle_timeout", "is out of range", 'a duration from "1s" to "255s" (the longest Bun allows)');
  const http2 = listenR?.bool("http2", false) ?? false;
  const publicHttpsPort = listenR?.integer("public_https_port", 0, 1, 65535) || undefined;
  const proxyProtocol = readProxyProtocol(listenR);
  listenR?.done();
  const seen = new Map<string, string>();
  for (const [name, a] of Object.entries(listen)) {
    if (!a) continue;
    const key = `${a.hostname}:${a.port}`;
    const other = seen.get(key);
    if (other) listenR?.problem(name, `${a.text} is also listen.${other}`, "a different address for each listener");
    seen.set(key, name);
  }

  const proxyR = r.table("proxy");
  const trusted: Cidr[] = [];
  let via = "gatehouse";
  let proxy: ProxyOptions = DEFAULT_PROXY_OPTIONS;
  if (proxyR) {
    proxy = readProxyOptions(proxyR, DEFAULT_PROXY_OPTIONS, dir);
    (proxyR.stringList("trusted_proxies") ?? []).forEach((s, i) => {
      const c = parseCidr(s);
      if (c) trusted.push(c);
      else
        proxyR.problem(`trusted_proxies[${i}]`, `cannot read ${JSON.stringify(s)} as an address or range`, 'an IP address or CIDR range such as "10.0.0.0/8"');
    });
    via = proxyR.string("via") ?? via;
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(via))
      proxyR.problem("via", `${JSON.stringify(via)} is not a token`, 'a name without spaces, such as "gatehouse"');
    proxyR.done();
  }

  const logR = r.table("log");
  const log = { level: logR?.oneOf("level", LOG_LEVELS, "info") ?? "info", access: logR?.bool("access", true) ?? true };
  logR?.done();

  // [resolver] and [cache] are part of the contract; their keys are checked here so that a
  // config written for them is accepted (or rejected with a precise message) today.
  const acme = readAcme(r.table("acme"), dir);
  const resolverR = r.table("resolver");
  const servers = resolverR?.stringList("servers") ?? [];
  servers.forEach((s, i) => {
    if (!parseAddress(s)) resolverR?.problem(`servers[${i}]`, `cannot read ${JSON.stringify(s)} as a DNS server address`, 'HOST:PORT such as "10.96.0.10:53"');
  });
  resolverR?.done();
  const cacheR = r.table("cache");
  const cacheDir = cacheR?.string("dir");
  const diskSize = cacheR?.size("disk_size", DEFAULT_DISK_SIZE) ?? DEFAULT_DISK_SIZE;
  if (cacheDir === undefined && cacheR?.has("disk_size"))
    cacheR.problem("disk_size", "is set without dir", 'dir = "/var/cache/gatehouse" beside it, or no disk_size');
  const cache = {
    maxSize: cacheR?.size("max_size", 256 * 1024 ** 2) ?? 256 * 1024 ** 2,
    maxObjectSize: cacheR?.size("max_object_size", 8 * 1024 ** 2) ?? 8 * 1024 ** 2,
    disk: cacheDir === undefined ? undefined : { dir: resolvePath(dir, cacheDir), size: diskSize },
    passTagFields: cacheR?.bool("pass_tag_fields", false) ?? false,
  };
  if (cache.disk && cache.disk.size < cache.maxObjectSize)
    cacheR?.problem("disk_size", `${diskSize} bytes is smaller than max_object_size (${cache.maxObjectSize})`, "a disk tier that holds at least one object");
  cacheR?.done();

  const limits = readLimits(r.table("limits"));
  const adminR = r.table("admin");
  const adminAccess = adminR ? readAccessTable(adminR) : undefined;
  adminR?.done();

  const global: GlobalConfig = {
    file,
    dir,
    routesDir: resolvePath(dir, r.string("routes_dir") ?? "routes"),
    certsDir: resolvePath(dir, r.string("certs_dir") ?? "certs"),
    storage: readStorage(r.table("storage"), dir),
    pidFile: resolvePath(dir, r.string("pid_file") ?? "gatehouse.pid"),
    shutdownGrace: r.duration("shutdown_grace", 30_000),
    workers: readWorkers(r),
    listen: { ...listen, idleTimeout, http2, publicHttpsPort, proxyProtocol },
    admin: { access: adminAccess },
    limits,
    proxy: { ...proxy, trustedProxies: trusted, via },
    log,
    acme,
    resolver: { servers },
    cache,
    tcp: readTcpRoutes(r, listen, servers.length > 0),
  };
  r.done();
  return global;
}
