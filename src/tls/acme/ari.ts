/** ACME Renewal Information (RFC 9773): the certificate identifier and the renewalInfo fetch. */

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
/** RETRY_AFTER_DEFAULT_MS is used when Retry-After is missing or invalid: six hours (RFC 9773 §4.3.3). */
export const RETRY_AFTER_DEFAULT_MS = 6 * 60 * MINUTE;
const FETCH_TIMEOUT_MS = 10_000;
/** OID 2.5.29.35 (authorityKeyIdentifier) as DER content bytes (RFC 5280 §4.2.1.1). */
const AKI_OID = Uint8Array.of(0x55, 0x1d, 0x23);
// RFC 3339 §5.6 date-time; Date.parse then checks the values themselves.
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** RenewalWindow is a CA's suggested renewal window in epoch ms, end after start (RFC 9773 §4.2). */
export type RenewalWindow = { readonly start: number; readonly end: number; readonly explanationURL?: string };

/** RenewalInfo is one renewalInfo answer: the window and when to ask again, clamped to [1 min, 1 day]. */
export type RenewalInfo = { readonly window: RenewalWindow; readonly retryAfterMs: number };

/** RenewalInfoErrorInfo says whether a failed fetch may be retried soon, its HTTP status and the CA's Retry-After (ms, unclamped). */
export type RenewalInfoErrorInfo = { temporary: boolean; status?: number; retryAfterMs?: number; cause?: unknown };

/**
 * RenewalInfoError is a failed renewalInfo fetch; temporary is true for timeouts, network and 5xx errors, which RFC 9773 §4.3.3 retries with backoff, and false
 * for errors that wait the six-hour default.
 */
export class RenewalInfoError extends Error {
  override readonly name = "RenewalInfoError";
  readonly temporary: boolean;
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(message: string, info: RenewalInfoErrorInfo) {
    super(message, { cause: info.cause });
    this.temporary = info.temporary;
    this.status = info.status;
    this.retryAfterMs = info.retryAfterMs;
  }
}

type TLV = { readonly tag: number; readonly start: number; readonly end: number; readonly next: number };

/** readTLV reads one DER element at off inside [off, limit); it throws on truncation or indefinite length (X.690 §10.1). */
function readTLV(der: Uint8Array, off: number, limit: number): TLV {
  if (off + 2 > limit) throw new Error("truncated DER");
  const tag = der[off]!;
  if ((tag & 0x1f) === 0x1f) throw new Error("multi-byte DER tag");
  let len = der[off + 1]!;
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw new Error("bad DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    start += n;
  }
  if (start + len > limit) throw new Error("truncated DER");
  return { tag, start, end: start + len, next: start + len };
}

/** children lists the elements inside a constructed element. */
function children(der: Uint8Array, parent: TLV): TLV[] {
  const out: TLV[] = [];
  for (let off = parent.start; off < parent.end; ) {
    const t = readTLV(der, off, parent.end);
    out.push(t);
    off = t.next;
  }
  return out;
}

/** sameBytes compares an element's content with want. */
function sameBytes(der: Uint8Array, t: TLV, want: Uint8Array): boolean {
  return t.end - t.start === want.length && want.every((b, i) => der[t.start + i] === b);
}

/** pemToDer decodes the first CERTIFICATE block of a PEM text, so a full chain yields its leaf. */
function pemToDer(pem: string): Uint8Array {
  const m = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new Error("certId: no PEM CERTIFICATE block found");
  return new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
}

/** certParts returns the AKI keyIdentifier and the serial's DER content bytes of a DER certificate (RFC 5280 §4.1). */
export function certParts(der: Uint8Array): { aki: Uint8Array; serial: Uint8Array } {
  const cert = readTLV(der, 0, der.length);
  const tbs = children(der, cert)[0];
  if (cert.tag !== 0x30 || tbs?.tag !== 0x30) throw new Error("not an X.509 certificate");
  const fields = children(der, tbs);
  const hasVersion = fields[0]?.tag === 0xa0; // [0] EXPLICIT version, absent for v1
  const serial = fields[hasVersion ? 1 : 0];
  if (serial?.tag !== 0x02 || serial.end === serial.start) throw new Error("no serial number");
  const exts = fields.find((f) => f.tag === 0xa3); // [3] EXPLICIT extensions
  let aki: Uint8Array | undefined;
  const extList = exts ? children(der, exts)[0] : undefined;
  for (const ext of extList?.tag === 0x30 ? children(der, extList) : []) {
    const [oid, ...rest] = children(der, ext);
    if (oid?.tag !== 0x06 || !sameBytes(der, oid, AKI_OID)) continue;
    const value = rest.find((t) => t.tag === 0x04); // extnValue OCTET STRING, after an optional critical BOOLEAN
    if (!value) break;
    const seq = readTLV(der, value.start, value.end);
    const keyId = children(der, seq).find((t) => t.tag === 0x80); // [0] IMPLICIT keyIdentifier (RFC 5280 §4.2.1.1)
    if (keyId) aki = der.slice(keyId.start, keyId.end);
  }
  if (!aki || aki.length === 0) throw new Error("no Authority Key Identifier keyIdentifier");
  return { aki, serial: der.slice(serial.start, serial.end) };
}

/** encodeCertId joins base64url(aki) "." base64url(serial) without padding (RFC 9773 §4.1). */
export function encodeCertId(aki: Uint8Array, serial: Uint8Array): string {
  return `${Buffer.from(aki).toString("base64url")}.${Buffer.from(serial).toString("base64url")}`;
}

/**
 * certId is the ARI certificate identifier (RFC 9773 §4.1) of the first certificate in a PEM text; the serial keeps its DER bytes, leading 0x00 included; it
 * throws an Error naming the problem when the PEM or DER is bad or the AKI is missing.
 */
export function certId(certPem: string): string {
  const der = pemToDer(certPem);
  try {
    const { aki, serial } = certParts(der);
    return encodeCertId(aki, serial);
  } catch (e) {
    throw new Error(`certId: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * parseRetryAfter reads a Retry-After value, delay-seconds or HTTP-date (RFC 9110 §10.2.3), as ms from now; undefined when absent or invalid, and never
 * negative.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isFinite(at) && /[A-Za-z]/.test(v) ? Math.max(0, at - now) : undefined;
}

/** clampRetryAfter bounds the next renewalInfo check to [1 min, 1 day], six hours when unknown (RFC 9773 §4.3.2, §4.3.3). */
export function clampRetryAfter(ms: number | undefined): number {
  if (ms === undefined) return RETRY_AFTER_DEFAULT_MS;
  return Math.min(DAY, Math.max(MINUTE, ms));
}

/** parseTime reads an RFC 3339 date-time as epoch ms, naming the field when it cannot. */
function parseTime(v: unknown, what: string): number {
  const t = typeof v === "string" && RFC3339.test(v) ? Date.parse(v) : NaN;
  if (!Number.isFinite(t)) throw new Error(`suggestedWindow.${what} is not an RFC 3339 date-time: ${JSON.stringify(v)}`);
  return t;
}

/** parseRenewalInfo validates a renewalInfo body (RFC 9773 §4.2): an end not after start is invalid (§4.3.3). */
export function parseRenewalInfo(body: unknown): RenewalWindow {
  if (typeof body !== "object" || body === null) throw new Error("renewalInfo is not a JSON object");
  const { suggestedWindow: w, explanationURL } = body as Record<string, unknown>;
  if (typeof w !== "object" || w === null) throw new Error("renewalInfo has no suggestedWindow object");
  const start = parseTime((w as Record<string, unknown>).start, "start");
  const end = parseTime((w as Record<string, unknown>).end, "end");
  if (end <= start) throw new Error("suggestedWindow.end is not after suggestedWindow.start");
  return typeof explanationURL === "string" ? { start, end, explanationURL } : { start, end };
}

/**
 * fetchRenewalInfo GETs `${renewalInfoUrl}/${id}` (RFC 9773 §4.2), unauthenticated, within timeoutMs (default 10 s); it throws a RenewalInfoError on a timeout,
 * network or HTTP error, bad JSON or an invalid window.
 */
export async function fetchRenewalInfo(renewalInfoUrl: string, id: string, opts: { fetch?: typeof fetch; timeoutMs?: number } = {}): Promise<RenewalInfo> {
  const url = `${renewalInfoUrl.replace(/\/+$/, "")}/${id}`;
  const timeoutMs = opts.timeoutMs ?? FETCH_TIMEOUT_MS;
  const doFetch = opts.fetch ?? fetch;
  let res: Response;
  let text: string;
  try {
    res = await doFetch(url, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(timeoutMs) });
    text = await res.text();
  } catch (e) {
    const timedOut = e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError");
    const why = timedOut ? `timed out after ${timeoutMs} ms` : `failed: ${(e as Error).message}`;
    throw new RenewalInfoError(`renewalInfo ${url} ${why}`, { temporary: true, cause: e });
  }
  if (!res.ok) {
    const detail = text.length > 200 ? `${text.slice(0, 200)}…` : text;
    const retryAfterMs = parseRetryAfter(res.headers.get("retry-after"));
    const info = { temporary: res.status >= 500, status: res.status, retryAfterMs };
    throw new RenewalInfoError(`renewalInfo ${url}: HTTP ${res.status}${detail ? `: ${detail}` : ""}`, info);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new RenewalInfoError(`renewalInfo ${url}: body is not JSON`, { temporary: false, status: res.status, cause: e });
  }
  try {
    const window = parseRenewalInfo(body);
    return { window, retryAfterMs: clampRetryAfter(parseRetryAfter(res.headers.get("retry-after"))) };
  } catch (e) {
    throw new RenewalInfoError(`renewalInfo ${url}: ${(e as Error).message}`, { temporary: false, status: res.status, cause: e });
  }
}
