/** Test harness: a real gateway as a child process on loopback, with a temp config dir, its JSON log lines, and helpers for origins and raw sockets. */
import dgram from "node:dgram";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";

export const ROOT = resolve(import.meta.dir, "..");
export const BUN = process.execPath;
export const MAIN = join(ROOT, "src/main.ts");

/** handedOut: ports freePort gave this test process; the kernel may offer a just-closed port again, and two listeners of one gateway must not get the same. */
const handedOut = new Set<number>();

/** freePort asks the kernel for a TCP port that is free now, never one it returned before in this process. */
export function freePort(): number {
  for (;;) {
    const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = s.port;
    s.stop(true);
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** freeUdpPort asks the kernel for a UDP port that nothing listens on now. */
export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(r));
  return port;
}

/** tempDir makes a directory removed by the returned cleanup. */
export function tempDir(prefix = "gatehouse-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export type LogLine = Record<string, unknown> & { level: string; msg: string };

export type GatewayOptions = {
  routes?: Record<string, string>;
  /** extra TOML appended to config.toml (after [listen]); use tables like [proxy] */
  extra?: string;
  /** top-level keys of config.toml (before [listen]) */
  top?: string;
  /** extra lines inside [listen] */
  listenExtra?: string;
  env?: Record<string, string>;
  cmd?: string[];
  /** httpPort fixes the plain HTTP listener's port (ACME HTTP-01 needs the port the CA connects to) */
  httpPort?: number;
  /** address is the loopback address the HTTP listener binds (default 127.0.0.1): nodes on 127.0.0.2, .3, .4 can share one port. */
  address?: string;
};

/** TestGateway is a running gateway process and what a test needs to talk to it. */
export class TestGateway {
  readonly logs: LogLine[] = [];
  readonly stderr: string[] = [];
  private exited: Promise<number>;

  constructor(
    readonly dir: string,
    readonly proc: Subprocess<"ignore", "pipe", "pipe">,
    readonly httpPort: number,
    readonly adminPort: number,
    readonly address = "127.0.0.1",
  ) {
    this.exited = proc.exited;
    void this.pump(proc.stdout, (line) => {
      try {
        this.logs.push(JSON.parse(line));
      } catch {
        this.logs.push({ level: "raw", msg: line });
      }
    });
    void this.pump(proc.stderr, (line) => this.stderr.push(line));
  }

  private async pump(stream: ReadableStream<Uint8Array>, onLine: (l: string) => void): Promise<void> {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) onLine(line);
      }
    }
  }

  get base(): string {
    return `http://${this.address}:${this.httpPort}`;
  }

  get admin(): string {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  /** request sends a request with a given Host to the gateway's HTTP listener. */
  request(host: string, path = "/", init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("host", host);
    return fetch(this.base + path, { ...init, headers, redirect: "manual" });
  }

  writeRoute(name: string, text: string): void {
    writeFileSync(join(this.dir, "routes", `${name}.toml`), text);
  }

  removeRoute(name: string): void {
    rmSync(join(this.dir, "routes", `${name}.toml`), { force: true });
  }

  /** reload sends SIGHUP and waits for the log line that reports the outcome (the supervisor's, not a worker's, with workers > 1). */
  async reload(): Promise<LogLine> {
    const seen = this.logs.length;
    this.proc.kill("SIGHUP");
    return this.waitForLog((l) => (l.msg === "config reloaded" || l.msg.startsWith("config rejected")) && l.worker === undefined, 10_000, seen);
  }

  async waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 5000, from = 0): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const hit = this.logs.slice(from).find(pred);
      if (hit) return hit;
      await Bun.sleep(10);
    }
    throw new Error(
      `no matching log line within ${timeoutMs}ms; last lines:\n${this.logs
        .slice(-10)
        .map((l) => JSON.stringify(l))
        .join("\n")}\n${this.stderr.join("\n")}`,
    );
  }

  /** metric is the value of one series of the admin /metrics text, named exactly (`name` or `name{labels}`); undefined when it is not there. */
  async metric(series: string): Promise<string | undefined> {
    const text = await (await fetch(`${this.admin}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`${series} `));
    return line?.slice(line.lastIndexOf(" ") + 1);
  }

  accessLogs(): LogLine[] {
    return this.logs.filter((l) => l.msg === "access");
  }

  /** rssKiB reads the process's resident set, and its peak, from /proc. */
  memory(): { rssKiB: number; peakKiB: number } {
    const status = require("node:fs").readFileSync(`/proc/${this.proc.pid}/status`, "utf8") as string;
    const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
    return { rssKiB: field("VmRSS"), peakKiB: field("VmHWM") };
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number> {
    if (this.proc.exitCode === null) this.proc.kill(signal);
    const code = await Promise.race([this.exited, Bun.sleep(10_000).then(() => -1)]);
    if (code === -1) this.proc.kill("SIGKILL");
    return code;
  }

  async cleanup(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** writeConfig lays out config.toml and routes/ in dir for the given ports. */
export function writeConfig(dir: string, httpPort: number, adminPort: number, opts: GatewayOptions = {}): string {
  mkdirSync(join(dir, "routes"), { recursive: true });
  const config = `routes_dir = "routes"
pid_file = "gatehouse.pid"
shutdown_grace = "5s"
${opts.top ?? ""}

[listen]
http = "${opts.address ?? "127.0.0.1"}:${httpPort}"
admin = "127.0.0.1:${adminPort}"
${opts.listenExtra ?? ""}

${opts.extra ?? ""}
`;
  writeFileSync(join(dir, "config.toml"), config);
  for (const [name, text] of Object.entries(opts.routes ?? {})) writeFileSync(join(dir, "routes", `${name}.toml`), text);
  return join(dir, "config.toml");
}

/** startGateway writes a config, starts `gatehouse run` and waits until /readyz answers 200. */
export async function startGateway(opts: GatewayOptions = {}): Promise<TestGateway> {
  const dir = tempDir();
  const httpPort = opts.httpPort ?? freePort();
  const adminPort = freePort();
  const configPath = writeConfig(dir, httpPort, adminPort, opts);
  const proc = Bun.spawn(opts.cmd ?? [BUN, MAIN, "run", "-c", configPath], {
    cwd: dir,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...opts.env },
  });
  const gw = new TestGateway(dir, proc, httpPort, adminPort, opts.address);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null)
      throw new Error(`gateway exited with ${proc.exitCode}:\n${gw.stderr.join("\n")}\n${gw.logs.map((l) => JSON.stringify(l)).join("\n")}`);
    try {
      if ((await fetch(`${gw.admin}/readyz`)).status === 200) return gw;
    } catch {
      // not listening yet
    }
    await Bun.sleep(20);
  }
  await gw.cleanup();
  throw new Error("gateway did not become ready within 10s");
}

/** origin starts a Bun.serve origin on loopback; stop it with .stop(true). */
export function origin(
  fetch: (req: Request, server: import("bun").Server<unknown>) => Response | Promise<Response> | undefined | Promise<undefined>,
  extra: Record<string, unknown> = {},
) {
  return Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: fetch as never, ...extra });
}

/** rawRequest writes bytes to the gateway and returns everything it sends back before closing (or timeoutMs). */
export function rawRequest(port: number, bytes: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolveP, reject) => {
    let buf = "";
    const timer = setTimeout(() => resolveP(buf), timeoutMs);
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          s.write(bytes);
        },
        data(_s, d) {
          buf += d.toString("latin1");
        },
        close() {
          clearTimeout(timer);
          resolveP(buf);
        },
        error(_s, e) {
          clearTimeout(timer);
          reject(e);
        },
      },
    }).catch(reject);
  });
}
