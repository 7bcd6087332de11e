/** WebSocket frame boundaries in a byte pipe (RFC 6455 §5.2), followed without buffering, so that a shutdown can put a close frame between two frames. */

/** FrameTracker follows the frames passing one way through a pipe: it only counts header and payload bytes. */
export class FrameTracker {
  /** header holds the bytes of a frame header seen so far (2 to 14). */
  private header: number[] = [];
  /** payload is how many payload bytes of the current frame are still to come. */
  private payload = 0;

  /** atBoundary says whether the bytes so far end exactly after a whole frame. */
  get atBoundary(): boolean {
    return this.header.length === 0 && this.payload === 0;
  }

  /** feed follows data; it returns false when the bytes cannot be WebSocket frames (a 64-bit length past 2^53), after which nothing is promised. */
  feed(data: Uint8Array): boolean {
    let i = 0;
    while (i < data.byteLength) {
      if (this.payload > 0) {
        const take = Math.min(this.payload, data.byteLength - i);
        this.payload -= take;
        i += take;
        continue;
      }
      this.header.push(data[i]!);
      i++;
      const need = headerLength(this.header);
      if (need === undefined || this.header.length < need) continue;
      const length = payloadLength(this.header);
      if (length === undefined) return false;
      this.payload = length;
      this.header = [];
    }
    return true;
  }
}

/** headerLength is the length of a frame header from its first bytes, or undefined while the second byte has not come. */
function headerLength(h: readonly number[]): number | undefined {
  if (h.length < 2) return undefined;
  const masked = (h[1]! & 0x80) !== 0;
  const len7 = h[1]! & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
}

/** payloadLength reads the payload length of a whole header (undefined past 2^53). */
function payloadLength(h: readonly number[]): number | undefined {
  const len7 = h[1]! & 0x7f;
  if (len7 < 126) return len7;
  if (len7 === 126) return (h[2]! << 8) | h[3]!;
  if (h[2]! !== 0 || (h[3]! & 0xe0) !== 0) return undefined;
  let n = 0;
  for (let i = 2; i < 10; i++) n = n * 256 + h[i]!;
  return n;
}

/** closeFrame is a close frame with `code` (RFC 6455 §5.5.1): unmasked from a server, masked (a random key) from a client. */
export function closeFrame(code: number, masked: boolean): Uint8Array {
  const payload = [code >> 8, code & 0xff];
  if (!masked) return Uint8Array.of(0x88, payload.length, ...payload);
  const key = crypto.getRandomValues(new Uint8Array(4));
  return Uint8Array.of(0x88, 0x80 | payload.length, ...key, ...payload.map((b, i) => b ^ key[i % 4]!));
}
