/** `gatehouse upgrade`: a new executable takes over a running instance's listeners (SO_REUSEPORT) and serves, then the old one drains and exits. */
import { spawn } from "node:child_process";
import { chownSync, closeSync, existsSync, fstatSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { isAbsolute } from "node:path";
import { writeFileAtomic } from "./lib/atomic-write.ts";
import { statusPath, type ReloadStatus } from "./instance-files.ts";
import { log } from "./observability/log.ts";

/**
 * UPGRADE_ENV names the instance a new one replaces: set (to the old pid) in the environment of the process the old instance starts, which binds its
 * listeners beside the old ones and, once it serves, sends the old one SIGTERM.
 */
export const UPGRADE_ENV = "GATEHOUSE_UPGRADE_FROM";
/** DEADLINE_MS is how long a successor may take to serve; past it, it is stopped and the old instance keeps serving. `gatehouse upgrade` waits as long. */
export const DEADLINE_MS = 120_000;
/** FRESH_MS: a request older than this is stale (left behind), not acted on. */
const FRESH_MS = 60_000;

/** UpgradeRequest is what `gatehouse upgrade` leaves beside the pid file for the running instance: the new executable (and script, from source). */
export type UpgradeRequest = { readonly cmd: readonly string[]; readonly by: number; readonly time: string };

/** requestPath is where the upgrade request of the instance with this pid file lives. */
export function requestPath(pidFile: string): string {
  return `${pidFile}.upgrade`;
}

/**
 * writeRequest leaves the request for the running instance (atomically, 0600). Written by root, it is handed to the owner of the pid file, the instance's
 * own user, which would not act on a file of anyone else's.
 */
export function writeRequest(pidFile: string, cmd: readonly string[], by: number, asRoot: boolean): void {
  const path = requestPath(pidFile);
  writeFileAtomic(path, `${JSON.stringify({ cmd, by, time: new Date().toISOString() })}\n`, 0o600, false);
  if (asRoot) {
    const owner = statSync(pidFile);
    chownSync(path, owner.uid, owner.gid);
  }
}

/**
 * catchesUpgrade says whether the process handles SIGUSR2 (its SigCgt mask in /proc): an instance older than `gatehouse upgrade` would die of it. true where
 * /proc cannot tell.
 */
export function catchesUpgrade(pid: number): boolean {
  try {
    const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return caught === undefined || (BigInt(`0x${caught}`) & (1n << 11n)) !== 0n;
  } catch {
    return true;
  }
}

/**
 * takeRequest reads and removes the request, and checks it can be trusted: a file of this process's own user (or root), writable by no one else, fresh, whose
 * command is an executable file and at most a script file beside it. Anything else is refused with the reason.
 */
function takeRequest(pidFile: string, euid: number): UpgradeRequest | string {
  const path = requestPath(pidFile);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    return `no request at ${path} (${(e as NodeJS.ErrnoException).code ?? e}): run gatehouse upgrade`;
  }
  try {
    const st = fstatSync(fd);
    rmSync(path, { force: true });
    if (st.uid !== euid && st.uid !== 0) return `${path} belongs to uid ${st.uid}, not to this instance's user`;
    if ((st.mode & 0o022) !== 0) return `${path} is writable by others (mode ${(st.mode & 0o777).toString(8)})`;
    const req = JSON.parse(readFileSync(fd, "utf8")) as UpgradeRequest;
    if (!(Date.now() - Date.parse(req.time) < FRESH_MS)) return `${path} is stale (written ${req.time})`;
    const cmd = req.cmd;
    const file = (p: unknown) => typeof p === "string" && isAbsolute(p) && existsSync(p) && statSync(p).isFile();
    if (!Array.isArray(cmd) || cmd.length < 1 || cmd.length > 2 || !cmd.every(file))
      return `${path} does not name an executable (and at most its script) by absolute paths: ${JSON.stringify(cmd)}`;
    return req;
  } catch (e) {
    return `${path} cannot be read: ${(e as Error).message}`;
  } finally {
    closeSync(fd);
  }
}

/** writeFailure tells `gatehouse upgrade` (through the status file) that no new instance took over; this one keeps serving. */
function writeFailure(pidFile: string, pid: number, problems: string[]): void {
  const status: ReloadStatus = { pid, seq: -1, result: "failure", time: new Date().toISOString(), problems, upgrade: true };
  try {
    writeFileAtomic(statusPath(pidFile), `${JSON.stringify(status)}\n`, 0o644, false);
  } catch (e) {
    log.warn("cannot write the status file", { path: statusPath(pidFile), error: String(e) });
  }
}

/**
 * Successor is the new instance a running one starts on SIGUSR2: the requested executable with `run -c CONFIG`, in its own session and process group (a
 * terminal's Ctrl-C is not for it), writing to this instance's stdout and stderr (the same journal). One at a time. If it exits, or has not served within
 * DEADLINE_MS (then its process group is stopped), the failure is logged and written to the status file, and this instance keeps serving.
 */
export class Successor {
  private child: ReturnType<typeof spawn> | undefined;
  private deadline: Timer | undefined;
  private tookOver = false;

  constructor(
    private readonly pid: number,
    private readonly euid: number,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /** starting says whether a successor runs and has not taken over yet. */
  get starting(): boolean {
    return this.child !== undefined && !this.tookOver;
  }

  /** refuse answers a request this instance cannot act on (starting, draining): the reason goes to the log and to `gatehouse upgrade`. */
  refuse(pidFile: string, why: string): void {
    rmSync(requestPath(pidFile), { force: true });
    log.warn("upgrade requested, not started", { reason: why });
    writeFailure(pidFile, this.pid, [`upgrade: ${why}`]);
  }

  /** start runs the requested executable for configPath; a request that cannot be used, or a second one while one starts, is refused. */
  start(pidFile: string, configPath: string): void {
    if (this.child !== undefined) {
      this.refuse(pidFile, `a new instance (pid ${this.child.pid}) is starting already`);
      return;
    }
    const req = takeRequest(pidFile, this.euid);
    if (typeof req === "string") {
      this.refuse(pidFile, req);
      return;
    }
    const cmd = [...req.cmd, "run", "-c", configPath];
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: "inherit", detached: true, env: { ...this.env, [UPGRADE_ENV]: String(this.pid) } });
    this.child = child;
    log.info("upgrade: starting the new executable; this instance serves until it does", { cmd, pid: child.pid, requested_by: req.by });
    const failed = (why: string) => {
      clearTimeout(this.deadline);
      if (this.tookOver || this.child !== child) return;
      this.child = undefined;
      log.error("upgrade failed: the new instance did not take over; this instance keeps serving", { error: why });
      writeFailure(pidFile, this.pid, [`upgrade: ${why}; see its log lines`]);
    };
    child.on("error", (e) => failed(`cannot start ${cmd[0]}: ${e.message}`));
    child.on("exit", (code, signal) => failed(`the new instance (pid ${child.pid}) exited with ${signal ?? `code ${code}`} before it served`));
    this.deadline = setTimeout(() => {
      failed(`the new instance (pid ${child.pid}) did not serve within ${DEADLINE_MS / 1000} s and was stopped`);
      this.stop(child);
    }, DEADLINE_MS);
    child.unref();
  }

  /** takenOver records that the successor serves (its SIGTERM is what made this instance drain); true when there was one starting. */
  takenOver(): boolean {
    if (!this.starting) return false;
    this.tookOver = true;
    clearTimeout(this.deadline);
    return true;
  }

  /** abandon stops a successor that has not taken over (this instance shuts down for another reason); it must not take over a service being stopped. */
  abandon(): void {
    if (!this.starting) return;
    const child = this.child!;
    this.child = undefined;
    clearTimeout(this.deadline);
    this.stop(child);
  }

  private stop(child: ReturnType<typeof spawn>): void {
    try {
      // Its whole process group: a supervisor and its workers.
      if (child.pid !== undefined) process.kill(-child.pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
}

/**
 * notifySystemd tells systemd that `pid` is the service's main process now (MAINPID, with NotifyAccess=all in the unit), so that the old instance's exit does
 * not stop the service. true when done or not run by systemd; false when systemd did not take it (then the old instance must not be stopped).
 */
export async function notifySystemd(env: NodeJS.ProcessEnv, pid: number): Promise<boolean> {
  if (!env.NOTIFY_SOCKET) return true;
  try {
    const p = Bun.spawn(["systemd-notify", `MAINPID=${pid}`], { env: { ...env } as Record<string, string>, stdout: "ignore", stderr: "pipe" });
    const code = await Promise.race([p.exited, Bun.sleep(5000).then(() => -1)]);
    if (code === 0) return true;
    if (code === -1) p.kill();
    log.error("upgrade: systemd-notify MAINPID failed", { code, error: (await new Response(p.stderr).text()).trim() });
  } catch (e) {
    log.error("upgrade: cannot run systemd-notify", { error: String(e) });
  }
  return false;
}
