/** gatehouse's command line: run, check, reload, upgrade, hash-password, version. The only file that touches process (argv, signals, exit). */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import defaultConfigText from "../config.toml" with { type: "text" };
import welcomeRouteText from "../routes/welcome.toml" with { type: "text" };
import { loadConfig, type ConfigFiles } from "./config/load.ts";
import { problemLines } from "./config/problems.ts";
import { readStartupSettings } from "./config/startup.ts";
import { Gateway } from "./gateway.ts";
import { WORKER_ENV, type ToWorker } from "./workers/protocol.ts";
import { StartCancelled, Supervisor } from "./workers/supervisor.ts";
import { Worker } from "./workers/worker.ts";
import type { SpawnSpec } from "./workers/worker-process.ts";
import { log } from "./observability/log.ts";
import { hashPassword } from "./proxy/policy/basic-auth.ts";
import { readHidden } from "./lib/terminal.ts";
import { probeStorage } from "./tls/storage-open.ts";
import { copyStorage } from "./storage-copy.ts";
import { VERSION } from "./version.ts";
import { notifySystemd, Successor, UPGRADE_ENV } from "./upgrade.ts";
import { reloadInstance, upgradeInstance } from "./control.ts";

const USAGE = `usage: gatehouse [command] [-c FILE]

commands:
  run      start the gateway in the foreground (the default)
  check    validate the config and every route file; exit 1 with one line per problem
  reload   make the running instance reload its config; exit 0 once the new config is live
  upgrade  replace the running instance with this executable without dropping a connection:
           the new one binds beside it, serves, then the old one drains; exit 0 once it serves
  version  print version and build info
  storage copy --from dir|etcd --to dir|etcd
           copy every certificate, key and account between certs_dir and the etcd of
           [storage] (keys the destination holds otherwise are kept and named)
  hash-password
           read a password from the terminal (asked twice, not shown) or from stdin
           and print its argon2id hash, for [basic_auth] users in a route file

options:
  -c, --config FILE   config file (default: $GATEHOUSE_CONFIG, else ./config.toml). When neither
                      is given and ./config.toml is missing, run (only run) uses the built-in
                      default: a welcome page on http://127.0.0.1:8080
`;

/** Args: the command, the config file and where its name came from (-c, GATEHOUSE_CONFIG, or the default ./config.toml). */
type Args = {
  command: string;
  config: string;
  explicitConfig: boolean;
  from: "-c" | "GATEHOUSE_CONFIG" | "the default, ./config.toml";
  /** sub, copyFrom, copyTo: `gatehouse storage copy --from dir|etcd --to dir|etcd`. */
  sub?: string;
  copyFrom?: string;
  copyTo?: string;
};

function parseArgs(argv: string[]): Args | string {
  let command: string | undefined;
  let config: string | undefined;
  let sub: string | undefined;
  let copyFrom: string | undefined;
  let copyTo: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (command === "storage" && (a === "--from" || a === "--to")) {
      const v = argv[++i];
      if (v === undefined) return `${a} needs dir or etcd`;
      if (a === "--from") copyFrom = v;
      else copyTo = v;
    } else if (a === "-c" || a === "--config") {
      config = argv[++i];
      if (config === undefined) return `${a} needs a file name`;
    } else if (a.startsWith("--config=")) config = a.slice(9);
    else if (a === "-h" || a === "--help" || a === "help") command = "help";
    else if (a === "-v" || a === "--version") command = "version";
    else if (a.startsWith("-")) return `unknown option ${a}`;
    else if (command === undefined) command = a;
    else if (command === "storage" && sub === undefined) sub = a;
    else return `unexpected argument ${a}`;
  }
  // GATEHOUSE_CONFIG stands for -c (CONTRACT.md): a service's environment can name its config once for every command.
  const env = process.env.GATEHOUSE_CONFIG || undefined;
  const from = config !== undefined ? "-c" : env !== undefined ? "GATEHOUSE_CONFIG" : "the default, ./config.toml";
  return { command: command ?? "run", config: config ?? env ?? "config.toml", explicitConfig: (config ?? env) !== undefined, from, sub, copyFrom, copyTo };
}

/**
 * missingConfig is the refusal of a command that needs a config file (check, reload) when there is none: it says where it looked, and never validates the
 * built-in default instead (a deploy script's check would pass while validating nothing).
 */
function missingConfig(command: string, args: Args): string | undefined {
  const path = resolve(args.config);
  if (existsSync(path)) return undefined;
  return `gatehouse ${command}: no config file at ${path} (from ${args.from}); give one with -c FILE or GATEHOUSE_CONFIG (only run falls back to the built-in default)`;
}

/** builtinFiles is the built-in default config, used when no config file exists at the default path. */
function builtinFiles(path: string): ConfigFiles | undefined {
  if (existsSync(path)) return undefined;
  return {
    path,
    main: { file: "(built-in) config.toml", text: defaultConfigText },
    routes: [{ file: "(built-in) routes/welcome.toml", text: welcomeRouteText }],
  };
}

async function check(args: Args): Promise<number> {
  const missing = missingConfig("check", args);
  if (missing) {
    console.error(missing);
    return 1;
  }
  try {
    const c = loadConfig(args.config);
    // Shared storage must answer: a node that cannot reach it would serve only its local copy and renew nothing.
    const unreachable = await probeStorage(c.global);
    if (unreachable !== undefined) {
      console.error(`${args.config}: storage: ${unreachable} (expected the etcd of [storage] endpoints to answer)`);
      return 1;
    }
    const routes = c.sites.reduce((n, s) => n + s.routes.filter((r) => r.action).length, 0);
    console.log(`${args.config}: ok (${c.sites.length} sites, ${routes} routes)`);
    return 0;
  } catch (e) {
    for (const p of problemLines(e)) console.error(p);
    return 1;
  }
}

/** selfCommand is this executable as a command: the compiled binary, or Bun with the script when running from source. */
function selfCommand(): string[] {
  return Bun.main.includes("$bunfs") ? [process.execPath] : [process.execPath, Bun.main];
}

/**
 * selfSpawn is how a supervisor starts worker `index`: this executable again (with the script when running from source; the compiled binary is its own script),
 * marked by WORKER_ENV.
 */
function selfSpawn(configPath: string): (index: number) => SpawnSpec {
  const self = selfCommand();
  return (index) => ({ cmd: [...self, "run", "-c", configPath], env: { ...process.env, [WORKER_ENV]: String(index) } });
}

/** runWorker runs this process as worker `index` of the supervisor that spawned it; SIGHUP is the supervisor's business, SIGTERM/SIGINT drain as usual. */
async function runWorker(args: Args, index: number): Promise<number> {
  const send = process.send?.bind(process);
  if (!send) {
    console.error(`gatehouse: ${WORKER_ENV} is set but no supervisor started this process; unset it`);
    return 2;
  }
  log.worker = index;
  // Its stdout is a pipe to the supervisor; when that is gone the log turns to the inherited stderr by itself (log.ts).
  const worker = new Worker({
    index,
    configPath: resolve(args.config),
    pid: process.pid,
    channel: {
      send: (msg) => {
        try {
          send(msg);
        } catch {
          // the supervisor is gone; "disconnect" stops this worker
        }
      },
      onMessage: (fn) => process.on("message", (m) => fn(m as ToWorker)),
      onDisconnect: (fn) => process.on("disconnect", fn),
    },
  });
  process.on("SIGHUP", () => log.warn("SIGHUP ignored by a worker; send it to the supervisor", { supervisor: process.ppid }));
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      log.info("signal received", { signal });
      void worker.stop();
    });
  }
  return worker.done;
}

async function run(args: Args): Promise<number> {
  const workerIndex = process.env[WORKER_ENV];
  if (workerIndex !== undefined) {
    const index = Number(workerIndex);
    if (!Number.isInteger(index) || index < 1) {
      console.error(`gatehouse: ${WORKER_ENV}=${workerIndex} is not a worker index`);
      return 2;
    }
    return runWorker(args, index);
  }
  const path = resolve(args.config);
  const files = args.explicitConfig ? undefined : builtinFiles(path);
  if (files) log.info("no config.toml here; running the built-in default config", { path });
  // Started by a running instance for `gatehouse upgrade`: bind beside it, and send it SIGTERM once this one serves.
  const replaces = Number(process.env[UPGRADE_ENV] ?? 0);
  delete process.env[UPGRADE_ENV];
  const takeover = replaces > 0;
  // workers > 1: this process becomes the supervisor of that many workers; 1 runs the gateway here, as always.
  const instance =
    readStartupSettings(path, files?.main.text).workers > 1
      ? new Supervisor({ configPath: path, pid: process.pid, spawn: selfSpawn(path), takeover })
      : new Gateway({ configPath: path, files, pid: process.pid, takeover });
  const successor = new Successor(process.pid, process.geteuid?.() ?? -1, process.env);
  // The signal handlers are in place before the start begins (it may take a while: the workers, the certificates), so that a
  // logrotate SIGHUP does not kill a starting gateway: it is kept for when the start is done. SIGTERM during the start stops cleanly.
  let started = false;
  let hupPending = false;
  let stopping: Promise<void> | undefined;
  let stopped!: () => void;
  const whenStopped = new Promise<void>((resolve) => (stopped = resolve));
  const grace = () => instance.config?.global.shutdownGrace ?? 30_000;
  let starting!: Promise<void>;
  process.on("SIGHUP", () => {
    if (started) return void instance.reload();
    if (!hupPending) log.info("SIGHUP during the start; the config is reloaded once started");
    hupPending = true;
  });
  process.on("SIGUSR2", () => {
    // `gatehouse upgrade` asks for a successor; a starting or draining instance has none to hand over to.
    const pidFile = instance.config?.global.pidFile;
    if (pidFile === undefined) return void log.warn("upgrade requested before a config was loaded; ignored");
    if (!started || stopping) return void successor.refuse(pidFile, "the running instance is starting or draining; try again");
    successor.start(pidFile, path);
  });
  const stop = (signal: string) => {
    log.info("signal received", { signal });
    // A successor that serves sends this SIGTERM: the drain is the upgrade's last step, and the admin address is the successor's from now on. Any other stop
    // takes a successor that has not served yet down with it.
    if (successor.takenOver()) void instance.handOver();
    else successor.abandon();
    // One shutdown: a second signal waits for the first one's drain (exiting now would orphan the workers and leave the pid file).
    if (stopping) return;
    // A supervisor cancels its own start; a single gateway finishes starting (it binds nothing it could not close), then drains.
    stopping =
      started || instance instanceof Supervisor
        ? instance.shutdown(grace())
        : starting.then(
            () => instance.shutdown(grace()),
            () => undefined,
          );
    void stopping.then(stopped);
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  starting = instance.start();
  try {
    await starting;
  } catch (e) {
    if (e instanceof StartCancelled) {
      await whenStopped;
      return 0;
    }
    const problems = problemLines(e);
    log.error("cannot start", { problems });
    log.flushNow();
    for (const p of problems) console.error(p);
    return 1;
  }
  started = true;
  if (takeover) {
    // Under systemd this process must be the service's main one before the old one exits, or the service would be stopped with both.
    if (!(await notifySystemd(process.env, process.pid))) {
      log.error("upgrade: systemd did not take this instance as the main process; it stops, the old one keeps serving");
      await instance.shutdown(1000);
      return 1;
    }
    log.info("upgrade: this instance serves; the old one drains", { old_pid: replaces });
    try {
      process.kill(replaces, "SIGTERM");
    } catch (e) {
      log.warn("upgrade: cannot signal the old instance", { old_pid: replaces, error: String(e) });
    }
  }
  if (hupPending && !stopping) void instance.reload();
  await whenStopped;
  return 0;
}

/** storageCommand runs `gatehouse storage copy --from dir|etcd --to dir|etcd`: certs_dir and the etcd of [storage], as config.toml names them. */
async function storageCommand(args: Args): Promise<number> {
  const kinds = ["dir", "etcd"];
  if (args.sub !== "copy" || !kinds.includes(args.copyFrom ?? "") || !kinds.includes(args.copyTo ?? "")) {
    console.error("usage: gatehouse storage copy --from dir|etcd --to dir|etcd [-c FILE]");
    return 2;
  }
  const missing = missingConfig("storage copy", args);
  if (missing) {
    console.error(missing);
    return 1;
  }
  try {
    const g = loadConfig(args.config).global;
    const from = args.copyFrom as "dir" | "etcd";
    const to = args.copyTo as "dir" | "etcd";
    const r = await copyStorage(g, from, to);
    console.log(`gatehouse storage copy: ${r.copied} keys copied from ${from} to ${to}, ${r.same} already there`);
    if (r.kept.length > 0) console.log(`kept as they are in ${to} (another value there): ${r.kept.join(", ")}`);
    return 0;
  } catch (e) {
    for (const p of problemLines(e)) console.error(`gatehouse storage copy: ${p}`);
    return 1;
  }
}

/** hashPasswordCommand prints the argon2id hash of a password read from the terminal (twice, hidden) or from stdin (its first line). */
async function hashPasswordCommand(): Promise<number> {
  let password: string | undefined;
  if (process.stdin.isTTY) {
    password = await readHidden("password: ", process.stdin, process.stderr);
    const again = password === undefined ? undefined : await readHidden("again: ", process.stdin, process.stderr);
    if (password === undefined || again === undefined) return 1;
    if (again !== password) {
      console.error("gatehouse: the passwords differ; nothing printed");
      return 1;
    }
  } else {
    const text = await Bun.stdin.text();
    password = text.split(/\r?\n/)[0];
  }
  if (!password) {
    console.error("gatehouse: empty password; nothing printed");
    return 1;
  }
  console.log(await hashPassword(password));
  return 0;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (typeof args === "string") {
    console.error(`gatehouse: ${args}\n\n${USAGE}`);
    return 2;
  }
  switch (args.command) {
    case "run":
      return run(args);
    case "check":
      return check(args);
    case "reload":
    case "upgrade": {
      const missing = missingConfig(args.command, args);
      if (missing) {
        console.error(missing);
        return 1;
      }
      const { pidFile } = readStartupSettings(args.config);
      return args.command === "reload" ? reloadInstance(pidFile) : upgradeInstance(pidFile, selfCommand(), process.getuid?.() === 0);
    }
    case "hash-password":
      return hashPasswordCommand();
    case "storage":
      return storageCommand(args);
    case "version":
      console.log(`gatehouse ${VERSION} (bun ${Bun.version}, ${process.platform}/${process.arch}${Bun.main.includes("$bunfs") ? ", compiled" : ""})`);
      return 0;
    case "help":
      console.log(USAGE);
      return 0;
    default:
      console.error(`gatehouse: unknown command ${args.command}\n\n${USAGE}`);
      return 2;
  }
}

process.on("uncaughtException", (e) => log.error("uncaught exception", { error: String(e?.stack ?? e) }));
process.on("unhandledRejection", (e) => log.error("unhandled rejection", { error: String((e as Error)?.stack ?? e) }));
// No top-level await: the compiled binary is built with --bytecode (half the start-up time), which needs it.
void main().then((code) => {
  process.exitCode = code;
  log.flushNow();
  process.exit(code);
});
