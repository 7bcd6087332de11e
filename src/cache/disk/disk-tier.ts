/** The cache's disk tier: responses as files under [cache] dir with a shared index, for every worker of a node and across restarts and upgrades, bounded in bytes. */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, unlinkSync, openSync, closeSync } from "node:fs";
import { join } from "node:path";
import type { FieldReader } from "../../lib/fields.ts";
import { Fields } from "../../lib/fields.ts";
import { cacheDiskDamaged, cacheDiskSize } from "../../observability/gateway-metrics.ts";
import { log } from "../../observability/log.ts";
import type { Entry } from "../store.ts";
import { secondaryKey } from "../vary.ts";
import { DiskIndex, type Row } from "./disk-index.ts";
import { Damaged, encodeObject, type ObjectHead, openHead, readObject, writeObject } from "./object-file.ts";

/** LAYOUT names the directory of this file layout under [cache] dir: a later layout starts beside it, never reads it. */
const LAYOUT = "v1";
/** READ_WHOLE: objects up to this are read whole (CRC checked at once) and may go to the memory tier; larger ones stream from their file. */
export const READ_WHOLE = 1024 * 1024;
/** FILL_STALE_MS: a fill lock older than this belongs to a process that died; it is taken over. */
const FILL_STALE_MS = 30_000;
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

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {
    this.root = join(dir, LAYOUT);
    for (const sub of ["objects", "tmp", "fill"]) mkdirSync(join(this.root, sub), { recursive: true, mode: 0o700 });
    for (let i = 0; i < 256; i++) mkdirSync(join(this.root, "objects", i.toString(16).padStart(2, "0")), { recursive: true, mode: 0o700 });
    this.index = new DiskIndex(join(this.root, "index.db"));
    this.sweepTmp();
    cacheDiskSize.labels().value = this.index.total();
  }

  private pathOf(name: string): string {
    return join(this.root, "objects", name.slice(0, 2), name);
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
        file = { path, offset: opened.offset, length: head.bodyLength, crc: head.crc, damaged: () => this.damaged(row, "body does not match its CRC-32") };
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
      else if ((e as NodeJS.ErrnoException).code === "ENOENT") this.index.remove([row]);
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
    const done = prev.then(async () => {
      try {
        // A body streamed from disk (its head refreshed by a 304) is read back to be written with the new head.
        const body = e.file
          ? await Bun.file(e.file.path)
              .slice(e.file.offset, e.file.offset + e.file.length)
              .bytes()
          : e.body;
        await new Promise<void>((resolve) => setImmediate(resolve));
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
    this.index.put(name, primary, secondary, bytes.byteLength, e.vary, e.tags);
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

  /** drop removes objects: their rows first (no process finds them after), then their files. */
  private drop(rows: readonly Row[]): number {
    this.index.remove(rows);
    for (const r of rows) {
      try {
        unlinkSync(this.pathOf(r.name));
      } catch {}
    }
    if (rows.length > 0) cacheDiskSize.labels().value = this.index.total();
    return rows.length;
  }

  /** delete removes every variant of primary; how many. */
  delete(primary: string): number {
    return this.drop(this.index.ofPrimary(primary));
  }

  /** purge removes every object whose primary key matches (a scan of the index: an admin action); how many. */
  purge(match: (primary: string) => boolean): number {
    return this.drop(this.index.all().filter((r) => match(r.primary)));
  }

  /** purgeTag removes the objects that carry a tag, or with soft marks them stale; how many. */
  purgeTag(tag: string, soft: boolean): number {
    const rows = this.index.tagged(tag);
    if (!soft) return this.drop(rows);
    this.index.markStale(rows);
    return rows.length;
  }

  /** used is the bytes the tier holds (gatehouse_cache_disk_size_bytes). */
  used(): number {
    return this.index.total();
  }

  /**
   * claim takes the fill of primary for this process, across the node's processes (a lock file): its release, or undefined while another process fills it
   * (waitFill). A lock left by a process that died is taken over after FILL_STALE_MS.
   */
  claim(primary: string): (() => void) | undefined {
    const path = join(this.root, "fill", nameOf(primary, ""));
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        closeSync(openSync(path, "wx", 0o600));
        return () => rmSync(path, { force: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") return () => undefined; // no lock to be had: fill without one
        try {
          if (Date.now() - statSync(path).mtimeMs < FILL_STALE_MS) return undefined;
          rmSync(path, { force: true });
        } catch {}
      }
    }
    return undefined;
  }

  /** waitFill waits until no process fills primary any more, at most ms. */
  async waitFill(primary: string, ms: number): Promise<void> {
    const path = join(this.root, "fill", nameOf(primary, ""));
    const deadline = Date.now() + ms;
    while (existsSync(path) && Date.now() < deadline) await Bun.sleep(5);
  }

  /** close waits for the writes under way, then writes pending last-use times and closes the index. */
  async close(): Promise<void> {
    await Promise.all(this.writing.values());
    this.index.close();
  }
}
