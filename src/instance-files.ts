/** The files by which `gatehouse reload` finds a running instance and hears back from it: the pid file and the reload status beside it. */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { writeFileAtomic } from "./lib/atomic-write.ts";
import { configLastReloadSuccess, configLastReloadTime, configReloads } from "./observability/gateway-metrics.ts";
import { log } from "./observability/log.ts";

/** ReloadStatus is what the instance writes next to its pid file after each (re)load, for `gatehouse reload` to read. */
export type ReloadStatus = {
  pid: number;
  seq: number;
  result: "success" | "failure";
  time: string;
  problems: string[];
  /** upgrade marks the outcome of a `gatehouse upgrade` that failed (written by the old instance, which keeps serving). */
  upgrade?: boolean;
};

/** ReloadOutcome is what a reload did (a Gateway's or a Supervisor's): applied, or rejected with the problems in `gatehouse check` format. */
export type ReloadOutcome = { readonly ok: boolean; readonly problems: string[] };

/** statusPath is where the reload status of the instance with this pid file lives. */
export function statusPath(pidFile: string): string {
  return `${pidFile}.status`;
}

/**
 * recordReload counts a (re)load in the metrics and writes the outcome to the status file beside the pid file (when there is one) for `gatehouse reload`; seq 0
 * is the start, not counted as a reload.
 */
export function recordReload(status: ReloadStatus, pidFile: string | undefined): void {
  if (status.seq > 0) configReloads.labels(status.result).value++;
  configLastReloadSuccess.labels().value = status.result === "success" ? 1 : 0;
  configLastReloadTime.labels().value = Date.now() / 1000;
  if (!pidFile) return;
  try {
    writeFileAtomic(statusPath(pidFile), `${JSON.stringify(status)}\n`, 0o644, false);
  } catch (e) {
    log.warn("cannot write the reload status file", { path: statusPath(pidFile), error: String(e) });
  }
}

/** writePidFile writes pid atomically for `gatehouse reload`; it returns the path, or undefined (logged) when it cannot be written. */
export function writePidFile(path: string, pid: number): string | undefined {
  try {
    writeFileAtomic(path, `${pid}\n`, 0o644, false);
    return path;
  } catch (e) {
    log.warn("cannot write the pid file; `gatehouse reload` will not find this instance", { path, error: String(e) });
    return undefined;
  }
}

/** removePidFile removes the pid file and its status file at exit, unless another instance has written its own pid there since. */
export function removePidFile(path: string | undefined, pid: number): void {
  if (path && existsSync(path) && readFileSync(path, "utf8").trim() === String(pid)) {
    rmSync(path, { force: true });
    rmSync(statusPath(path), { force: true });
  }
}
