/** Loading config.toml and every routes/*.toml file, with every problem collected. */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { readGlobal } from "./global-schema.ts";
import { ConfigError, type Problem } from "./problems.ts";
import { Reader } from "./reader.ts";
import { readSite } from "./route-schema.ts";
import { parseToml } from "./toml-source.ts";
import type { Config, SiteConfig } from "./types.ts";

/** SourceFile is a config file's name (as shown in messages) and text. */
export type SourceFile = { readonly file: string; readonly text: string };

/** ConfigFiles are the texts a load reads: config.toml and the route files; built from disk by readConfigFiles, or in memory for the built-in default. */
export type ConfigFiles = { readonly path: string; readonly main: SourceFile; readonly routes: readonly SourceFile[] | "from-disk" };

function displayName(p: string): string {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith("..") ? rel : p;
}

/** sortProblems orders problems by file (in the order files were read), then line; file-wide problems (line 0) come last in their file. */
function sortProblems(problems: Problem[]): Problem[] {
  const fileOrder = new Map<string, number>();
  problems.forEach((p) => fileOrder.has(p.file) || fileOrder.set(p.file, fileOrder.size));
  const line = (p: Problem) => p.line || Number.MAX_SAFE_INTEGER;
  return problems.map((p, i) => ({ p, i })).sort((x, y) => fileOrder.get(x.p.file)! - fileOrder.get(y.p.file)! || line(x.p) - line(y.p) || x.i - y.i).map((x) => x.p);
}

/** loadConfig reads and validates everything; it returns the Config or throws a ConfigError listing every problem. */
export function loadConfig(configPath: string, files?: ConfigFiles): Config {
  const path = resolve(configPath);
  const dir = dirname(path);
  const problems: Problem[] = [];
  const mainName = displayName(path);
  let mainText: string;
  if (files) mainText = files.main.text;
  else {
    try {
      mainText = readFileSync(path, "utf8");
    } catch (e) {
      throw new ConfigError([{ file: mainName, line: 0, path: "", message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, expected: "a readable config.toml" }]);
    }
  }
  const src = parseToml(mainName, mainText);
  if (!("data" in src)) throw new ConfigError([src]);
  const global = readGlobal(new Reader(src, problems, src.data), mainName, dir);

  let routeFiles: SourceFile[] = [];
  if (files && files.routes !== "from-disk") routeFiles = [...files.routes];
  else if (!existsSync(global.routesDir) || !statSync(global.routesDir).isDirectory()) {
    problems.push({ file: mainName, line: src.lineOf("routes_dir"), path: "routes_dir", message: `${displayName(global.routesDir)} is not a directory`, expected: "a directory of *.toml route files" });
  } else {
    for (const f of readdirSync(global.routesDir).filter((f) => f.endsWith(".toml")).sort()) {
      const p = join(global.routesDir, f);
      try {
        routeFiles.push({ file: displayName(p), text: readFileSync(p, "utf8") });
      } catch (e) {
        problems.push({ file: displayName(p), line: 0, path: "", message: `cannot read: ${(e as NodeJS.ErrnoException).code}` });
      }
    }
  }

  const sites: SiteConfig[] = [];
  const owner = new Map<string, string>();
  const routeOwner = new Map<string, string>();
  for (const rf of routeFiles) {
    const parsed = parseToml(rf.file, rf.text);
    if (!("data" in parsed)) {
      problems.push(parsed);
      continue;
    }
    const site = readSite(new Reader(parsed, problems, parsed.data), global, basename(rf.file, ".toml"), rf.file);
    site.hosts.forEach((h) => {
      const other = owner.get(h);
      if (other) problems.push({ file: rf.file, line: parsed.lineOf("hosts"), path: "hosts", message: `host ${JSON.stringify(h)} is also claimed by ${other}`, expected: "each host in one route file only" });
      else owner.set(h, rf.file);
    });
    site.routes.forEach((r, i) => {
      const other = routeOwner.get(r.name);
      // Route names are metric labels and log fields: two routes under one name would be counted as one.
      if (other) problems.push({ file: rf.file, line: parsed.lineOf(i === 0 ? "hosts" : `paths[${i - 1}].name`), path: i === 0 ? "" : `paths[${i - 1}].name`, message: `route name ${JSON.stringify(r.name)} is also used in ${other}`, expected: "a route name used once" });
      else routeOwner.set(r.name, rf.file);
    });
    sites.push(site);
  }
  if (problems.length > 0) throw new ConfigError(sortProblems(problems));
  return { global, sites };
}
