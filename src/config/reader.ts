/** Reader walks one TOML table, reads typed values and records every problem instead of stopping at the first. */
import { closest } from "../lib/did-you-mean.ts";
import { parseDuration, parseSize } from "../lib/units.ts";
import type { Problem } from "./problems.ts";
import type { TomlSource } from "./toml-source.ts";

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (isTable(v)) return "a table";
  if (typeof v === "string") return `the string ${JSON.stringify(v)}`;
  return `${typeof v} ${String(v)}`;
}

/** Reader reads the keys of one table; each read marks the key as known, and done() reports the keys nobody read as unknown, with a "did you mean" hint. */
export class Reader {
  private readonly known = new Set<string>();

  constructor(
    private readonly src: TomlSource,
    private readonly problems: Problem[],
    private readonly obj: Table,
    private readonly prefix = "",
  ) {}

  /** path is the full dotted key path of key in this table. */
  path(key: string): string {
    return this.prefix ? `${this.prefix}.${key}` : key;
  }

  /** problem records a problem at key (or at the table itself when key is empty). */
  problem(key: string, message: string, expected?: string): void {
    const path = key ? this.path(key) : this.prefix;
    this.problems.push({ file: this.src.file, line: this.src.lineOf(path), path, message, expected });
  }

  /** has says whether key is present, without marking it read. */
  has(key: string): boolean {
    return this.obj[key] !== undefined;
  }

  private raw(key: string): unknown {
    this.known.add(key);
    return this.obj[key];
  }

  private typed<T>(key: string, check: (v: unknown) => v is T, expected: string): T | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (check(v)) return v;
    this.problem(key, `got ${describe(v)}`, expected);
    return undefined;
  }

  /** value reads a key of any type (undefined when absent), for keys that take more than one type; the caller checks it. */
  value(key: string): unknown {
    return this.raw(key);
  }

  /** string reads an optional string. */
  string(key: string): string | undefined {
    return this.typed(key, (v): v is string => typeof v === "string", "a string");
  }

  /** requiredString reads a string that must be there and not be empty. */
  requiredString(key: string, expected = "a non-empty string"): string | undefined {
    const v = this.string(key);
    if (v === undefined && this.obj[key] === undefined) this.problem(key, "missing", expected);
    else if (v === "") this.problem(key, "is empty", expected);
    return v || undefined;
  }

  /** oneOf reads a string that must be one of choices (with a hint for near misses). */
  oneOf<T extends string>(key: string, choices: readonly T[], fallback: T): T {
    const v = this.string(key);
    if (v === undefined) return fallback;
    if ((choices as readonly string[]).includes(v)) return v as T;
    const near = closest(v, choices);
    this.problem(
      key,
      `${JSON.stringify(v)} is not allowed${near ? `, did you mean ${JSON.stringify(near)}?` : ""}`,
      `one of ${choices.map((c) => JSON.stringify(c)).join(", ")}`,
    );
    return fallback;
  }

  /** bool reads a boolean. */
  bool(key: string, fallback: boolean): boolean {
    return this.typed(key, (v): v is boolean => typeof v === "boolean", "true or false") ?? fallback;
  }

  /** integer reads a whole number within [min, max]. */
  integer(key: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.typed(key, (v): v is number => typeof v === "number", `a whole number from ${min} to ${max}`);
    if (v === undefined) return fallback;
    if (!Number.isInteger(v) || v < min || v > max) {
      this.problem(key, `${v} is out of range`, `a whole number from ${min} to ${max}`);
      return fallback;
    }
    return v;
  }

  /** duration reads "30s", "250ms", "1m30s" into milliseconds. */
  duration(key: string, fallback: number): number {
    const expected = 'a duration such as "500ms", "30s", "5m" or "1h"';
    const v = this.typed(key, (v): v is string => typeof v === "string", expected);
    if (v === undefined) return fallback;
    const ms = parseDuration(v);
    if (ms === undefined) {
      this.problem(key, `cannot read ${JSON.stringify(v)} as a duration`, expected);
      return fallback;
    }
    return ms;
  }

  /** size reads "256MiB", "8MB" or a plain number of bytes. */
  size(key: string, fallback: number): number {
    const expected = 'a size such as "512KiB", "8MiB" or "1GB"';
    const v = this.typed(key, (v): v is string | number => typeof v === "string" || typeof v === "number", expected);
    if (v === undefined) return fallback;
    const n = parseSize(v);
    if (n === undefined) {
      this.problem(key, `cannot read ${JSON.stringify(v)} as a size`, expected);
      return fallback;
    }
    return n;
  }

  /** stringList reads an array of strings; each bad element is its own problem. */
  stringList(key: string): string[] | undefined {
    const v = this.typed(key, (v): v is unknown[] => Array.isArray(v), "an array of strings");
    if (v === undefined) return undefined;
    const out: string[] = [];
    v.forEach((item, i) => {
      if (typeof item === "string") out.push(item);
      else this.problem(`${key}[${i}]`, `got ${describe(item)}`, "a string");
    });
    return out;
  }

  /** keys lists the keys this table holds, in file order (for tables whose keys are the operator's own names: users, fields, statuses). */
  keys(): string[] {
    return Object.keys(this.obj);
  }

  /** table returns a Reader for a sub-table, or undefined when the key is absent. */
  table(key: string): Reader | undefined {
    const v = this.typed(key, isTable, "a table");
    return v === undefined ? undefined : new Reader(this.src, this.problems, v, this.path(key));
  }

  /** tableList returns a Reader per element of an array of tables ([[key]]). */
  tableList(key: string): Reader[] {
    const v = this.typed(key, (v): v is unknown[] => Array.isArray(v), `an array of tables ([[${key}]])`);
    if (v === undefined) return [];
    const out: Reader[] = [];
    v.forEach((item, i) => {
      if (isTable(item)) out.push(new Reader(this.src, this.problems, item, `${this.path(key)}[${i}]`));
      else this.problem(`${key}[${i}]`, `got ${describe(item)}`, "a table");
    });
    return out;
  }

  /** done reports every key that no read asked for, naming the nearest known key when one is close. */
  done(): void {
    for (const key of Object.keys(this.obj)) {
      if (this.known.has(key)) continue;
      const near = closest(key, this.known);
      this.problem(key, `unknown key${near ? `, did you mean "${near}"?` : ""}`, `one of ${[...this.known].sort().join(", ")}`);
    }
  }
}
