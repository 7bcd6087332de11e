/** Which representation of a static file a request gets (RFC 9110 §12.5.3): the file itself, a precompressed sibling, or the file compressed on the fly. */
import { type Coding, acceptedCodings, compressible, negotiate } from "../lib/compress.ts";
import type { FileSource, FileStat } from "./file-source.ts";

/** SIBLING_SUFFIX is the file name suffix of a precompressed sibling in each coding: `app.css.zst`, `app.css.br`, `app.css.gz`. */
export const SIBLING_SUFFIX: Readonly<Record<Coding, string>> = { zstd: ".zst", br: ".br", gzip: ".gz" };
const CODINGS: readonly Coding[] = ["zstd", "br", "gzip"];

/** Representation is what one response of a file carries. `sibling` is set for a precompressed file; coding without sibling means compress on the fly. */
export type Representation = {
  readonly coding: Coding | undefined;
  readonly etag: string;
  readonly mtimeMs: number;
  readonly sibling: { readonly path: string; readonly stat: FileStat } | undefined;
};

/** Selection is the chosen representation and whether the file has others, i.e. whether responses must carry `Vary: Accept-Encoding` (RFC 9110 §12.5.5). */
export type Selection = { readonly rep: Representation; readonly varies: boolean };

/** identityEtag is the strong ETag of a file as stored: its size and mtime. */
export function identityEtag(s: FileStat): string {
  return `"${s.size.toString(16)}-${s.mtimeMs.toString(16)}"`;
}

/**
 * codedEtag is the ETag of a coded representation: the identity tag with the coding inside the quotes (`"3a-18f…-br"`), and for a sibling also the sibling's
 * own size and mtime, so a rebuilt sibling gets a new tag. It stays strong like the identity tag: the same file and coding give the same bytes.
 */
export function codedEtag(s: FileStat, coding: Coding, sibling?: FileStat): string {
  const tail = sibling === undefined ? "" : `-${sibling.size.toString(16)}-${sibling.mtimeMs.toString(16)}`;
  return `${identityEtag(s).slice(0, -1)}-${coding}${tail}"`;
}

/** siblingOf returns the precompressed sibling of path in coding when it is a file not older than the file itself; undefined otherwise. */
function siblingOf(source: FileSource, path: string, stat: FileStat, coding: Coding): { path: string; stat: FileStat } | undefined {
  const p = path + SIBLING_SUFFIX[coding];
  const s = source.stat(p);
  return s !== null && s.kind === "file" && s.mtimeMs >= stat.mtimeMs ? { path: p, stat: s } : undefined;
}

/** SelectOptions: files larger than maxCompressSize are not compressed on the fly (precompressed siblings still serve them). */
export type SelectOptions = { readonly maxCompressSize: number };

/**
 * select picks the representation of file for a request's Accept-Encoding: the best sibling the client accepts (by its q-values, then zstd, br, gzip), else
 * the file compressed on the fly in negotiate()'s coding when its type and size are worth it, else the file as it is. A request with a Range gets the file as it
 * is: ranges are served of the identity representation only, never of a coded one, so a resumed download is byte-exact whatever the client accepts. Costs a
 * few stat-cache lookups for siblings; no I/O beyond the source's stat.
 */
export function select(source: FileSource, path: string, stat: FileStat, acceptEncoding: string | null, ranged: boolean, opts: SelectOptions): Selection {
  const onTheFly = stat.size <= opts.maxCompressSize && compressible(stat.type, null, stat.size);
  const accepted = ranged ? [] : acceptedCodings(acceptEncoding);
  for (const coding of accepted) {
    const sib = siblingOf(source, path, stat, coding);
    if (sib !== undefined)
      return { rep: { coding, etag: codedEtag(stat, coding, sib.stat), mtimeMs: Math.max(stat.mtimeMs, sib.stat.mtimeMs), sibling: sib }, varies: true };
  }
  const identity: Representation = { coding: undefined, etag: identityEtag(stat), mtimeMs: stat.mtimeMs, sibling: undefined };
  if (onTheFly) {
    const coding = ranged ? undefined : negotiate(acceptEncoding);
    if (coding === undefined) return { rep: identity, varies: true };
    return { rep: { coding, etag: codedEtag(stat, coding), mtimeMs: stat.mtimeMs, sibling: undefined }, varies: true };
  }
  // Not compressed on the fly: the responses vary only if a sibling exists in some coding (this client took none of them).
  const varies = CODINGS.some((c) => !accepted.includes(c) && siblingOf(source, path, stat, c) !== undefined);
  return { rep: identity, varies };
}
