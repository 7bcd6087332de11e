/**
 * The systemd unit docs/systemd/gatehouse.service and its example config docs/systemd/config.toml: systemd-analyze verify accepts the unit, its hardening
 * is in place, every path gatehouse writes is writable under the unit's sandbox (and nothing else is), and `gatehouse check` accepts the config.
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, posix } from "node:path";
import { parseDuration } from "../src/lib/units.ts";
import { BUN, MAIN, ROOT, tempDir } from "./harness.ts";

const UNIT_FILE = join(ROOT, "docs/systemd/gatehouse.service");
const CONFIG_FILE = join(ROOT, "docs/systemd/config.toml");
/** BINARY is where the unit (and docs/install.md) puts the executable. */
const BINARY = "/usr/local/bin/gatehouse";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Unit maps a section ("Service") to its keys, each with the values of its assignments in order (an empty assignment resets the list, as in systemd). */
type Unit = Map<string, Map<string, string[]>>;

/** parseUnit reads a unit file as systemd does: [Section] headers, KEY=VALUE lines, `#`/`;` comments, backslash continuations. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const raw of lines) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf("=");
    if (!section || eq < 1) throw new Error(`cannot read unit line: ${line}`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    const list = value === "" ? [] : [...(section.get(key) ?? []), value];
    section.set(key, list);
  }
  return unit;
}

/** service is the unit's [Service] section. */
function service(unit: Unit): Map<string, string[]> {
  const s = unit.get("Service");
  if (!s) throw new Error("the unit has no [Service] section");
  return s;
}

/** one is the single value of a key in [Service], or undefined when it is not set. */
function one(unit: Unit, key: string): string | undefined {
  const values = service(unit).get(key);
  if (values === undefined || values.length === 0) return undefined;
  if (values.length > 1) throw new Error(`${key}= is set ${values.length} times`);
  return values[0];
}

/** words are the whitespace-separated words of every assignment of a key in [Service]. */
function words(unit: Unit, key: string): string[] {
  return (service(unit).get(key) ?? []).flatMap((v) => v.split(/\s+/));
}

/** systemdSeconds reads a systemd time span ("45s", "1min 30s", a bare number of seconds) as seconds. */
function systemdSeconds(span: string): number {
  if (/^\d+$/.test(span)) return Number(span);
  const units: Record<string, number> = { ms: 0.001, s: 1, sec: 1, m: 60, min: 60, h: 3600, hr: 3600 };
  let total = 0;
  const rest = span.replace(/(\d+(?:\.\d+)?)\s*(ms|sec|s|min|m|hr|h)\b/g, (_, n: string, u: string) => {
    total += Number(n) * units[u]!;
    return "";
  });
  if (rest.trim() !== "") throw new Error(`cannot read the time span ${JSON.stringify(span)}`);
  return total;
}

/**
 * writableDirs lists the directories the unit lets the service write under ProtectSystem=strict: StateDirectory= (/var/lib), RuntimeDirectory= (/run),
 * CacheDirectory= (/var/cache), LogsDirectory= (/var/log) and ReadWritePaths=. ConfigurationDirectory= (/etc) stays read-only and is not one of them.
 */
function writableDirs(unit: Unit): string[] {
  const bases: Record<string, string> = { StateDirectory: "/var/lib", RuntimeDirectory: "/run", CacheDirectory: "/var/cache", LogsDirectory: "/var/log" };
  const found: string[] = [];
  for (const [key, base] of Object.entries(bases)) for (const d of words(unit, key)) found.push(posix.join(base, d.split(":")[0]!));
  for (const p of words(unit, "ReadWritePaths")) found.push(posix.normalize(p.replace(/^[-+]+/, "")));
  return found;
}

/** configDir is the directory of the config file that the unit's ExecStart= names: relative paths in config.toml start there. */
function configDir(unit: Unit): string {
  const argv = one(unit, "ExecStart")!.split(/\s+/);
  const c = argv.indexOf("-c");
  if (c < 0) throw new Error("ExecStart= does not name its config with -c");
  return posix.dirname(argv[c + 1]!);
}

/**
 * writtenPaths lists the paths gatehouse writes for a config.toml text, as the unit would run it: certs_dir (certificates, keys, ACME accounts, locks) and
 * the directory of pid_file (the pid file, PID_FILE.status, and their temp files, renamed into place). The response cache is in memory ([cache] in
 * docs/config.md has no directory). A key that makes gatehouse write elsewhere (an on-disk cache, certificate exports) must be added here.
 */
function writtenPaths(configText: string, base: string): { key: string; path: string }[] {
  const config = Bun.TOML.parse(configText) as Record<string, unknown>;
  const at = (p: string) => posix.resolve(base, p);
  return [
    { key: "certs_dir", path: at(String(config.certs_dir ?? "certs")) },
    { key: "pid_file (its directory)", path: posix.dirname(at(String(config.pid_file ?? "gatehouse.pid"))) },
  ];
}

/** under says whether path is dir or lies below it. */
function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

/** sandboxProblems lists every written path the unit does not make writable, and every writable directory gatehouse does not write into. */
function sandboxProblems(unitText: string, configText: string): string[] {
  const unit = parseUnit(unitText);
  const writable = writableDirs(unit);
  const written = writtenPaths(configText, configDir(unit));
  const problems: string[] = [];
  for (const w of written)
    if (!writable.some((d) => under(w.path, d)))
      problems.push(`${w.key} = ${w.path} is not writable under the unit (writable: ${writable.join(", ") || "nothing"})`);
  for (const d of writable) if (!written.some((w) => under(w.path, d))) problems.push(`the unit makes ${d} writable, but gatehouse writes nothing there`);
  return problems;
}

/** systemdAnalyze is the path of systemd-analyze; its absence fails the test rather than skipping it. */
function systemdAnalyze(): string {
  const path = Bun.which("systemd-analyze", { PATH: `${process.env.PATH ?? ""}:/usr/bin:/bin` });
  if (!path) throw new Error("systemd-analyze not found: install systemd (apt-get install -y systemd) to verify docs/systemd/gatehouse.service");
  return path;
}

/** verify runs `systemd-analyze verify` on a copy of unitText whose executable is a real one (verify checks that it exists), and returns exit code and output. */
function verify(unitText: string): { code: number; output: string } {
  const analyze = systemdAnalyze();
  const dir = tempDir("gatehouse-systemd-");
  dirs.push(dir);
  const exe = join(dir, "gatehouse");
  symlinkSync(process.execPath, exe);
  const unitPath = join(dir, "gatehouse.service");
  writeFileSync(unitPath, unitText.replaceAll(BINARY, exe));
  const r = Bun.spawnSync([analyze, "verify", unitPath], { cwd: dir, env: { ...process.env, SYSTEMD_LOG_COLOR: "0", SYSTEMD_PAGER: "" } });
  return { code: r.exitCode ?? -1, output: (r.stdout.toString() + r.stderr.toString()).trim() };
}

const unitText = readFileSync(UNIT_FILE, "utf8");
const configText = readFileSync(CONFIG_FILE, "utf8");

test("systemd-analyze verify accepts the unit without a single warning", () => {
  // verify exits 0 on unknown keys and unreadable values (it only warns), so its output must be empty too: check that it does warn on a broken copy.
  const broken = verify(unitText.replace(/^ProtectSystem=strict$/m, "ProtectSystem=stric").replace("[Service]", "[Service]\nProtectSytem=strict"));
  expect(broken.output).toContain("Failed to parse protect system value");
  expect(broken.output).toContain("Unknown key 'ProtectSytem'");

  const r = verify(unitText);
  expect(r.output).toBe("");
  expect(r.code).toBe(0);
});

test("the unit runs gatehouse as its own user with one capability and the sandbox the docs describe", () => {
  const unit = parseUnit(unitText);
  const expected: Record<string, string> = {
    Type: "exec",
    User: "gatehouse",
    Group: "gatehouse",
    UMask: "0027",
    NoNewPrivileges: "yes",
    ProtectSystem: "strict",
    ProtectHome: "yes",
    PrivateTmp: "yes",
    PrivateDevices: "yes",
    ProtectKernelTunables: "yes",
    ProtectKernelModules: "yes",
    ProtectKernelLogs: "yes",
    ProtectControlGroups: "yes",
    ProtectClock: "yes",
    ProtectHostname: "yes",
    RestrictNamespaces: "yes",
    LockPersonality: "yes",
    RestrictRealtime: "yes",
    RestrictSUIDSGID: "yes",
    SystemCallArchitectures: "native",
    StateDirectory: "gatehouse",
    RuntimeDirectory: "gatehouse",
    ConfigurationDirectory: "gatehouse",
    LimitNOFILE: "65536",
    KillSignal: "SIGTERM",
    Restart: "on-failure",
  };
  const actual = Object.fromEntries(Object.keys(expected).map((k) => [k, one(unit, k)]));
  expect(actual).toEqual(expected);

  // No other capability: not in the bounding set (which would also allow it to be regained), not ambient; and no inverted (~) list.
  expect(words(unit, "AmbientCapabilities")).toEqual(["CAP_NET_BIND_SERVICE"]);
  expect(words(unit, "CapabilityBoundingSet")).toEqual(["CAP_NET_BIND_SERVICE"]);
  expect(new Set(words(unit, "RestrictAddressFamilies"))).toEqual(new Set(["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"]));
  expect(service(unit).get("SystemCallFilter")).toEqual(["@system-service", "~@privileged @resources"]);
  // A dynamic user would not keep a stable owner for the certificates; W^X memory would turn Bun's JIT off (see the comments in the unit).
  expect(one(unit, "DynamicUser")).toBeUndefined();
  expect(one(unit, "MemoryDenyWriteExecute")).toBeUndefined();

  // One binary, one config, for every command; reload goes through `gatehouse reload` (SIGHUP, then it waits for the outcome and fails on a rejection).
  const config = "/etc/gatehouse/config.toml";
  expect(one(unit, "ExecStartPre")).toBe(`${BINARY} check -c ${config}`);
  expect(one(unit, "ExecStart")).toBe(`${BINARY} run -c ${config}`);
  expect(one(unit, "ExecReload")).toBe(`${BINARY} reload -c ${config}`);

  // systemd waits longer than a drain takes: shutdown_grace, plus the 5 s after which a supervisor kills its workers.
  const grace = parseDuration(String((Bun.TOML.parse(configText) as Record<string, unknown>).shutdown_grace ?? "30s"))! / 1000;
  expect(systemdSeconds(one(unit, "TimeoutStopSec")!)).toBeGreaterThan(grace + 5);
});

test("every path gatehouse writes per docs/systemd/config.toml is writable under the unit, and nothing else is", () => {
  expect(sandboxProblems(unitText, configText)).toEqual([]);
  const unit = parseUnit(unitText);
  expect(writtenPaths(configText, configDir(unit))).toEqual([
    { key: "certs_dir", path: "/var/lib/gatehouse/certs" },
    { key: "pid_file (its directory)", path: "/run/gatehouse" },
  ]);

  // The check notices a moved certs_dir, a pid file left at its default (beside config.toml, read-only) and a stray ReadWritePaths=.
  const moved = configText.replace(/^certs_dir\s*=.*$/m, 'certs_dir = "/srv/gatehouse/certs"').replace(/^pid_file\s*=.*$/m, "");
  expect(sandboxProblems(unitText, moved)).toEqual([
    "certs_dir = /srv/gatehouse/certs is not writable under the unit (writable: /var/lib/gatehouse, /run/gatehouse)",
    "pid_file (its directory) = /etc/gatehouse is not writable under the unit (writable: /var/lib/gatehouse, /run/gatehouse)",
    "the unit makes /var/lib/gatehouse writable, but gatehouse writes nothing there",
    "the unit makes /run/gatehouse writable, but gatehouse writes nothing there",
  ]);
  const exported = unitText.replace("#ReadWritePaths=", "ReadWritePaths=");
  expect(sandboxProblems(exported, configText)).toEqual(["the unit makes /etc/ssl/gatehouse-export writable, but gatehouse writes nothing there"]);
  const intoExport = configText.replace(/^certs_dir\s*=.*$/m, 'certs_dir = "/etc/ssl/gatehouse-export/certs"');
  expect(sandboxProblems(exported, intoExport)).toEqual(["the unit makes /var/lib/gatehouse writable, but gatehouse writes nothing there"]);
});

test("gatehouse check accepts docs/systemd/config.toml with its example route", () => {
  const cwd = tempDir();
  dirs.push(cwd);
  const r = Bun.spawnSync([BUN, MAIN, "check", "-c", CONFIG_FILE], { cwd });
  expect(r.stderr.toString()).toBe("");
  expect(r.stdout.toString().trim()).toBe(`${CONFIG_FILE}: ok (1 sites, 1 routes)`);
  expect(r.exitCode).toBe(0);
  // The route file lives where routes_dir points, relative to the config's own directory (as /etc/gatehouse/routes is).
  expect((Bun.TOML.parse(configText) as Record<string, unknown>).routes_dir).toBe("routes");
  expect(readFileSync(join(dirname(CONFIG_FILE), "routes/example.toml"), "utf8")).toContain('tls       = "acme"');
});
