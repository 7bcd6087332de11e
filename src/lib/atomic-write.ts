/** Atomic file replacement: temp file in the same directory, fsync, rename, fsync of the directory. */
import { closeSync, fchmodSync, fchownSync, fstatSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/**
 * writeFileAtomic replaces path with data so that a reader sees the old file or the new one, never a torn one, even after a crash; mode applies to the new file
 * (0600 for keys). `durable = false` skips the fsyncs, for files that mean nothing after a crash (pid and status files, cache objects): still atomic for
 * readers, and the disk flushes stay off the start-up path. tmpDir (on the same file system) holds the temp file instead of path's directory. With owner, the
 * new file gets exactly mode (the umask aside) and owner.gid as its group before it takes path's place: no reader sees it with other permissions.
 */
export function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  mode = 0o644,
  durable = true,
  tmpDir?: string,
  owner?: { readonly gid?: number },
): void {
  const dir = dirname(path);
  const tmp = join(tmpDir ?? dir, `.${basename(path)}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2, 8)}.tmp`);
  const fd = openSync(tmp, "wx", mode);
  try {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    for (let off = 0; off < bytes.byteLength; ) off += writeSync(fd, bytes, off);
    // Only when needed: a setgid directory may have given the group already, where a sandbox refuses chown (systemd's ~@privileged).
    if (owner?.gid !== undefined && fstatSync(fd).gid !== owner.gid) fchownSync(fd, -1, owner.gid);
    // After the chown, which may clear set-id bits; the mode given, not the one the umask left.
    if (owner) fchmodSync(fd, mode);
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
