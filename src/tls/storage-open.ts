/** Opening the storage a config names: certs_dir (FileStorage), or etcd shared by the nodes with certs_dir as this node's local copy. */
import type { EtcdSettings, GlobalConfig } from "../config/types.ts";
import { storageUp } from "../observability/gateway-metrics.ts";
import { EtcdStorage } from "./etcd-storage.ts";
import { FileStorage } from "./file-storage.ts";
import { MirroredStorage } from "./mirrored-storage.ts";
import type { Storage } from "./storage.ts";

/** SHARED_SYNC_MS is how often a node re-reads shared storage for certificates other nodes obtained, beside etcd's watch (for what a broken watch missed). */
export const SHARED_SYNC_MS = 30_000;

/** storageKey is what decides a config's storage: the same key in the next config reuses the storage that is open. */
export function storageKey(g: GlobalConfig): string {
  const s = g.storage;
  if (s.backend === "dir") return `dir\u0000${g.certsDir}`;
  // The secrets are part of it (a new password opens a new client), never printed.
  return JSON.stringify([
    g.certsDir,
    s.endpoints,
    s.prefix,
    s.timeoutMs,
    s.username,
    s.password,
    s.tls,
    s.secretKey ? Buffer.from(s.secretKey).toString("hex") : null,
  ]);
}

/** openStorage opens the storage of config g. */
export function openStorage(g: GlobalConfig): Storage {
  const s = g.storage;
  if (s.backend === "dir") {
    storageUp.labels().value = 1;
    return new FileStorage(g.certsDir);
  }
  return new MirroredStorage(etcdOf(s), new FileStorage(g.certsDir), `etcd ${s.endpoints.join(", ")} under ${JSON.stringify(s.prefix)}`);
}

/** sharedOf is the storage shared with other nodes behind s (without this node's local copy), or undefined when s is not shared. */
export function sharedOf(s: Storage): Storage | undefined {
  return s instanceof MirroredStorage ? s.shared : undefined;
}

/** probeStorage asks the shared storage of g for a key (`gatehouse check`): undefined when it answers, else why not. certs_dir always answers. */
export async function probeStorage(g: GlobalConfig): Promise<string | undefined> {
  if (g.storage.backend === "dir") return undefined;
  try {
    await etcdOf(g.storage).load("check");
    return undefined;
  } catch (e) {
    return String((e as Error).message ?? e);
  }
}

/** openBackend opens one backend of g alone, without a local copy (`gatehouse storage copy`): "dir" is certs_dir, "etcd" the etcd of [storage]. */
export function openBackend(g: GlobalConfig, kind: "dir" | "etcd"): Storage {
  if (kind === "dir") return new FileStorage(g.certsDir);
  if (g.storage.backend !== "etcd") throw new Error('config.toml names no etcd: [storage] backend = "etcd" with its endpoints');
  return etcdOf(g.storage);
}

function etcdOf(s: EtcdSettings): EtcdStorage {
  return new EtcdStorage({
    endpoints: s.endpoints,
    prefix: s.prefix,
    timeoutMs: s.timeoutMs,
    ...(s.username !== undefined ? { username: s.username, password: s.password } : {}),
    ...(s.tls ? { tls: s.tls } : {}),
    ...(s.secretKey ? { secretKey: s.secretKey } : {}),
  });
}
