/** TOML files parsed with Bun's parser, plus the line of every key (Bun's parser reports no positions). */
import type { Problem } from "./problems.ts";

/** TomlSource is a parsed file: its data and a lookup from dotted key path to the line that defines it. */
export type TomlSource = {
  readonly file: string;
  readonly data: Record<string, unknown>;
  /** lineOf returns the line (1-based) of the key path ("listen.http", "paths[1].prefix"), or of its nearest parent; 0 if unknown. */
  lineOf(path: string): number;
};

const TABLE_RE = /^\s*\[\s*([^[\]]+?)\s*\]\s*(?:#.*)?$/;
const ARRAY_TABLE_RE = /^\s*\[\[\s*([^[\]]+?)\s*\]\]\s*(?:#.*)?$/;
const KEY_RE = /^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_\-.]+(?:\s*\.\s*[A-Za-z0-9_\-"']+)*)\s*=/;

function splitKey(key: string): string[] {
  return key.split(".").map((k) => k.trim().replace(/^["']|["']$/g, ""));
}

/**
 * within is the path of a table header's name: a parent that is an array of tables stands for its latest element (`[[tcp.sni]]` after the second `[[tcp]]`
 * is `tcp[1].sni`, as the reader names it).
 */
function within(segments: readonly string[], arrayCounts: ReadonlyMap<string, number>): string {
  let path = "";
  segments.forEach((seg, j) => {
    path = path ? `${path}.${seg}` : seg;
    const n = arrayCounts.get(path);
    if (j < segments.length - 1 && n !== undefined) path = `${path}[${n - 1}]`;
  });
  return path;
}

/** indexLines maps each key path to its line by a light scan: table headers, array-of-table headers and `key =` lines outside multi-line strings. */
function indexLines(text: string): Map<string, number> {
  const lines = text.split("\n");
  const index = new Map<string, number>();
  const arrayCounts = new Map<string, number>();
  let table = "";
  let inMultiline: string | null = null;
  let bracketDepth = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (inMultiline) {
      if (line.includes(inMultiline)) inMultiline = null;
      continue;
    }
    if (bracketDepth > 0) {
      bracketDepth += (line.match(/\[/g)?.length ?? 0) - (line.match(/\]/g)?.length ?? 0);
      continue;
    }
    let m = ARRAY_TABLE_RE.exec(line);
    if (m) {
      const name = within(splitKey(m[1]!), arrayCounts);
      const n = arrayCounts.get(name) ?? 0;
      arrayCounts.set(name, n + 1);
      table = `${name}[${n}]`;
      index.set(table, i + 1);
      continue;
    }
    m = TABLE_RE.exec(line);
    if (m) {
      table = within(splitKey(m[1]!), arrayCounts);
      if (!index.has(table)) index.set(table, i + 1);
      continue;
    }
    m = KEY_RE.exec(line);
    if (m) {
      const path = (table ? `${table}.` : "") + splitKey(m[1]!).join(".");
      index.set(path, i + 1);
      const rest = line.slice(m[0].length);
      for (const q of ['"""', "'''"]) {
        const at = rest.indexOf(q);
        if (at >= 0 && rest.indexOf(q, at + 3) < 0) inMultiline = q;
      }
      if (!inMultiline) {
        const stripped = rest.replace(/"(?:[^"\\]|\\.)*"|'[^']*'/g, "").replace(/#.*$/, "");
        bracketDepth = (stripped.match(/\[/g)?.length ?? 0) - (stripped.match(/\]/g)?.length ?? 0);
        if (bracketDepth < 0) bracketDepth = 0;
      }
    }
  }
  return index;
}

/**
 * parseErrorLine finds the line of a syntax error by parsing ever longer prefixes of the file: the first prefix that fails with the same message ends at the
 * bad line.
 */
function parseErrorLine(text: string, message: string): number {
  const lines = text.split("\n");
  for (let n = 1; n <= lines.length; n++) {
    try {
      Bun.TOML.parse(lines.slice(0, n).join("\n"));
    } catch (e) {
      if ((e as Error).message === message) return n;
    }
  }
  return 0;
}

/** parseToml parses text as TOML; on a syntax error it returns a Problem naming the line instead of throwing. */
export function parseToml(file: string, text: string): TomlSource | Problem {
  let data: Record<string, unknown>;
  try {
    data = Bun.TOML.parse(text) as Record<string, unknown>;
  } catch (e) {
    const message = (e as Error).message.replace(/^TOML Parse error:\s*/, "");
    return { file, line: parseErrorLine(text, (e as Error).message), path: "", message: `invalid TOML: ${message}` };
  }
  let index: Map<string, number> | undefined;
  return {
    file,
    data,
    lineOf(path) {
      index ??= indexLines(text);
      for (let p = path; p; ) {
        const line = index.get(p);
        if (line !== undefined) return line;
        const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
        p = cut > 0 ? p.slice(0, cut) : "";
      }
      return 0;
    },
  };
}
