import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { BUN, MAIN, freePort, origin, startGateway, type TestGateway } from "./harness.ts";

const a = origin(() => new Response("a"));
const b = origin(() => new Response("b"));
const wsOrigin = origin((req, server) => (server.upgrade(req, { data: undefined }) ? undefined : new Response("no", { status: 400 })), {
  websocket: {
    message(ws: import("bun").ServerWebSocket<unknown>, m: string | Buffer) {
      ws.send(m);
    },
  },
});
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({
    routes: {
      a: `hosts = ["a.example"]\nupstreams = ["http://127.0.0.1:${a.port}"]\n`,
      ws: `hosts = ["ws.example"]\nupstreams = ["http://127.0.0.1:${wsOrigin.port}"]\n`,
    },
  });
});

afterAll(async () => {
  await gw.cleanup();
  for (const o of [a, b, wsOrigin]) o.stop(true);
});

async function metric(name: string): Promise<string | undefined> {
  const text = await (await fetch(`${gw.admin}/metrics`)).text();
  return text
    .split("\n")
    .find((l) => l.startsWith(name))
    ?.split(" ")
    .pop();
}

test("a new route file is live after SIGHUP", async () => {
  expect((await gw.request("b.example")).status).toBe(404);
  gw.writeRoute("b", `hosts = ["b.example"]\nupstreams = ["http://127.0.0.1:${b.port}"]\n`);
  const line = await gw.reload();
  expect(line.msg).toBe("config reloaded");
  const res = await gw.request("b.example");
  expect(res.status).toBe(200);
  expect(await res.text()).toBe("b");
  expect(await metric('gatehouse_config_reloads_total{result="success"}')).toBe("1");
});

test("a broken file is rejected with check's messages and the old config keeps serving", async () => {
  gw.writeRoute("broken", `hosts = ["c.example"]\nupstream = ["http://127.0.0.1:1"]\n`);
  gw.writeRoute("a", `hosts = ["a.example"]\nupstreams = ["http://127.0.0.1:${b.port}"]\n`);
  const line = await gw.reload();
  expect(line.level).toBe("error");
  expect((line.problems as string[])[0]).toMatch(/^routes\/broken\.toml:2: upstream: unknown key, did you mean "upstreams"\?/);
  // a.toml changed too, but nothing of the rejected config applies.
  expect(await (await gw.request("a.example")).text()).toBe("a");
  expect(await metric('gatehouse_config_reloads_total{result="failure"}')).toBe("1");
  expect(await metric("gatehouse_config_last_reload_success")).toBe("0");
  gw.removeRoute("broken");
  gw.writeRoute("a", `hosts = ["a.example"]\nupstreams = ["http://127.0.0.1:${a.port}"]\n`);
  expect((await gw.reload()).msg).toBe("config reloaded");
  expect(await metric("gatehouse_config_last_reload_success")).toBe("1");
});

test("`gatehouse reload` reports the outcome with its exit code", async () => {
  const cfg = join(gw.dir, "config.toml");
  const ok = Bun.spawnSync([BUN, MAIN, "reload", "-c", cfg]);
  expect(ok.exitCode).toBe(0);
  expect(ok.stdout.toString()).toContain("new config is live");
  gw.writeRoute("bad", `hosts = ["a.example"]\nupstreams = ["http://127.0.0.1:1"]\n`);
  const bad = Bun.spawnSync([BUN, MAIN, "reload", "-c", cfg]);
  expect(bad.exitCode).toBe(1);
  expect(bad.stderr.toString()).toContain('routes/bad.toml:1: hosts: host "a.example" is also claimed by');
  gw.removeRoute("bad");
  expect(Bun.spawnSync([BUN, MAIN, "reload", "-c", cfg]).exitCode).toBe(0);
});

test("20 reloads under load: no failed request, no dropped WebSocket, keep-alive connections survive", async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${gw.httpPort}/`, { headers: { host: "ws.example" } } as never);
  await new Promise((r) => (ws.onopen = r));
  let wsClosed = false;
  ws.onclose = () => (wsClosed = true);
  let ok = 0;
  const failures: string[] = [];
  let running = true;
  const worker = async () => {
    while (running) {
      try {
        const res = await gw.request("a.example");
        const body = await res.text();
        if (res.status === 200 && body === "a") ok++;
        else failures.push(`${res.status} ${body}`);
      } catch (e) {
        failures.push(String(e));
      }
    }
  };
  const workers = Array.from({ length: 8 }, worker);
  const deadline = Date.now() + 20_000; // bound the loop whatever happens
  for (let i = 0; i < 20 && Date.now() < deadline; i++) {
    // Alternate between two configs so each reload really changes something.
    gw.writeRoute("extra", `hosts = ["extra${i % 2}.example"]\nupstreams = ["http://127.0.0.1:${b.port}"]\n`);
    expect((await gw.reload()).msg).toBe("config reloaded");
    await Bun.sleep(25);
  }
  running = false;
  await Promise.all(workers);
  const echoed = new Promise((r) => (ws.onmessage = (e) => r(e.data)));
  ws.send("still here");
  expect(await echoed).toBe("still here");
  expect(wsClosed).toBe(false);
  ws.close();
  expect(failures).toEqual([]);
  expect(ok).toBeGreaterThan(100);
  console.log(`20 reloads: ${ok} requests, ${failures.length} failed`);
}, 30_000);

test("a changed listener address is rebound; the others keep serving", async () => {
  const newAdmin = freePort();
  const cfg = join(gw.dir, "config.toml");
  const text = await Bun.file(cfg).text();
  await Bun.write(cfg, text.replace(`admin = "127.0.0.1:${gw.adminPort}"`, `admin = "127.0.0.1:${newAdmin}"`));
  expect((await gw.reload()).msg).toBe("config reloaded");
  expect((await fetch(`http://127.0.0.1:${newAdmin}/healthz`)).status).toBe(200);
  expect((await gw.request("a.example")).status).toBe(200);
  // wait for the old admin listener to close
  let closed = false;
  for (let i = 0; i < 50 && !closed; i++) {
    closed = await fetch(`${gw.admin}/healthz`).then(
      () => false,
      () => true,
    );
    if (!closed) await Bun.sleep(20);
  }
  expect(closed).toBe(true);
  await Bun.write(cfg, text);
  expect((await gw.reload()).msg).toBe("config reloaded");
});
