/** Request body buffering: a body up to [limits] request_buffer is read whole before an endpoint is chosen, and a larger one's first request_buffer bytes, so a client that trickles its body holds a connection of its own, never an upstream slot; a total cap bounds the memory of all of them. */
import type { LimitedBody } from "./body.ts";

/** TOTAL_BUFFERED caps the request body bytes held across all requests of the process; past it, bodies stream as they come (memory stays bounded). */
export const TOTAL_BUFFERED = 256 * 1024 * 1024;

/** BufferBudget counts the body bytes held now, across requests. */
export class BufferBudget {
  held = 0;
  constructor(readonly cap: number) {}
}

/** budget is the process's. */
export const budget = new BufferBudget(TOTAL_BUFFERED);

/**
 * Buffered is a request body after buffering: whole (bytes, released with release() once sent), or a stream (the bytes read so far, then the rest as it comes:
 * larger than the buffer, or the total cap reached).
 */
export type Buffered =
  | { readonly kind: "whole"; readonly bytes: Uint8Array; release(): void }
  | { readonly kind: "stream"; readonly stream: ReadableStream<Uint8Array>; release(): void; started(): boolean };

type ChunkReader = ReadableStreamDefaultReader<Uint8Array>;

/**
 * bufferBody reads the body through `limited` (its size limit and the front end's body_timeout and minimum pace apply as it arrives) up to `limit` bytes: a
 * body that ends within it comes back whole; a larger one, or one that would take the budget past its cap, comes back as a stream that starts with what was
 * read (a larger body holds an upstream slot only once `limit` bytes of it have come: a client trickling one never does). Rejects as reading the body does
 * (a broken, stalled or too slow body, the size limit: see limited.state).
 */
export async function bufferBody(limited: LimitedBody, limit: number, b: BufferBudget = budget): Promise<Buffered> {
  const reader = limited.stream.getReader() as ChunkReader;
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      parts.push(r.value);
      size += r.value.byteLength;
      b.held += r.value.byteLength;
      if (size > limit || b.held > b.cap) return streamed(parts, reader, size, b);
    }
  } catch (e) {
    b.held -= size;
    throw e;
  }
  let released = false;
  return {
    kind: "whole",
    bytes: parts.length === 1 ? parts[0]! : Buffer.concat(parts),
    release: () => {
      if (released) return;
      released = true;
      b.held -= size;
    },
  };
}

/**
 * streamed is the stream form: the parts already read, then what the reader still gives; it holds `size` bytes of the budget until released, and says whether
 * its consumer began reading it (until then it may go to another endpoint).
 */
function streamed(parts: Uint8Array[], reader: ChunkReader, size: number, b: BufferBudget): Buffered {
  let released = false;
  let started = false;
  let i = 0;
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        started = true;
        if (i < parts.length) {
          c.enqueue(parts[i]!);
          parts[i++] = EMPTY;
          return;
        }
        const r = await reader.read();
        if (r.done) c.close();
        else c.enqueue(r.value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return {
    kind: "stream",
    stream,
    started: () => started,
    release: () => {
      if (released) return;
      released = true;
      b.held -= size;
    },
  };
}

const EMPTY = new Uint8Array(0);
