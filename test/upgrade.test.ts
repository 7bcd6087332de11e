/** gatehouse upgrade: the running instance starts the new executable beside itself; under keep-alive and new-connection load (plain and TLS) no request fails. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, linkSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, freePort, MAIN, origin, startGateway, tempDir, type TestGateway } from "./harness.ts";
import { Load, plain, secure } from "./upgrade-load.ts";

const MIGRATE = "/proc/sys/net/ipv4/tcp_migrate_req";
let migrateBefore: string | undefined;
const app = origin(async (req) => {
  // /slow keeps a request in flight across the switch.
  if (new URL(req.url).pathname === "/slow") await Bun.sleep(3000);
  return new Response("ok");
});
let gw: TestGateway;
let httpsPort: number;
const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");

beforeAll(async () => {
  // A listener that closes hands the connections in its accept queue to the others of its SO_REUSEPORT group only with this setting (Linux 5.14);
  // docs/install.md asks for it. Without it, the connections queued at the old instance's close are reset.
  migrateBefore = readFileSync(MIGRATE, "utf8").trim();
  if (migrateBefore !== "1") writeFileSync(MIGRATE, "1");
  httpsPort = freePort();
  gw = await startGateway({
    listenExtra: `https = "127.0.0.1:${httpsPort}"`,
    routes: { site: `hosts = ["up.test"]\ntls = "internal"\nhttps_redirect = false\nupstreams = ["http://127.0.0.1:${app.port}"]\n` },
  });
});

afterAll(async () => {
  const pidFile = join(gw.dir, "gatehouse.pid");
  const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8")) : 0;
  if (pid > 0 && pid !== gw.proc.pid && alive(pid)) {
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 100 && alive(pid); i++) await Bun.sleep(50);
  }
  await gw.cleanup();
  app.stop(true);
  if (migrateBefore !== undefined && migrateBefore !== "1") writeFileSync(MIGRATE, migrateBefore);
});

/** upgrade runs `gatehouse upgrade` with `bun` (by default a link to this Bun under another name: the new instance must run what the upgrade names). */
const upgrade = (bun = BUN) => Bun.spawnSync([bun, MAIN, "upgrade", "-c", join(gw.dir, "config.toml")], { cwd: gw.dir });
const status = () => JSON.parse(readFileSync(join(gw.dir, "gatehouse.pid.status"), "utf8")) as { pid: number; result: string; problems: string[] };

test("a request the instance cannot trust is refused with the reason, and nothing is started: writable by others, stale, not an executable", async () => {
  const pidFile = join(gw.dir, "gatehouse.pid");
  const request = (body: object, mode: number) => {
    writeFileSync(`${pidFile}.upgrade`, JSON.stringify(body), { mode });
    chmodSync(`${pidFile}.upgrade`, mode);
  };
  const now = new Date().toISOString();
  const cases: [object, number, string][] = [
    [{ cmd: [BUN, MAIN], by: 1, time: now }, 0o666, "is writable by others"],
    [{ cmd: [BUN, MAIN], by: 1, time: "2020-01-01T00:00:00Z" }, 0o600, "is stale"],
    [{ cmd: ["/bin/sh", "-c", "touch /tmp/gatehouse-pwned"], by: 1, time: now }, 0o600, "does not name an executable"],
  ];
  for (const [body, mode, why] of cases) {
    const before = status();
    request(body, mode);
    process.kill(gw.proc.pid, "SIGUSR2");
    for (let i = 0; i < 100 && JSON.stringify(status()) === JSON.stringify(before); i++) await Bun.sleep(20);
    expect(status()).toMatchObject({ pid: gw.proc.pid, result: "failure" });
    expect(status().problems.join()).toContain(why);
    // The request is gone: a later SIGUSR2 does not act on it.
    expect(existsSync(`${pidFile}.upgrade`)).toBe(false);
  }
  expect(existsSync("/tmp/gatehouse-pwned")).toBe(false);
  expect(Number(readFileSync(pidFile, "utf8"))).toBe(gw.proc.pid);
});

test("an instance older than gatehouse upgrade (no SIGUSR2 handler) is not sent a signal that would kill it", async () => {
  const dir = tempDir();
  const old = Bun.spawn(["sleep", "30"]);
  try {
    writeFileSync(join(dir, "config.toml"), 'pid_file = "old.pid"\n[listen]\nhttp = "127.0.0.1:1"\n');
    writeFileSync(join(dir, "old.pid"), `${old.pid}\n`);
    const r = Bun.spawnSync([BUN, MAIN, "upgrade", "-c", join(dir, "config.toml")], { cwd: dir });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain(`the running instance (pid ${old.pid}) is older than gatehouse upgrade`);
    expect(old.exitCode).toBeNull();
  } finally {
    old.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an upgrade whose new instance cannot start changes nothing: exit 1 with the reason, the old instance keeps serving", async () => {
  const good = readFileSync(join(gw.dir, "routes/site.toml"), "utf8");
  gw.writeRoute("site", `${good}bogus = 1\n`);
  try {
    const r = upgrade();
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain("the new instance did not take over");
    expect(gw.proc.exitCode).toBeNull();
    expect(Number(readFileSync(join(gw.dir, "gatehouse.pid"), "utf8"))).toBe(gw.proc.pid);
    expect(await (await gw.request("up.test")).text()).toBe("ok");
    // The new instance's own words are in the same log: the problem, in check's format.
    await gw.waitForLog((l) => l.msg === "cannot start" && JSON.stringify(l.problems).includes("bogus"));
  } finally {
    gw.writeRoute("site", good);
  }
});

test("under keep-alive and new-connection load, plain and TLS, the new executable takes over and no request fails; the old one drains and exits", async () => {
  const ca = readFileSync(join(gw.dir, "certs/internal-ca/ca.pem"), "utf8");
  const load = [new Load(plain(gw.httpPort), "up.test", 8, 4), new Load(secure(httpsPort, "up.test", ca), "up.test", 4, 2)];
  // A request in flight across the switch keeps the old instance draining for a while.
  const slow = gw.request("up.test", "/slow");
  await Bun.sleep(500);
  const before = load.map((l) => l.tally.ok);
  // Another name for this Bun (a hard link: a symbolic one would be resolved back to the same path), as a new release would be.
  const linked = join(gw.dir, "bun-next");
  try {
    linkSync(realpathSync(BUN), linked);
  } catch {
    copyFileSync(realpathSync(BUN), linked); // another file system
    chmodSync(linked, 0o755);
  }
  const r = upgrade(linked);
  expect(r.stderr.toString()).toBe("");
  expect(r.exitCode).toBe(0);
  const newPid = Number(readFileSync(join(gw.dir, "gatehouse.pid"), "utf8"));
  expect(newPid).not.toBe(gw.proc.pid);
  expect(r.stdout.toString()).toContain(`the new instance serves (pid ${newPid})`);
  // The new instance is the executable the upgrade named, not the old one's.
  expect(readFileSync(`/proc/${newPid}/cmdline`, "utf8").split("\0")[0]).toBe(linked);
  // While the old one drains, the admin address is the new one's alone: every readiness check says ready.
  const ready: number[] = [];
  for (let i = 0; i < 30; i++) ready.push((await fetch(`${gw.admin}/readyz`)).status);
  expect(ready.filter((s) => s !== 200)).toEqual([]);
  expect(gw.proc.exitCode).toBeNull(); // still draining its slow request
  expect((await slow).status).toBe(200);
  // The old instance drains (its idle keep-alive connections within a second) and exits; the load goes on against the new one.
  const exited = await Promise.race([gw.proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
  expect(exited).toBe(true);
  const atExit = load.map((l) => l.tally.ok);
  await Bun.sleep(700);
  const [p, s] = await Promise.all(load.map((l) => l.stop()));
  expect({ plain: p!.why, tls: s!.why }).toEqual({ plain: [], tls: [] });
  expect(p!.failed + s!.failed).toBe(0);
  // Requests were answered before, during and after the switch, on both listeners.
  load.forEach((l, i) => {
    expect(atExit[i]!).toBeGreaterThan(before[i]!);
    expect(l.tally.ok).toBeGreaterThan(atExit[i]!);
  });
  expect(alive(newPid)).toBe(true);
  expect((await fetch(`${gw.admin}/readyz`)).status).toBe(200);
  await gw.waitForLog((l) => l.msg === "upgrade: this instance serves; the old one drains" && l.old_pid === gw.proc.pid);
});

test("with workers = 2, the new supervisor and its workers take over the listeners; no request fails", async () => {
  const g = await startGateway({
    top: "workers = 2",
    routes: { site: `hosts = ["up.test"]\nupstreams = ["http://127.0.0.1:${app.port}"]\n` },
  });
  let newPid = 0;
  try {
    const load = new Load(plain(g.httpPort), "up.test", 8, 4);
    await Bun.sleep(500);
    const r = Bun.spawnSync([BUN, MAIN, "upgrade", "-c", join(g.dir, "config.toml")], { cwd: g.dir });
    expect(r.stderr.toString()).toBe("");
    expect(r.exitCode).toBe(0);
    newPid = Number(readFileSync(join(g.dir, "gatehouse.pid"), "utf8"));
    expect(await Promise.race([g.proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)])).toBe(true);
    await Bun.sleep(500);
    const t = await load.stop();
    expect(t.why).toEqual([]);
    expect(t.ok).toBeGreaterThan(100);
    const workers = (await (await fetch(`${g.admin}/workers`)).json()) as { ready: boolean; pid: number }[];
    expect(workers.map((w) => w.ready)).toEqual([true, true]);
  } finally {
    if (newPid > 0 && alive(newPid)) {
      process.kill(newPid, "SIGTERM");
      for (let i = 0; i < 200 && alive(newPid); i++) await Bun.sleep(50);
    }
    await g.cleanup();
  }
});

test("every listener binds with SO_REUSEPORT so that an upgrade can join it, yet a second instance started by mistake is refused, not let in beside", async () => {
  const dir = gw.dir;
  // The running (new) instance holds the http, https and admin addresses; a plain `run` of the same config must not share them.
  const second = Bun.spawn([BUN, MAIN, "run", "-c", join(dir, "config.toml")], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  const code = await Promise.race([second.exited, Bun.sleep(10_000).then(() => -1)]);
  if (code === -1) second.kill("SIGKILL");
  expect(code).toBe(1);
  expect(await new Response(second.stderr).text()).toMatch(/listen\.(http|https|admin) 127\.0\.0\.1:\d+: cannot bind, the address is in use/);
});
