/** The supervisor's worker processes, one slot each: spawning them, restarting those that exit (with back-off), stopping the surplus when `workers` is lowered, and stopping them all. */
import { log } from "../observability/log.ts";
import { Counter, Gauge, Registry } from "../observability/metrics.ts";
import type { Init } from "./protocol.ts";
import { WorkerProcess, type SpawnSpec } from "./worker-process.ts";

const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 10_000;
/** STABLE_MS: a worker that ran this long before it exited is restarted after the shortest delay again. */
const STABLE_MS = 30_000;

type Slot = {
  readonly index: number;
  worker: WorkerProcess | undefined;
  backoff: number;
  restarts: number;
  timer: Timer | undefined;
  spawnError: string | undefined;
};

/** workerMetrics is the supervisor's registry of its own metrics (its workers: restarts, how many are ready), rendered with the merged ones. */
export const workerMetrics = new Registry();
const workerRestarts = workerMetrics.register(new Counter("gatehouse_worker_restarts_total", "Worker processes restarted after they exited unexpectedly."));
workerRestarts.labels();
let readyWorkers = (): number => 0;
workerMetrics.register(new Gauge("gatehouse_workers", "Worker processes running with their listeners bound.", [], (g) => (g.labels().value = readyWorkers())));

/** WorkerSetOptions: how to start worker `index`, what a new worker is told first, and whom to tell when a worker has exited. */
export type WorkerSetOptions = {
  readonly spawn: (index: number) => SpawnSpec;
  /** init is a new worker's first message (the live snapshot, the HTTP-01 tokens and TLS-ALPN-01 certificates being proven); configSeq numbers that snapshot. */
  readonly init: () => Init;
  readonly configSeq: () => number;
  /** starting is true while the supervisor starts: a worker that cannot be spawned then fails the start instead of being tried again. */
  readonly starting: () => boolean;
  /** exited hears of every worker that exited (its final numbers), before it is restarted. */
  readonly exited: (w: WorkerProcess) => void;
};

/** WorkerDescription is one slot as the admin API's /workers lists it. */
export type WorkerDescription = { worker: number; pid: number | null; ready: boolean; started: string | null; restarts: number };

/** WorkerSet is slots 1…N, each with its worker process (undefined between a crash and its restart); stopAll() ends them for good. */
export class WorkerSet {
  private readonly slots: Slot[] = [];
  /** stopped are workers draining after `workers` was lowered; stopAll waits for them too. */
  private readonly stopped = new Set<WorkerProcess>();
  private stopping = false;

  constructor(private readonly opts: WorkerSetOptions) {
    readyWorkers = () => this.slots.filter((s) => s.worker?.ready).length;
  }

  /** size is the number of slots (the configured `workers`). */
  get size(): number {
    return this.slots.length;
  }

  /** anyReady is true when at least one worker has its listeners bound. */
  anyReady(): boolean {
    return this.slots.some((s) => s.worker?.ready);
  }

  /** describe lists every slot: its worker's pid, readiness and start, and how often it was restarted. */
  describe(): WorkerDescription[] {
    return this.slots.map((s) => ({
      worker: s.index,
      pid: s.worker?.pid ?? null,
      ready: s.worker?.ready ?? false,
      started: s.worker ? new Date(s.worker.startedAt).toISOString() : null,
      restarts: s.restarts,
    }));
  }

  /** pids are the slots' worker pids, undefined for an empty slot. */
  pids(): (number | undefined)[] {
    return this.slots.map((s) => s.worker?.pid);
  }

  /** running are the slots' workers whose process is alive. */
  running(): WorkerProcess[] {
    return this.slots.map((s) => s.worker).filter((w): w is WorkerProcess => w?.alive === true);
  }

  /** draining are the workers still alive that were stopped because `workers` was lowered. */
  draining(): WorkerProcess[] {
    return [...this.stopped].filter((w) => w.alive);
  }

  /** isCurrent is true when w is still its slot's worker (not restarted, not stopped since). */
  isCurrent(w: WorkerProcess): boolean {
    return this.slots[w.index - 1]?.worker === w;
  }

  /** assertSpawned throws, naming the first, when a slot has no worker because its process could not be started. */
  assertSpawned(): void {
    const unstarted = this.slots.find((s) => !s.worker);
    if (unstarted) throw new Error(`cannot start worker ${unstarted.index}: ${unstarted.spawnError}`);
  }

  /** allStarted settles when every slot's worker is ready, or rejects with the first that failed (assertSpawned first: every slot must have one). */
  allStarted(): Promise<unknown[]> {
    return Promise.all(this.slots.map((s) => s.worker!.started));
  }

  /** resize starts or stops workers until there are n (stopped ones drain as on SIGTERM). */
  resize(n: number): void {
    while (this.slots.length < n && !this.stopping) {
      const slot: Slot = { index: this.slots.length + 1, worker: undefined, backoff: MIN_BACKOFF_MS, restarts: 0, timer: undefined, spawnError: undefined };
      this.slots.push(slot);
      this.spawn(slot);
    }
    while (this.slots.length > n) {
      const slot = this.slots.pop()!;
      clearTimeout(slot.timer);
      const w = slot.worker;
      slot.worker = undefined;
      if (!w) continue;
      this.stopped.add(w);
      void w.exited.then(() => this.stopped.delete(w));
      w.kill("SIGTERM");
      log.info("worker stopped: fewer workers configured", { worker: slot.index, pid: w.pid });
    }
  }

  /**
   * spawn starts the slot's worker; when the process cannot even be started (the executable being replaced, out of processes or files) it is tried again like a
   * worker that exited (during the start, the start fails instead).
   */
  private spawn(slot: Slot): void {
    let w: WorkerProcess;
    try {
      w = new WorkerProcess(slot.index, this.opts.spawn(slot.index), this.opts.init(), this.opts.configSeq());
    } catch (e) {
      slot.worker = undefined;
      slot.spawnError = String((e as Error)?.message ?? e);
      if (this.opts.starting()) return;
      this.scheduleRestart(slot, "cannot start a worker process; trying again", { error: slot.spawnError });
      return;
    }
    slot.worker = w;
    slot.spawnError = undefined;
    log.info("worker started", { worker: slot.index, pid: w.pid });
    void w.exited.then(() => this.exited(slot, w));
  }

  private exited(slot: Slot, w: WorkerProcess): void {
    this.opts.exited(w);
    if (slot.worker !== w) return;
    slot.worker = undefined;
    // During the start too: a worker that fails then fails the start, which cancels this restart.
    if (Date.now() - w.startedAt >= STABLE_MS) slot.backoff = MIN_BACKOFF_MS;
    this.scheduleRestart(slot, "worker exited unexpectedly; restarting it", { pid: w.pid, exit: w.describeExit() });
  }

  /** scheduleRestart starts the slot's worker again after its back-off (100 ms, doubling with each failure in a row up to 10 s), counted as a restart. */
  private scheduleRestart(slot: Slot, msg: string, fields: Record<string, unknown>): void {
    if (this.stopping) return;
    clearTimeout(slot.timer);
    const delay = slot.backoff;
    slot.backoff = Math.min(MAX_BACKOFF_MS, slot.backoff * 2);
    slot.restarts++;
    workerRestarts.labels().value++;
    log.error(msg, { worker: slot.index, ...fields, restart_in_ms: delay });
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (!this.stopping && this.slots[slot.index - 1] === slot && !slot.worker) this.spawn(slot);
    }, delay);
  }

  /** stopAll sends SIGTERM to every worker, waits for them within waitMs, then kills the rest; no worker is started or restarted after it is called. */
  async stopAll(waitMs: number): Promise<void> {
    this.stopping = true;
    for (const s of this.slots) clearTimeout(s.timer);
    const all = [...this.slots.map((s) => s.worker).filter((w): w is WorkerProcess => w !== undefined), ...this.stopped];
    for (const w of all) w.kill("SIGTERM");
    let timer: Timer | undefined;
    await Promise.race([Promise.all(all.map((w) => w.exited)), new Promise((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
    for (const w of all) {
      if (!w.alive) continue;
      log.warn("worker did not stop in time; killing it", { worker: w.index, pid: w.pid });
      w.kill("SIGKILL");
    }
    await Promise.all(all.map((w) => w.exited));
    // Their last lines ("stopped") reach the log before the supervisor's own.
    await Promise.race([Promise.all(all.map((w) => w.relayed)), Bun.sleep(1000)]);
  }
}
