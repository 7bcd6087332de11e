/** The import graph of src/ has no circles and runs one way: main → workers → gateway (and upgrade) → generation and listeners → proxy → features → observability → config → lib. */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { ROOT } from "./harness.ts";

const SRC = join(ROOT, "src");

/** LAYERS from the top down; a file may import its own folder, or anything in a lower layer. Within one layer, folders do not import each other. */
const LAYERS: readonly (readonly string[])[] = [
  ["main.ts"],
  ["workers/", "control.ts", "storage-copy.ts"],
  ["gateway.ts", "upgrade.ts"],
  ["tcp/"], // [[tcp]] routes: listeners of their own, built on front/'s TLS and PROXY protocol pieces
  ["generation.ts", "instance-files.ts", "shared-purges.ts", "front/"],
  ["proxy/"],
  ["welcome/"], // the built-in welcome site, a file source for static/
  ["cache/", "upstream/", "tls/", "static/"],
  ["observability/"],
  ["config/"],
  ["lib/", "version.ts"],
];

/** unitOf is the layer entry a src/ path belongs to ("tls/" for tls/acme/issuer.ts). */
function unitOf(path: string): string | undefined {
  return LAYERS.flat().find((u) => (u.endsWith("/") ? path.startsWith(u) : path === u));
}

function layerOf(unit: string): number {
  return LAYERS.findIndex((l) => l.includes(unit));
}

/** sources lists the non-test .ts files under src/, relative to it (contract suites are tests that live beside their interface). */
function sources(dir = SRC): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") && !e.name.endsWith(".contract.ts")) out.push(relative(SRC, p));
  }
  return out;
}

/** imports maps each source file to the src/ files it imports (type imports and re-exports included: they tie modules as much as values do). */
function imports(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sources()) {
    const text = readFileSync(join(SRC, file), "utf8");
    const targets = [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+\.ts)"/g)].map((m) => normalize(join(dirname(file), m[1]!)));
    graph.set(
      file,
      targets.filter((t) => !t.startsWith("..")),
    );
  }
  return graph;
}

test("every source file belongs to a layer", () => {
  expect(sources().filter((f) => unitOf(f) === undefined)).toEqual([]);
});

test("imports run down the layers, and features do not import each other", () => {
  const wrong: string[] = [];
  for (const [file, targets] of imports()) {
    const from = unitOf(file)!;
    for (const t of targets) {
      const to = unitOf(t);
      if (to === undefined || to === from) continue;
      if (layerOf(to) <= layerOf(from)) wrong.push(`${file} → ${t} (${from} may not import ${to})`);
    }
  }
  expect(wrong).toEqual([]);
});

test("the import graph has no circles", () => {
  const graph = imports();
  const state = new Map<string, "open" | "done">();
  const circles: string[] = [];
  const visit = (f: string, path: string[]): void => {
    if (state.get(f) === "done") return;
    if (state.get(f) === "open") {
      circles.push([...path.slice(path.indexOf(f)), f].join(" → "));
      return;
    }
    state.set(f, "open");
    for (const t of graph.get(f) ?? []) visit(t, [...path, f]);
    state.set(f, "done");
  };
  for (const f of graph.keys()) visit(f, []);
  expect(circles).toEqual([]);
});
