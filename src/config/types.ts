/** The internal model that config files compile to; everything here is plain data, validated. */
import type { Cidr } from "../lib/cidr.ts";

/** Address is a listener address as written ("127.0.0.1:8080") and as Bun.serve needs it. */
export type Address = { readonly text: string; readonly hostname: string; readonly port: number };

export type LoadBalance = "round_robin" | "least_requests";
export type TlsMode = "acme" | "internal" | "manual" | "off";
export type LogLevel = "debug" | "info" | "warn" | "error";

/** ProxyOptions are the forwarding settings a route inherits from [proxy] and may override. */
export type ProxyOptions = {
  readonly loadBalance: LoadBalance;
  readonly preserveHost: boolean;
  readonly maxBodySize: number;
  readonly responseHeaderTimeout: number;
  readonly idleTimeout: number;
  readonly failCooldown: number;
};

/** Upstream is one endpoint URL of a proxied route. */
export type Upstream = { readonly url: string; readonly origin: string };

export type ProxyAction = { readonly kind: "proxy"; readonly upstreams: readonly Upstream[]; readonly stripPrefix: boolean; readonly options: ProxyOptions };
export type StaticAction = { readonly kind: "static"; readonly root: string; readonly index: readonly string[]; readonly cacheControl?: string; readonly stripPrefix: boolean };
export type RedirectAction = { readonly kind: "redirect"; readonly to: string; readonly status: 301 | 302 | 307 | 308; readonly keepPath: boolean };
/** Action is what a route does with a request. */
export type Action = ProxyAction | StaticAction | RedirectAction;

/** PathRoute is one route of a site: the site's default (prefix "/") or a [[paths]] sub-route. */
export type PathRoute = { readonly name: string; readonly prefix: string; readonly action: Action | undefined; readonly maxBodySize: number };

/** SiteConfig is one routes/NAME.toml file. */
export type SiteConfig = {
  readonly name: string;
  readonly file: string;
  readonly hosts: readonly string[];
  readonly tls: TlsMode;
  readonly routes: readonly PathRoute[];
};

/** GlobalConfig is config.toml, with relative paths resolved against its directory. */
export type GlobalConfig = {
  readonly file: string;
  readonly dir: string;
  readonly routesDir: string;
  readonly certsDir: string;
  readonly pidFile: string;
  readonly shutdownGrace: number;
  readonly listen: { readonly http?: Address; readonly https?: Address; readonly admin?: Address; readonly idleTimeout: number };
  readonly proxy: ProxyOptions & { readonly trustedProxies: readonly Cidr[]; readonly via: string };
  readonly log: { readonly level: LogLevel; readonly access: boolean };
  readonly acme: Record<string, unknown>;
  readonly resolver: { readonly servers: readonly string[] };
  readonly cache: { readonly maxSize: number; readonly maxObjectSize: number };
};

/** Config is everything one load produced: the global file and every site. */
export type Config = { readonly global: GlobalConfig; readonly sites: readonly SiteConfig[] };
