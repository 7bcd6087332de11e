/** Periodic probes of many targets (active health checks): one jittered timer per target, the results in a row counted, the running set following the wanted one. */

/** ProbeKind says how to probe a target with its settings, what a result means, and when to probe next. */
export type ProbeKind<T, S> = {
  /** probe checks t once; it never throws (a failure is { ok: false }). */
  probe(t: T, s: S): Promise<{ readonly ok: boolean; readonly detail: string }>;
  /** judged takes a result with its streak: n > 0 successes in a row, -n failures in a row. */
  judged(t: T, s: S, ok: boolean, detail: string, streak: number): void;
  /** firstDelay is the wait before the first probe (spread, so that many targets do not fire at once), nextDelay the wait after each. */
  firstDelay(s: S): number;
  nextDelay(s: S): number;
  /** released is told of a target no longer probed at all (its settings removed, not changed). */
  released(t: T): void;
};

/** Prober probes one target until stopped. */
class Prober<T, S> {
  private timer: Timer | undefined;
  private streak = 0;
  private stopped = false;

  constructor(
    private readonly kind: ProbeKind<T, S>,
    private readonly target: T,
    private readonly settings: S,
    /** key is the settings' JSON: other settings restart the prober. */
    readonly key: string,
  ) {}

  start(): void {
    this.schedule(this.kind.firstDelay(this.settings));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.run(), Math.max(0, delay));
    this.timer.unref?.();
  }

  private async run(): Promise<void> {
    const r = await this.kind.probe(this.target, this.settings);
    if (this.stopped) return;
    this.streak = r.ok ? Math.max(1, this.streak + 1) : Math.min(-1, this.streak - 1);
    this.kind.judged(this.target, this.settings, r.ok, r.detail, this.streak);
    this.schedule(Math.max(50, this.kind.nextDelay(this.settings)));
  }
}

/** Probes keeps one prober per wanted target; reconcile() after each change starts, restarts (changed settings) and stops them. */
export class Probes<T, S> {
  private readonly probers = new Map<T, Prober<T, S>>();

  constructor(private readonly kind: ProbeKind<T, S>) {}

  /** reconcile makes the running probers match wanted (target → its settings). */
  reconcile(wanted: ReadonlyMap<T, S>): void {
    for (const [t, p] of this.probers) {
      const w = wanted.get(t);
      if (w === undefined || JSON.stringify(w) !== p.key) {
        p.stop();
        this.probers.delete(t);
        if (w === undefined) this.kind.released(t);
      }
    }
    for (const [t, s] of wanted) {
      if (this.probers.has(t)) continue;
      const p = new Prober(this.kind, t, s, JSON.stringify(s));
      this.probers.set(t, p);
      p.start();
    }
  }

  /** stopAll ends every prober (shutdown). */
  stopAll(): void {
    for (const p of this.probers.values()) p.stop();
    this.probers.clear();
  }
}
