/** The first bytes of a front-end connection: a PROXY protocol preamble read from a trusted source (and the client it names counted), refused from any other. */
import type { HeadError } from "./h1-request.ts";
import { isPreamble, readPreamble, UNTRUSTED_PREAMBLE } from "./proxy-protocol.ts";

const EMPTY = new Uint8Array(0);

/** PreambleReader is the part of a connection the first bytes concern (src/front/h1-conn.ts's Conn). */
export interface PreambleReader {
  /** fresh: no byte has arrived yet; a preamble may only come first. */
  fresh: boolean;
  /** preamble: the peer may send a preamble, and it has not been read yet. */
  preamble: boolean;
  buf: Uint8Array;
  client: string;
  refuse(e: HeadError): void;
  /** admit counts the connection against the caps under its client, or answers and closes it, returning false. */
  admit(): boolean;
}

/**
 * firstBytes reads a PROXY protocol preamble at the start of a connection from a trusted source (waiting for the rest of it if need be) and returns the bytes
 * after it; from any other source a preamble is refused. Only the first bytes of a connection come here.
 */
export function firstBytes(c: PreambleReader, data: Uint8Array): Uint8Array {
  if (c.fresh) {
    c.fresh = false;
    if (!c.preamble) {
      if (!isPreamble(data)) return data;
      c.refuse({ status: 400, reason: UNTRUSTED_PREAMBLE });
      return EMPTY;
    }
  }
  const buf = c.buf.byteLength === 0 ? data : Buffer.concat([c.buf, data]);
  const p = readPreamble(buf);
  if (p.step === "wait") c.buf = buf;
  else if (p.step === "refuse") c.refuse({ status: 400, reason: p.reason });
  else {
    c.preamble = false;
    c.buf = EMPTY;
    // The caps count the client the balancer speaks for, not the balancer: a connection from it is counted only now.
    if (p.step === "read" && p.client !== undefined) c.client = p.client;
    if (c.admit()) return p.step === "read" ? buf.subarray(p.bytes) : buf;
  }
  return EMPTY;
}
