/** Merging the /metrics expositions of worker processes into the one the supervisor serves: counters and histograms summed per label set, gauges by what they mean. */
import { formatNumber } from "../observability/metrics.ts";

/** Family is one metric family of a parsed exposition: its HELP and TYPE, and its samples keyed by series (name and labels exactly as rendered). */
export type Family = { readonly name: string; help: string; type: string; readonly samples: Map<string, number> };

/** Exposition is a parsed text exposition, families in the order they came. */
export type Exposition = Map<string, Family>;

/**
 * MergeRule says where a family's merged samples come from: the sum over workers, their minimum, the supervisor's own samples, the sum over every process
 * (supervisor included), or the largest value of any process (supervisor included).
 */
export type MergeRule = "sum" | "min" | "supervisor" | "all" | "max";

/**
 * FROM_SUPERVISOR are the families that only the supervisor knows: certificates, their exports and ACME (it obtains them), config reloads (it validates and relays them),
 * build and start, and the workers themselves.
 */
const FROM_SUPERVISOR = new Set([
  "gatehouse_certificate_expiry_timestamp_seconds",
  "gatehouse_certificate_renewal_timestamp_seconds",
  "gatehouse_certificate_renewal_planned_timestamp_seconds",
  "gatehouse_acme_orders_total",
  "gatehouse_certificate_exports_total",
  "gatehouse_certificate_export_runs_total",
  "gatehouse_certificate_export_current",
  "gatehouse_config_reloads_total",
  "gatehouse_config_last_reload_success",
  "gatehouse_config_last_reload_timestamp_seconds",
  "gatehouse_build_info",
  "process_start_time_seconds",
  "gatehouse_workers",
  "gatehouse_worker_restarts_total",
]);

/**
 * ruleOf is the merge rule of a family: state gauges as above; an endpoint is healthy only when every worker finds it so (each worker ejects and checks on its
 * own); memory is the whole gateway's; the rest (counters, histograms, in-flight, cache size) adds up.
 */
export function ruleOf(name: string): MergeRule {
  if (FROM_SUPERVISOR.has(name)) return "supervisor";
  if (name === "gatehouse_upstream_healthy" || name === "gatehouse_storage_up") return "min";
  // Memory and CPU are the whole gateway's; descriptors are judged per process against its own limit: the fullest process, and the lowest limit.
  if (name === "process_resident_memory_bytes" || name === "process_cpu_seconds_total") return "all";
  if (name === "process_open_fds") return "max";
  // One disk tier for the node, which every worker reports.
  if (name === "gatehouse_cache_disk_size_bytes") return "max";
  if (name === "process_max_fds") return "min";
  return "sum";
}

function parseValue(v: string): number {
  if (v === "+Inf") return Infinity;
  if (v === "-Inf") return -Infinity;
  return Number(v);
}

/**
 * parseExposition reads the text format as gatehouse renders it (HELP and TYPE before each family's samples, no timestamps); a sample belongs to the family of
 * the TYPE line before it.
 */
export function parseExposition(text: string): Exposition {
  const out: Exposition = new Map();
  let current: Family | undefined;
  const family = (name: string): Family => {
    let f = out.get(name);
    if (!f) out.set(name, (f = { name, help: "", type: "untyped", samples: new Map() }));
    return f;
  };
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# HELP ")) {
      const rest = line.slice(7);
      const sp = rest.indexOf(" ");
      const f = family(sp < 0 ? rest : rest.slice(0, sp));
      f.help = sp < 0 ? "" : rest.slice(sp + 1);
      current = f;
    } else if (line.startsWith("# TYPE ")) {
      const [name = "", type = "untyped"] = line.slice(7).split(" ");
      current = family(name);
      current.type = type;
    } else if (!line.startsWith("#")) {
      const sp = line.lastIndexOf(" ");
      if (sp <= 0) continue;
      const series = line.slice(0, sp);
      const name = series.replace(/\{.*$/, "");
      const f = current && name.startsWith(current.name) ? current : family(name);
      f.samples.set(series, parseValue(line.slice(sp + 1)));
    }
  }
  return out;
}

/** renderExposition writes families back in the text format, one HELP and TYPE each. */
export function renderExposition(e: Exposition): string {
  const out: string[] = [];
  for (const f of e.values()) {
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    for (const [series, v] of f.samples) out.push(`${series} ${formatNumber(v)}`);
  }
  out.push("");
  return out.join("\n");
}

function cumulative(f: Family): boolean {
  return f.type === "counter" || f.type === "histogram";
}

/**
 * RETIRED_KEEP_MS is how long a retired series that no live worker reports is still served: long enough for the restarted worker to see the same traffic again,
 * short enough that endpoints that left are forgotten.
 */
export const RETIRED_KEEP_MS = 15 * 60_000;

type RetiredSample = { value: number; missingSince: number | undefined };

/**
 * MetricsMerger keeps what merging needs between scrapes: each worker's last exposition (used while it does not answer) and the counters of workers that
 * exited, so that the merged counters never go down when a worker is restarted (only its increments since the last scrape are lost).
 */
export class MetricsMerger {
  private readonly last = new Map<number, Exposition>();
  /** retired holds the last counter and histogram samples of exited workers, by family and series. */
  private readonly retired = new Map<string, Map<string, RetiredSample>>();

  /** update records a worker's fresh exposition (key: the worker process's serial, unique per spawn). */
  update(worker: number, e: Exposition): void {
    this.last.set(worker, e);
  }

  /** retire folds an exited worker's last counters into the retired sums and forgets it. */
  retire(worker: number): void {
    const e = this.last.get(worker);
    this.last.delete(worker);
    if (!e) return;
    for (const f of e.values()) {
      // Counters summed over processes (the CPU time too) keep what an exited worker had counted.
      const rule = ruleOf(f.name);
      if (!cumulative(f) || (rule !== "sum" && rule !== "all")) continue;
      let r = this.retired.get(f.name);
      if (!r) this.retired.set(f.name, (r = new Map()));
      for (const [series, v] of f.samples) {
        const cur = r.get(series);
        if (cur) cur.value += v;
        else r.set(series, { value: v, missingSince: undefined });
      }
    }
  }

  /**
   * merge combines the supervisor's own exposition with the last one of each live worker, family by family (the supervisor's order first). A retired series
   * that no live worker has had for RETIRED_KEEP_MS is dropped, so endpoints that left do not stay forever.
   */
  merge(own: Exposition, live: readonly number[], now = Date.now()): Exposition {
    const workers = live.map((w) => this.last.get(w)).filter((e): e is Exposition => e !== undefined);
    const names = new Set(own.keys());
    for (const e of workers) for (const name of e.keys()) names.add(name);
    const out: Exposition = new Map();
    for (const name of names) {
      const meta = own.get(name) ?? workers.find((e) => e.has(name))!.get(name)!;
      const rule = ruleOf(name);
      const f: Family = { name, help: meta.help, type: meta.type, samples: new Map() };
      out.set(name, f);
      if (rule === "supervisor") {
        for (const [s, v] of own.get(name)?.samples ?? []) f.samples.set(s, v);
        continue;
      }
      const sources = workers.map((e) => e.get(name)).filter((x): x is Family => x !== undefined);
      // The process families count the supervisor too, whatever their rule.
      if ((rule === "all" || name.startsWith("process_")) && own.has(name)) sources.push(own.get(name)!);
      for (const src of sources) {
        for (const [s, v] of src.samples) {
          const cur = f.samples.get(s);
          f.samples.set(s, cur === undefined ? v : rule === "min" ? Math.min(cur, v) : rule === "max" ? Math.max(cur, v) : cur + v);
        }
      }
      const retired = this.retired.get(name);
      if (!retired) continue;
      for (const [s, r] of retired) {
        const cur = f.samples.get(s);
        if (cur !== undefined) r.missingSince = undefined;
        else if (r.missingSince === undefined) r.missingSince = now;
        else if (now - r.missingSince > RETIRED_KEEP_MS) {
          retired.delete(s);
          continue;
        }
        f.samples.set(s, (cur ?? 0) + r.value);
      }
    }
    return out;
  }
}
