/** `gatehouse upgrade`: a new executable takes over a running instance's listeners (SO_REUSEPORT) and serves, then the old one drains and exits. */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute } from "node:path";
import { writeFileAtomic } from "./lib/atomic-write.ts";
import { statusPath, type ReloadStatus } from "./instance-files.ts";
import { log } from "./observability/log.ts";

/**
 * UPGRADE_ENV names the instance a new one replaces: set (to the old pid) in the environment of the process the old instance starts, which binds its
 * listeners beside the old ones and, once it serves, sends the old one SIGTERM.
 */
export const UPGRADE_ENV = "GATEHOUSE_UPGRADE_FROM";

/** UpgradeRequest is what `gatehouse upgrade` leaves beside the pid file for the running instance: the command of the new executable. */
export type UpgradeRequest = { readonly cmd: readonly string[]; readonly by: number; readonly time: string };

/** requestPath is where the upgrade request of the instance with this pid file lives. */
export function requestPath(pidFile: string): string {
  return `${pidFile}.upgrade`;
}

/** writeRequest leaves the request for the running instance (atomically; 0600: the command is run by the instance). */
export function writeRequest(pidFile: string, cmd: readonly string[], by: number): void {
  writeFileAtomic(requestPath(pidFile), `${JSON.stringify({ cmd, by, time: new Date().toISOString() })}\n`, 0o600, false);
}

/** readRequest reads a request; undefined (and why, logged) when there is none or its command is not an absolute path to a file. */
function readRequest(pidFile: string): UpgradeRequest | undefined {
  try {
    const req = JSON.parse(readFileSync(requestPath(pidFile), "utf8")) as UpgradeRequest;
    const exe = req.cmd?.[0];
    if (typeof exe !== "string" || !isAbsolute(exe) || !existsSync(exe)) throw new Error(`${JSON.stringify(exe)} is not an absolute path to a file`);
    return req;
  } catch (e) {
    log.error("upgrade requested, but its request cannot be used; this instance keeps serving", { path: requestPath(pidFile), error: String(e) });
    return undefined;
  }
}

/** writeFailure tells `gatehouse upgrade` (through the status file) that the new instance did not take over; this one keeps serving. */
function writeFailure(pidFile: string, pid: number, problems: string[]): void {
  const status: ReloadStatus = { pid, seq: -1, result: "failure", time: new Date().toISOString(), problems, upgrade: true };
  try {
    writeFileAtomic(statusPath(pidFile), `${JSON.stringify(status)}\n`, 0o644, false);
  } catch (e) {
    log.warn("cannot write the status file", { path: statusPath(pidFile), error: String(e) });
  }
}

/**
 * Successor is the new instance a running one starts on SIGUSR2: the requested executable with `run -c CONFIG`, in its own session (a terminal's Ctrl-C is not
 * for it), writing to this instance's stdout and stderr (the same journal). One at a time; if it exits before taking over, the failure is logged and written
 * to the status file, and this instance keeps serving.
 */
export class Successor {
  private child: ReturnType<typeof spawn> | undefined;
  /** tookOver is set once the successor sent this instance SIGTERM: it serves. */
  tookOver = false;

  constructor(
    private readonly pid: number,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /** start runs the requested executable for configPath; false (logged) when no usable request is there or one is already starting. */
  start(pidFile: string, configPath: string): boolean {
    if (this.child !== undefined) {
      log.warn("upgrade requested while one is starting; ignored", { pid: this.child.pid });
      return false;
    }
    const req = readRequest(pidFile);
    if (req === undefined) return false;
    const cmd = [...req.cmd, "run", "-c", configPath];
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: "inherit", detached: true, env: { ...this.env, [UPGRADE_ENV]: String(this.pid) } });
    this.child = child;
    log.info("upgrade: starting the new executable; this instance serves until it does", { cmd, pid: child.pid, requested_by: req.by });
    const failed = (why: string) => {
      this.child = undefined;
      if (this.tookOver) return;
      log.error("upgrade failed: the new instance did not take over; this instance keeps serving", { error: why });
      writeFailure(pidFile, this.pid, [`upgrade: ${why}; see its log lines`]);
    };
    child.on("error", (e) => failed(`cannot start ${cmd[0]}: ${e.message}`));
    child.on("exit", (code, signal) => failed(`the new instance (pid ${child.pid}) exited with ${signal ?? `code ${code}`} before it served`));
    child.unref();
    return true;
  }
}

/**
 * notifySystemd tells systemd that `pid` is the service's main process now (MAINPID, with NotifyAccess=all in the unit), so that the old instance's exit does
 * not stop the service; nothing when not run by systemd.
 */
export function notifySystemd(env: NodeJS.ProcessEnv, pid: number): void {
  if (!env.NOTIFY_SOCKET) return;
  try {
    const r = Bun.spawnSync(["systemd-notify", `MAINPID=${pid}`], { env: { ...env } as Record<string, string>, stdout: "ignore", stderr: "pipe" });
    if (r.exitCode !== 0)
      log.warn("systemd-notify MAINPID failed; systemd may stop the service when the old instance exits", { error: r.stderr.toString().trim() });
  } catch (e) {
    log.warn("cannot run systemd-notify; systemd may stop the service when the old instance exits", { error: String(e) });
  }
}
