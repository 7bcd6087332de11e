/** Active health checks of [[tcp]] upstreams: a TCP connect to every endpoint of routes with [tcp.health], on a jittered interval; results in a row flip the endpoint's `healthy`. */
import type { TcpHealth } from "../config/types.ts";
import { type ProbeKind, Probes } from "../lib/probes.ts";
import { log } from "../observability/log.ts";
import { connectOnce } from "./connect.ts";
import type { TcpEndpoint } from "./endpoints.ts";

const TCP_CONNECT: ProbeKind<TcpEndpoint, TcpHealth> = {
  async probe(e, c) {
    try {
      (await connectOnce(e.host, e.port, c.timeout)).end();
      return { ok: true, detail: "connected" };
    } catch (err) {
      return { ok: false, detail: (err as Error).message };
    }
  },
  judged(e, c, ok, detail, streak) {
    e.lastCheck = { time: Date.now(), ok, detail };
    if (e.healthy && streak <= -c.unhealthyThreshold) {
      e.healthy = false;
      e.lastError = `health check: ${detail}`;
      log.warn("tcp upstream endpoint unhealthy; it gets no connections until its checks pass", { route: e.route, upstream: e.url, detail });
    } else if (!e.healthy && streak >= c.healthyThreshold) {
      e.healthy = true;
      log.info("tcp upstream endpoint healthy again", { route: e.route, upstream: e.url });
    }
  },
  firstDelay: (c) => Math.random() * Math.min(1000, c.interval),
  nextDelay: (c) => c.interval * (0.9 + Math.random() * 0.2),
  // No check any more: nothing says it is unhealthy.
  released: (e) => {
    e.healthy = true;
  },
};

/** TcpHealthChecks keeps one check per endpoint that a live route checks; reconcile() after each change starts, restarts and stops them. */
export class TcpHealthChecks extends Probes<TcpEndpoint, TcpHealth> {
  constructor() {
    super(TCP_CONNECT);
  }
}
