/** JSON-lines logging to stdout: lifecycle events, errors and the access log, batched per event-loop turn. */
import { writeSync } from "node:fs";
import type { LogLevel } from "../config/types.ts";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** LogSink receives finished lines; the default writes to stdout. */
export type LogSink = (chunk: string) => void;

/**
 * stdoutSink writes through Bun's own buffered writer: process.stdout would load Node's stream machinery, a noticeable part of start-up. A closed pipe throws
 * (EPIPE), and the logger then turns to stderr.
 */
function stdoutSink(): LogSink {
  const out = Bun.stdout.writer();
  return (s) => {
    out.write(s);
    const done = out.flush();
    if (done instanceof Promise) done.catch(() => undefined);
  };
}

function stderrSink(s: string): void {
  try {
    writeSync(2, s);
  } catch {
    // nowhere left to write
  }
}

/** Logger writes one JSON object per line: `time`, `level`, `msg`, then the fields given. */
export class Logger {
  private pending: string[] = [];
  private scheduled = false;
  private threshold = LEVELS.info;
  access = true;
  /**
   * worker is the index of this worker process (1…N) when a supervisor runs it: every line then carries it, so the lines of sibling workers can be told apart.
   */
  worker: number | undefined;

  constructor(private sink: LogSink = stdoutSink()) {}

  /** setSink sends the following lines elsewhere (tests read them this way). */
  setSink(sink: LogSink): void {
    this.sink = sink;
  }

  /** setLevel changes the lowest level written (the access log is written whatever the level, unless access is false). */
  setLevel(level: LogLevel): void {
    this.threshold = LEVELS[level];
  }

  /** log writes one event if its level is enabled; fields must be JSON-serialisable. */
  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    if (LEVELS[level] < this.threshold) return;
    const head = `{"time":"${new Date().toISOString()}","level":"${level}","msg":${JSON.stringify(msg)}${this.worker === undefined ? "" : `,"worker":${this.worker}`}`;
    const body = fields ? JSON.stringify(fields) : "{}";
    this.push(body.length > 2 ? `${head},${body.slice(1)}\n` : `${head}}\n`);
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.log("error", msg, fields);
  }

  /** push queues a pre-built JSON line (the access log builds its own, for speed). */
  push(line: string): void {
    this.pending.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushNow);
    }
  }

  /** flushNow writes everything queued; called per event-loop turn and at exit. */
  readonly flushNow = (): void => {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const chunk = this.pending.join("");
    this.pending = [];
    try {
      this.sink(chunk);
    } catch {
      // stdout is gone (its reader closed the pipe): the lines go to stderr from now on rather than nowhere
      this.sink = stderrSink;
      stderrSink(chunk);
    }
  };
}

/** log is the process-wide logger. */
export const log = new Logger();
