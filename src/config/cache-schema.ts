/** Reading a route's [cache] table (site level, or a [[paths]] entry that refines the site's). */
import type { Reader } from "./reader.ts";
import type { CacheRules } from "./types.ts";

/**
 * readCacheRules reads [cache] of r on top of base (the site's rules for a [[paths]] entry); undefined when neither has one. A table turns the cache on unless
 * it says enabled = false.
 */
export function readCacheRules(r: Reader, base: CacheRules | undefined): CacheRules | undefined {
  const c = r.table("cache");
  if (!c) return base;
  const ttl = (key: string, fallback: number | undefined) => (c.has(key) ? Math.round(c.duration(key, 0) / 1000) : fallback);
  const rules: CacheRules = {
    enabled: c.bool("enabled", true),
    ttl: ttl("ttl", base?.ttl),
    minTtl: ttl("min_ttl", base?.minTtl),
    defaultTtl: ttl("default_ttl", base?.defaultTtl),
    ignoreQuery: c.bool("ignore_query", base?.ignoreQuery ?? false),
    bypassCookies: c.stringList("bypass_cookies") ?? base?.bypassCookies ?? [],
    fetchWholeOnRange: c.bool("fetch_whole_on_range", base?.fetchWholeOnRange ?? false),
  };
  if (rules.ttl !== undefined && (rules.minTtl !== undefined || rules.defaultTtl !== undefined)) {
    c.problem("ttl", "cannot be combined with min_ttl or default_ttl", "ttl alone (replaces the origin's freshness), or min_ttl / default_ttl");
  }
  c.done();
  return rules;
}
