/** Running an [export] command: argv without a shell, in a process group of its own, killed (the whole group) at its timeout, the tail of its output kept. */
import type { Subprocess } from "bun";
import { log } from "../observability/log.ts";

/** OUTPUT_TAIL is how many bytes of the command's output (stdout and stderr together) are kept for the log: the last ones, where errors are. */
export const OUTPUT_TAIL = 4096;
/** KILL_GRACE_MS is how long a command has between SIGTERM at its timeout and SIGKILL. */
const KILL_GRACE_MS = 2000;

/** RunResult is how a command ended: its exit status or signal, whether the timeout killed it, the tail of its output, how long it took. */
export type RunResult = {
  readonly exit: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  /** error says why it did not start (no such program, not executable). */
  readonly error?: string;
  readonly output: string;
  readonly ms: number;
};

/** TailBuffer keeps the last `limit` bytes written to it. */
class TailBuffer {
  private chunks: Uint8Array[] = [];
  private size = 0;

  constructor(private readonly limit: number) {}

  push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.size += chunk.byteLength;
    while (this.chunks.length > 1 && this.size - this.chunks[0]!.byteLength >= this.limit) this.size -= this.chunks.shift()!.byteLength;
  }

  text(): string {
    const all = Buffer.concat(this.chunks);
    const tail = all.byteLength > this.limit ? all.subarray(all.byteLength - this.limit) : all;
    return `${all.byteLength > this.limit ? "…" : ""}${tail.toString("utf8")}`;
  }
}

async function drain(stream: ReadableStream<Uint8Array>, into: TailBuffer): Promise<void> {
  try {
    for await (const chunk of stream) into.push(chunk);
  } catch {
    // the pipe broke with the process: what came is kept
  }
}

/** running are the process groups of the commands running now, for endCommands. */
const running = new Set<number>();

/** endCommands ends every command still running (SIGTERM to its group): gatehouse is stopping, and nothing it started may outlive it. */
export function endCommands(): void {
  for (const pid of running) killGroup(pid, "SIGTERM");
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // gone already
  }
}

/**
 * runCommand runs argv (no shell) with stdin closed, in a session of its own so that the timeout kills what it started too: SIGTERM to the group at
 * timeoutMs, SIGKILL KILL_GRACE_MS later. Never throws; a program that cannot start is a result with `error`.
 */
export async function runCommand(argv: readonly string[], timeoutMs: number): Promise<RunResult> {
  const t0 = performance.now();
  const out = new TailBuffer(OUTPUT_TAIL);
  let proc: Subprocess<"ignore", "pipe", "pipe">;
  try {
    proc = Bun.spawn([...argv], { stdin: "ignore", stdout: "pipe", stderr: "pipe", detached: true });
  } catch (e) {
    return { exit: null, signal: null, timedOut: false, error: String((e as Error).message ?? e), output: "", ms: Math.round(performance.now() - t0) };
  }
  running.add(proc.pid);
  const streams = Promise.all([drain(proc.stdout, out), drain(proc.stderr, out)]);
  let timedOut = false;
  let hard: Timer | undefined;
  const soft = setTimeout(() => {
    timedOut = true;
    log.warn("export command timed out; killing it", { argv, timeout_s: timeoutMs / 1000, pid: proc.pid });
    killGroup(proc.pid, "SIGTERM");
    hard = setTimeout(() => killGroup(proc.pid, "SIGKILL"), KILL_GRACE_MS);
  }, timeoutMs);
  await proc.exited;
  running.delete(proc.pid);
  clearTimeout(soft);
  clearTimeout(hard);
  // A child it left behind may hold the pipes open: the output is waited for a moment, not for ever.
  await Promise.race([streams, Bun.sleep(500)]);
  if (timedOut) killGroup(proc.pid, "SIGKILL");
  return {
    exit: proc.exitCode,
    signal: proc.signalCode === null ? null : String(proc.signalCode),
    timedOut,
    output: out.text(),
    ms: Math.round(performance.now() - t0),
  };
}
