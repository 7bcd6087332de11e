/** The disk tier's index, shared by every process of a node: SQLite (bun:sqlite, WAL) with each object's key, size, last use, staleness and tags, and the bytes used. */
import { Database, type Statement } from "bun:sqlite";

/** Row is one object of the index: its file name (a hash of its key), its keys, size in bytes, and whether a soft purge marked it stale. */
export type Row = {
  readonly name: string;
  readonly primary: string;
  readonly secondary: string;
  readonly size: number;
  readonly stale: number;
  /** gen tells one write of a name from the next: a row read before another process replaced it does not remove the new one. */
  readonly gen: number;
};

/** SCHEMA_VERSION is written into the index (PRAGMA user_version) and checked at each open. */
const SCHEMA_VERSION = 2;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS objects (name TEXT PRIMARY KEY, pkey TEXT NOT NULL, skey TEXT NOT NULL, size INTEGER NOT NULL, used INTEGER NOT NULL, stale INTEGER NOT NULL DEFAULT 0, gen INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS objects_used ON objects (used);
CREATE INDEX IF NOT EXISTS objects_pkey ON objects (pkey);
CREATE TABLE IF NOT EXISTS variants (pkey TEXT PRIMARY KEY, vary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tags (tag TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (tag, name));
CREATE INDEX IF NOT EXISTS tags_name ON tags (name);
CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES (0, 0);
`;

/**
 * DiskIndex is one process's handle on the index. Several processes (a node's workers, an old and a new instance during an upgrade) open the same file:
 * SQLite serialises their writes (a busy writer is waited for, up to 5 s). Last-use times are written in batches, once a second, not on every hit.
 */
export class DiskIndex {
  private readonly db: Database;
  private readonly q: {
    readonly row: Statement<Row, [string]>;
    readonly vary: Statement<{ vary: string }, [string]>;
    readonly put: Statement<unknown, [string, string, string, number, number, number]>;
    readonly old: Statement<{ size: number; gen: number }, [string]>;
    readonly putVary: Statement<unknown, [string, string]>;
    readonly tag: Statement<unknown, [string, string]>;
    readonly untag: Statement<unknown, [string]>;
    readonly del: Statement<unknown, [string, number]>;
    readonly add: Statement<unknown, [number]>;
    readonly total: Statement<{ bytes: number }, []>;
    readonly oldest: Statement<Row, [number]>;
    readonly touch: Statement<unknown, [number, string]>;
    readonly byPrimary: Statement<Row, [string]>;
    readonly byTag: Statement<Row, [string]>;
    readonly all: Statement<Row, []>;
    readonly soft: Statement<{ name: string }, [string]>;
    readonly recount: Statement<unknown, []>;
    readonly dropVary: Statement<unknown, [string]>;
  };
  private readonly touched = new Set<string>();
  private readonly flusher: Timer;

  constructor(path: string) {
    this.db = new Database(path, { create: true });
    // The busy timeout first: the node's workers open (and may create) the index at the same moment. Writes are short: a writer waits a second at most.
    this.db.exec("PRAGMA busy_timeout = 1000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
    // The index of a layout is created with it; a version this code does not know is refused (the tier is then not used), never misread.
    const version = (this.db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
    if (version !== 0 && version !== SCHEMA_VERSION) throw new Error(`${path} is an index of version ${version}; this gatehouse reads ${SCHEMA_VERSION}`);
    this.db.exec(SCHEMA);
    this.db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    const cols = 'name, pkey AS "primary", skey AS secondary, size, stale, gen';
    this.q = {
      row: this.db.query(`SELECT ${cols} FROM objects WHERE name = ?`),
      vary: this.db.query("SELECT vary FROM variants WHERE pkey = ?"),
      put: this.db.query("INSERT OR REPLACE INTO objects (name, pkey, skey, size, used, stale, gen) VALUES (?, ?, ?, ?, ?, 0, ?)"),
      old: this.db.query("SELECT size, gen FROM objects WHERE name = ?"),
      putVary: this.db.query("INSERT OR REPLACE INTO variants (pkey, vary) VALUES (?, ?)"),
      tag: this.db.query("INSERT OR IGNORE INTO tags (tag, name) VALUES (?, ?)"),
      untag: this.db.query("DELETE FROM tags WHERE name = ?"),
      del: this.db.query("DELETE FROM objects WHERE name = ? AND gen = ?"),
      add: this.db.query("UPDATE totals SET bytes = bytes + ? WHERE id = 0"),
      total: this.db.query("SELECT bytes FROM totals WHERE id = 0"),
      oldest: this.db.query(`SELECT ${cols} FROM objects ORDER BY used LIMIT ?`),
      touch: this.db.query("UPDATE objects SET used = ? WHERE name = ?"),
      byPrimary: this.db.query(`SELECT ${cols} FROM objects WHERE pkey = ?`),
      byTag: this.db.query(`SELECT ${cols} FROM objects WHERE name IN (SELECT name FROM tags WHERE tag = ?)`),
      all: this.db.query(`SELECT ${cols} FROM objects`),
      soft: this.db.query("UPDATE objects SET stale = 1 WHERE name = ? AND stale = 0 RETURNING name"),
      recount: this.db.query("UPDATE totals SET bytes = (SELECT COALESCE(SUM(size), 0) FROM objects) WHERE id = 0"),
      dropVary: this.db.query("DELETE FROM variants WHERE pkey = ?1 AND NOT EXISTS (SELECT 1 FROM objects WHERE pkey = ?1)"),
    };
    // The total is kept by every write; it is recounted at each open, so that nothing a crash left half done adds up over time.
    this.db.transaction(() => this.q.recount.run()).immediate();
    this.flusher = setInterval(() => this.flush(), 1000);
    this.flusher.unref?.();
  }

  /** varyOf is the Vary names (JSON array) stored for a primary key, or undefined when nothing is stored under it. */
  varyOf(primary: string): readonly string[] | undefined {
    const v = this.q.vary.get(primary)?.vary;
    return v === undefined ? undefined : (JSON.parse(v) as string[]);
  }

  /** row is an object's row, or undefined. */
  row(name: string): Row | undefined {
    return this.q.row.get(name) ?? undefined;
  }

  /** used records that an object was served (written with the next batch). */
  used(name: string): void {
    this.touched.add(name);
  }

  /**
   * put records an object written under name (replacing any with that name) with its Vary names and tags, and adds its size to the total. Writes take the
   * database at once (IMMEDIATE): a transaction that read first could not wait for another process's write and would fail.
   */
  put(name: string, primary: string, secondary: string, size: number, vary: readonly string[], tags: readonly string[]): void {
    this.db
      .transaction(() => {
        const before = this.q.old.get(name)?.size ?? 0;
        this.q.put.run(name, primary, secondary, size, Date.now(), Math.floor(Math.random() * 2 ** 52));
        this.q.putVary.run(primary, JSON.stringify(vary));
        this.q.untag.run(name);
        for (const t of tags) this.q.tag.run(t, name);
        this.q.add.run(size - before);
      })
      .immediate();
  }

  /**
   * remove drops rows (and their tags) and takes their sizes, as the index has them now, off the total; a row that another process wrote again since it was
   * read (another gen) stays. It returns the rows it removed, whose files the caller removes.
   */
  remove(rows: readonly Row[]): Row[] {
    if (rows.length === 0) return [];
    return this.db
      .transaction(() => {
        let freed = 0;
        const gone: Row[] = [];
        for (const r of rows) {
          const now = this.q.old.get(r.name);
          if (now === null || now.gen !== r.gen) continue; // removed, or written again, by another process meanwhile
          this.q.del.run(r.name, r.gen);
          this.q.untag.run(r.name);
          this.q.dropVary.run(r.primary);
          freed += now.size;
          gone.push(r);
        }
        this.q.add.run(-freed);
        return gone;
      })
      .immediate();
  }

  /** total is the bytes of every object in the index. */
  total(): number {
    return this.q.total.get()?.bytes ?? 0;
  }

  /** oldest lists up to n objects, least recently used first (after writing the pending last-use times). */
  oldest(n: number): Row[] {
    this.flush();
    return this.q.oldest.all(n);
  }

  /** ofPrimary lists the variants stored under a primary key. */
  ofPrimary(primary: string): Row[] {
    return this.q.byPrimary.all(primary);
  }

  /** tagged lists the objects that carry a tag. */
  tagged(tag: string): Row[] {
    return this.q.byTag.all(tag);
  }

  /** all lists every object (for purges by host or prefix, an admin action). */
  all(): Row[] {
    return this.q.all.all();
  }

  /** markStale marks objects stale (a soft purge): they are revalidated before use, or served stale where the response allows. It returns how many were not stale yet. */
  markStale(rows: readonly Row[]): number {
    return this.db
      .transaction(() => {
        let n = 0;
        for (const r of rows) if (this.q.soft.get(r.name) !== null) n++;
        return n;
      })
      .immediate();
  }

  /** flush writes the pending last-use times in one transaction; a busy database leaves them for the next second. */
  flush(): void {
    if (this.touched.size === 0) return;
    const now = Date.now();
    const names = [...this.touched];
    try {
      this.db
        .transaction(() => {
          for (const n of names) this.q.touch.run(now, n);
        })
        .immediate();
      this.touched.clear();
    } catch {
      // busy past the timeout: the next flush tries again
    }
  }

  /** close writes what is pending and closes the database. */
  close(): void {
    clearInterval(this.flusher);
    this.flush();
    this.db.close();
  }
}
