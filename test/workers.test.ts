/** workers = N: a supervisor with worker processes on shared listeners, end to end: spreading, restarts, reloads, shutdown, merged metrics. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { log } from "../src/observability/log.ts";
import { WORKER_ENV } from "../src/workers/protocol.ts";
import { Supervisor } from "../src/workers/supervisor.ts";
import type { SpawnSpec } from "../src/workers/worker-process.ts";
import { BUN, MAIN, TestGateway, freePort, origin, startGateway, tempDir, writeConfig, type GatewayOptions, type LogLine } from "./harness.ts";

const up = origin((req) => new Response(`ok ${new URL(req.url).pathname}`, { headers: { "cache-control": "max-age=60" } }));
let gw: TestGateway;

type WorkerInfo = { worker: number; pid: number | null; ready: boolean; restarts: number };

beforeAll(async () => {
  gw = await startGateway({
    top: "workers = 2",
    routes: {
      site: `hosts = ["site.example"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n[cache]\n`,
    },
  });
});

afterAll(async () => {
  await gw?.cleanup();
  up.stop(true);
});

/** fresh sends a request on a new connection, so the kernel picks a worker for each. */
function fresh(g: Pick<TestGateway, "request">, host: string, path = "/"): Promise<Response> {
  return g.request(host, path, { headers: { connection: "close" } });
}

async function workers(g: { admin: string }): Promise<WorkerInfo[]> {
  return (await (await fetch(`${g.admin}/workers`)).json()) as WorkerInfo[];
}

async function metrics(g: { admin: string }): Promise<string> {
  return (await fetch(`${g.admin}/metrics`)).text();
}

function value(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** alive is false for a process that is gone or a zombie (exited, not yet reaped by whoever inherited it). */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

async function until(what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await Bun.sleep(25);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

function accessByWorker(g: TestGateway, host: string, from = 0): Map<number, number> {
  const by = new Map<number, number>();
  for (const l of g.logs.slice(from)) if (l.msg === "access" && l.host === host) by.set(l.worker as number, (by.get(l.worker as number) ?? 0) + 1);
  return by;
}

test("both workers take connections; the supervisor's /metrics is their sum, passes promtool, and purge and /upstreams cover every worker", async () => {
  const from = gw.logs.length;
  const list = await workers(gw);
  expect(list.map((w) => [w.worker, w.ready])).toEqual([
    [1, true],
    [2, true],
  ]);
  expect(new Set(list.map((w) => w.pid)).size).toBe(2);
  const before = value(await metrics(gw), 'gatehouse_requests_total{route="site",code="200"}') ?? 0;
  const n = 40;
  for (let i = 0; i < n; i++) {
    const res = await fresh(gw, "site.example", `/p/${i}`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(`ok /p/${i}`);
  }
  await until("access lines", () => [...accessByWorker(gw, "site.example", from).values()].reduce((a, b) => a + b, 0) === n);
  const by = accessByWorker(gw, "site.example", from);
  // Every access line says which worker answered, and the kernel gave both some of the 40 connections.
  expect([...by.keys()].sort()).toEqual([1, 2]);
  const text = await metrics(gw);
  expect(value(text, 'gatehouse_requests_total{route="site",code="200"}')).toBe(before + n);
  expect(value(text, 'gatehouse_request_duration_seconds_count{route="site"}')).toBe(before + n);
  expect(value(text, "gatehouse_workers")).toBe(2);
  expect(value(text, "gatehouse_cache_objects")).toBe(n);
  expect(text.match(/^gatehouse_build_info\{/gm)?.length).toBe(1);
  expect(text.match(/^# TYPE gatehouse_requests_total /gm)?.length).toBe(1);
  const promtool = Bun.spawnSync(["promtool", "check", "metrics"], { stdin: new TextEncoder().encode(text) });
  expect(promtool.stderr.toString() + promtool.stdout.toString()).toBe("");
  expect(promtool.exitCode).toBe(0);

  const upstreams = (await (await fetch(`${gw.admin}/upstreams`)).json()) as { worker: number; route: string }[];
  expect(upstreams.map((u) => [u.worker, u.route]).sort()).toEqual([
    [1, "site"],
    [2, "site"],
  ]);
  // Each URL was asked once, so it is stored in the one worker that answered it: the purge counts all of them.
  const purge = await fetch(`${gw.admin}/cache/purge?all`, { method: "POST" });
  expect(await purge.json()).toEqual({ purged: n });
  expect(value(await metrics(gw), "gatehouse_cache_objects")).toBe(0);
});

test("a worker killed with SIGKILL is restarted; requests keep being served and the merged counters do not go down", async () => {
  const [first] = await workers(gw);
  const before = value(await metrics(gw), 'gatehouse_requests_total{route="site",code="200"}')!;
  const from = gw.logs.length;
  process.kill(first!.pid!, "SIGKILL");
  const line = await gw.waitForLog((l) => l.msg === "worker exited unexpectedly; restarting it", 5000, from);
  expect(line).toMatchObject({ worker: 1, pid: first!.pid, exit: "signal SIGKILL" });
  // The surviving worker takes every new connection while worker 1 is restarted.
  for (let i = 0; i < 20; i++) expect((await fresh(gw, "site.example", "/k")).status).toBe(200);
  await until("worker 1 back", async () => {
    const w = (await workers(gw))[0]!;
    return w.ready && w.pid !== first!.pid;
  });
  expect((await workers(gw))[0]!.restarts).toBe(1);
  expect((await fetch(`${gw.admin}/readyz`)).status).toBe(200);
  const text = await metrics(gw);
  expect(value(text, "gatehouse_worker_restarts_total")).toBe(1);
  expect(value(text, "gatehouse_workers")).toBe(2);
  expect(value(text, 'gatehouse_requests_total{route="site",code="200"}')).toBe(before + 20);
});

test("gatehouse reload applies a new route in every worker; a bad config is rejected, reported in the status file, and the old one serves", async () => {
  const config = join(gw.dir, "config.toml");
  const reload = () => Bun.spawnSync([BUN, MAIN, "reload", "-c", config], { cwd: gw.dir });
  expect((await fresh(gw, "new.example")).status).toBe(404);
  gw.writeRoute("new", `hosts = ["new.example"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n`);
  const from = gw.logs.length;
  const ok = reload();
  expect(ok.stdout.toString()).toContain("new config is live");
  expect(ok.exitCode).toBe(0);
  for (let i = 0; i < 30; i++) expect((await fresh(gw, "new.example", "/n")).status).toBe(200);
  await until("access lines", () => accessByWorker(gw, "new.example", from).size === 2);
  expect(
    gw.logs
      .slice(from)
      .filter((l) => l.msg === "config reloaded")
      .map((l) => l.worker ?? 0)
      .sort(),
  ).toEqual([0, 1, 2]);

  gw.writeRoute("bad", `hosts = ["bad.example"]\nupstream = ["http://127.0.0.1:1"]\n`);
  const bad = reload();
  expect(bad.exitCode).toBe(1);
  expect(bad.stderr.toString()).toContain('routes/bad.toml:2: upstream: unknown key, did you mean "upstreams"?');
  const status = JSON.parse(readFileSync(join(gw.dir, "gatehouse.pid.status"), "utf8")) as { pid: number; result: string; problems: string[] };
  expect(status).toMatchObject({ pid: gw.proc.pid, result: "failure" });
  expect(status.problems[0]).toMatch(/^routes\/bad\.toml:2: upstream: unknown key/);
  for (let i = 0; i < 10; i++) expect((await fresh(gw, "new.example")).status).toBe(200);
  const text = await metrics(gw);
  expect(value(text, "gatehouse_config_last_reload_success")).toBe(0);
  expect(value(text, 'gatehouse_config_reloads_total{result="failure"}')).toBe(1);
  expect(value(text, 'gatehouse_config_reloads_total{result="success"}')).toBe(1);
  // SIGHUP to the supervisor does the same as `gatehouse reload`.
  gw.removeRoute("bad");
  expect((await gw.reload()).msg).toBe("config reloaded");
  expect(value(await metrics(gw), "gatehouse_config_last_reload_success")).toBe(1);
});

test("reloads under load: no request fails in any worker", async () => {
  let ok = 0;
  const failed: string[] = [];
  const stopAt = Date.now() + 1500;
  const client = async () => {
    while (Date.now() < stopAt) {
      try {
        const res = await fresh(gw, "site.example", "/load");
        if (res.status === 200) ok++;
        else failed.push(String(res.status));
        await res.arrayBuffer();
      } catch (e) {
        failed.push(String(e));
      }
    }
  };
  const load = Promise.all(Array.from({ length: 4 }, client));
  for (let i = 0; i < 5; i++) {
    await Bun.sleep(200);
    expect((await gw.reload()).msg).toBe("config reloaded");
  }
  await load;
  expect(failed).toEqual([]);
  expect(ok).toBeGreaterThan(100);
});

test("SIGTERM drains every worker and exits 0 with none left; a worker whose supervisor is killed exits too", async () => {
  const g = await startGateway({ top: "workers = 2", routes: { site: `hosts = ["site.example"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n` } });
  try {
    const pids = (await workers(g)).map((w) => w.pid!);
    expect((await fresh(g, "site.example")).status).toBe(200);
    const t0 = performance.now();
    g.proc.kill("SIGTERM");
    expect(await g.proc.exited).toBe(0);
    expect(performance.now() - t0).toBeLessThan(4000);
    expect(pids.filter(alive)).toEqual([]);
    expect(
      g.logs
        .filter((l) => l.msg === "stopped")
        .map((l) => l.worker ?? 0)
        .sort(),
    ).toEqual([0, 1, 2]);
    expect(existsSync(join(g.dir, "gatehouse.pid"))).toBe(false);
  } finally {
    await g.cleanup();
  }

  const slow = origin(async () => {
    await Bun.sleep(800);
    return new Response("finished");
  });
  const orphaned = await startGateway({ top: "workers = 2", routes: { slow: `hosts = ["slow.example"]\nupstreams = ["http://127.0.0.1:${slow.port}"]\n` } });
  try {
    const pids = (await workers(orphaned)).map((w) => w.pid!);
    const inflight = fresh(orphaned, "slow.example");
    await Bun.sleep(200);
    orphaned.proc.kill("SIGKILL");
    // The worker that holds the request drains: it finishes, then every worker exits.
    const res = await inflight;
    expect(await res.text()).toBe("finished");
    await until("workers gone", () => pids.filter(alive).length === 0, 5000);
  } finally {
    await orphaned.cleanup();
    slow.stop(true);
  }
});

test("a public address in use fails the start, as with one process (the supervisor checks before it spawns a worker)", async () => {
  const err = await startGateway({ top: "workers = 2", httpPort: up.port }).then(
    async (g) => {
      await g.cleanup();
      return "started";
    },
    (e: Error) => e.message,
  );
  expect(err).toContain(`listen.http 127.0.0.1:${up.port}: cannot bind, the address is in use`);
});

/** launch starts `gatehouse run` without waiting for it to be ready (for what happens during the start). */
function launch(opts: GatewayOptions): TestGateway {
  const dir = tempDir();
  const httpPort = freePort();
  const adminPort = freePort();
  const configPath = writeConfig(dir, httpPort, adminPort, opts);
  const proc = Bun.spawn([BUN, MAIN, "run", "-c", configPath], { cwd: dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return new TestGateway(dir, proc, httpPort, adminPort);
}

test("a second SIGTERM waits for the drain the first one started: the supervisor exits after its workers, the pid file removed", async () => {
  let arrived = 0;
  const slow = origin(async () => {
    arrived++;
    await Bun.sleep(1000);
    return new Response("finished");
  });
  const g = await startGateway({ top: "workers = 2", routes: { slow: `hosts = ["slow.example"]\nupstreams = ["http://127.0.0.1:${slow.port}"]\n` } });
  try {
    const pids = (await workers(g)).map((w) => w.pid!);
    const inflight = fresh(g, "slow.example").then((r) => r.text());
    await until("request at the origin", () => arrived === 1);
    g.proc.kill("SIGTERM");
    await Bun.sleep(100);
    g.proc.kill("SIGTERM");
    const code = await g.proc.exited;
    // Checked the moment the supervisor is gone: it must not leave draining workers behind (they would be orphans).
    const left = pids.filter(alive);
    expect(await inflight).toBe("finished");
    expect(code).toBe(0);
    expect(left).toEqual([]);
    expect(existsSync(join(g.dir, "gatehouse.pid"))).toBe(false);
    expect(g.logs.filter((l) => l.msg === "signal received" && l.worker === undefined)).toHaveLength(2);
  } finally {
    await g.cleanup();
    slow.stop(true);
  }
});

test("the single-process gateway too: a second SIGTERM does not cut the drain short", async () => {
  let arrived = 0;
  const slow = origin(async () => {
    arrived++;
    await Bun.sleep(800);
    return new Response("finished");
  });
  const g = await startGateway({ routes: { slow: `hosts = ["slow.example"]\nupstreams = ["http://127.0.0.1:${slow.port}"]\n` } });
  try {
    const inflight = fresh(g, "slow.example").then(
      (r) => r.text(),
      (e: Error) => `failed: ${e.message}`,
    );
    await until("request at the origin", () => arrived === 1);
    g.proc.kill("SIGTERM");
    await Bun.sleep(100);
    g.proc.kill("SIGTERM");
    expect(await inflight).toBe("finished");
    expect(await g.proc.exited).toBe(0);
    expect(existsSync(join(g.dir, "gatehouse.pid"))).toBe(false);
  } finally {
    await g.cleanup();
    slow.stop(true);
  }
});

test("lowering workers: the merged counters keep the draining worker's numbers, and its last requests once it has exited", async () => {
  let arrived = 0;
  const slow = origin(async () => {
    arrived++;
    await Bun.sleep(1000);
    return new Response("slow");
  });
  const routes = {
    site: `hosts = ["site.example"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n`,
    slow: `hosts = ["slow.example"]\nupstreams = ["http://127.0.0.1:${slow.port}"]\n`,
  };
  const g = await startGateway({ top: "workers = 2", routes });
  try {
    const pids = (await workers(g)).map((w) => w.pid!);
    const site = 'gatehouse_requests_total{route="site",code="200"}';
    const slowSeries = 'gatehouse_requests_total{route="slow",code="200"}';
    for (let i = 0; i < 6; i++) expect((await fresh(g, "site.example")).status).toBe(200);
    expect(value(await metrics(g), site)).toBe(6);
    // Ten slow requests on new connections: the kernel gives worker 2 some of them, so it drains for a while.
    const slowOnes = Array.from({ length: 10 }, () => fresh(g, "slow.example").then((r) => r.text()));
    await until("slow requests at the origin", () => arrived === 10);
    writeConfig(g.dir, g.httpPort, g.adminPort, { top: "workers = 1", routes });
    expect((await g.reload()).msg).toBe("config reloaded");
    expect(await workers(g)).toHaveLength(1);
    // Worker 2 is draining: its counters are still in the sum.
    expect(value(await metrics(g), site)).toBe(6);
    expect(await Promise.all(slowOnes)).toEqual(Array(10).fill("slow"));
    await until("worker 2 gone", () => !alive(pids[1]!));
    await Bun.sleep(50);
    // What worker 2 counted after the last scrape (its slow requests) came with its final numbers.
    const text = await metrics(g);
    expect(value(text, site)).toBe(6);
    expect(value(text, slowSeries)).toBe(10);
  } finally {
    await g.cleanup();
    slow.stop(true);
  }
});

test("SIGHUP during the start is kept for when the supervisor has started; SIGTERM during the start stops it cleanly", async () => {
  const routes = { site: `hosts = ["site.example"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n` };
  const hup = launch({ top: "workers = 2", routes });
  try {
    // The supervisor has loaded the config and spawned the workers; they are still starting.
    await hup.waitForLog((l) => l.msg === "worker started" && l.worker === 2, 10_000);
    hup.proc.kill("SIGHUP");
    const reloaded = await hup.waitForLog((l) => l.msg === "config reloaded" && l.worker === undefined, 10_000);
    const started = hup.logs.findIndex((l) => l.msg === "started" && l.worker === undefined);
    expect(started).toBeGreaterThanOrEqual(0);
    expect(hup.logs.indexOf(reloaded)).toBeGreaterThan(started);
    expect(hup.proc.exitCode).toBe(null);
    expect((await fetch(`${hup.admin}/readyz`)).status).toBe(200);
    expect((await fresh(hup, "site.example")).status).toBe(200);
  } finally {
    await hup.cleanup();
  }

  const term = launch({ top: "workers = 2", routes });
  try {
    await term.waitForLog((l) => l.msg === "worker started" && l.worker === 2, 10_000);
    term.proc.kill("SIGTERM");
    expect(await term.proc.exited).toBe(0);
    const pids = term.logs.filter((l) => l.msg === "worker started").map((l) => l.pid as number);
    expect(pids).toHaveLength(2);
    await until("workers gone", () => pids.filter(alive).length === 0, 2000);
    expect(term.logs.filter((l) => l.level === "error")).toEqual([]);
    expect(term.logs.some((l) => l.msg === "stopped" && l.worker === undefined)).toBe(true);
    expect(existsSync(join(term.dir, "gatehouse.pid"))).toBe(false);
  } finally {
    await term.cleanup();
  }
});

test("workers = 1 reads the config once at start: a route file that can be read only once (a FIFO) is enough", async () => {
  const g = launch({});
  const fifo = join(g.dir, "routes", "site.toml");
  let writer: ReturnType<typeof Bun.spawn> | undefined;
  try {
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    // One writer, once: a second read of the file would wait for another writer forever.
    writer = Bun.spawn(["sh", "-c", `printf '%s' "$ROUTE" > "$FIFO"`], {
      env: { ROUTE: `hosts = ["site.example"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n`, FIFO: fifo },
    });
    await until("ready", async () => (await fetch(`${g.admin}/readyz`).catch(() => undefined))?.status === 200, 5000);
    expect((await fresh(g, "site.example")).status).toBe(200);
  } finally {
    writer?.kill();
    await g.cleanup();
  }
});

/** The supervisor in this process, with its timings shortened and its spawn factory under the tests' control. */
describe("supervisor in process", () => {
  let dir: string;
  let httpPort: number;
  let adminPort: number;
  let sup: Supervisor;
  const lines: LogLine[] = [];
  const routes = { site: `hosts = ["site.example"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n` };
  /** failSpawns: how many more times worker i's executable is "missing"; crash: workers whose process exits at once. */
  const failSpawns = new Map<number, number>();
  const crash = new Set<number>();
  const sg = {
    admin: "",
    request: (host: string, path = "/", init: RequestInit = {}) =>
      fetch(`http://127.0.0.1:${httpPort}${path}`, { ...init, headers: { ...(init.headers as Record<string, string>), host } }),
  };

  const waitForLog = (pred: (l: LogLine) => boolean, from: number, timeoutMs = 10_000) => until("log line", () => lines.slice(from).some(pred), timeoutMs);
  const pidOf = async (index: number) => (await workers(sg))[index - 1]!.pid!;
  const back = (index: number, old: number) =>
    until(
      `worker ${index} back`,
      async () => {
        const w = (await workers(sg))[index - 1];
        return w?.ready === true && w.pid !== old;
      },
      10_000,
    );

  beforeAll(async () => {
    dir = tempDir();
    httpPort = freePort();
    adminPort = freePort();
    sg.admin = `http://127.0.0.1:${adminPort}`;
    const configPath = writeConfig(dir, httpPort, adminPort, { top: "workers = 2", routes });
    log.setSink((chunk) => {
      for (const line of chunk.split("\n")) {
        if (!line) continue;
        try {
          lines.push(JSON.parse(line) as LogLine);
        } catch {
          lines.push({ level: "raw", msg: line });
        }
      }
    });
    const spawn = (index: number): SpawnSpec => {
      const env = { ...process.env, [WORKER_ENV]: String(index) };
      const n = failSpawns.get(index) ?? 0;
      if (n > 0) {
        failSpawns.set(index, n - 1);
        return { cmd: [join(dir, "gatehouse-being-replaced")], env };
      }
      if (crash.has(index)) return { cmd: [BUN, "-e", "process.exit(3)"], env };
      return { cmd: [BUN, MAIN, "run", "-c", configPath], env };
    };
    sup = new Supervisor({ configPath, pid: process.pid, spawn, timings: { reload: 1000, certsRetries: 2, certsBackoff: 50 } });
    await sup.start();
  });

  afterAll(async () => {
    await sup?.shutdown(1000);
    log.setSink((s) => void process.stdout.write(s));
    log.setLevel("info");
  });

  test("/readyz stays 200 while one worker crash-loops (one ready worker serves); /workers and gatehouse_workers show which", async () => {
    const from = lines.length;
    const old = await pidOf(2);
    crash.add(2);
    process.kill(old, "SIGKILL");
    await waitForLog((l) => l.msg === "worker exited unexpectedly; restarting it" && l.worker === 2 && l.exit === "code 3", from);
    expect((await fetch(`${sg.admin}/readyz`)).status).toBe(200);
    expect((await workers(sg)).map((w) => w.ready)).toEqual([true, false]);
    expect(value(await metrics(sg), "gatehouse_workers")).toBe(1);
    for (let i = 0; i < 5; i++) expect((await fresh(sg, "site.example")).status).toBe(200);
    crash.delete(2);
    await back(2, old);
  });

  test("a worker that does not answer a reload in time is killed: it cannot apply the reload later, after the others went back", async () => {
    const from = lines.length;
    const stuck = await pidOf(1);
    writeFileSync(join(dir, "routes", "new.toml"), `hosts = ["new.example"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n`);
    process.kill(stuck, "SIGSTOP");
    try {
      const r = await sup.reload();
      expect(r.ok).toBe(false);
      expect(r.problems).toEqual(["worker 1: worker 1 did not answer reload within 1000 ms"]);
      await waitForLog((l) => l.msg === "a worker did not answer the reload; killing it so that it cannot apply it later" && l.worker === 1, from);
    } finally {
      // Had it been left running, it would now apply the queued reload.
      try {
        process.kill(stuck, "SIGCONT");
      } catch {
        // killed
      }
    }
    await back(1, stuck);
    await Bun.sleep(200);
    for (let i = 0; i < 20; i++) expect((await fresh(sg, "new.example")).status).toBe(404);
    const status = JSON.parse(readFileSync(join(dir, "gatehouse.pid.status"), "utf8")) as { result: string };
    expect(status.result).toBe("failure");
    // The next reload takes the route everywhere.
    expect(await sup.reload()).toEqual({ ok: true, problems: [] });
    for (let i = 0; i < 10; i++) expect((await fresh(sg, "new.example")).status).toBe(200);
  });

  test("a worker that does not take new certificates is asked again, then killed so that its replacement loads them", async () => {
    const from = lines.length;
    const [w1, stuck] = [await pidOf(1), await pidOf(2)];
    process.kill(stuck, "SIGSTOP");
    try {
      await (sup as unknown as { certificatesChanged(): Promise<void> }).certificatesChanged();
    } finally {
      try {
        process.kill(stuck, "SIGCONT");
      } catch {
        // killed
      }
    }
    log.flushNow();
    const about = lines.slice(from).filter((l) => l.worker === 2 && String(l.msg).startsWith("a worker did not take the new certificates"));
    expect(about.map((l) => [l.msg, l.retry_in_ms])).toEqual([
      ["a worker did not take the new certificates; asking again", 50],
      ["a worker did not take the new certificates; asking again", 100],
      ["a worker did not take the new certificates; killing it so that its replacement loads them", undefined],
    ]);
    await back(2, stuck);
    expect(await pidOf(1)).toBe(w1);
  });

  test("a worker whose executable cannot be started is tried again with back-off; a reload that adds workers still ends with a status, and later ones work", async () => {
    let from = lines.length;
    const old = await pidOf(1);
    failSpawns.set(1, 2);
    process.kill(old, "SIGKILL");
    await back(1, old);
    const failures = lines.slice(from).filter((l) => l.msg === "cannot start a worker process; trying again" && l.worker === 1);
    expect(failures).toHaveLength(2);
    expect(String(failures[0]!.error)).toContain("ENOENT");
    expect((await fetch(`${sg.admin}/readyz`)).status).toBe(200);

    // A reload to 3 workers whose new worker cannot be spawned at first: the config is live, the slot comes up on its retry.
    from = lines.length;
    failSpawns.set(3, 1);
    writeConfig(dir, httpPort, adminPort, { top: "workers = 3", routes });
    expect(await sup.reload()).toEqual({ ok: true, problems: [] });
    expect((JSON.parse(readFileSync(join(dir, "gatehouse.pid.status"), "utf8")) as { result: string }).result).toBe("success");
    await until("3 workers ready", async () => (await workers(sg)).every((w) => w.ready) && (await workers(sg)).length === 3, 10_000);
    expect(
      lines
        .slice(from)
        .filter((l) => l.msg === "cannot start a worker process; trying again")
        .map((l) => l.worker),
    ).toEqual([3]);
    // Reloads still work (the chain is not stuck on an error).
    writeConfig(dir, httpPort, adminPort, { top: "workers = 2", routes });
    expect(await sup.reload()).toEqual({ ok: true, problems: [] });
    expect(await workers(sg)).toHaveLength(2);
  });
});
