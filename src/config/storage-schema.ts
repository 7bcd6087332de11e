/** Reading config.toml's [storage]: certificates in certs_dir (the default), or in etcd shared by several nodes, with the files its client needs read now. */
import { readFileSync } from "node:fs";
import { parseSecretKey, SECRET_KEY_EXPECTED } from "../lib/secret-key.ts";
import { resolvePath } from "./locations.ts";
import type { Reader } from "./reader.ts";
import type { StorageSettings } from "./types.ts";

const BACKENDS = ["dir", "etcd"] as const;

function readText(r: Reader, key: string, dir: string, expected: string): string | undefined {
  const file = r.string(key);
  if (file === undefined) return undefined;
  const path = resolvePath(dir, file);
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    r.problem(key, `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, expected);
    return undefined;
  }
}

/** readStorage reads [storage] (absent: certs_dir); dir resolves relative file paths. */
export function readStorage(r: Reader | undefined, dir: string): StorageSettings {
  if (r === undefined) return { backend: "dir" };
  const backend = r.oneOf("backend", BACKENDS, "dir");
  if (backend === "dir") {
    r.done();
    return { backend };
  }
  const endpoints = r.stringList("endpoints") ?? [];
  if (!r.has("endpoints") || endpoints.length === 0) r.problem("endpoints", "missing or empty", 'etcd client URLs such as ["http://10.0.0.5:2379"]');
  const urls = endpoints.filter((e, i) => {
    const ok = /^https?:\/\/[^/\s]+\/?$/.test(e);
    if (!ok) r.problem(`endpoints[${i}]`, `${JSON.stringify(e)} is not an etcd client URL`, '"http://HOST:PORT" or "https://HOST:PORT"');
    return ok;
  });
  if (new Set(urls.map((e) => e.split(":")[0])).size > 1) r.problem("endpoints", "mixes http and https", "all http or all https");
  const prefix = r.string("prefix") ?? "gatehouse/";
  const timeoutMs = r.duration("timeout", 5000);
  const username = r.string("username");
  const password = readText(r, "password_file", dir, "a readable file holding the etcd password on its first line")?.split(/\r?\n/)[0];
  if (username !== undefined && !r.has("password_file")) r.problem("username", "needs password_file", "password_file with the etcd user's password");
  if (username === undefined && r.has("password_file")) r.problem("password_file", "is used with username", "username = the etcd user");
  const ca = readText(r, "ca_file", dir, "a PEM file with the CA of the etcd servers");
  const cert = readText(r, "cert_file", dir, "a PEM client certificate");
  const key = readText(r, "key_file", dir, "the PEM private key of cert_file");
  if (r.has("cert_file") !== r.has("key_file"))
    r.problem(r.has("cert_file") ? "cert_file" : "key_file", "needs its pair", "both cert_file and key_file, or neither");
  let secretKey: Uint8Array | undefined;
  const keyFile = r.string("encryption_key_file");
  if (keyFile !== undefined) {
    const path = resolvePath(dir, keyFile);
    try {
      secretKey = parseSecretKey(readFileSync(path));
      if (secretKey === undefined) r.problem("encryption_key_file", `${path} is not an encryption key`, SECRET_KEY_EXPECTED);
    } catch (e) {
      r.problem("encryption_key_file", `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, SECRET_KEY_EXPECTED);
    }
  }
  r.done();
  const tls = ca !== undefined || cert !== undefined ? { ca, cert, key } : undefined;
  return { backend, endpoints, prefix, timeoutMs, username, password, tls, secretKey };
}
