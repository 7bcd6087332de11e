import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BUN, ROOT, freePort, tempDir } from "./harness.ts";

// Build the single executable exactly as `npm run build` does, then run it from a directory that
// holds nothing but the binary: it must start on its built-in default config.
let dir: string;
let binary: string;

beforeAll(() => {
  // The build script of package.json, word for word, with this repository's bun.
  const script: string = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).scripts.build;
  const [first, ...rest] = script.split(/\s+/);
  if (first !== "bun") throw new Error(`package.json's build script does not start with bun: ${script}`);
  const build = Bun.spawnSync([BUN, ...rest], { cwd: ROOT });
  if (build.exitCode !== 0) throw new Error(build.stderr.toString());
  dir = tempDir();
  binary = join(dir, "gatehouse");
  copyFileSync(join(ROOT, "dist/gatehouse"), binary);
  Bun.spawnSync(["chmod", "+x", binary]);
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("the compiled binary reports its version", () => {
  const r = Bun.spawnSync([binary, "version"]);
  expect(r.exitCode).toBe(0);
  expect(r.stdout.toString()).toContain("compiled");
});

test("the compiled binary serves the welcome page on its built-in default config", async () => {
  const proc = Bun.spawn([binary], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  try {
    let res: Response | undefined;
    for (let i = 0; i < 100 && !res; i++) {
      res = await fetch("http://127.0.0.1:8080/", { headers: { host: "localhost" } }).catch(() => undefined);
      if (!res) await Bun.sleep(30);
    }
    expect(res?.status).toBe(200);
    expect(await res!.text()).toContain("gatehouse");
    expect((await fetch("http://127.0.0.1:9180/readyz")).status).toBe(200);
  } finally {
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
  }
});

test("the compiled binary runs a config from another directory", async () => {
  const cfgDir = join(dir, "etc");
  mkdirSync(join(cfgDir, "routes"), { recursive: true });
  const http = freePort();
  const admin = freePort();
  await Bun.write(join(cfgDir, "config.toml"), `[listen]\nhttp = "127.0.0.1:${http}"\nadmin = "127.0.0.1:${admin}"\n`);
  await Bun.write(join(cfgDir, "routes", "w.toml"), `hosts = ["w.example"]\nstatic = "builtin:welcome"\n`);
  const proc = Bun.spawn([binary, "run", "-c", join(cfgDir, "config.toml")], { cwd: "/", stdout: "pipe", stderr: "pipe" });
  try {
    let ready = false;
    for (let i = 0; i < 100 && !ready; i++) {
      ready = (await fetch(`http://127.0.0.1:${admin}/readyz`).catch(() => undefined))?.status === 200;
      if (!ready) await Bun.sleep(30);
    }
    expect(ready).toBe(true);
    expect((await fetch(`http://127.0.0.1:${http}/`, { headers: { host: "w.example" } })).status).toBe(200);
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
});

test("the compiled binary runs workers = 2: a supervisor and two workers, each the binary itself", async () => {
  const cfgDir = join(dir, "workers");
  mkdirSync(join(cfgDir, "routes"), { recursive: true });
  const http = freePort();
  const admin = freePort();
  await Bun.write(join(cfgDir, "config.toml"), `workers = 2\n[listen]\nhttp = "127.0.0.1:${http}"\nadmin = "127.0.0.1:${admin}"\n`);
  await Bun.write(join(cfgDir, "routes", "w.toml"), `hosts = ["w.example"]\nstatic = "builtin:welcome"\n`);
  const proc = Bun.spawn([binary, "run", "-c", join(cfgDir, "config.toml")], { cwd: cfgDir, stdout: "ignore", stderr: "pipe" });
  try {
    let ready = false;
    for (let i = 0; i < 150 && !ready; i++) {
      ready = (await fetch(`http://127.0.0.1:${admin}/readyz`).catch(() => undefined))?.status === 200;
      if (!ready) await Bun.sleep(30);
    }
    expect(ready).toBe(true);
    const workers = (await (await fetch(`http://127.0.0.1:${admin}/workers`)).json()) as { pid: number; ready: boolean }[];
    expect(workers.map((w) => w.ready)).toEqual([true, true]);
    for (const w of workers) expect(readFileSync(`/proc/${w.pid}/cmdline`, "utf8").split("\0")[0]).toBe(binary);
    expect((await fetch(`http://127.0.0.1:${http}/`, { headers: { host: "w.example" } })).status).toBe(200);
  } finally {
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
  }
});

test("the compiled binary runs only its own code: a bunfig.toml preload and a .env in its working directory change nothing", async () => {
  // A gateway's working directory is often writable by its own user (it holds certs/): what lies there must not run, or set its environment.
  const cwd = join(dir, "hostile");
  mkdirSync(join(cwd, "routes"), { recursive: true });
  const marker = join(cwd, "preload-ran");
  await Bun.write(join(cwd, "x.ts"), `require("node:fs").writeFileSync(${JSON.stringify(marker)}, "1");\n`);
  await Bun.write(join(cwd, "bunfig.toml"), `preload = ["./x.ts"]\n`);
  // Read, this would make `run` act as a worker of a supervisor that does not exist (and refuse to start).
  await Bun.write(join(cwd, ".env"), "GATEHOUSE_WORKER=0\n");
  const http = freePort();
  const admin = freePort();
  await Bun.write(join(cwd, "config.toml"), `[listen]\nhttp = "127.0.0.1:${http}"\nadmin = "127.0.0.1:${admin}"\n`);
  await Bun.write(join(cwd, "routes", "w.toml"), `hosts = ["w.example"]\nstatic = "builtin:welcome"\n`);
  const v = Bun.spawnSync([binary, "version"], { cwd });
  expect(v.exitCode).toBe(0);
  const proc = Bun.spawn([binary, "run"], { cwd, stdout: "pipe", stderr: "pipe" });
  try {
    let ready = false;
    for (let i = 0; i < 100 && !ready && proc.exitCode === null; i++) {
      ready = (await fetch(`http://127.0.0.1:${admin}/readyz`).catch(() => undefined))?.status === 200;
      if (!ready) await Bun.sleep(30);
    }
    expect({ ready, exited: proc.exitCode }).toEqual({ ready: true, exited: null });
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  expect(existsSync(marker)).toBe(false);
});
