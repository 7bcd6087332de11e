import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "./load.ts";
import { ConfigError, formatProblem } from "./problems.ts";
import type { Config } from "./types.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function load(storage: string): Config | string[] {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-storage-"));
  dirs.push(dir);
  mkdirSync(join(dir, "routes"));
  writeFileSync(join(dir, "pw"), "s3cret\n");
  writeFileSync(join(dir, "bad.key"), "too short");
  writeFileSync(join(dir, "good.key"), "a".repeat(64));
  writeFileSync(join(dir, "config.toml"), `[listen]\nhttp = "127.0.0.1:8080"\n${storage}`);
  writeFileSync(join(dir, "routes/a.toml"), 'hosts = ["a.test"]\nstatic = "builtin:welcome"\n');
  try {
    return loadConfig(join(dir, "config.toml"));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems.map((p) => formatProblem({ ...p, file: p.file.replace(`${dir}/`, "") }).replaceAll(`${dir}/`, ""));
  }
}

test("[storage] with etcd: every problem at its key, files read at load (the password's first line, the sealing key)", () => {
  expect(
    load(
      '[storage]\nbackend = "etcd"\nendpoints = ["http://127.0.0.1:2379", "10.0.0.5:2379"]\nusername = "gh"\ncert_file = "nope.pem"\nencryption_key_file = "bad.key"\n',
    ),
  ).toEqual([
    'config.toml:5: storage.endpoints[1]: "10.0.0.5:2379" is not an etcd client URL (expected "http://HOST:PORT" or "https://HOST:PORT")',
    "config.toml:6: storage.username: needs password_file (expected password_file with the etcd user's password)",
    "config.toml:7: storage.cert_file: cannot read nope.pem: ENOENT (expected a PEM client certificate)",
    "config.toml:7: storage.cert_file: needs its pair (expected both cert_file and key_file, or neither)",
    "config.toml:8: storage.encryption_key_file: bad.key is not an encryption key (expected 32 bytes, 64 hex digits or the base64 of 32 bytes (openssl rand -base64 32))",
  ]);
  const ok = load(
    '[storage]\nbackend = "etcd"\nendpoints = ["http://127.0.0.1:2379"]\nusername = "gh"\npassword_file = "pw"\nencryption_key_file = "good.key"\n',
  ) as Config;
  expect(ok.global.storage).toMatchObject({ backend: "etcd", prefix: "gatehouse/", timeoutMs: 5000, username: "gh", password: "s3cret" });
  expect((load("") as Config).global.storage).toEqual({ backend: "dir" });
});
