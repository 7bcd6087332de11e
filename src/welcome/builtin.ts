/** Static sites compiled into the binary, named in route files as `static = "builtin:NAME"`. */
import welcomeHtml from "./index.html" with { type: "text" };
import { embeddedSource, type FileSource } from "../static/index.ts";

const BUILD_TIME = new Date();

/** builtinSource returns the embedded pages of a built-in site; the config check has already refused unknown names. */
export function builtinSource(name: string): FileSource {
  if (name !== "welcome") throw new Error(`unknown built-in site ${name}`);
  return embeddedSource({ "/index.html": { body: welcomeHtml as unknown as string, contentType: "text/html; charset=utf-8" } }, BUILD_TIME);
}
