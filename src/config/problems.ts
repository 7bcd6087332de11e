/** Config problems: each names the file, the line, the key path, what is wrong and what was expected. */

/** Problem is one thing wrong with a config file, printed as `FILE:LINE: key.path: message (expected …)`. */
export type Problem = {
  readonly file: string;
  readonly line: number;
  readonly path: string;
  readonly message: string;
  readonly expected?: string;
};

/** formatProblem renders a Problem in the one format `gatehouse check`, reload failures and startup errors share. */
export function formatProblem(p: Problem): string {
  const where = p.line > 0 ? `${p.file}:${p.line}` : p.file;
  const key = p.path ? ` ${p.path}:` : "";
  const expected = p.expected ? ` (expected ${p.expected})` : "";
  return `${where}:${key} ${p.message}${expected}`;
}

/** ConfigError carries every problem found in one load, so the operator sees all of them at once. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly Problem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.name = "ConfigError";
  }
}

/**
 * problemLines turns a load or start failure into lines in `gatehouse check` format: a ConfigError's problems, the lines of an error that carries its own
 * `problems` array, or else the error's message.
 */
export function problemLines(e: unknown): string[] {
  if (e instanceof ConfigError) return e.problems.map(formatProblem);
  const own = (e as { problems?: unknown })?.problems;
  return Array.isArray(own) ? own.map(String) : [String((e as Error)?.message ?? e)];
}
