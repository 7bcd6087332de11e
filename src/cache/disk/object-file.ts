/** One stored response as a file of the disk tier: a magic, the length of a JSON head (status, fields, times, Vary, tags, body length and CRC-32), the head, the body. */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { crc32 } from "node:zlib";
import { writeFileAtomic } from "../../lib/atomic-write.ts";

/** MAGIC starts every object file; a new layout gets a new magic (and a new directory, see DiskTier). */
const MAGIC = Buffer.from("GHC1");
const PREFIX = 8; // magic + u32 head length
/** MAX_HEAD bounds the head a reader accepts (fields are bounded by max_object_size's neighbours: 1 MiB is far above any real head). */
const MAX_HEAD = 1024 * 1024;

/** ObjectHead is what a file says of its response, beside the body. */
export type ObjectHead = {
  readonly primary: string;
  readonly secondary: string;
  readonly status: number;
  readonly fields: readonly (readonly [string, string])[];
  readonly requestTime: number;
  readonly responseTime: number;
  readonly vary: readonly string[];
  readonly tags: readonly string[];
  readonly compressible: boolean;
  readonly bodyLength: number;
  readonly crc: number;
};

/** Opened is a file whose head has been read and checked: the body is `head.bodyLength` bytes at `offset`. */
export type Opened = { readonly head: ObjectHead; readonly offset: number };

/** Damaged is thrown for a file that is not a whole object: truncated, grown, of another layout, or whose body does not match its CRC. */
export class Damaged extends Error {}

/** encodeObject lays out a head and body as one file's bytes (the CRC is computed here). */
export function encodeObject(head: Omit<ObjectHead, "crc" | "bodyLength">, body: Uint8Array): Uint8Array {
  const json = Buffer.from(JSON.stringify({ ...head, bodyLength: body.byteLength, crc: crc32(body) }));
  const out = Buffer.allocUnsafe(PREFIX + json.byteLength + body.byteLength);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(json.byteLength, 4);
  json.copy(out, PREFIX);
  out.set(body, PREFIX + json.byteLength);
  return out;
}

/**
 * writeObject writes bytes to a temp file in tmpDir and renames it to path: a reader sees the whole object or none. No fsync: after a power loss a torn file
 * fails its checks on read and is a miss (a cache may lose objects, never serve half of one).
 */
export function writeObject(tmpDir: string, path: string, bytes: Uint8Array): void {
  writeFileAtomic(path, bytes, 0o600, false, tmpDir);
}

function parseHead(buf: Buffer, fileSize: number): Opened {
  if (buf.byteLength < PREFIX || !buf.subarray(0, 4).equals(MAGIC)) throw new Damaged("not an object file of this layout");
  const len = buf.readUInt32LE(4);
  if (len > MAX_HEAD || PREFIX + len > buf.byteLength) throw new Damaged("head cut short");
  let head: ObjectHead;
  try {
    head = JSON.parse(buf.subarray(PREFIX, PREFIX + len).toString("utf8")) as ObjectHead;
  } catch {
    throw new Damaged("head is not JSON");
  }
  if (typeof head.bodyLength !== "number" || PREFIX + len + head.bodyLength !== fileSize)
    throw new Damaged(`body is ${fileSize - PREFIX - len} bytes, its head says ${head.bodyLength}`);
  return { head, offset: PREFIX + len };
}

/** readObject reads a whole file and checks it (length and CRC): its head and body. ENOENT and other I/O errors are thrown as they are. */
export function readObject(path: string): { head: ObjectHead; body: Uint8Array } {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const n = readSync(fd, buf, off, size - off, off);
      if (n === 0) break;
      off += n;
    }
    const { head, offset } = parseHead(buf.subarray(0, off), off);
    const body = buf.subarray(offset);
    if (crc32(body) !== head.crc) throw new Damaged("body does not match its CRC-32");
    return { head, body };
  } finally {
    closeSync(fd);
  }
}

/** openHead reads only a file's head and checks the file's length against it (the body is streamed, and its CRC checked as it goes: crcCheck). */
export function openHead(path: string): Opened {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const first = Buffer.allocUnsafe(Math.min(size, 64 * 1024));
    const n = readSync(fd, first, 0, first.byteLength, 0);
    let buf = first.subarray(0, n);
    if (n >= PREFIX && buf.subarray(0, 4).equals(MAGIC)) {
      const need = PREFIX + buf.readUInt32LE(4);
      if (need > n && need <= MAX_HEAD && need <= size) {
        buf = Buffer.allocUnsafe(need);
        readSync(fd, buf, 0, need, 0);
      }
    }
    return parseHead(buf, size);
  } finally {
    closeSync(fd);
  }
}

/**
 * crcCheck passes a body stream through, computing its CRC-32. The last chunk is held back until the end: when the stream ends with another CRC or length,
 * the stream errors without it, so the client gets fewer bytes than the Content-Length announced (a cut response, never a complete one with wrong bytes),
 * and damaged is called.
 */
export function crcCheck(stream: ReadableStream<Uint8Array>, want: number, length: number, damaged: () => void): ReadableStream<Uint8Array> {
  let crc = 0;
  let seen = 0;
  let held: Uint8Array | undefined;
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctrl) {
        crc = crc32(chunk, crc);
        seen += chunk.byteLength;
        if (held !== undefined) ctrl.enqueue(held);
        held = chunk;
      },
      flush(ctrl) {
        if (crc !== want || seen !== length) {
          damaged();
          ctrl.error(new Damaged("body does not match its CRC-32"));
          return;
        }
        if (held !== undefined) ctrl.enqueue(held);
      },
    }),
  );
}
