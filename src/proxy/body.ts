/** Body streams: counting and limiting a request body, and noticing the end of a response body, without buffering. */

/** ChunkReader is the part of a stream reader these wrappers use. */
type ChunkReader = { read(): Promise<{ done: true; value?: undefined } | { done: false; value: Uint8Array }>; cancel(reason?: unknown): Promise<void> };

/**
 * LimitedBody is a request body stream that counts bytes, fails past a limit, and says whether the upstream client began reading it and whether the client's
 * side failed (clientError: a malformed or stalled body, which is no fault of the upstream's).
 */
export type LimitedBody = {
  readonly stream: ReadableStream<Uint8Array>;
  readonly state: { bytes: number; started: boolean; tooLarge: boolean; clientError: ClientBodyError | undefined };
};

/** ClientBodyError ends a request body the client broke: malformed chunked coding (400) or too long a pause between its pieces (408). */
export class ClientBodyError extends Error {
  constructor(
    readonly status: 400 | 408,
    message: string,
  ) {
    super(message);
  }
}

/** BodyTooLargeError ends a request body that passed its limit. */
export class BodyTooLargeError extends Error {
  constructor(limit: number) {
    super(`request body exceeds ${limit} bytes`);
  }
}

/** limitBody wraps a request body: one pull per chunk, no copy; past `limit` bytes the stream errors so the upstream request is abandoned. */
export function limitBody(src: ReadableStream<Uint8Array>, limit: number): LimitedBody {
  const state: LimitedBody["state"] = { bytes: 0, started: false, tooLarge: false, clientError: undefined };
  let reader: ChunkReader | undefined;
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        state.started = true;
        const rd = (reader ??= src.getReader() as ChunkReader);
        let r: Awaited<ReturnType<ChunkReader["read"]>>;
        try {
          r = await rd.read();
        } catch (e) {
          if (e instanceof ClientBodyError) state.clientError = e;
          throw e;
        }
        if (r.done) return c.close();
        state.bytes += r.value.byteLength;
        if (state.bytes > limit) {
          state.tooLarge = true;
          c.error(new BodyTooLargeError(limit));
          await rd.cancel();
          return;
        }
        c.enqueue(r.value);
      },
      cancel(reason) {
        return reader?.cancel(reason) ?? src.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, state };
}

/** BodyEnd reports how a response body ended: bytes sent, and why it stopped early if it did. */
export type BodyEnd = (bytes: number, problem: string | undefined) => void;

/**
 * trackBody passes a response body through chunk by chunk (the consumer's pace sets the upstream's, so memory stays bounded) and calls onEnd once: at the end,
 * on an upstream error, or when the client goes away. `progress`, when given, has its `last` set to the time of each chunk (for the idle watch).
 */
export function trackBody(src: ReadableStream<Uint8Array>, onEnd: BodyEnd, progress?: { last: number }): ReadableStream<Uint8Array> {
  const reader = src.getReader() as ChunkReader;
  let bytes = 0;
  let ended = false;
  const end = (problem: string | undefined) => {
    if (ended) return;
    ended = true;
    onEnd(bytes, problem);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        let r: Awaited<ReturnType<ChunkReader["read"]>>;
        try {
          r = await reader.read();
        } catch (e) {
          end(`upstream body failed: ${(e as { code?: string }).code ?? (e as Error).message}`);
          c.error(e);
          return;
        }
        if (r.done) {
          end(undefined);
          c.close();
        } else {
          if (progress !== undefined) progress.last = performance.now();
          bytes += r.value.byteLength;
          c.enqueue(r.value);
        }
      },
      cancel(reason) {
        end("client closed the connection");
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
