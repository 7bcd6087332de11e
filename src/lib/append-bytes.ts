/** Appending a piece to a connection's unparsed bytes: one buffer of the connection's own, grown by doubling, rather than a copy of everything for every piece. */

/** Appended is the unparsed bytes after an append, and whether they lie in a buffer of the caller's own (a later append may write after them). */
export type Appended = { readonly bytes: Uint8Array; readonly owned: boolean };

/**
 * appendBytes returns `bytes` followed by `data`. `owned` says whether `bytes` lies in a buffer of the caller's own; only the room after them is written (pieces
 * handed on earlier may lie before them), and a buffer the socket handed over is never written.
 */
export function appendBytes(bytes: Uint8Array, owned: boolean, data: Uint8Array): Appended {
  const len = bytes.byteLength;
  if (len === 0) return { bytes: data, owned: false };
  const need = len + data.byteLength;
  if (owned && bytes.byteOffset + need <= bytes.buffer.byteLength) {
    const view = new Uint8Array(bytes.buffer, bytes.byteOffset, need);
    view.set(data, len);
    return { bytes: view, owned: true };
  }
  const grown = new Uint8Array(Math.max(need, 2 * len, 4096));
  grown.set(bytes);
  grown.set(data, len);
  return { bytes: grown.subarray(0, need), owned: true };
}
