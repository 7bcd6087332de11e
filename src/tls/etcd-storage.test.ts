/** EtcdStorage without etcd: the encryption key file's formats, and options refused before any request. */
import { afterAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EtcdStorage, readEncryptionKey } from "./etcd-storage.ts";

const dir = mkdtempSync(join(tmpdir(), "gatehouse-etcd-key-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("readEncryptionKey takes 32 raw bytes, 64 hex digits or base64 of 32 bytes, and refuses anything else", () => {
  const key = randomBytes(32);
  const write = (name: string, data: string | Buffer): string => {
    const p = join(dir, name);
    writeFileSync(p, data, { mode: 0o600 });
    return p;
  };
  expect(Buffer.from(readEncryptionKey(write("raw", key))).equals(key)).toBe(true);
  expect(Buffer.from(readEncryptionKey(write("hex", `${key.toString("hex")}\n`))).equals(key)).toBe(true);
  expect(Buffer.from(readEncryptionKey(write("b64", `${key.toString("base64")}\n`))).equals(key)).toBe(true);
  expect(() => readEncryptionKey(write("short", "c2hvcnQ=\n"))).toThrow(/is not an encryption key/);
});

test("options are checked when the storage is made: endpoints, key length", () => {
  expect(() => new EtcdStorage({ endpoints: [] })).toThrow(/at least one endpoint/);
  expect(() => new EtcdStorage({ endpoints: ["127.0.0.1:2379"] })).toThrow(/not http\(s\):\/\/host:port/);
  expect(() => new EtcdStorage({ endpoints: ["http://127.0.0.1:2379"], secretKey: new Uint8Array(31) })).toThrow(/31 bytes/);
  expect(new EtcdStorage({ endpoints: ["http://127.0.0.1:2379/"], prefix: "a/b" }).describe("k")).toBe("etcd:a/b/k");
});
