/** Fast string hashing for spreading keys (consistent hashing, endpoint seeds); not for security. */

/** hash32 is FNV-1a over a string with a final mix, scaled to [0, 1): fast, and good enough to spread keys. */
export function hash32(s: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return (h >>> 0) / 4294967296;
}
