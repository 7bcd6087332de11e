/** `gatehouse storage copy --from dir|etcd --to dir|etcd`: every key of one storage into the other, for a node that was alone until now (or back). */
import type { GlobalConfig } from "./config/types.ts";
import { openBackend } from "./tls/storage-open.ts";

/** SECRET_RE marks the keys whose values are private keys: stored as secrets (0600 in certs_dir, sealed in etcd with encryption_key_file). */
const SECRET_RE = /(\.key|key\.pem)(\.|$)/;

/** CopyOutcome is what a copy did: keys written, keys the destination already had the same, keys it had otherwise (kept). */
export type CopyOutcome = { readonly copied: number; readonly same: number; readonly kept: readonly string[] };

/**
 * copyStorage copies every key of `from` into `to`. A key the destination already holds with another value is kept as it is and named: the destination
 * may be a cluster whose certificates are newer than this node's. Any storage error stops the copy (what was written stays).
 */
export async function copyStorage(g: GlobalConfig, from: "dir" | "etcd", to: "dir" | "etcd"): Promise<CopyOutcome> {
  if (from === to) throw new Error(`--from and --to are both ${from}`);
  const src = openBackend(g, from);
  const dst = openBackend(g, to);
  let copied = 0;
  let same = 0;
  const kept: string[] = [];
  for (const key of await src.list()) {
    const value = await src.load(key);
    if (value === undefined) continue;
    const there = await dst.load(key);
    if (there === value) same++;
    else if (there !== undefined) kept.push(key);
    else {
      await dst.store(key, value, { secret: SECRET_RE.test(key) });
      copied++;
    }
  }
  return { copied, same, kept };
}
