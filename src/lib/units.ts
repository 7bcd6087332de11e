/** Parsing of the sizes and durations people write in config files ("256MiB", "1m30s"). */

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  ki: 1024,
  kib: 1024,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
  ti: 1024 ** 4,
  tib: 1024 ** 4,
};

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i;
const DURATION_PART_RE = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;

/** parseSize turns "256MiB", "8 MB", "1.5GiB" or a plain number of bytes into bytes; undefined when malformed. */
export function parseSize(input: string | number): number | undefined {
  if (typeof input === "number") return Number.isInteger(input) && input >= 0 ? input : undefined;
  const m = SIZE_RE.exec(input.trim());
  if (!m) return undefined;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  return Math.round(Number(m[1]) * unit);
}

/** parseDuration turns "30s", "250ms", "1m30s", "2h" into milliseconds; undefined when malformed. A bare number is not accepted: the unit must be said. */
export function parseDuration(input: string): number | undefined {
  const s = input.trim();
  if (s === "0") return 0;
  if (s === "") return undefined;
  DURATION_PART_RE.lastIndex = 0;
  let total = 0;
  let consumed = 0;
  let m: RegExpExecArray | null;
  while ((m = DURATION_PART_RE.exec(s)) !== null) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    consumed = DURATION_PART_RE.lastIndex;
  }
  return consumed === s.length ? Math.round(total) : undefined;
}

/** formatBytes renders a byte count the way parseSize reads it, for messages. */
export function formatBytes(n: number): string {
  for (const [unit, size] of [
    ["GiB", 1024 ** 3],
    ["MiB", 1024 ** 2],
    ["KiB", 1024],
  ] as const) {
    if (n >= size && n % size === 0) return `${n / size}${unit}`;
  }
  return `${n}B`;
}
