/** This process's file descriptors as Linux's /proc shows them: how many are open, and the soft limit (for process_open_fds and process_max_fds). */
import { readdirSync, readFileSync } from "node:fs";

/** openFds counts the entries of /proc/self/fd (less the one the listing itself opened); undefined where /proc is not there. */
export function openFds(): number | undefined {
  try {
    return readdirSync("/proc/self/fd").length - 1;
  } catch {
    return undefined;
  }
}

/** maxFds reads the soft limit of open files from /proc/self/limits; undefined where it cannot be read ("unlimited" is reported as such: undefined). */
export function maxFds(): number | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
    return soft === undefined || !/^\d+$/.test(soft) ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}
