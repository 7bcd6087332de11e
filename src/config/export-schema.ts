/** Reading a route file's [export] table: where a site's certificate chain and key are copied for other daemons (postfix, dovecot), and what runs then. */
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { resolvePath } from "./locations.ts";
import type { Reader } from "./reader.ts";
import type { ExportConfig } from "./types.ts";

/** CHAIN_MODE and KEY_MODE are the modes of the exported files when [export] sets none: the chain is public, the key is not. */
export const CHAIN_MODE = 0o644;
export const KEY_MODE = 0o600;
/** MAX_RUN_TIMEOUT_MS bounds timeout: a reload command runs for seconds, and a timer cannot wait beyond 24.8 days. */
const MAX_RUN_TIMEOUT_MS = 3600_000;
/** RUN_TIMEOUT_MS is how long the command may take when [export] sets no timeout; then it is killed. */
export const RUN_TIMEOUT_MS = 30_000;
const MODE_RE = /^0?[0-7]{3}$/;
const PATH_EXPECTED = "a file path in an existing directory (relative paths start at the directory of config.toml)";
const GROUP_EXPECTED = 'a group name this system knows (getent group NAME), or a group number such as "110"';

/** lookupGroup finds a group's number by name through NSS (getent: LDAP and sssd groups too), else /etc/group; undefined when unknown. */
export function lookupGroup(name: string): number | undefined {
  try {
    // Bounded: a stalled directory service (LDAP, sssd) must not hold a config load.
    const r = Bun.spawnSync(["getent", "group", name], { stdout: "pipe", stderr: "ignore", timeout: 2000 });
    if (r.exitCode === 0) return gidOf(r.stdout.toString(), name);
    if (r.exitCode === 2) return undefined; // getent's "not found"
  } catch {
    // no getent here: read the file
  }
  try {
    return gidOf(readFileSync("/etc/group", "utf8"), name);
  } catch {
    return undefined;
  }
}

function gidOf(text: string, name: string): number | undefined {
  for (const line of text.split("\n")) {
    const [n, , gid] = line.split(":");
    if (n === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

function readPath(r: Reader, key: "cert" | "key", dir: string): string | undefined {
  const what = key === "cert" ? "the certificate chain" : "the private key";
  const raw = r.requiredString(key, `the file to write ${what} to: ${PATH_EXPECTED}`);
  if (raw === undefined) return undefined;
  const path = resolvePath(dir, raw);
  const parent = dirname(path);
  if (!existsSync(parent) || !statSync(parent).isDirectory()) {
    r.problem(key, `directory ${parent} does not exist`, PATH_EXPECTED);
    return undefined;
  }
  if (existsSync(path) && statSync(path).isDirectory()) {
    r.problem(key, `${path} is a directory`, PATH_EXPECTED);
    return undefined;
  }
  return path;
}

function readGroup(r: Reader): { gid?: number; group?: string } | undefined {
  const v = r.value("group");
  if (v === undefined) return {};
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return { gid: v, group: String(v) };
  if (typeof v === "string" && /^\d+$/.test(v)) return { gid: Number(v), group: v };
  if (typeof v !== "string" || v === "") {
    r.problem("group", `got ${typeof v === "string" ? "an empty string" : JSON.stringify(v)}`, GROUP_EXPECTED);
    return undefined;
  }
  const gid = lookupGroup(v);
  if (gid === undefined) {
    r.problem("group", `group ${JSON.stringify(v)} is not known to this system`, GROUP_EXPECTED);
    return undefined;
  }
  return { gid, group: v };
}

function readRun(r: Reader): readonly string[] | undefined {
  if (!r.has("run")) return undefined;
  const expected = 'the command as an array of strings, program first, no shell: ["systemctl", "reload", "postfix", "dovecot"]';
  const v = r.value("run");
  if (!Array.isArray(v)) {
    r.problem("run", `got ${typeof v === "string" ? `the string ${JSON.stringify(v)}` : typeof v}`, expected);
    return undefined;
  }
  if (v.length === 0) {
    r.problem("run", "is empty", expected);
    return undefined;
  }
  const bad = v.findIndex((a) => typeof a !== "string");
  if (bad >= 0) {
    r.problem(`run[${bad}]`, `got ${JSON.stringify(v[bad])}`, `a string: ${expected}`);
    return undefined;
  }
  if (v[0] === "") {
    r.problem("run[0]", "is empty", "the program to run, a name on PATH or an absolute path");
    return undefined;
  }
  return v as string[];
}

/**
 * readExport reads [export] (undefined when absent): cert and key paths (relative ones start at config.toml's directory, whose parent directory must exist),
 * mode as an octal string for both files (default 0644 for the chain, 0600 for the key; permissions for others are refused, as the key is secret), group by
 * name or number, run as argv and its timeout. Every problem names the key and what was expected.
 */
export function readExport(r: Reader, dir: string): ExportConfig | undefined {
  const t = r.table("export");
  if (!t) return undefined;
  const cert = readPath(t, "cert", dir);
  const key = readPath(t, "key", dir);
  if (cert !== undefined && cert === key) t.problem("key", `is the same file as cert (${cert})`, "two files: the chain and the key");
  let mode: number | undefined;
  const modeText = t.string("mode");
  if (modeText !== undefined) {
    if (!MODE_RE.test(modeText)) t.problem("mode", `${JSON.stringify(modeText)} is not an octal file mode`, 'an octal string such as "0640"');
    else if ((Number.parseInt(modeText, 8) & 0o007) !== 0)
      t.problem("mode", `${JSON.stringify(modeText)} lets every user read the private key`, 'a mode without permissions for others, such as "0640" or "0600"');
    else mode = Number.parseInt(modeText, 8);
  }
  const group = readGroup(t);
  const run = readRun(t);
  const timeout = t.duration("timeout", RUN_TIMEOUT_MS);
  if (t.has("timeout") && timeout <= 0) t.problem("timeout", "must be longer than zero", 'a duration such as "30s"');
  if (timeout > MAX_RUN_TIMEOUT_MS) t.problem("timeout", "is longer than an hour", 'a duration up to "1h"');
  if (t.has("timeout") && run === undefined && !t.has("run")) t.problem("timeout", "is the timeout of run, which is not set", "run, or no timeout");
  t.done();
  if (cert === undefined || key === undefined || cert === key || (modeText !== undefined && mode === undefined) || !group || (t.has("run") && !run))
    return undefined;
  return { cert, key, certMode: mode ?? CHAIN_MODE, keyMode: mode ?? KEY_MODE, ...group, run, timeout };
}
