/** The running DNS discoveries of upstream names, shared by every generation that keeps the same route and upstream; state (last good answer, timers) outlives reloads. */
import { dnsRefreshes } from "../observability/gateway-metrics.ts";
import { log } from "../observability/log.ts";
import { DnsDiscovery, type DiscoveredEndpoint } from "./dns-discovery.ts";
import type { ResolverServer } from "./resolver.ts";

/** READY_WAIT_MS bounds how long a (re)load waits for a new name's first answer before going live without it. */
const READY_WAIT_MS = 3000;

type Running = { readonly discovery: DnsDiscovery; readonly route: string };

/** DiscoveryRegistry starts a DnsDiscovery per (route, upstream URL, servers) on first use and stops the ones a new generation no longer uses. */
export class DiscoveryRegistry {
  private readonly running = new Map<string, Running>();

  /** get returns the discovery for route and upstream, starting it (with its log lines and metrics) on first use. */
  get(route: string, upstream: string, servers: readonly ResolverServer[]): DnsDiscovery {
    const key = `${route} ${upstream} ${servers.map((s) => `${s.host}:${s.port}`).join(",")}`;
    const cur = this.running.get(key);
    if (cur) return cur.discovery;
    const discovery = new DnsDiscovery(upstream, servers);
    discovery.onError((err) => {
      dnsRefreshes.labels(route, "failure").value++;
      log.warn("upstream name did not resolve; the last answer stays in use", {
        route,
        upstream,
        error: String((err as Error)?.message ?? err),
        endpoints: discovery.endpoints().length,
      });
    });
    discovery.onChange((eps: readonly DiscoveredEndpoint[]) => {
      dnsRefreshes.labels(route, "changed").value++;
      log.info("upstream endpoints changed", { route, upstream, endpoints: eps.map((e) => e.url) });
    });
    discovery.start();
    void discovery.ready.then(() => {
      // An empty first answer is no change, so no event would say it: a name that does not resolve must not fail silently.
      if (this.running.get(key)?.discovery === discovery && discovery.endpoints().length === 0) {
        log.warn("upstream name has no addresses; the route has no endpoints from it until it does", {
          route,
          upstream,
          hint: "names must be fully qualified (no search list); check the record in the DNS servers of [resolver]",
        });
      }
    });
    this.running.set(key, { discovery, route });
    return discovery;
  }

  /** ready waits (bounded) for the first answer of the given discoveries. */
  async ready(list: Iterable<DnsDiscovery>): Promise<void> {
    let timer: Timer | undefined;
    await Promise.race([Promise.all([...list].map((d) => d.ready)), new Promise((r) => (timer = setTimeout(r, READY_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /** retain stops the discoveries not in keep (after a new generation is live). */
  retain(keep: ReadonlySet<DnsDiscovery>): void {
    for (const [k, r] of this.running) {
      if (!keep.has(r.discovery)) {
        r.discovery.stop();
        this.running.delete(k);
      }
    }
  }
}
