/** The commands that talk to a running instance through its pid file: `gatehouse reload` (SIGHUP) and `gatehouse upgrade` (SIGUSR2), each waiting for the outcome in the status file. */
import { readFileSync } from "node:fs";
import { statusPath, type ReloadStatus } from "./instance-files.ts";
import { catchesUpgrade, DEADLINE_MS, writeRequest } from "./upgrade.ts";

function readStatus(path: string): ReloadStatus | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as ReloadStatus;
  } catch {
    return undefined;
  }
}

/** alive says whether a process exists (signal 0). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** runningPid reads the pid file and checks its process is there; undefined (said on stderr) when not. */
function runningPid(command: string, pidFile: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    process.kill(pid, 0);
    return pid;
  } catch {
    console.error(`gatehouse ${command}: no running instance (pid file ${pidFile} missing or stale)`);
    return undefined;
  }
}

/** reloadInstance sends SIGHUP to the instance of pidFile and waits (15 s) for its outcome: 0 when the new config is live, 1 when rejected or unanswered. */
export async function reloadInstance(pidFile: string): Promise<number> {
  const pid = runningPid("reload", pidFile);
  if (pid === undefined) return 1;
  const before = readStatus(statusPath(pidFile))?.seq ?? -1;
  process.kill(pid, "SIGHUP");
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    await Bun.sleep(25);
    const s = readStatus(statusPath(pidFile));
    if (s && s.pid === pid && s.seq > before) {
      if (s.result === "success") {
        console.log(`gatehouse reload: new config is live (pid ${pid})`);
        return 0;
      }
      console.error(`gatehouse reload: config rejected; the running config stays (pid ${pid})`);
      for (const p of s.problems) console.error(p);
      return 1;
    }
  }
  console.error(`gatehouse reload: no answer from pid ${pid} within 15s`);
  return 1;
}

/**
 * upgradeInstance has the instance of pidFile start `self` (this executable: `run -c` its config) beside itself on the same listeners; the new one serves, then
 * the old one drains. 0 once the new instance serves; 1 when it could not (the old one still serving), or when the running one is too old to be asked.
 */
export async function upgradeInstance(pidFile: string, self: readonly string[], asRoot: boolean): Promise<number> {
  const pid = runningPid("upgrade", pidFile);
  if (pid === undefined) return 1;
  if (!catchesUpgrade(pid)) {
    console.error(`gatehouse upgrade: the running instance (pid ${pid}) is older than gatehouse upgrade and would die of its signal; restart it instead`);
    return 1;
  }
  const before = readStatus(statusPath(pidFile))?.time;
  try {
    writeRequest(pidFile, self, process.pid, asRoot);
  } catch (e) {
    console.error(`gatehouse upgrade: cannot write the request beside ${pidFile}: ${(e as Error).message}`);
    return 1;
  }
  process.kill(pid, "SIGUSR2");
  const deadline = Date.now() + DEADLINE_MS + 5000;
  while (Date.now() < deadline) {
    await Bun.sleep(50);
    const s = readStatus(statusPath(pidFile));
    if (!alive(pid) && (s === undefined || s.pid === pid)) {
      console.error(`gatehouse upgrade: the running instance (pid ${pid}) exited and no new one serves`);
      return 1;
    }
    if (s === undefined || s.time === before) continue;
    if (s.pid !== pid && s.result === "success" && s.seq === 0) {
      console.log(`gatehouse upgrade: the new instance serves (pid ${s.pid}); the old one (pid ${pid}) drains`);
      return 0;
    }
    if (s.pid === pid && s.upgrade) {
      console.error(`gatehouse upgrade: the new instance did not take over; the old one (pid ${pid}) keeps serving`);
      for (const p of s.problems) console.error(p);
      return 1;
    }
  }
  console.error(`gatehouse upgrade: no outcome within ${DEADLINE_MS / 1000 + 5} s`);
  return 1;
}
