/** The internal model that config files compile to; everything here is plain data, validated. */
import type { CertBundle } from "../lib/cert-info.ts";
import type { Cidr } from "../lib/cidr.ts";
import type { AccessRule, RoutePolicy, SitePages } from "./policy-types.ts";

/** Address is a listener address as written ("127.0.0.1:8080") and as Bun.serve needs it. */
export type Address = { readonly text: string; readonly hostname: string; readonly port: number };

export type LoadBalance = "round_robin" | "least_requests" | "hash";
/** HashOn is what `load_balance = "hash"` hashes: the client address, a request header or a cookie. */
export type HashOn = { readonly kind: "client" } | { readonly kind: "header"; readonly name: string } | { readonly kind: "cookie"; readonly name: string };
export type TlsMode = "acme" | "internal" | "manual" | "off";
export type LogLevel = "debug" | "info" | "warn" | "error";

/** ProxyOptions are the forwarding settings a route inherits from [proxy] and may override. */
export type ProxyOptions = {
  readonly loadBalance: LoadBalance;
  /** hashOn is the key of consistent hashing (load_balance = "hash"). */
  readonly hashOn: HashOn;
  readonly preserveHost: boolean;
  readonly maxBodySize: number;
  readonly responseHeaderTimeout: number;
  readonly idleTimeout: number;
  readonly failCooldown: number;
  /** failCooldownMax caps the cool-down, which doubles with each consecutive failure. */
  readonly failCooldownMax: number;
  /** maxFails is how many consecutive errors or timeouts (not refusals: those eject at once) eject an endpoint. */
  readonly maxFails: number;
  /** allUnhealthy: when active checks find every endpoint unhealthy, "try" them anyway or "fail" with 503. */
  readonly allUnhealthy: "try" | "fail";
  /** tryTimeout is the deadline (ms) of one attempt's response headers; 0: only response_header_timeout, over all attempts. */
  readonly tryTimeout: number;
  /** slowStart is how long (ms) an endpoint that just came (back) takes to reach its full share; 0: at once. */
  readonly slowStart: number;
  /** maxInflight caps concurrent requests per endpoint (circuit breaking); beyond it a request goes elsewhere or gets 503 at once. */
  readonly maxInflight: number;
  /** upstreamTls is how https:// upstreams are verified and whom we present ourselves as (mTLS); PEM contents. */
  readonly upstreamTls: UpstreamTls | undefined;
  /** health is the route's active health check, when it has one. */
  readonly health: HealthCheck | undefined;
};

/**
 * UpstreamTls is the TLS client setup for https:// upstreams: the CA to trust (instead of the system roots), the name to expect (and send as SNI), a client
 * certificate.
 */
export type UpstreamTls = { readonly ca?: string; readonly serverName?: string; readonly cert?: string; readonly key?: string };

/** HealthCheck is an active check of every endpoint of a route: GET path every interval (± jitter), healthy when the status is in [expectMin, expectMax]. */
export type HealthCheck = {
  readonly path: string;
  readonly interval: number;
  readonly timeout: number;
  readonly expectMin: number;
  readonly expectMax: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
  readonly jitter: number;
  /** host is the Host header of checks; undefined: the site's first host name (with preserve_host), else the endpoint's own name or host:port. */
  readonly host: string | undefined;
  /** tls is the checked target's upstream TLS setup (the route's, with a discovered name as server name), for https:// endpoints. */
  readonly tls?: UpstreamTls;
};

/** Upstream is one upstream URL of a proxied route: one endpoint, or (discover) a name whose addresses are the endpoints. */
export type Upstream = { readonly url: string; readonly origin: string; readonly discover: boolean };

export type ProxyAction = { readonly kind: "proxy"; readonly upstreams: readonly Upstream[]; readonly stripPrefix: boolean; readonly options: ProxyOptions };
export type StaticAction = {
  readonly kind: "static";
  readonly root: string;
  readonly index: readonly string[];
  readonly cacheControl?: string;
  readonly stripPrefix: boolean;
};
export type RedirectAction = { readonly kind: "redirect"; readonly to: string; readonly status: 301 | 302 | 307 | 308; readonly keepPath: boolean };
/** Action is what a route does with a request. */
export type Action = ProxyAction | StaticAction | RedirectAction;

/** CacheRules are a route's cache settings; without them the route is not cached. TTLs are seconds. */
export type CacheRules = {
  readonly enabled: boolean;
  /** ttl replaces the origin's freshness lifetime for storable responses. */
  readonly ttl: number | undefined;
  /** minTtl is a floor under the origin's freshness lifetime. */
  readonly minTtl: number | undefined;
  /** defaultTtl applies when the origin gives no freshness at all (instead of the heuristic). */
  readonly defaultTtl: number | undefined;
  /** ignoreQuery leaves the query string out of the cache key. */
  readonly ignoreQuery: boolean;
  /** bypassCookies: a request carrying one of these cookies ("*": any) skips the cache. */
  readonly bypassCookies: readonly string[];
  /** fetchWholeOnRange: a range request for a response not stored also fetches the whole response in the background, to store it. */
  readonly fetchWholeOnRange: boolean;
};

/** PathRoute is one route of a site: the site's default (prefix "/") or a [[paths]] sub-route. */
export type PathRoute = {
  readonly name: string;
  readonly prefix: string;
  readonly action: Action | undefined;
  readonly maxBodySize: number;
  readonly cache: CacheRules | undefined;
  /** allowTrace lets TRACE requests through to the route (RFC 9110 §9.3.8); off by default, as they echo what the client sent, cookies included. */
  readonly allowTrace: boolean;
  /** policy is the route's traffic policy: rate limits, IP rules, basic and forward auth, header rules. */
  readonly policy: RoutePolicy;
};

/** Hsts is a site's Strict-Transport-Security policy (RFC 6797 §6.1), sent on its HTTPS responses. */
export type Hsts = { readonly maxAge: number; readonly includeSubDomains: boolean; readonly preload: boolean };

/** SiteTls is how a site's HTTPS is served: where its certificate comes from, whether plain HTTP redirects, HSTS. */
export type SiteTls = {
  readonly mode: TlsMode;
  /** manual is the checked certificate of a "manual" site, read at load time. */
  readonly manual?: CertBundle;
  /** redirect: plain HTTP requests get a 308 to https:// (except ACME challenge paths). */
  readonly redirect: boolean;
  readonly hsts: Hsts | undefined;
};

/** SiteAcme is a route file's [acme] table: what the site sets itself; each key left out comes from config.toml's [acme]. */
export type SiteAcme = {
  /** challenge proves the site's names; undefined: config.toml's acme.challenge. */
  readonly challenge: AcmeChallenge | undefined;
  /** directory is the site's own CA; undefined: config.toml's acme.directory. */
  readonly directory?: string;
  /** email is the contact of the site's account; undefined: config.toml's acme.email. */
  readonly email?: string;
  /** caFile is extra trust for the site's CA API; undefined: config.toml's acme.ca_file. */
  readonly caFile?: string;
  /** eab binds the site's account; undefined: config.toml's, when the site keeps config.toml's directory, else none. */
  readonly eab?: AcmeEab;
};

/**
 * ExportConfig is a site's [export]: the files its certificate chain and key are copied to for other daemons, their modes and group, and the command run
 * (argv, no shell) after each change, killed after timeout ms.
 */
export type ExportConfig = {
  readonly cert: string;
  readonly key: string;
  readonly certMode: number;
  readonly keyMode: number;
  /** gid is the group both files get (chgrp); undefined: the process's own. */
  readonly gid?: number;
  /** group is the group as written (a name or a number), for logs. */
  readonly group?: string;
  readonly run: readonly string[] | undefined;
  readonly timeout: number;
};

/** SiteConfig is one routes/NAME.toml file. */
export type SiteConfig = {
  readonly name: string;
  readonly file: string;
  readonly hosts: readonly string[];
  readonly tls: SiteTls;
  readonly routes: readonly PathRoute[];
  /** pages are the site's [error_pages] and its maintenance switch. */
  readonly pages: SitePages;
  /** acme is the site's own [acme] table (tls = "acme" only); undefined: everything from config.toml's [acme]. */
  readonly acme?: SiteAcme;
  /** certificateOnly: the site has hosts and a certificate but no action; it serves no HTTP, its hosts are answered as unknown ones (ACME challenges aside). */
  readonly certificateOnly?: true;
  /** export is the site's [export] table: where its certificate goes for other daemons; undefined: nowhere. */
  readonly export?: ExportConfig;
};

/** TsigConfig is the key that signs RFC 2136 updates (RFC 8945). */
export type TsigConfig = { readonly name: string; readonly algorithm: "hmac-sha256" | "hmac-sha512"; readonly secret: Uint8Array };

/** AcmeChallenge is an ACME challenge type gatehouse answers: HTTP-01 (RFC 8555 §8.3), DNS-01 (§8.4) or TLS-ALPN-01 (RFC 8737). */
export type AcmeChallenge = "http-01" | "dns-01" | "tls-alpn-01";

/** AcmeEab is an External Account Binding (RFC 8555 §7.3.4): the key id and the base64url MAC key a CA such as ZeroSSL hands out with the account. */
export type AcmeEab = { readonly kid: string; readonly hmacKey: string };

/** AcmeCa is one ACME CA and the account at it: what one issuer is made of. */
export type AcmeCa = {
  readonly directory: string;
  readonly email: string | undefined;
  /** caFile is extra trust for the ACME API's own TLS (a test CA such as Pebble's). */
  readonly caFile: string | undefined;
  readonly eab?: AcmeEab;
};

/** AcmeFallback is one [[acme.fallback]] entry: a CA tried when orders at a site's own CA keep failing; email and caFile left out are the site's. */
export type AcmeFallback = { readonly directory: string; readonly email?: string; readonly caFile?: string; readonly eab?: AcmeEab };

/** AcmeConfig is [acme]: which CA, which account, which challenge (the default of every site), and the CAs to fall back to. */
export type AcmeConfig = AcmeCa & {
  readonly challenge: AcmeChallenge;
  readonly dns: { readonly server: Address; readonly tsig: TsigConfig } | undefined;
  /** renewFraction is how far into a certificate's lifetime it is renewed when the CA gives no ARI window. */
  readonly renewFraction: number;
  /** fallback are the [[acme.fallback]] CAs, in the order they are tried. */
  readonly fallback: readonly AcmeFallback[];
};

/** Limits are the front end's bounds on a client connection (CONTRACT.md's [limits] keys). */
export type Limits = {
  /** maxHeaderSize bounds a whole request head (431 past it); the request line alone is bounded by min(8 KiB, this) (414 past it). */
  readonly maxHeaderSize: number;
  /** maxHeaderFields bounds the number of fields in a head (431 past it). */
  readonly maxHeaderFields: number;
  /** headerTimeout is how long a request head may take to arrive once its first byte came (408 and a close after it). */
  readonly headerTimeout: number;
  /** bodyTimeout is the longest gap between two reads of a request body (408, and the upstream request aborted). */
  readonly bodyTimeout: number;
  /** requestBuffer: request bodies of declared length up to this are read whole before an endpoint is chosen. */
  readonly requestBuffer: number;
  /** maxConnections caps the open client connections of the whole gateway (spread over its workers). */
  readonly maxConnections: number;
  /** maxConnectionsPerClient caps the open connections of one client address (the trusted one a PROXY preamble names). */
  readonly maxConnectionsPerClient: number;
};

/** TcpMode is how a [[tcp]] route treats its bytes: TLS terminated with a site's certificate, TLS passed through by its SNI, or plain TCP. */
export type TcpMode = "terminate" | "passthrough" | "plain";

/**
 * TcpUpstream is one upstream of a [[tcp]] route: "tcp://HOST:PORT" as written, its host (brackets removed) and port; or "tcp+srv://NAME" (port 0). discover:
 * the name's addresses (A/AAAA through [resolver], or the SRV records) are the endpoints, followed as DNS changes.
 */
export type TcpUpstream = { readonly url: string; readonly host: string; readonly port: number; readonly discover: boolean };

/** TcpSni is one [[tcp.sni]] entry of a passthrough route: server names (exact or "*.example.com") and the upstreams their connections go to. */
export type TcpSni = { readonly hosts: readonly string[]; readonly upstreams: readonly TcpUpstream[] };

/** TcpHealth is a [[tcp]] route's [tcp.health]: a TCP connect to every endpoint each interval; thresholds of results in a row flip its health. */
export type TcpHealth = { readonly interval: number; readonly timeout: number; readonly healthyThreshold: number; readonly unhealthyThreshold: number };

/**
 * TcpRoute is one [[tcp]] entry of config.toml: a listener of its own whose connections go to upstreams as plain TCP, with TLS terminated by the certificate
 * of `site`, or with TLS passed through to the upstreams its SNI picks. Durations are ms.
 */
export type TcpRoute = {
  /** entry is the route's place among the [[tcp]] entries of config.toml: problems found later name it tcp[entry]. */
  readonly entry: number;
  readonly name: string;
  readonly listen: Address;
  readonly mode: TcpMode;
  /** site is the route file whose certificate terminates TLS (terminate only). */
  readonly site: string | undefined;
  /** upstreams are where connections go (passthrough: those whose SNI no [[tcp.sni]] entry names, as `default`). */
  readonly upstreams: readonly TcpUpstream[];
  /** sni are the passthrough route's [[tcp.sni]] entries, in file order. */
  readonly sni: readonly TcpSni[];
  /** sendProxyProtocol: 2 writes a PROXY v2 header to the upstream before any client byte; undefined: none. */
  readonly sendProxyProtocol: 2 | undefined;
  /** idleTimeout closes a connection with no byte either way for this long. */
  readonly idleTimeout: number;
  /** connectTimeout bounds one connect to an upstream endpoint; past it the next endpoint is tried. */
  readonly connectTimeout: number;
  /** handshakeTimeout bounds what comes before the upstream is chosen: a PROXY preamble, the ClientHello, the TLS handshake. */
  readonly handshakeTimeout: number;
  /** maxConnectionsPerUpstream caps the connections open to one endpoint; a full one is skipped. */
  readonly maxConnectionsPerUpstream: number;
  /** failCooldown is how long an endpoint whose connect failed is skipped; it doubles with each failure in a row, up to 5 minutes. */
  readonly failCooldown: number;
  readonly health: TcpHealth | undefined;
};

/** GlobalConfig is config.toml, with relative paths resolved against its directory. */
export type GlobalConfig = {
  readonly file: string;
  readonly dir: string;
  readonly routesDir: string;
  readonly certsDir: string;
  /** storage is where certificates live: certs_dir alone, or etcd (certs_dir then holds each node's local copy). */
  readonly storage: StorageSettings;
  readonly pidFile: string;
  readonly shutdownGrace: number;
  /** workers is how many worker processes serve the public listeners (1: this process, no supervisor); "auto" is already resolved to the number of CPUs. */
  readonly workers: number;
  readonly listen: {
    readonly http?: Address;
    readonly https?: Address;
    readonly admin?: Address;
    readonly idleTimeout: number;
    readonly http2: boolean;
    readonly publicHttpsPort?: number;
    /** proxyProtocol lists the sources that may open a public connection with a PROXY v1/v2 preamble. */
    readonly proxyProtocol: readonly Cidr[];
  };
  /** admin is [admin]: who may use the admin listener (no lists: whoever reaches its address). */
  readonly admin: { readonly access: AccessRule | undefined };
  readonly limits: Limits;
  readonly proxy: ProxyOptions & { readonly trustedProxies: readonly Cidr[]; readonly via: string };
  readonly log: { readonly level: LogLevel; readonly access: boolean };
  readonly acme: AcmeConfig;
  readonly resolver: { readonly servers: readonly string[] };
  /** cache: the memory tier's bounds; disk ([cache] dir and disk_size) the disk tier behind it; passTagFields lets Cache-Tag and Surrogate-Key reach clients. */
  readonly cache: {
    readonly maxSize: number;
    readonly maxObjectSize: number;
    readonly disk: { readonly dir: string; readonly size: number } | undefined;
    readonly passTagFields: boolean;
  };
  /** tcp are the [[tcp]] routes (none by default). */
  readonly tcp: readonly TcpRoute[];
};

/** Config is everything one load produced: the global file and every site. */
export type Config = { readonly global: GlobalConfig; readonly sites: readonly SiteConfig[] };

/** EtcdSettings is [storage] with backend = "etcd": where etcd is, how to log in, and the key that seals private keys; file contents already read. */
export type EtcdSettings = {
  readonly backend: "etcd";
  readonly endpoints: readonly string[];
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly username?: string;
  readonly password?: string;
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
  /** secretKey seals secret values (private keys, the ACME account key) in etcd; it stays on the nodes. */
  readonly secretKey?: Uint8Array;
};

/** StorageSettings is where certificates live: certs_dir alone, or etcd (with certs_dir as each node's local copy). */
export type StorageSettings = { readonly backend: "dir" } | EtcdSettings;
