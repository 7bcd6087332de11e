/** Who may use the admin listener: config.toml's [admin] allow and deny, judged against the live config. */
import type { GlobalConfig } from "../../config/types.ts";
import { accessAllows } from "./access.ts";

const compiled = new WeakMap<GlobalConfig, (ip: string) => boolean>();

/** adminAllows says whether ip may use the admin listener under config g (no [admin] lists: anyone who reaches its address); compiled once per config. */
export function adminAllows(g: GlobalConfig | undefined, ip: string): boolean {
  const rule = g?.admin.access;
  if (rule === undefined) return true;
  let allows = compiled.get(g!);
  if (allows === undefined) {
    allows = accessAllows(rule);
    compiled.set(g!, allows);
  }
  return allows(ip);
}
