/** The TLS ClientHello read before the handshake starts (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301 §3.1): the server name and ALPN protocols, to pick a certificate. */

/** Hello is what a ClientHello asks for: the server name (lowercased; undefined without one) and the ALPN protocols it offers, in its order. */
export type Hello = { readonly serverName: string | undefined; readonly alpn: readonly string[] };

/** NOT_TLS: the bytes are no TLS handshake (plain HTTP on the TLS port, garbage); the connection should be closed. */
export const NOT_TLS = Symbol("not a TLS ClientHello");

/** MAX_HELLO bounds the bytes read before the handshake: a ClientHello fits one 16 KiB record and nearly always a few hundred bytes. */
export const MAX_HELLO = 16 * 1024 + 5;

const HANDSHAKE = 22;
const CLIENT_HELLO = 1;
const SERVER_NAME = 0;
const ALPN = 16;
/** NAME_RE is a DNS name as SNI may carry it (RFC 6066 §3: a host name, no trailing dot, no IP literal). */
const NAME_RE = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?)*$/;

/**
 * readHello reads the ClientHello at the start of buf: undefined while more bytes are needed, NOT_TLS when they are no ClientHello, else what it asks for. The
 * handshake message may span several records; only its extensions are read, and a malformed one is NOT_TLS (the TLS library would refuse it anyway).
 */
export function readHello(buf: Uint8Array): Hello | undefined | typeof NOT_TLS {
  // Reassemble the handshake message from its records (usually one).
  let msg: Uint8Array | undefined;
  let need = -1;
  let p = 0;
  while (need < 0 || (msg?.byteLength ?? 0) < need) {
    if (buf.byteLength < p + 5) return buf.byteLength > MAX_HELLO ? NOT_TLS : undefined;
    if (buf[p] !== HANDSHAKE || buf[p + 1] !== 3) return NOT_TLS;
    const len = (buf[p + 3]! << 8) | buf[p + 4]!;
    if (len === 0 || len > 16384) return NOT_TLS;
    if (buf.byteLength < p + 5 + len) return p + 5 + len > MAX_HELLO ? NOT_TLS : undefined;
    const frag = buf.subarray(p + 5, p + 5 + len);
    msg = msg === undefined ? frag : Buffer.concat([msg, frag]);
    p += 5 + len;
    if (need < 0) {
      if (msg.byteLength < 4) continue;
      if (msg[0] !== CLIENT_HELLO) return NOT_TLS;
      need = 4 + ((msg[1]! << 16) | (msg[2]! << 8) | msg[3]!);
      if (need > MAX_HELLO) return NOT_TLS;
    }
  }
  return parseBody(msg!.subarray(4, need));
}

/** parseBody reads a ClientHello body: version, random, session id, cipher suites, compression methods, then the extensions. */
function parseBody(b: Uint8Array): Hello | typeof NOT_TLS {
  let p = 2 + 32;
  if (b.byteLength < p + 1) return NOT_TLS;
  p += 1 + b[p]!;
  if (b.byteLength < p + 2) return NOT_TLS;
  p += 2 + ((b[p]! << 8) | b[p + 1]!);
  if (b.byteLength < p + 1) return NOT_TLS;
  p += 1 + b[p]!;
  // A hello without extensions (TLS 1.2 allows it): no name, no ALPN.
  if (p === b.byteLength) return { serverName: undefined, alpn: [] };
  if (b.byteLength < p + 2) return NOT_TLS;
  const end = p + 2 + ((b[p]! << 8) | b[p + 1]!);
  if (end > b.byteLength) return NOT_TLS;
  p += 2;
  let serverName: string | undefined;
  const alpn: string[] = [];
  while (p + 4 <= end) {
    const type = (b[p]! << 8) | b[p + 1]!;
    const len = (b[p + 2]! << 8) | b[p + 3]!;
    p += 4;
    if (p + len > end) return NOT_TLS;
    const ext = b.subarray(p, p + len);
    if (type === SERVER_NAME) serverName = readServerName(ext);
    else if (type === ALPN && !readAlpn(ext, alpn)) return NOT_TLS;
    p += len;
  }
  return p === end ? { serverName, alpn } : NOT_TLS;
}

/** readServerName takes the host_name entry of a server_name extension; one that is no DNS name is ignored (the fallback certificate answers). */
function readServerName(ext: Uint8Array): string | undefined {
  if (ext.byteLength < 5 || ext[2] !== 0) return undefined;
  const len = (ext[3]! << 8) | ext[4]!;
  if (5 + len > ext.byteLength) return undefined;
  const name = Buffer.from(ext.buffer, ext.byteOffset + 5, len)
    .toString("latin1")
    .toLowerCase();
  return NAME_RE.test(name) ? name : undefined;
}

/** readAlpn appends the protocol names of an ALPN extension to out; false when it is malformed. */
function readAlpn(ext: Uint8Array, out: string[]): boolean {
  if (ext.byteLength < 2) return false;
  const end = 2 + ((ext[0]! << 8) | ext[1]!);
  if (end !== ext.byteLength) return false;
  for (let q = 2; q < end; ) {
    const n = ext[q]!;
    if (n === 0 || q + 1 + n > end) return false;
    out.push(Buffer.from(ext.buffer, ext.byteOffset + q + 1, n).toString("latin1"));
    q += 1 + n;
  }
  return true;
}
