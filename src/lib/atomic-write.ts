/** Atomic file replacement: temp file in the same directory, fsync, rename, fsync of the directory. */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/**
 * writeFileAtomic replaces path with data so that a reader sees the old file or the new one, never a torn one, even after a crash; mode applies to the new file
 * (0600 for keys). `durable = false` skips the fsyncs, for files that mean nothing after a crash (pid and status files, cache objects): still atomic for
 * readers, and the disk flushes stay off the start-up path. tmpDir (on the same file system) holds the temp file instead of path's directory.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644, durable = true, tmpDir?: string): void {
  const dir = dirname(path);
  const tmp = join(tmpDir ?? dir, `.${basename(path)}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2, 8)}.tmp`);
  const fd = openSync(tmp, "wx", mode);
  try {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    for (let off = 0; off < bytes.byteLength; ) off += writeSync(fd, bytes, off);
    if (durable) fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
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
}
