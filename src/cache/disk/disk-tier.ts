/** The cache's disk tier: responses as files under [cache] dir with a shared index, for every worker of a node and across restarts and upgrades, bounded in bytes. */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { FieldReader } from "../../lib/fields.ts";
import { Fields } from "../../lib/fields.ts";
import { cacheDiskDamaged, cacheDiskSize } from "../../observability/gateway-metrics.ts";
import { log } from "../../observability/log.ts";
import type { Entry } from "../store.ts";
import { secondaryKey } from "../vary.ts";
import { DiskIndex, type Row } from "./disk-index.ts";
import { Damaged, encodeObject, type ObjectHead, openHead, readObject, writeObject } from "./object-file.ts";

/** LAYOUT names the directory of this file and index layout under [cache] dir: a later layout starts beside it, empty, and removes the earlier ones. */
const LAYOUT = "v2";
/** READ_WHOLE: objects up to this are read whole (CRC checked at once) and may go to the memory tier; larger ones stream from their file. */
const READ_WHOLE = 1024 * 1024;
/** holderOf reads the pid in a fill lock (undefined: none, or the file is being written). */
function holderOf(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, "utf8"));
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** alive says whether a process lives; a lock whose pid is not yet written counts as held. */
function alive(pid: number | undefined): boolean {
  if (pid === undefined) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
const SEP = "\u0000";

/** DiskHit is a stored response found on disk: its entry (body in memory, or `file` to stream from), its secondary key, and whether a soft purge marked it. */
export type DiskHit = { readonly entry: Entry; readonly secondary: string; readonly stale: boolean };

function nameOf(primary: string, secondary: string): string {
  return Bun.hash(primary + SEP + secondary)
    .toString(16)
    .padStart(16, "0");
}

/** DiskTier is one process's view of a node's disk tier; every process of the node opens the same directory. */
export class DiskTier {
  private readonly root: string;
  private readonly index: DiskIndex;
  /** writing holds, per primary key, the write under way (fill locks are released once it is done). */
  private readonly writing = new Map<string, Promise<void>>();
  /** epoch counts purges and deletions: a write asked for before one of them is not made (it would bring back what was purged). */
  private epoch = 0;
  private complained = 0;

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {
    this.root = join(dir, LAYOUT);
    for (const sub of ["objects", "tmp", "fill"]) mkdirSync(join(this.root, sub), { recursive: true, mode: 0o700 });
    for (let i = 0; i < 256; i++) mkdirSync(join(this.root, "objects", i.toString(16).padStart(2, "0")), { recursive: true, mode: 0o700 });
    this.index = new DiskIndex(join(this.root, "index.db"));
    this.sweepTmp();
    this.removeOldLayouts();
    cacheDiskSize.labels().value = this.index.total();
  }

  private pathOf(name: string): string {
    return join(this.root, "objects", name.slice(0, 2), name);
  }

  /** removeOldLayouts removes what earlier layouts left under dir (v1/, …): this one never reads them, and they hold disk space. */
  private removeOldLayouts(): void {
    for (const d of readdirSync(this.dir)) {
      if (/^v\d+$/.test(d) && d !== LAYOUT) {
        log.info("cache dir of an earlier layout removed", { dir: join(this.dir, d) });
        rmSync(join(this.dir, d), { recursive: true, force: true });
      }
    }
  }

  /** sweepTmp removes temp files a crashed writer left (older than a minute: younger ones may be another process's write under way). */
  private sweepTmp(): void {
    const tmp = join(this.root, "tmp");
    const old = Date.now() - 60_000;
    for (const f of readdirSync(tmp)) {
      try {
        if (statSync(join(tmp, f)).mtimeMs < old) rmSync(join(tmp, f), { force: true });
      } catch {}
    }
  }

  /** lookup finds the variant of primary that matches the request's Vary fields: read whole when small, else opened to stream. undefined: not on disk. */
  lookup(primary: string, req: FieldReader): DiskHit | undefined {
    try {
      return this.find(primary, req);
    } catch (e) {
      // The index cannot be read (its file removed, a damaged database): a miss, said once a minute at most.
      if (Date.now() - this.complained > 60_000) {
        this.complained = Date.now();
        log.error("cache index unreadable; disk tier lookups are misses", { dir: this.dir, error: String((e as Error).message ?? e) });
      }
      return undefined;
    }
  }

  private find(primary: string, req: FieldReader): DiskHit | undefined {
    // Two point queries: measured cheaper in bun:sqlite than one that joins them (10 against 12 µs).
    const vary = this.index.varyOf(primary);
    if (vary === undefined) return undefined;
    const secondary = vary.length === 0 ? "" : secondaryKey(vary, req);
    const name = nameOf(primary, secondary);
    const row = this.index.row(name);
    if (row === undefined) return undefined;
    const path = this.pathOf(name);
    try {
      let head: ObjectHead;
      let body: Uint8Array = new Uint8Array(0);
      let file: Entry["file"];
      if (row.size <= READ_WHOLE) ({ head, body } = readObject(path));
      else {
        const opened = openHead(path);
        head = opened.head;
        const damaged = () => {
          // Replaced since (another process wrote this object again): the new file is not the damaged one.
          if (this.index.row(name)?.gen === row.gen) this.damaged(row, "body does not match its CRC-32");
        };
        file = { path, offset: opened.offset, length: head.bodyLength, crc: head.crc, damaged };
      }
      if (head.primary !== primary || head.secondary !== secondary) return undefined; // another key with the same hash
      this.index.used(name);
      const entry: Entry = {
        status: head.status,
        headers: Fields.from(head.fields),
        body,
        requestTime: head.requestTime,
        responseTime: head.responseTime,
        vary: head.vary,
        tags: head.tags,
        lifetime: 0,
        initialAge: 0,
        alwaysRevalidate: false,
        compressible: head.compressible && file === undefined,
        encoded: new Map(),
        ...(file ? { file } : {}),
      };
      return { entry, secondary, stale: row.stale !== 0 };
    } catch (e) {
      if (e instanceof Damaged) this.damaged(row, e.message);
      else if ((e as NodeJS.ErrnoException).code === "ENOENT") this.drop([row]);
      else log.warn("cache file unreadable; a miss", { file: path, error: String((e as Error).message ?? e) });
      return undefined;
    }
  }

  /** damaged removes a file that failed its checks (a miss from now on) and says so, once: the file is gone afterwards. */
  private damaged(row: Row, why: string): void {
    log.warn("cache file damaged; removed", { file: this.pathOf(row.name), url: row.primary, problem: why });
    cacheDiskDamaged.labels().value++;
    this.drop([row]);
  }

  /**
   * store writes an entry with a body in memory to disk, after the current task (the client is answered first): a temp file renamed into place, then its row.
   * Entries streamed from disk are there already.
   */
  store(primary: string, secondary: string, e: Entry): void {
    if ((e.file?.length ?? e.body.byteLength) > this.maxBytes) return;
    const prev = this.writing.get(primary) ?? Promise.resolve();
    const asked = this.epoch;
    const done = prev.then(async () => {
      try {
        // A body streamed from disk (its head refreshed by a 304) is read back, and checked, to be written with the new head.
        const f = e.file;
        const body = f
          ? await Bun.file(f.path)
              .slice(f.offset, f.offset + f.length)
              .bytes()
          : e.body;
        if (f && (body.byteLength !== f.length || crc32(body) !== f.crc)) return f.damaged();
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.epoch !== asked) return; // purged meanwhile
        this.write(primary, secondary, e, body);
      } catch (err) {
        log.warn("cache object not written to disk", { url: primary, error: String((err as Error).message ?? err) });
      }
    });
    this.writing.set(primary, done);
    void done.then(() => {
      if (this.writing.get(primary) === done) this.writing.delete(primary);
    });
  }

  private write(primary: string, secondary: string, e: Entry, body: Uint8Array): void {
    const known = this.index.varyOf(primary);
    // Variants keyed by other Vary names cannot be found any more: they go.
    if (known !== undefined && known.join(",") !== e.vary.join(",")) this.drop(this.index.ofPrimary(primary));
    const fields: [string, string][] = [];
    for (let i = 0; i < e.headers.size; i++) fields.push([e.headers.nameAt(i), e.headers.valueAt(i)]);
    const bytes = encodeObject(
      {
        primary,
        secondary,
        status: e.status,
        fields,
        requestTime: e.requestTime,
        responseTime: e.responseTime,
        vary: e.vary,
        tags: e.tags,
        compressible: e.compressible,
      },
      body,
    );
    const name = nameOf(primary, secondary);
    writeObject(join(this.root, "tmp"), this.pathOf(name), bytes);
    try {
      this.index.put(name, primary, secondary, bytes.byteLength, e.vary, e.tags);
    } catch (err) {
      // A file without its row would be found by nobody and counted nowhere.
      rmSync(this.pathOf(name), { force: true });
      throw err;
    }
    if (this.index.total() > this.maxBytes) this.evict();
    cacheDiskSize.labels().value = this.index.total();
  }

  /** written resolves once the writes of primary that were asked for are on disk. */
  written(primary: string): Promise<void> {
    return this.writing.get(primary) ?? Promise.resolve();
  }

  /** evict removes the least recently used objects until the tier is under nine tenths of its size. */
  private evict(): void {
    const goal = this.maxBytes * 0.9;
    for (let rounds = 0; rounds < 1000; rounds++) {
      let over = this.index.total() - goal;
      if (over <= 0) break;
      const rows = this.index.oldest(64);
      if (rows.length === 0) break;
      const victims: Row[] = [];
      for (const r of rows) {
        if (over <= 0) break;
        victims.push(r);
        over -= r.size;
      }
      this.drop(victims);
    }
  }

  /**
   * drop removes objects: their rows first (no process finds them after), then their files; a row another process wrote again meanwhile stays, with its
   * file. An index that cannot be written (busy past its timeout, disk full) is logged, never thrown at a request. It returns how many went.
   */
  private drop(rows: readonly Row[]): number {
    let gone: Row[];
    try {
      gone = this.index.remove(rows);
    } catch (e) {
      log.warn("cache index not written; objects stay for now", { error: String((e as Error).message ?? e), objects: rows.length });
      return 0;
    }
    for (const r of gone) {
      try {
        unlinkSync(this.pathOf(r.name));
      } catch {}
    }
    if (gone.length > 0) cacheDiskSize.labels().value = this.index.total();
    return gone.length;
  }

  /** delete removes every variant of primary; how many. */
  delete(primary: string): number {
    this.epoch++;
    return this.drop(this.index.ofPrimary(primary));
  }

  /** purge removes every object whose primary key matches (a scan of the index: an admin action); how many. */
  purge(match: (primary: string) => boolean): number {
    this.epoch++;
    return this.drop(this.index.all().filter((r) => match(r.primary)));
  }

  /** purgeTag removes the objects that carry a tag, or with soft marks them stale; how many. */
  purgeTag(tag: string, soft: boolean): number {
    this.epoch++;
    const rows = this.index.tagged(tag);
    if (!soft) return this.drop(rows);
    return this.index.markStale(rows);
  }

  /** used is the bytes the tier holds (gatehouse_cache_disk_size_bytes). */
  used(): number {
    return this.index.total();
  }

  /**
   * claim takes the fill of primary for this process, across the node's processes (a lock file holding its pid): its release, or undefined while another
   * live process fills it (waitFill). A lock whose process is gone is taken over at once.
   */
  claim(primary: string): (() => void) | undefined {
    const path = join(this.root, "fill", nameOf(primary, ""));
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, "wx", 0o600);
        writeSync(fd, String(process.pid));
        closeSync(fd);
        // Only our own lock: one taken over after we were thought dead is not ours to remove.
        return () => {
          if (holderOf(path) === process.pid) rmSync(path, { force: true });
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") return () => undefined; // no lock to be had: fill without one
        if (alive(holderOf(path))) return undefined;
        rmSync(path, { force: true });
      }
    }
    return undefined;
  }

  /** waitFill waits until no live process fills primary any more, at most ms. */
  async waitFill(primary: string, ms: number): Promise<void> {
    const path = join(this.root, "fill", nameOf(primary, ""));
    const deadline = Date.now() + ms;
    for (let n = 0; existsSync(path) && Date.now() < deadline; n++) {
      if (n % 20 === 19 && !alive(holderOf(path))) return;
      await Bun.sleep(5);
    }
  }

  /** close waits for the writes under way, then writes pending last-use times and closes the index. */
  async close(): Promise<void> {
    await Promise.all(this.writing.values());
    this.index.close();
  }
}
