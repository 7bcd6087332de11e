/** Atomic file replacement: temp file in the same directory, fsync, rename, fsync of the directory; in two steps when several files must change together. */
import { closeSync, fchmodSync, fchownSync, fstatSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/** Prepared is a written temp file waiting to take its path's place: commit renames it there, discard removes it. */
export type Prepared = { commit(): void; discard(): void };

/**
 * prepareFileAtomic writes data to a temp file beside path (or in tmpDir, on the same file system) and returns how to put it in place. mode applies to the
 * new file (0600 for keys). With owner, the file is created 0600, given owner.gid as its group and exactly mode (the umask aside) before any byte is written:
 * no reader ever opens it with other permissions. `durable = false` skips the fsyncs, for files that mean nothing after a crash.
 */
export function prepareFileAtomic(
  path: string,
  data: string | Uint8Array,
  mode = 0o644,
  durable = true,
  tmpDir?: string,
  owner?: { readonly gid?: number },
): Prepared {
  const dir = dirname(path);
  const tmp = join(tmpDir ?? dir, `.${basename(path)}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2, 8)}.tmp`);
  const fd = openSync(tmp, "wx", owner ? 0o600 : mode);
  try {
    // Only when needed: a setgid directory may have given the group already, where a sandbox refuses chown (systemd's ~@privileged).
    if (owner?.gid !== undefined && fstatSync(fd).gid !== owner.gid) fchownSync(fd, -1, owner.gid);
    // After the chown, which may clear set-id bits; the mode given, not the one the umask left.
    if (owner) fchmodSync(fd, mode);
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    for (let off = 0; off < bytes.byteLength; ) off += writeSync(fd, bytes, off);
    if (durable) fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  return {
    commit() {
      try {
        renameSync(tmp, path);
      } catch (e) {
        rmSync(tmp, { force: true });
        throw e;
      }
      if (!durable) return;
      const dfd = openSync(dir, "r");
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    },
    discard() {
      rmSync(tmp, { force: true });
    },
  };
}

/**
 * writeFileAtomic replaces path with data so that a reader sees the old file or the new one, never a torn one, even after a crash: prepareFileAtomic with the
 * same arguments, then its commit.
 */
export function writeFileAtomic(...args: Parameters<typeof prepareFileAtomic>): void {
  prepareFileAtomic(...args).commit();
}
