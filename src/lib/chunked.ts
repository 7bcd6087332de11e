/** Chunked transfer coding (RFC 9112 §7.1) decoded as the bytes arrive, strictly: hex sizes that fit, CRLF where the grammar says, bounded extensions and trailers. */

/** ChunkError is a chunked body that must be refused (400, then the connection closes); reason is for the log. */
export type ChunkError = { readonly reason: string };

/** MAX_SIZE_DIGITS: 12 hex digits are 2^48 bytes, more than any body; a longer size is refused rather than risk overflow. */
const MAX_SIZE_DIGITS = 12;
/** MAX_LINE: a chunk-size line with its extensions, or a trailer line, longer than this is refused (nginx and Node take similar bounds). */
const MAX_LINE = 4096;
/** MAX_TRAILERS: the whole trailer section is bounded like a head. */
const MAX_TRAILERS = 16 * 1024;

enum State {
  Size,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  Trailer,
  TrailerLf,
  EndLf,
  Done,
}

const CR = 13;
const LF = 10;

/** hexValue is a hex digit's value, or -1. */
function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** ChunkedDecoder decodes one chunked body; trailer fields are checked and dropped (nothing downstream asks for them). */
export class ChunkedDecoder {
  private state = State.Size;
  private size = 0;
  private digits = 0;
  private line = 0;
  private trailers = 0;
  /** bytes counts the decoded body so far. */
  bytes = 0;

  /** done says whether the last chunk and the trailer section have ended. */
  get done(): boolean {
    return this.state === State.Done;
  }

  /**
   * push decodes data, handing each piece of chunk data to onData (a subarray of data: no copy); it returns how many bytes of data belong to this body (when it
   * ends within data, the rest is the next request's), or a ChunkError.
   */
  push(data: Uint8Array, onData: (piece: Uint8Array) => void): number | ChunkError {
    let i = 0;
    const n = data.length;
    while (i < n) {
      switch (this.state) {
        case State.Data: {
          const take = Math.min(this.size, n - i);
          onData(data.subarray(i, i + take));
          this.bytes += take;
          this.size -= take;
          i += take;
          if (this.size === 0) this.state = State.DataCr;
          continue;
        }
        case State.Done:
          return i;
      }
      const c = data[i++]!;
      switch (this.state) {
        case State.Size: {
          const v = hexValue(c);
          if (v >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) return { reason: `a chunk size of more than ${MAX_SIZE_DIGITS} hex digits` };
            this.size = this.size * 16 + v;
            this.line++;
          } else if (this.digits === 0) return { reason: "a chunk size that is not hex" };
          else if (c === CR) this.state = State.SizeLf;
          else if (c === 59 /* ; */ || c === 32 || c === 9) {
            this.state = State.Ext;
            this.line++;
          } else return { reason: "a chunk size that is not hex" };
          break;
        }
        case State.Ext:
          if (c === CR) this.state = State.SizeLf;
          else if (c === LF || c === 0 || ++this.line > MAX_LINE)
            return { reason: c === LF ? "a chunk size line ends with LF alone" : "a malformed or overlong chunk extension" };
          break;
        case State.SizeLf:
          if (c !== LF) return { reason: "a bare CR after a chunk size" };
          this.digits = 0;
          this.line = 0;
          this.state = this.size === 0 ? State.TrailerStart : State.Data;
          break;
        case State.DataCr:
          if (c !== CR) return { reason: "chunk data longer than its size, or no CRLF after it" };
          this.state = State.DataLf;
          break;
        case State.DataLf:
          if (c !== LF) return { reason: "no CRLF after chunk data" };
          this.state = State.Size;
          break;
        case State.TrailerStart:
          if (c === CR) this.state = State.EndLf;
          else if (c === LF) return { reason: "the chunked body ends with LF alone" };
          else {
            this.state = State.Trailer;
            this.line = 1;
            this.trailers++;
          }
          break;
        case State.Trailer:
          if (c === CR) this.state = State.TrailerLf;
          else if (c === LF || c === 0 || ++this.line > MAX_LINE || ++this.trailers > MAX_TRAILERS) return { reason: "a malformed or overlong trailer field" };
          break;
        case State.TrailerLf:
          if (c !== LF) return { reason: "a bare CR in a trailer field" };
          this.state = State.TrailerStart;
          break;
        case State.EndLf:
          if (c !== LF) return { reason: "a bare CR at the end of the chunked body" };
          this.state = State.Done;
          return i;
      }
    }
    return i;
  }
}
