/** A 256-bit key read from a file as operators write them: 32 raw bytes, 64 hex digits, or base64 (`openssl rand -base64 32`). */

/** parseSecretKey reads a key file's bytes; undefined when they are none of the three forms. */
export function parseSecretKey(raw: Uint8Array): Uint8Array | undefined {
  if (raw.length === 32) return new Uint8Array(raw);
  const text = Buffer.from(raw).toString("utf8").trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return new Uint8Array(Buffer.from(text, "hex"));
  const decoded = Buffer.from(text, "base64");
  if (/^[A-Za-z0-9+/]+=*$/.test(text) && decoded.length === 32) return new Uint8Array(decoded);
  return undefined;
}

/** SECRET_KEY_EXPECTED says what a key file must hold, for error messages. */
export const SECRET_KEY_EXPECTED = "32 bytes, 64 hex digits or the base64 of 32 bytes (openssl rand -base64 32)";
