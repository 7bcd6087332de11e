/** Listeners: the public and admin listeners a config asks for (the raw front end for plain HTTP, Bun.serve for HTTPS and admin); rebound only when an address changes. */
import type { Server } from "bun";
import { readFileSync } from "node:fs";
import type { Address, GlobalConfig } from "../config/types.ts";
import { log } from "../observability/log.ts";
import { tlsSwaps, tlsUpdates } from "../observability/gateway-metrics.ts";
import { websocketHandlers, type WsData } from "../proxy/websocket.ts";
import type { TlsEntry } from "../tls/cert-manager.ts";
import { ConnectionLimits } from "./connection-limits.ts";
import { type FrontHandler, FrontServer } from "./h1-server.ts";
import type { ListenerSettings } from "./settings.ts";
import { type NativeContext, type PreparedContexts, TlsContexts } from "./tls-contexts.ts";

type Kind = "http" | "https" | "admin";

/** Served is a listening socket, whatever serves it: a Bun.serve server or the raw front end. */
type Served = { readonly port: number | undefined; readonly pendingRequests: number; stop(force: boolean): Promise<void> };
/** Bound is a listener: its address, its server, and for HTTPS the digest of its certificates and, on the raw front end, their contexts (changed in place). */
type Bound = { readonly address: Address; readonly server: Served; readonly tlsDigest?: string; readonly contexts?: TlsContexts };

/** ListenerHandlers are what listeners call; they read the live generation themselves. */
export type ListenerHandlers = {
  /** front answers plain HTTP on the raw front end; alpnChallenge gives its HTTPS listener the TLS-ALPN-01 certificate of a name being validated (RFC 8737). */
  readonly front: {
    readonly http: FrontHandler;
    readonly https: FrontHandler;
    readonly refused?: (status: number, reason: string, client: string) => void;
    readonly alpnChallenge?: (name: string) => NativeContext | undefined;
  };
  readonly https: (req: Request, server: Server<unknown>) => Response | Promise<Response | undefined>;
  readonly admin: (req: Request, server: Bun.Server<undefined>) => Response | Promise<Response>;
};

/** TlsSet is what the HTTPS listener serves: Bun.serve `tls` entries (fallback first) and a digest that changes when any of them does. */
export type TlsSet = { readonly entries: readonly TlsEntry[]; readonly digest: string };

/**
 * migrateWarning says, once, when the kernel will reset connections queued on a replaced HTTPS listener: with net.ipv4.tcp_migrate_req = 0 (the default), a
 * closing SO_REUSEPORT listener resets its accept queue instead of handing it to its successor.
 */
let migrateChecked = false;
function warnUnlessMigrating(): void {
  if (migrateChecked) return;
  migrateChecked = true;
  let value: string;
  try {
    value = readFileSync("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").trim();
  } catch {
    return; // not Linux, or a kernel before 5.14: nothing to advise
  }
  if (value === "0") {
    log.warn(
      "net.ipv4.tcp_migrate_req is 0: when new certificates replace the HTTPS listener, connections still in the kernel's accept queue are reset (a few per swap under load); set it to 1 to hand them to the new listener",
      { fix: "sysctl -w net.ipv4.tcp_migrate_req=1" },
    );
  }
}

/**
 * assertFree throws a clear error when nothing may bind address now (in use by another process, or not local); it binds without SO_REUSEPORT for a moment, so a
 * listener that would share the port with a stranger is refused.
 */
export function assertFree(kind: string, address: Address): void {
  assertBindable(`listen.${kind} ${address.text}`, address);
}

/** assertBindable is assertFree for any listener, its errors starting with what: the config key that names the address (a [[tcp]] route's, say). */
export function assertBindable(what: string, address: Address): void {
  try {
    Bun.listen({ hostname: address.hostname, port: address.port, socket: { data() {} } }).stop(true);
  } catch (e) {
    throw new Error(`${what}: cannot bind, the address is in use or not available (${(e as { code?: string }).code ?? (e as Error).message})`);
  }
}

/**
 * ListenersOptions: shared listeners are bound beside sibling worker processes, which take turns accepting (the supervisor checked the addresses were free);
 * takeover listeners are bound beside the instance this one replaces (`gatehouse upgrade`), which holds them until it drains. Every listener is bound with
 * SO_REUSEPORT so that a later instance can join it; a first bind checks the address is free first.
 */
export type ListenersOptions = { readonly shared?: boolean; readonly takeover?: boolean };

/** sameAddress says whether two listener addresses are the same (both given). */
export function sameAddress(a: Address | undefined, b: Address | undefined): boolean {
  return a !== undefined && b !== undefined && a.hostname === b.hostname && a.port === b.port;
}

/** Listeners owns the sockets; apply() binds what a new config needs before anything old is closed, so a bind failure leaves the old listeners serving. */
export class Listeners {
  private readonly bound = new Map<Kind, Bound>();
  private readonly retiring = new Set<Served>();
  private idleSeconds = 75;
  private http2 = false;
  /** caps is this process's one count of client connections, across its public listeners; each config resizes it. */
  private readonly caps = new ConnectionLimits(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  /** front is the settings the raw front end's listeners run with (the live config's). */
  private front: ListenerSettings | undefined;

  /** takingOver: the first bind joins the listeners of the instance this one replaces (`gatehouse upgrade`) without the free-address check. */
  private takingOver: boolean;

  constructor(
    private readonly handlers: ListenerHandlers,
    private readonly opts: ListenersOptions = {},
  ) {
    this.takingOver = opts.takeover === true;
  }

  private start(kind: Kind, address: Address, tls?: TlsSet): Bound {
    const common = { hostname: address.hostname, port: address.port, development: false };
    // SO_REUSEPORT would let a listener share a port that another process holds: a first bind must find it free, unless it joins its siblings or the instance
    // it replaces.
    const joining = this.opts.shared === true || this.takingOver;
    if (kind === "admin") {
      if (!joining) assertFree("admin", address);
      return { address, server: Bun.serve({ ...common, reusePort: true, fetch: this.handlers.admin }) };
    }
    if (kind === "http") {
      if (!joining) assertFree("http", address);
      return {
        address,
        server: new FrontServer({
          hostname: address.hostname,
          port: address.port,
          handler: this.handlers.front.http,
          refused: this.handlers.front.refused,
          reusePort: true,
          ...this.frontSettings(),
        }),
      };
    }
    const handler = this.handlers.https;
    if (tls) {
      const cur = this.bound.get("https");
      if (!joining && (!cur || !sameAddress(cur.address, address))) assertFree("https", address);
      if (!this.http2) {
        // The raw front end: certificates are chosen per handshake and changed in place, so this listener is never replaced for them.
        const contexts = new TlsContexts();
        contexts.set(tls.entries);
        const server = new FrontServer({
          hostname: address.hostname,
          port: address.port,
          handler: this.handlers.front.https,
          refused: this.handlers.front.refused,
          tls: contexts,
          alpnChallenge: this.handlers.front.alpnChallenge,
          // It may bind beside a Bun.serve listener it replaces (http2 turned off) or sibling workers.
          reusePort: true,
          ...this.frontSettings(),
        });
        return { address, server, tlsDigest: tls.digest, contexts };
      }
      warnUnlessMigrating();
    }
    const server = Bun.serve<WsData>({
      ...common,
      // The HTTPS listener is replaced to change certificates (server.reload() keeps the old ones): the new one binds beside the old one, then the old one
      // stops.
      ...(tls ? { tls: tls.entries.map((e) => ({ serverName: e.serverName, cert: e.cert, key: e.key })), reusePort: true, http2: this.http2 } : {}),
      // Sibling workers (and an instance taking over) bind the same public addresses; the kernel spreads new connections between them.
      reusePort: true,
      fetch: handler as (req: Request, server: Server<WsData>) => Response | Promise<Response | undefined>,
      websocket: websocketHandlers,
      // Body limits are per route (413 from the pipeline); the listener itself must not cut a large upload short.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      idleTimeout: this.idleSeconds,
      error(err) {
        log.error("listener error", { listener: kind, error: String(err?.stack ?? err) });
        return new Response("500 Internal Server Error\n", { status: 500, headers: { "content-type": "text/plain; charset=utf-8" } });
      },
    });
    return { address, server, tlsDigest: tls?.digest };
  }

  /** connectionCaps is this process's one count of client connections, for listeners of other kinds ([[tcp]] routes) to count theirs in too. */
  get connectionCaps(): ConnectionLimits {
    return this.caps;
  }

  /** frontSettings are the settings of the raw front end's listeners, counting connections in this process's caps. */
  private frontSettings() {
    return this.front === undefined ? { caps: this.caps } : { ...this.front, caps: this.caps };
  }

  /**
   * apply binds new or moved listeners, then closes the ones no longer wanted (gracefully), then gives every raw listener the front-end settings (when given:
   * a certificate change keeps them). Throws, having closed whatever it bound and changed nothing else, if a bind fails.
   */
  apply(listen: GlobalConfig["listen"], tls: TlsSet | undefined, front?: ListenerSettings): void {
    const before = this.front;
    if (front !== undefined) this.front = front;
    try {
      this.bind(listen, tls);
    } catch (e) {
      this.front = before;
      throw e;
    }
    // Only the first bind joins the instance this one replaces; a later address change must find its address free like any other.
    this.takingOver = false;
    if (front === undefined) return;
    this.caps.resize(front.maxConnections, front.maxConnectionsPerClient);
    for (const b of this.bound.values()) if (b.server instanceof FrontServer) b.server.configure({ ...front, caps: this.caps });
  }

  private bind(listen: GlobalConfig["listen"], tls: TlsSet | undefined): void {
    this.idleSeconds = Math.round(listen.idleTimeout / 1000);
    const http2Before = this.http2;
    const http2Changed = http2Before !== listen.http2;
    this.http2 = listen.http2;
    const wanted: [Kind, Address | undefined][] = [
      ["http", listen.http],
      ["https", listen.https],
      ["admin", listen.admin],
    ];
    const started: [Kind, Bound][] = [];
    let renewed: [Bound, PreparedContexts] | undefined;
    try {
      for (const [kind, address] of wanted) {
        const cur = this.bound.get(kind);
        if (address === undefined || (kind === "https" && tls === undefined)) continue;
        const same = cur !== undefined && sameAddress(cur.address, address);
        if (same && kind === "https" && cur.contexts !== undefined && !http2Changed) {
          // New certificates on the raw front end: loaded now, served from the next handshake once everything else bound.
          if (cur.tlsDigest !== tls!.digest) renewed = [cur, cur.contexts.prepare(tls!.entries)];
          continue;
        }
        if (same && (kind !== "https" || (cur.tlsDigest === tls!.digest && !http2Changed))) continue;
        started.push([kind, this.start(kind, address, kind === "https" ? tls : undefined)]);
      }
    } catch (e) {
      for (const [, b] of started) b.server.stop(true);
      // Nothing changed: the listeners that stay are of the kind they were.
      this.http2 = http2Before;
      throw e;
    }
    if (renewed !== undefined) {
      const [b, prepared] = renewed;
      b.contexts!.commit(prepared);
      this.bound.set("https", { ...b, tlsDigest: tls!.digest });
      tlsUpdates.labels().value++;
      log.info("https listener now serves the new certificates", { address: b.address.text, certificates: tls!.entries.length, from: "next handshake" });
    }
    for (const [kind, address] of wanted) {
      const cur = this.bound.get(kind);
      const replaced = started.find(([k]) => k === kind);
      const swap = kind === "https" && cur !== undefined && replaced !== undefined && sameAddress(cur.address, replaced[1].address);
      if (cur && (address === undefined || replaced)) {
        this.bound.delete(kind);
        this.retire(cur.server);
        if (!swap) log.info("listener closed", { listener: kind, address: cur.address.text });
      }
      if (replaced) {
        this.bound.set(kind, replaced[1]);
        if (swap) {
          tlsSwaps.labels().value++;
          log.info("https listener now serves the new certificates", { address: cur.address.text, certificates: tls!.entries.length });
        } else log.info("listening", { listener: kind, address: `${replaced[1].address.hostname}:${replaced[1].server.port ?? replaced[1].address.port}` });
      }
    }
  }

  /** retire stops a replaced listener gracefully and keeps it counted (pending, shutdown) until its requests have finished. */
  private retire(server: Served): void {
    this.retiring.add(server);
    void server.stop(false).finally(() => this.retiring.delete(server));
  }

  /** pending counts requests in flight on the public listeners, retiring ones included. */
  pending(): number {
    let n = 0;
    for (const [kind, b] of this.bound) if (kind !== "admin") n += b.server.pendingRequests;
    for (const s of this.retiring) n += s.pendingRequests;
    return n;
  }

  /**
   * closePublic stops accepting on the public listeners and resolves when their in-flight requests (and those of retiring listeners) have finished, or at once
   * with force.
   */
  async closePublic(force: boolean): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [kind, b] of this.bound) if (kind !== "admin") closing.push(b.server.stop(force));
    for (const s of this.retiring) closing.push(s.stop(force));
    await Promise.all(closing);
  }

  /** closeAdmin stops the admin listener now (an upgraded instance's successor answers there while this one drains). */
  async closeAdmin(): Promise<void> {
    const b = this.bound.get("admin");
    this.bound.delete("admin");
    await b?.server.stop(true);
  }

  /** closeAll stops everything at once, admin included. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.bound.values()].map((b) => b.server.stop(true)));
    this.bound.clear();
  }
}
