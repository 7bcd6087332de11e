/** A small Prometheus registry: counters, gauges and histograms with bounded label sets, rendered in the text exposition format. */

/** Cell is one labelled sample; the hot path keeps a reference to it and bumps `value`. */
export type Cell = { value: number };

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labelText(names: readonly string[], values: readonly string[]): string {
  if (names.length === 0) return "";
  return `{${names.map((n, i) => `${n}="${escapeLabel(values[i] ?? "")}"`).join(",")}}`;
}

/** formatNumber renders a sample value as the Prometheus text format spells it (NaN, +Inf, -Inf, else the shortest decimal). */
export function formatNumber(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

interface Metric {
  readonly name: string;
  render(out: string[]): void;
}

abstract class Labelled<T> implements Metric {
  protected readonly children = new Map<string, { values: string[]; child: T }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: string,
    readonly labelNames: readonly string[],
  ) {}

  protected abstract make(): T;

  /** labels returns the child for these label values, creating it on first use; callers on the hot path keep the result. */
  labels(...values: string[]): T {
    const key = values.join("\u0001");
    let entry = this.children.get(key);
    if (!entry) {
      entry = { values, child: this.make() };
      this.children.set(key, entry);
    }
    return entry.child;
  }

  /** remove drops one child (a route or endpoint that left the config). */
  remove(...values: string[]): void {
    this.children.delete(values.join("\u0001"));
  }

  /** retain keeps only the children for which keep(values) is true. */
  retain(keep: (values: readonly string[]) => boolean): void {
    for (const [k, e] of this.children) if (!keep(e.values)) this.children.delete(k);
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`);
    for (const { values, child } of this.children.values()) this.renderChild(out, values, child);
  }

  protected abstract renderChild(out: string[], values: readonly string[], child: T): void;
}

/** Counter is a monotonically increasing value per label set. */
export class Counter extends Labelled<Cell> {
  /** collect (optional) sets the count at scrape time, for counts kept elsewhere (the process's CPU time). */
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    private readonly collect?: (c: Counter) => void,
  ) {
    super(name, help, "counter", labelNames);
  }
  protected make(): Cell {
    return { value: 0 };
  }
  override render(out: string[]): void {
    this.collect?.(this);
    super.render(out);
  }
  protected renderChild(out: string[], values: readonly string[], c: Cell): void {
    out.push(`${this.name}${labelText(this.labelNames, values)} ${formatNumber(c.value)}`);
  }
}

/** Gauge is a value that goes up and down; `collect` (optional) refreshes it at scrape time. */
export class Gauge extends Labelled<Cell> {
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    private readonly collect?: (g: Gauge) => void,
  ) {
    super(name, help, "gauge", labelNames);
  }
  protected make(): Cell {
    return { value: 0 };
  }
  override render(out: string[]): void {
    this.collect?.(this);
    super.render(out);
  }
  protected renderChild(out: string[], values: readonly string[], c: Cell): void {
    out.push(`${this.name}${labelText(this.labelNames, values)} ${formatNumber(c.value)}`);
  }
}

/** HistogramCell holds one label set's per-bucket counts (not cumulative; summed at render), sum and count. */
export class HistogramCell {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }
  /** observe records one value: a scan of about a dozen bounds, no allocation. */
  observe(v: number): void {
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        this.counts[i]!++;
        break;
      }
    }
    this.sum += v;
    this.count++;
  }
}

/** DURATION_BUCKETS suit request latencies in seconds, from 1 ms to 30 s. */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Histogram counts observations into fixed buckets per label set. */
export class Histogram extends Labelled<HistogramCell> {
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    readonly bounds: readonly number[] = DURATION_BUCKETS,
  ) {
    super(name, help, "histogram", labelNames);
  }
  protected make(): HistogramCell {
    return new HistogramCell(this.bounds);
  }
  protected renderChild(out: string[], values: readonly string[], h: HistogramCell): void {
    const names = [...this.labelNames, "le"];
    let cumulative = 0;
    this.bounds.forEach((b, i) => {
      cumulative += h.counts[i]!;
      out.push(`${this.name}_bucket${labelText(names, [...values, formatNumber(b)])} ${cumulative}`);
    });
    out.push(`${this.name}_bucket${labelText(names, [...values, "+Inf"])} ${h.count}`);
    out.push(`${this.name}_sum${labelText(this.labelNames, values)} ${formatNumber(h.sum)}`);
    out.push(`${this.name}_count${labelText(this.labelNames, values)} ${h.count}`);
  }
}

/** Registry holds metrics in registration order and renders them for /metrics. */
export class Registry {
  private readonly metrics: Metric[] = [];

  /** register adds a metric and returns it. */
  register<T extends Metric>(m: T): T {
    this.metrics.push(m);
    return m;
  }

  /** render produces the whole text exposition (version 0.0.4). */
  render(): string {
    const out: string[] = [];
    for (const m of this.metrics) m.render(out);
    out.push("");
    return out.join("\n");
  }
}
