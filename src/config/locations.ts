/** Where things are, as config.toml says it: network addresses and file paths relative to the config; shared by every schema. */
import { isAbsolute, resolve } from "node:path";
import type { Address } from "./types.ts";

/** parseAddress reads "127.0.0.1:8080", "[::1]:8080" or ":8080" (all interfaces); undefined when malformed. */
export function parseAddress(text: string): Address | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  const hostname = m[1] ?? (m[2] || "0.0.0.0");
  return { text, hostname, port };
}

/** resolvePath makes a config path absolute: relative paths start at the directory of config.toml. */
export function resolvePath(dir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(dir, p);
}
