import { afterAll, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, MAIN, ROOT, tempDir } from "./harness.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function layout(main: string, routes: Record<string, string>): string {
  const dir = tempDir();
  dirs.push(dir);
  mkdirSync(join(dir, "routes"));
  writeFileSync(join(dir, "config.toml"), main);
  for (const [n, t] of Object.entries(routes)) writeFileSync(join(dir, "routes", `${n}.toml`), t);
  return dir;
}

function gatehouse(args: string[], cwd = ROOT) {
  const r = Bun.spawnSync([BUN, MAIN, ...args], { cwd });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

test("check accepts the repository's own config", () => {
  const r = gatehouse(["check"]);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(r.out).toContain("ok (1 sites, 1 routes)");
});

test("check prints every problem as FILE:LINE: key: what (expected …) and exits 1", () => {
  const dir = layout('[listen]\nhttp = "127.0.0.1:99999"\n[log]\nlevel = "verbose"\n', {
    a: 'hosts = ["a.example"]\nupstreams = ["http://127.0.0.1:1"]\nmax_body_size = "huge"\n',
    b: 'hosts = ["a.example"]\nredirect = "https://x.example"\nredirect_status = 200\n',
  });
  const r = gatehouse(["check", "-c", "config.toml"], dir);
  expect(r.code).toBe(1);
  expect(r.err.trim().split("\n")).toEqual([
    'config.toml:2: listen.http: cannot read "127.0.0.1:99999" as a listen address (expected HOST:PORT such as "127.0.0.1:8080" or "[::1]:8443")',
    'config.toml:4: log.level: "verbose" is not allowed (expected one of "debug", "info", "warn", "error")',
    'routes/a.toml:3: max_body_size: cannot read "huge" as a size (expected a size such as "512KiB", "8MiB" or "1GB")',
    'routes/b.toml:1: hosts: host "a.example" is also claimed by routes/a.toml (expected each host in one route file only)',
    "routes/b.toml:3: redirect_status: 200 is out of range (expected a whole number from 300 to 399)",
  ]);
});

test("run refuses to start on a bad config, with the same messages, exit 1", () => {
  const dir = layout('[listen]\nhttp = "127.0.0.1:0"\nadmn = "x"\n', {});
  const r = gatehouse(["run", "-c", "config.toml"], dir);
  expect(r.code).toBe(1);
  expect(r.err).toContain('config.toml:3: listen.admn: unknown key, did you mean "admin"?');
});

test("a missing config file given with -c is an error; unknown commands and options are refused", () => {
  const r = gatehouse(["check", "-c", "/nonexistent/config.toml"]);
  expect(r.code).toBe(1);
  expect(r.err).toContain("gatehouse check: no config file at /nonexistent/config.toml (from -c)");
  expect(gatehouse(["frobnicate"]).code).toBe(2);
  expect(gatehouse(["run", "--colour"]).code).toBe(2);
});

test("without config.toml, check and reload fail and say where they looked; they never validate the built-in default", () => {
  const dir = tempDir();
  dirs.push(dir);
  for (const command of ["check", "reload"]) {
    const r = gatehouse([command], dir);
    expect(r.code).toBe(1);
    expect(r.out).toBe("");
    expect(r.err).toContain(`gatehouse ${command}: no config file at ${join(dir, "config.toml")} (from the default, ./config.toml)`);
  }
});

test("GATEHOUSE_CONFIG stands for -c, and -c wins over it", () => {
  const dir = tempDir();
  dirs.push(dir);
  mkdirSync(join(dir, "routes"));
  writeFileSync(join(dir, "other.toml"), '[listen]\nhttp = "127.0.0.1:18081"\n');
  writeFileSync(join(dir, "routes", "a.toml"), 'hosts = ["a.test"]\nredirect = "https://b.test"\n');
  const env = { ...process.env, GATEHOUSE_CONFIG: join(dir, "other.toml") };
  const ok = Bun.spawnSync([BUN, MAIN, "check"], { cwd: ROOT, env });
  expect(ok.exitCode).toBe(0);
  expect(ok.stdout.toString()).toContain(`${join(dir, "other.toml")}: ok (1 sites, 1 routes)`);
  const missing = Bun.spawnSync([BUN, MAIN, "check"], { cwd: ROOT, env: { ...env, GATEHOUSE_CONFIG: join(dir, "nope.toml") } });
  expect(missing.exitCode).toBe(1);
  expect(missing.stderr.toString()).toContain(`no config file at ${join(dir, "nope.toml")} (from GATEHOUSE_CONFIG)`);
  const flag = Bun.spawnSync([BUN, MAIN, "check", "-c", join(dir, "nope.toml")], { cwd: ROOT, env });
  expect(flag.stderr.toString()).toContain("(from -c)");
});

test("version prints the version and the Bun it runs on", () => {
  const r = gatehouse(["version"]);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/^gatehouse \d+\.\d+\.\d+ \(bun \d+\.\d+\.\d+/);
});

test("reload without a running instance says so and exits 1", () => {
  const dir = layout('[listen]\nhttp = "127.0.0.1:1"\n', {});
  const r = gatehouse(["reload", "-c", "config.toml"], dir);
  expect(r.code).toBe(1);
  expect(r.err).toContain("no running instance");
});

test("hash-password prints an argon2id hash of the password on stdin, which [basic_auth] accepts and which verifies; an empty one is refused", async () => {
  const r = Bun.spawnSync([BUN, MAIN, "hash-password"], { stdin: Buffer.from("correct horse battery\n") });
  expect(r.exitCode).toBe(0);
  const hash = r.stdout.toString().trim();
  expect(hash).toStartWith("$argon2id$v=19$m=19456,t=2,p=1$");
  expect(await Bun.password.verify("correct horse battery", hash)).toBe(true);
  expect(await Bun.password.verify("correct horse battery\n", hash)).toBe(false);
  const empty = Bun.spawnSync([BUN, MAIN, "hash-password"], { stdin: Buffer.from("\n") });
  expect(empty.exitCode).toBe(1);
  expect(empty.stdout.toString()).toBe("");
  expect(empty.stderr.toString()).toContain("empty password");
});

test("hash-password on a terminal asks twice without echoing, and refuses two passwords that differ", async () => {
  // script(1) gives the command a pseudo-terminal; the answers are typed once each prompt is shown.
  const type = async (answers: string[]) => {
    const p = Bun.spawn(["script", "-qec", `${BUN} ${MAIN} hash-password`, "/dev/null"], { stdin: "pipe", stdout: "pipe", env: process.env });
    let out = "";
    const reading = (async () => {
      for await (const chunk of p.stdout) out += Buffer.from(chunk).toString();
    })();
    for (const [i, a] of answers.entries()) {
      const prompt = i === 0 ? "password: " : "again: ";
      const deadline = Date.now() + 5000;
      while (!out.includes(prompt) && Date.now() < deadline) await Bun.sleep(20);
      p.stdin.write(`${a}\r`);
      await p.stdin.flush();
    }
    const code = await Promise.race([p.exited, Bun.sleep(10_000).then(() => -1)]);
    if (code === -1) p.kill();
    await reading;
    return { code, out };
  };
  const ok = await type(["s3cret-words", "s3cret-words"]);
  expect(ok.code).toBe(0);
  expect(ok.out).not.toContain("s3cret");
  const hash = /\$argon2id\$\S+/.exec(ok.out)?.[0] ?? "";
  expect(await Bun.password.verify("s3cret-words", hash)).toBe(true);
  const differ = await type(["one-password", "another-one"]);
  expect(differ.code).toBe(1);
  expect(differ.out).toContain("the passwords differ");
  expect(differ.out).not.toContain("$argon2id$");
});
