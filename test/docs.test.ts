/** The picture matches the code: every src/ path that docs/architecture.puml and the README's Architecture section name exists, both name every folder and file directly under src/, and the diagram parses. */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, tempDir } from "./harness.ts";

const DIAGRAM = join(ROOT, "docs/architecture.puml");

/** FILE_TOKEN matches a .ts path in prose: `proxy/pipeline.ts`, `src/upstream/h1-client.ts`, or a bare `logging.ts`. */
const FILE_TOKEN = /(?<![\w./-])((?:[a-z][\w-]*\/)*[a-z][\w.-]*\.ts)(?![\w/-])/g;
/** FOLDER_TOKEN matches a folder path in prose: `tls/`, `tls/acme/` (not `http://`, not `routes/*.toml`). */
const FOLDER_TOKEN = /(?<![\w./:-])((?:[a-z][\w-]*\/)+)(?![\w*.-])/g;
/** Paths that start with one of these are relative to the repository; all others are relative to src/. */
const REPO_DIRS = ["src/", "test/", "bench/", "docs/"];

/** resolve turns a path named in the docs into one relative to the repository; `dir` is where a bare file name (no slash) lives. */
function resolvePath(token: string, dir = "src/"): string {
  if (REPO_DIRS.some((d) => token.startsWith(d))) return token;
  return token.includes("/") ? `src/${token}` : dir + token;
}

/** tokens lists the paths named in a piece of prose, relative to the repository. */
function tokens(text: string, dir?: string): string[] {
  const found = [...text.matchAll(FILE_TOKEN)].map((m) => resolvePath(m[1]!, dir));
  for (const m of text.matchAll(FOLDER_TOKEN)) found.push(resolvePath(m[1]!));
  return found;
}

/** exists says whether a repository path names a file (no trailing slash) or a folder (trailing slash). */
function exists(path: string): boolean {
  try {
    const s = statSync(join(ROOT, path));
    return path.endsWith("/") ? s.isDirectory() : s.isFile();
  } catch {
    return false;
  }
}

/** diagramPaths lists the paths named in the diagram's labels; comments and the outside world (actors, nodes, databases: certs/, routes/) are not src/. */
function diagramPaths(): string[] {
  const paths: string[] = [];
  for (const raw of readFileSync(DIAGRAM, "utf8").split("\n")) {
    const line = raw.trim();
    if (line.startsWith("'") || /^(actor|node|database|cloud|queue)\b/.test(line)) continue;
    paths.push(...tokens(line.replaceAll("\\n", " ")));
  }
  return paths;
}

type ReadmeMap = { readonly entries: string[]; readonly paths: string[] };

/** readmeMap reads the README's Architecture section: the entries of its src/ tree (by indentation) and every path the section names. */
function readmeMap(): ReadmeMap {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("\n## Architecture\n");
  expect(start).toBeGreaterThan(-1);
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const treeStart = section.indexOf("```\nsrc/\n");
  expect(treeStart).toBeGreaterThan(-1);
  const treeEnd = section.indexOf("```", treeStart + 3);
  const tree = section.slice(treeStart + 4, treeEnd);
  const entries: string[] = [];
  const paths: string[] = [];
  // An entry is a name at an indentation of a few spaces; the lines of its description are indented much further.
  const stack: string[] = [];
  let dir = "src/";
  for (const line of tree.split("\n")) {
    const m = /^( {0,8})([\w.-]+\/?)(?: {2,}(.*))?$/.exec(line);
    let description = line;
    if (m) {
      const depth = m[1]!.length / 2;
      stack.length = depth;
      const path = stack.join("") + m[2];
      if (m[2]!.endsWith("/")) stack.push(m[2]!);
      entries.push(path);
      paths.push(path);
      dir = path.endsWith("/") ? path : "src/";
      description = m[3] ?? "";
    }
    paths.push(...tokens(description, dir));
  }
  paths.push(...tokens(section.slice(0, treeStart) + section.slice(treeEnd + 3)));
  return { entries, paths };
}

/** topLevel lists the folders and source files directly under src/ (tests excluded), as repository paths. */
function topLevel(): string[] {
  return readdirSync(join(ROOT, "src"), { withFileTypes: true })
    .filter((e) => e.isDirectory() || (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts")))
    .map((e) => (e.isDirectory() ? `src/${e.name}/` : `src/${e.name}`));
}

test("every src/ path named in docs/architecture.puml exists", () => {
  const missing = [...new Set(diagramPaths())].filter((p) => !exists(p));
  expect(missing).toEqual([]);
});

test("every path named in the README's Architecture section exists", () => {
  const missing = [...new Set(readmeMap().paths)].filter((p) => !exists(p));
  expect(missing).toEqual([]);
});

test("the README's map names every folder and file directly under src/", () => {
  const entries = new Set(readmeMap().entries);
  expect(topLevel().filter((p) => !entries.has(p))).toEqual([]);
});

test("docs/architecture.puml names every folder and file directly under src/", () => {
  const named = diagramPaths();
  const absent = topLevel().filter((p) => !named.some((n) => n === p || (p.endsWith("/") && n.startsWith(p))));
  expect(absent).toEqual([]);
});

test("plantuml -checkonly accepts docs/architecture.puml, and rejects it with a broken line", () => {
  const ok = Bun.spawnSync(["plantuml", "-checkonly", DIAGRAM]);
  expect({ exitCode: ok.exitCode, output: ok.stdout.toString() + ok.stderr.toString() }).toEqual({ exitCode: 0, output: "" });
  // The same file with one arrow garbled: the check must notice, or a pass above means nothing.
  const text = readFileSync(DIAGRAM, "utf8");
  const broken = text.replace(/^(\w+) --> (\w+)/m, "$1 --> --> $2 {");
  expect(broken).not.toBe(text);
  const dir = tempDir();
  try {
    writeFileSync(join(dir, "broken.puml"), broken);
    const bad = Bun.spawnSync(["plantuml", "-checkonly", join(dir, "broken.puml")]);
    expect(bad.exitCode).not.toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
