/** Loading config.toml and every routes/*.toml file, with every problem collected. */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { readGlobal } from "./global-schema.ts";
import { ConfigError, type Problem } from "./problems.ts";
import { Reader } from "./reader.ts";
import { readSite } from "./route-schema.ts";
import { checkTcpSites } from "./tcp-schema.ts";
import { parseToml } from "./toml-source.ts";
import { SLICE_MS, yieldToRequests } from "../lib/slices.ts";
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
  for (const p of problems) if (!fileOrder.has(p.file)) fileOrder.set(p.file, fileOrder.size);
  const line = (p: Problem) => p.line || Number.MAX_SAFE_INTEGER;
  return problems
    .map((p, i) => ({ p, i }))
    .sort((x, y) => fileOrder.get(x.p.file)! - fileOrder.get(y.p.file)! || line(x.p) - line(y.p) || x.i - y.i)
    .map((x) => x.p);
}

/** loadConfig reads and validates everything; it returns the Config or throws a ConfigError listing every problem. */
export function loadConfig(configPath: string, files?: ConfigFiles): Config {
  return loadConfigSnapshot(configPath, files).config;
}

/**
 * ConfigSnapshot is a validated Config and the exact texts it was read from, so that other processes (workers) can load the very same config without reading
 * the disk again.
 */
export type ConfigSnapshot = { readonly config: Config; readonly files: ConfigFiles };

/**
 * Loading is in phases, so that a running gateway can load asynchronously (route files read off the event loop, validation in slices) while the CLI and the
 * first start load in one go.
 */
type Loading = {
  readonly path: string;
  readonly files: ConfigFiles | undefined;
  readonly mainName: string;
  readonly mainText: string;
  readonly global: ReturnType<typeof readGlobal>;
  readonly problems: Problem[];
  readonly sites: SiteConfig[];
  readonly owner: Map<string, string>;
  readonly routeOwner: Map<string, string>;
  /** exportOwner maps each file an [export] writes to the route file that writes it: two sites writing one file would overwrite each other. */
  readonly exportOwner: Map<string, string>;
  routeFiles: SourceFile[];
  /** fromDisk: the route files are to be read from routes_dir (a directory that exists). */
  fromDisk: boolean;
  /** cache is the next siteCache: the reusable files of this load, in effect once it succeeds. */
  readonly cache: Map<string, CachedSite>;
  /** mainLine is the line of a key path of config.toml (for the [[tcp]] problems found once the route files are read). */
  readonly mainLine: (path: string) => number;
};

/** begin reads and checks config.toml; a file that cannot be read or parsed throws at once. */
function begin(configPath: string, files: ConfigFiles | undefined): Loading {
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
      throw new ConfigError([
        {
          file: mainName,
          line: 0,
          path: "",
          message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
          expected: "a readable config.toml",
        },
      ]);
    }
  }
  const src = parseToml(mainName, mainText);
  if (!("data" in src)) throw new ConfigError([src]);
  const global = readGlobal(new Reader(src, problems, src.data), mainName, dir);
  const l: Loading = {
    path,
    files,
    mainName,
    mainText,
    global,
    problems,
    sites: [],
    owner: new Map(),
    routeOwner: new Map(),
    exportOwner: new Map(),
    routeFiles: [],
    fromDisk: false,
    cache: new Map(),
    mainLine: (p) => src.lineOf(p),
  };
  if (files && files.routes !== "from-disk") l.routeFiles = [...files.routes];
  else if (existsSync(global.routesDir) && statSync(global.routesDir).isDirectory()) l.fromDisk = true;
  else {
    problems.push({
      file: mainName,
      line: src.lineOf("routes_dir"),
      path: "routes_dir",
      message: `${displayName(global.routesDir)} is not a directory`,
      expected: "a directory of *.toml route files",
    });
  }
  return l;
}

/** routeNames lists the route files to read from disk (none when the texts were given or the directory is missing). */
function routeNames(l: Loading): string[] {
  if (!l.fromDisk) return [];
  return readdirSync(l.global.routesDir)
    .filter((f) => f.endsWith(".toml"))
    .sort()
    .map((f) => join(l.global.routesDir, f));
}

function unreadable(l: Loading, p: string, e: unknown): void {
  l.problems.push({ file: displayName(p), line: 0, path: "", message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
}

/** CachedSite is a route file read by an earlier load: reused while its text and config.toml are the same. */
type CachedSite = { readonly text: string; readonly mainText: string; readonly path: string; readonly site: SiteConfig };

/**
 * siteCache holds the route files of the last successful load that read nothing but their own text (no certificate, key, CA or static directory), so a reload
 * parses and checks only the files that changed.
 */
let siteCache = new Map<string, CachedSite>();

/**
 * NAMES_FILES matches a route file that might name other files (tls = "manual", static, upstream TLS): such a file is read again on every load, so a replaced
 * certificate is seen. Deliberately coarse: a mere mention disables reuse.
 */
const NAMES_FILES = /static|manual|cert|key|upstream_tls|\bca\b/;

/** GLOBAL_FILES: a config.toml whose [upstream_tls] files every site inherits (their contents, read on every load) allows no reuse. */
const GLOBAL_FILES = /upstream_tls/;

/** readSiteFile parses and checks one route file, and the hosts and route names it claims against the others. */
function readSiteFile(l: Loading, rf: SourceFile): void {
  const { problems } = l;
  const prior = siteCache.get(rf.file);
  let site: SiteConfig;
  let parsed: ReturnType<typeof parseToml> | undefined;
  if (prior !== undefined && prior.text === rf.text && prior.mainText === l.mainText && prior.path === l.path && !GLOBAL_FILES.test(l.mainText))
    site = prior.site;
  else {
    parsed = parseToml(rf.file, rf.text);
    if (!("data" in parsed)) {
      problems.push(parsed);
      return;
    }
    const before = problems.length;
    site = readSite(new Reader(parsed, problems, parsed.data), l.global, basename(rf.file, ".toml"), rf.file);
    if (problems.length === before && !NAMES_FILES.test(rf.text)) l.cache.set(rf.file, { text: rf.text, mainText: l.mainText, path: l.path, site });
  }
  if (prior !== undefined && site === prior.site) l.cache.set(rf.file, prior);
  // Lines are looked up only for a problem (a reused file is parsed again then).
  const lineOf = (key: string) => {
    const p = parsed ?? parseToml(rf.file, rf.text);
    return "data" in p ? p.lineOf(key) : 0;
  };
  for (const h of site.hosts) {
    const other = l.owner.get(h);
    if (other)
      problems.push({
        file: rf.file,
        line: lineOf("hosts"),
        path: "hosts",
        message: `host ${JSON.stringify(h)} is also claimed by ${other}`,
        expected: "each host in one route file only",
      });
    else l.owner.set(h, rf.file);
  }
  site.routes.forEach((r, i) => {
    const other = l.routeOwner.get(r.name);
    // Route names are metric labels and log fields: two routes under one name would be counted as one.
    if (other)
      problems.push({
        file: rf.file,
        line: lineOf(i === 0 ? "hosts" : `paths[${i - 1}].name`),
        path: i === 0 ? "" : `paths[${i - 1}].name`,
        message: `route name ${JSON.stringify(r.name)} is also used in ${other}`,
        expected: "a route name used once",
      });
    else l.routeOwner.set(r.name, rf.file);
  });
  for (const key of ["cert", "key"] as const) {
    const path = site.export?.[key];
    if (path === undefined) continue;
    const other = l.exportOwner.get(path);
    if (other !== undefined && other !== rf.file)
      problems.push({
        file: rf.file,
        line: lineOf(`export.${key}`),
        path: `export.${key}`,
        message: `${JSON.stringify(path)} is also written by ${other}`,
        expected: "a file that one site's [export] writes",
      });
    else l.exportOwner.set(path, rf.file);
  }
  l.sites.push(site);
}

function end(l: Loading): ConfigSnapshot {
  l.problems.push(...checkTcpSites(l.global.tcp, l.sites, l.mainName, l.mainLine));
  if (l.problems.length > 0) throw new ConfigError(sortProblems(l.problems));
  siteCache = l.cache;
  return {
    config: { global: l.global, sites: l.sites },
    files: { path: l.path, main: l.files?.main ?? { file: l.mainName, text: l.mainText }, routes: l.routeFiles },
  };
}

/**
 * loadConfigSnapshot is loadConfig that also returns the texts it read (config.toml and every route file); files referenced by path (certificates, static
 * directories) are still read where they are used.
 */
export function loadConfigSnapshot(configPath: string, files?: ConfigFiles): ConfigSnapshot {
  const l = begin(configPath, files);
  for (const p of routeNames(l)) {
    try {
      l.routeFiles.push({ file: displayName(p), text: readFileSync(p, "utf8") });
    } catch (e) {
      unreadable(l, p, e);
    }
  }
  for (const rf of l.routeFiles) readSiteFile(l, rf);
  return end(l);
}

/** READ_BATCH: route files read concurrently. */
const READ_BATCH = 250;

/**
 * loadConfigSnapshotAsync is loadConfigSnapshot for a running gateway: route files are read concurrently off the event loop, and parsing and checking give way
 * to requests every few milliseconds, so a reload with thousands of route files does not stall traffic.
 */
export async function loadConfigSnapshotAsync(configPath: string, files?: ConfigFiles): Promise<ConfigSnapshot> {
  const l = begin(configPath, files);
  const names = routeNames(l);
  // Read in batches: a thousand reads settling at once would hold the event loop as long as a synchronous read.
  for (let i = 0; i < names.length; i += READ_BATCH) {
    const batch = names.slice(i, i + READ_BATCH);
    const texts = await Promise.all(
      batch.map((p) =>
        Bun.file(p)
          .text()
          .catch((e: unknown) => e as Error),
      ),
    );
    batch.forEach((p, j) => {
      const t = texts[j]!;
      if (typeof t === "string") l.routeFiles.push({ file: displayName(p), text: t });
      else unreadable(l, p, t);
    });
  }
  let slice = performance.now();
  for (const rf of l.routeFiles) {
    readSiteFile(l, rf);
    if (performance.now() - slice > SLICE_MS) {
      await yieldToRequests();
      slice = performance.now();
    }
  }
  return end(l);
}
