/** workers = N: a supervisor with worker processes on shared listeners, end to end: spreading, restarts, reloads, shutdown, merged metrics. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, MAIN, origin, startGateway, type TestGateway } from "./harness.ts";

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
function fresh(g: TestGateway, host: string, path = "/"): Promise<Response> {
  return g.request(host, path, { headers: { connection: "close" } });
}

async function workers(g: TestGateway): Promise<WorkerInfo[]> {
  return (await (await fetch(`${g.admin}/workers`)).json()) as WorkerInfo[];
}

async function metrics(g: TestGateway): Promise<string> {
  return (await fetch(`${g.admin}/metrics`)).text();
}

function value(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
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
  expect(list.map((w) => [w.worker, w.ready])).toEqual([[1, true], [2, true]]);
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
  expect(upstreams.map((u) => [u.worker, u.route]).sort()).toEqual([[1, "site"], [2, "site"]]);
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
  expect(gw.logs.slice(from).filter((l) => l.msg === "config reloaded").map((l) => l.worker ?? 0).sort()).toEqual([0, 1, 2]);

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
    expect(g.logs.filter((l) => l.msg === "stopped").map((l) => l.worker ?? 0).sort()).toEqual([0, 1, 2]);
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
