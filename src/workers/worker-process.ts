/** One worker child process as its supervisor sees it: spawned with an IPC channel, asked questions that time out, its log lines relayed whole, its exit. */
import type { Subprocess } from "bun";
import { log } from "../observability/log.ts";
import type { DistributiveOmit, FromWorker, Init, Reply, Request, ToWorker } from "./protocol.ts";

/** SpawnSpec is how to start a worker: the command (this executable, and the script when running from source) and its environment. */
export type SpawnSpec = { readonly cmd: readonly string[]; readonly env: Record<string, string | undefined> };

/** WorkerGone is the error of a request whose worker exited before answering (its replacement starts from the current state, so callers may ignore it). */
export class WorkerGone extends Error {}

type Waiting = { resolve: (r: Reply) => void; reject: (e: Error) => void; timer: Timer };

let serials = 0;

/** WorkerProcess runs one worker; `started` settles when it is ready (listeners bound) or failed, `exited` when the process is gone. */
export class WorkerProcess {
  /** serial is unique per spawn (a restarted worker keeps its index, not its serial). */
  readonly serial = ++serials;
  readonly startedAt = Date.now();
  ready = false;
  exitCode: number | null = null;
  /** finalMetrics is the exposition a stopping worker sent just before it exited (its last increments), if it did. */
  finalMetrics: string | undefined;
  readonly started: Promise<void>;
  readonly exited: Promise<number>;
  /** relayed resolves when the worker's stdout has been relayed to the end. */
  readonly relayed: Promise<void>;
  private readonly proc: Subprocess<"ignore", "pipe", "inherit">;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private settle!: { ok: () => void; fail: (e: Error) => void };

  /** The constructor throws when the process cannot be started (no executable, out of processes or files). */
  constructor(
    readonly index: number,
    spec: SpawnSpec,
    init: Init,
    public configSeq: number,
  ) {
    this.started = new Promise<void>((ok, fail) => (this.settle = { ok, fail }));
    this.started.catch(() => undefined);
    this.proc = Bun.spawn([...spec.cmd], {
      env: spec.env,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "inherit",
      serialization: "json",
      ipc: (msg: FromWorker) => this.onMessage(msg),
    });
    this.relayed = relay(this.proc.stdout);
    this.exited = this.proc.exited.then((code) => {
      this.exitCode = code;
      this.ready = false;
      this.settle.fail(new Error(`worker ${index} exited (${this.describeExit()}) before it was ready`));
      for (const [id, w] of this.waiting) {
        clearTimeout(w.timer);
        w.reject(new WorkerGone(`worker ${index} exited`));
        this.waiting.delete(id);
      }
      return code;
    });
    try {
      this.proc.send(init);
    } catch {
      // It is gone already, or its channel is: it would never start. Its exit is handled as any other.
      this.proc.kill("SIGKILL");
    }
  }

  get pid(): number {
    return this.proc.pid;
  }

  get alive(): boolean {
    return this.exitCode === null;
  }

  /** describeExit says how the process ended: its exit code or the signal that killed it. */
  describeExit(): string {
    return this.proc.signalCode ? `signal ${this.proc.signalCode}` : `code ${this.proc.exitCode}`;
  }

  private onMessage(msg: FromWorker): void {
    if (msg.t === "ready") {
      this.ready = true;
      this.settle.ok();
    } else if (msg.t === "failed") {
      this.settle.fail(Object.assign(new Error(msg.problems.join("; ")), { problems: msg.problems.map((p) => `worker ${this.index}: ${p}`) }));
    } else if (msg.t === "final") {
      this.finalMetrics = msg.metrics;
      // The worker exits once it hears this, so the numbers are in before its exit is seen.
      try {
        this.proc.send({ t: "bye" } satisfies ToWorker);
      } catch {
        // gone already: it stops waiting after a moment
      }
    } else if (msg.t === "reply") {
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      clearTimeout(w.timer);
      w.resolve(msg);
    }
  }

  /** request sends a request and resolves with the worker's reply; it rejects after timeoutMs, or with WorkerGone when the worker exits first. */
  request(msg: DistributiveOmit<Request, "id">, timeoutMs: number): Promise<Reply> {
    if (!this.alive) return Promise.reject(new WorkerGone(`worker ${this.index} exited`));
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`worker ${this.index} did not answer ${msg.t} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
      try {
        this.proc.send({ ...msg, id } as Request);
      } catch (e) {
        clearTimeout(timer);
        this.waiting.delete(id);
        reject(this.alive ? (e as Error) : new WorkerGone(`worker ${this.index} exited`));
      }
    });
  }

  /** kill sends a signal (SIGTERM: drain and exit; SIGKILL: at once); nothing when it has exited. */
  kill(signal: NodeJS.Signals): void {
    if (this.alive) this.proc.kill(signal);
  }
}

/** relay copies a worker's JSON lines to this process's log in whole lines, so that lines of several workers never interleave mid-line on a shared stdout. */
async function relay(stream: ReadableStream<Uint8Array>): Promise<void> {
  const dec = new TextDecoder();
  let buf = "";
  try {
    for await (const chunk of stream) {
      buf += dec.decode(chunk, { stream: true });
      const nl = buf.lastIndexOf("\n");
      if (nl < 0) continue;
      log.push(buf.slice(0, nl + 1));
      buf = buf.slice(nl + 1);
    }
  } catch {
    // the pipe broke with the process; what was read is relayed
  }
  if (buf) log.push(`${buf}\n`);
}
