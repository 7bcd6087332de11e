/** The supervisor's requests to all its workers at once: a broadcast that collects every reply, and the admin queries answered by every worker (metrics merged, purges summed, upstreams listed). */
import type { PurgeFilter } from "../observability/admin.ts";
import { registry } from "../observability/gateway-metrics.ts";
import { log } from "../observability/log.ts";
import { MetricsMerger, parseExposition, renderExposition } from "./metrics-merge.ts";
import type { DistributiveOmit, Reply, Request } from "./protocol.ts";
import { WorkerGone, type WorkerProcess } from "./worker-process.ts";
import { workerMetrics, type WorkerSet } from "./worker-set.ts";

/** Outcome is one worker's answer to a broadcast: its reply, or the error that stood in for it. */
export type Outcome = { readonly worker: WorkerProcess; readonly reply?: Reply; readonly error?: Error };

/** FleetTimings are the waits of the fleet's requests, in ms: a scrape, and a purge (as long as a reload may take). */
export type FleetTimings = { readonly scrape: number; readonly reload: number };

/** Fleet asks all of the supervisor's workers; it keeps the merged metrics of workers that have exited, so their counters never go back. */
export class Fleet {
  private readonly merger = new MetricsMerger();
  /** retired are workers whose counters the merger has folded in: a late scrape answer must not bring them back. */
  private readonly retired = new WeakSet<WorkerProcess>();

  constructor(
    private readonly workers: WorkerSet,
    private readonly t: FleetTimings,
  ) {}

  /** retire takes a worker's final numbers (sent just before it exited) in place of those of the last scrape; then they join the retired sums. */
  retire(w: WorkerProcess): void {
    if (w.finalMetrics !== undefined && !this.retired.has(w)) this.merger.update(w.serial, parseExposition(w.finalMetrics));
    this.retired.add(w);
    this.merger.retire(w.serial);
  }

  /** broadcast sends a request to every live worker and collects each reply or error (never rejects). */
  broadcast(msg: DistributiveOmit<Request, "id">, timeoutMs: number, to = this.workers.running()): Promise<Outcome[]> {
    return Promise.all(
      to.map((worker) =>
        worker.request(msg, timeoutMs).then(
          (reply) => ({ worker, reply }),
          (error: Error) => ({ worker, error }),
        ),
      ),
    );
  }

  /** metrics scrapes every worker (one that does not answer counts with its last numbers) and merges them with the supervisor's own. */
  async metrics(): Promise<string> {
    const scraped = [...this.workers.running(), ...this.workers.draining()];
    await Promise.all(
      scraped.map(async (w) => {
        try {
          const r = await w.request({ t: "metrics" }, this.t.scrape);
          // An answer that arrives after the worker was retired would count it twice.
          if (r.ok && typeof r.value === "string" && !this.retired.has(w)) this.merger.update(w.serial, parseExposition(r.value));
        } catch (e) {
          if (!(e instanceof WorkerGone))
            log.warn("a worker did not answer the metrics scrape; its last numbers are used", { worker: w.index, error: String((e as Error).message) });
        }
      }),
    );
    const live = scraped.filter((w) => !this.retired.has(w)).map((w) => w.serial);
    return renderExposition(this.merger.merge(parseExposition(registry.render() + workerMetrics.render()), live));
  }

  /** purge has every worker purge its cache and returns the sum. */
  async purge(filter: PurgeFilter): Promise<number> {
    let purged = 0;
    for (const o of await this.broadcast({ t: "purge", filter }, this.t.reload)) {
      // A worker that exited starts again with an empty cache: nothing of it to purge.
      if (o.error instanceof WorkerGone) continue;
      if (!o.reply?.ok) throw new Error(`worker ${o.worker.index} did not purge: ${o.error?.message ?? o.reply?.problems}`);
      purged += Number(o.reply.value ?? 0);
    }
    return purged;
  }

  /** upstreams lists every worker's endpoints, each marked with its worker. */
  async upstreams(): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const o of await this.broadcast({ t: "upstreams" }, this.t.scrape)) {
      if (o.reply?.ok && Array.isArray(o.reply.value)) for (const e of o.reply.value) out.push({ worker: o.worker.index, ...(e as object) });
    }
    return out;
  }
}
