/** Active health checks: a GET to every endpoint of routes that configure one, on a jittered interval; thresholds of successes and failures in a row flip the endpoint's `healthy`. */
import type { HealthCheck } from "../config/types.ts";
import { healthChecks } from "../observability/gateway-metrics.ts";
import { log } from "../observability/log.ts";
import type { Endpoint } from "./endpoint.ts";
import { type ProbeKind, Probes } from "../lib/probes.ts";

const HTTP_GET: ProbeKind<Endpoint, HealthCheck> = {
  async probe(e, c) {
    try {
      const res = await fetch(e.url + c.path, {
        headers: { "user-agent": "gatehouse-health-check", ...(c.host ? { host: c.host } : {}) },
        redirect: "manual",
        signal: AbortSignal.timeout(c.timeout),
        tls: c.tls,
      });
      await res.body?.cancel();
      return { ok: res.status >= c.expectMin && res.status <= c.expectMax, detail: `status ${res.status}` };
    } catch (err) {
      const name = (err as { code?: string }).code ?? (err as Error).name;
      return { ok: false, detail: name === "TimeoutError" ? `no answer within ${c.timeout}ms` : String(name) };
    }
  },
  judged(e, c, ok, detail, streak) {
    e.lastCheck = { time: Date.now(), ok, detail };
    healthChecks.labels(e.route, e.url, ok ? "ok" : "fail").value++;
    if (e.healthy && streak <= -c.unhealthyThreshold) {
      e.healthy = false;
      e.lastError = `health check: ${detail}`;
      log.warn("upstream endpoint unhealthy; it gets no requests until its checks pass", {
        route: e.route,
        upstream: e.url,
        check: c.path,
        // The Host the checks send: an app that refuses it (Django's ALLOWED_HOSTS answers 400) is the usual reason.
        host: c.host ?? new URL(e.url).host,
        detail,
        failures: -streak,
      });
    } else if (!e.healthy && streak >= c.healthyThreshold) {
      e.healthy = true;
      e.upSince = performance.now();
      log.info("upstream endpoint healthy again", {
        route: e.route,
        upstream: e.url,
        check: c.path,
        host: c.host ?? new URL(e.url).host,
        successes: streak,
      });
    }
  },
  // The first check comes soon, spread over the jitter so that many endpoints do not fire at once.
  firstDelay: (c) => Math.random() * Math.min(c.jitter, c.interval),
  nextDelay: (c) => c.interval + (Math.random() * 2 - 1) * c.jitter,
  // No check any more: nothing says it is unhealthy.
  released: (e) => {
    e.healthy = true;
  },
};

/**
 * HealthChecks keeps one check per endpoint that a live route checks; reconcile() after each swap starts, restarts (changed check) and stops them. Endpoint
 * state, healthy included, lives on the Endpoint and so survives reloads.
 */
export class HealthChecks extends Probes<Endpoint, HealthCheck> {
  constructor() {
    super(HTTP_GET);
  }
}
