/** The start-up settings of config.toml (`workers`, `pid_file`), read before and apart from the full load. */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, resolve } from "node:path";
import { resolvePath } from "./locations.ts";

/** StartupSettings decide how a process starts (one gateway or a supervisor) and where `gatehouse reload` finds it. */
export type StartupSettings = { readonly workers: number; readonly pidFile: string };

/**
 * readStartupSettings reads `workers` and `pid_file` from config.toml alone (or from text, when given), leniently: a missing, unreadable or broken file, or a
 * key of the wrong type, gives the defaults (1 worker, gatehouse.pid beside the config); the full load reports any problem later.
 */
export function readStartupSettings(configPath: string, text?: string): StartupSettings {
  const path = resolve(configPath);
  let data: { workers?: unknown; pid_file?: unknown } = {};
  try {
    data = (Bun.TOML.parse(text ?? readFileSync(path, "utf8")) as typeof data | null) ?? {};
  } catch {
    // unreadable or not TOML: the defaults; the load reports it
  }
  // Anything but "auto" or a whole number is 1 here; the load then says what is wrong with it.
  let workers = 1;
  if (data.workers === "auto") workers = availableParallelism();
  else if (typeof data.workers === "number" && Number.isInteger(data.workers)) workers = data.workers;
  const pidFile = resolvePath(dirname(path), typeof data.pid_file === "string" ? data.pid_file : "gatehouse.pid");
  return { workers, pidFile };
}
