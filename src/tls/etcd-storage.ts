/** EtcdStorage: certificate storage shared by several gateway nodes in etcd v3 (its JSON gateway over fetch), with locks tied to leases and secrets sealed at rest. */
import { parseSecretKey, SECRET_KEY_EXPECTED } from "../lib/secret-key.ts";
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { log } from "../observability/log.ts";
import type { LockOptions, Release, Storage } from "./storage.ts";

/** DEFAULT_PREFIX is where gatehouse keeps its keys in etcd unless told otherwise. */
export const DEFAULT_PREFIX = "gatehouse/";
/** SEALED_PREFIX marks a value encrypted at rest: "gh-enc:v1:" + base64(iv | ciphertext | tag), AES-256-GCM with the storage key as associated data. */
export const SEALED_PREFIX = "gh-enc:v1:";
const TIMEOUT_MS = 5_000;
const LOCK_TIMEOUT_MS = 120_000;
/** The lease of a lock lives 10 s without a keep-alive; etcd grants whole seconds, at least about 1.5 election timeouts. */
const LOCK_STALE_MS = 10_000;
const LOCK_POLL_MS = 200;

/**
 * EtcdStorageOptions: endpoints (tried in turn when one cannot be reached), prefix of every key, timeoutMs of each request, username and password when etcd
 * has auth enabled, tls for https endpoints (PEM ca, client cert and key), secretKey (32 bytes) to seal secret values, and lock timing (tests shorten it).
 */
export type EtcdStorageOptions = {
  readonly endpoints: readonly string[];
  readonly prefix?: string;
  readonly timeoutMs?: number;
  readonly username?: string;
  readonly password?: string;
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
  readonly secretKey?: Uint8Array;
  readonly lockRefreshMs?: number;
  readonly lockStaleMs?: number;
  readonly lockPollMs?: number;
};

/** EtcdError is an answer of etcd that is an error (code is the gRPC status code), as opposed to an endpoint that could not be reached. */
export class EtcdError extends Error {
  constructor(
    message: string,
    readonly code: number | undefined,
  ) {
    super(message);
    this.name = "EtcdError";
  }
}

/** EtcdUnreachableError: no endpoint answered (refused, TLS failure, timeout, or every member UNAVAILABLE); the message names each endpoint and why. */
export class EtcdUnreachableError extends Error {
  override name = "EtcdUnreachableError";
}

// The JSON gateway's answers, as far as they are read here (int64 values are strings, empty fields are left out).
type KeyValue = { key: string; value?: string; lease?: string };
type Answer = {
  kvs?: KeyValue[];
  succeeded?: boolean;
  responses?: { response_range?: { kvs?: KeyValue[] } }[];
  ID?: string;
  TTL?: string;
  token?: string;
  result?: { TTL?: string };
};

const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");
const unb64 = (s: string | undefined): string => Buffer.from(s ?? "", "base64").toString("utf8");

/** rangeEnd is where the keys that start with `from` end: `from` with its last byte below 0xff raised by one ("\0", the end of the keyspace, for none). */
function rangeEnd(from: Buffer): Buffer {
  for (let i = from.length - 1; i >= 0; i--) if (from[i]! < 0xff) return Buffer.concat([from.subarray(0, i), Buffer.from([from[i]! + 1])]);
  return Buffer.from([0]);
}

/**
 * EtcdStorage keeps each key at PREFIX + key in etcd: a store is one put (atomic in etcd); a load returns undefined only when etcd says the key does not
 * exist, and throws when etcd errs or cannot be reached, so that a store that is down never makes a certificate look missing.
 */
export class EtcdStorage implements Storage {
  readonly prefix: string;
  private readonly endpoints: string[];
  private readonly timeoutMs: number;
  private readonly staleMs: number;
  private readonly pollMs: number;
  /** current is the endpoint that answered last: requests start there. */
  private current = 0;
  private token: Promise<string> | undefined;

  constructor(private readonly opts: EtcdStorageOptions) {
    if (opts.endpoints.length === 0) throw new Error("etcd storage needs at least one endpoint");
    this.endpoints = opts.endpoints.map((e) => {
      if (!/^https?:\/\/[^/]+\/?$/.test(e)) throw new Error(`etcd endpoint ${JSON.stringify(e)} is not http(s)://host:port`);
      return e.replace(/\/$/, "");
    });
    const prefix = opts.prefix ?? DEFAULT_PREFIX;
    this.prefix = prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/`;
    this.timeoutMs = opts.timeoutMs ?? TIMEOUT_MS;
    this.staleMs = opts.lockStaleMs ?? LOCK_STALE_MS;
    this.pollMs = opts.lockPollMs ?? LOCK_POLL_MS;
    if (opts.secretKey && opts.secretKey.length !== 32) throw new Error(`the etcd encryption key has ${opts.secretKey.length} bytes; AES-256 needs 32`);
  }

  private path(key: string): string {
    if (key === "" || key.startsWith("/") || key.split("/").some((s) => s === "" || s === "." || s === "..")) {
      throw new Error(`storage key ${JSON.stringify(key)} is not a relative path`);
    }
    return this.prefix + key;
  }

  describe(key: string): string {
    return `etcd:${this.path(key)}`;
  }

  async load(key: string): Promise<string | undefined> {
    const kv = (await this.call("/v3/kv/range", { key: b64(this.path(key)) })).kvs?.[0];
    return kv === undefined ? undefined : this.unseal(key, unb64(kv.value));
  }

  /**
   * watch calls onChange with the keys that changed under `under`, as etcd reports them (its /v3/watch stream), until the returned stop is called. A stream
   * that breaks is opened again on the next endpoint after a pause (1 s, doubling to 10 s); changes made meanwhile are not reported one by one: once the
   * stream is open again, onChange gets an empty list (re-read everything). Callers keep a periodic re-read as well.
   */
  watch(under: string, onChange: (keys: string[]) => void): () => void {
    const ctrl = new AbortController();
    const from = Buffer.from(this.prefix + under, "utf8");
    const end = rangeEnd(from);
    const body = JSON.stringify({ create_request: { key: from.toString("base64"), range_end: end.toString("base64") } });
    const run = async () => {
      let pause = 1000;
      let broken = false;
      for (let n = this.current; !ctrl.signal.aborted; n++) {
        const endpoint = this.endpoints[n % this.endpoints.length]!;
        try {
          const token = await this.authToken();
          const { tls } = this.opts;
          const res = await fetch(`${endpoint}/v3/watch`, {
            method: "POST",
            headers: { "content-type": "application/json", ...(token !== undefined ? { authorization: token } : {}) },
            body,
            signal: ctrl.signal,
            ...(tls ? { tls: { ca: tls.ca, cert: tls.cert, key: tls.key } } : {}),
          });
          let buf = "";
          for await (const chunk of res.body ?? []) {
            buf += Buffer.from(chunk).toString("utf8");
            let nl: number;
            while ((nl = buf.indexOf("\n")) >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              const result = (JSON.parse(line) as { result?: { created?: boolean; events?: { kv?: KeyValue }[] } }).result;
              const events = result?.events ?? [];
              if (events.length > 0) onChange(events.map((e) => unb64(e.kv?.key).slice(this.prefix.length)));
              else if (result?.created && broken) onChange([]);
              pause = 1000;
            }
          }
        } catch (e) {
          if (ctrl.signal.aborted) return;
          log.debug("etcd watch broke; opening it again", { endpoint, error: String((e as Error).message ?? e) });
        }
        broken = true;
        await Bun.sleep(pause);
        pause = Math.min(pause * 2, 10_000);
      }
    };
    void run();
    return () => ctrl.abort();
  }

  async delete(key: string): Promise<void> {
    await this.call("/v3/kv/deleterange", { key: b64(this.path(key)) });
  }

  async list(under = ""): Promise<string[]> {
    const from = Buffer.from(this.prefix + under, "utf8");
    const end = rangeEnd(from);
    const kvs = (await this.call("/v3/kv/range", { key: from.toString("base64"), range_end: end.toString("base64"), keys_only: true })).kvs ?? [];
    return kvs
      .map((kv) => unb64(kv.key).slice(this.prefix.length))
      .filter((k) => !k.startsWith("locks/"))
      .sort();
  }

  async store(key: string, value: string, opts: { secret?: boolean } = {}): Promise<void> {
    const sealed = opts.secret && this.opts.secretKey ? this.seal(key, value, this.opts.secretKey) : value;
    await this.call("/v3/kv/put", { key: b64(this.path(key)), value: b64(sealed) });
  }

  /**
   * lock creates locks/NAME only while it does not exist (a txn on create_revision 0), tied to a lease that its holder keeps alive: a holder that dies stops
   * the keep-alives and etcd deletes the key when the lease expires (TTL = staleMs in whole seconds, at least 1). Waiters poll until the key is gone.
   */
  async lock(name: string, opts: LockOptions = {}): Promise<Release> {
    const deadline = Date.now() + (opts.timeoutMs ?? LOCK_TIMEOUT_MS);
    const ttl = Math.max(1, Math.ceil((opts.staleMs ?? this.staleMs) / 1000));
    const refreshMs = this.opts.lockRefreshMs ?? (ttl * 1000) / 3;
    const key = b64(this.path(`locks/${name}`));
    const owner = b64(JSON.stringify({ host: hostname(), pid: process.pid, time: new Date().toISOString() }));
    let lease: string | undefined;
    let granted = 0;
    for (;;) {
      // A waiting lease is renewed by granting another once half its life is gone, so that a lock just taken has at least half a TTL before its first keep-alive.
      if (lease === undefined || Date.now() - granted > (ttl * 1000) / 2) {
        if (lease !== undefined) this.revoke(lease).catch(() => {});
        granted = Date.now();
        lease = String((await this.call("/v3/lease/grant", { TTL: ttl })).ID);
      }
      const put = { request_put: { key, value: owner, lease } };
      let answer: Answer;
      try {
        answer = await this.call("/v3/kv/txn", {
          compare: [{ key, result: "EQUAL", target: "CREATE", create_revision: "0" }],
          success: [put],
          failure: [{ request_range: { key } }],
        });
      } catch (e) {
        if (!(e instanceof EtcdError && /lease not found/.test(e.message))) throw e;
        lease = undefined; // expired before its time (etcd was slow to answer): grant another
        continue;
      }
      // The holder may be this very lease: an earlier attempt that timed out on one endpoint went through.
      if (answer.succeeded || answer.responses?.[0]?.response_range?.kvs?.[0]?.lease === lease) return this.held(name, lease, refreshMs);
      const now = Date.now();
      if (now > deadline) {
        this.revoke(lease).catch(() => {});
        throw new Error(`lock ${name} is held (${this.describe(`locks/${name}`)}); another gatehouse may be obtaining this certificate`);
      }
      await Bun.sleep(Math.min(this.pollMs, deadline - now + 1));
    }
  }

  /** held keeps a lock's lease alive every refreshMs and returns its release, which revokes the lease: etcd then deletes the lock key if it is still ours. */
  private held(name: string, lease: string, refreshMs: number): Release {
    let released = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const fields = { lock: name, key: this.describe(`locks/${name}`) };
    const beat = async (): Promise<void> => {
      try {
        const ttl = Number((await this.call("/v3/lease/keepalive", { ID: lease })).result?.TTL ?? 0);
        if (ttl <= 0) {
          if (!released) log.warn("storage lock lease expired while held; another node may take the lock over", fields);
          return;
        }
      } catch (e) {
        if (!released) log.warn("cannot refresh a storage lock; it is tried again", { ...fields, error: String((e as Error).message ?? e) });
      }
      if (!released) {
        timer = setTimeout(beat, refreshMs);
        timer.unref?.();
      }
    };
    timer = setTimeout(beat, refreshMs);
    timer.unref?.();
    return async () => {
      if (released) return;
      released = true;
      clearTimeout(timer);
      // Revoking deletes only the keys attached to this lease: a lock that another holder took after ours expired is attached to its lease and stays.
      try {
        await this.revoke(lease);
      } catch (e) {
        log.warn("cannot release a storage lock; it expires with its lease", { ...fields, error: String((e as Error).message ?? e) });
      }
    };
  }

  private async revoke(lease: string): Promise<void> {
    try {
      await this.call("/v3/lease/revoke", { ID: lease });
    } catch (e) {
      if (!(e instanceof EtcdError && /lease not found/.test(e.message))) throw e;
    }
  }

  private seal(key: string, value: string, secretKey: Uint8Array): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", secretKey, iv).setAAD(Buffer.from(key));
    const body = Buffer.concat([cipher.update(value, "utf8"), cipher.final()]);
    return SEALED_PREFIX + Buffer.concat([iv, body, cipher.getAuthTag()]).toString("base64");
  }

  /** unseal decrypts a sealed value; a value without the mark is plain (written before encryption was enabled, or not secret). */
  private unseal(key: string, value: string): string {
    if (!value.startsWith(SEALED_PREFIX)) return value;
    if (!this.opts.secretKey) throw new Error(`${this.describe(key)} is encrypted at rest and no encryption key is configured (encryption_key_file)`);
    const raw = Buffer.from(value.slice(SEALED_PREFIX.length), "base64");
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.opts.secretKey, raw.subarray(0, 12)).setAAD(Buffer.from(key));
      decipher.setAuthTag(raw.subarray(raw.length - 16));
      return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString("utf8");
    } catch {
      throw new Error(`cannot decrypt ${this.describe(key)}: the encryption key is not the one it was sealed with, or the value is damaged`);
    }
  }

  /** authToken authenticates once for all concurrent requests (when a username is set); a failure is not remembered, so the next request tries again. */
  private authToken(): Promise<string> | undefined {
    const { username, password } = this.opts;
    if (username === undefined) return undefined;
    this.token ??= this.request("/v3/auth/authenticate", { name: username, password: password ?? "" }, undefined).then(
      (a) => String(a.token),
      (e) => {
        this.token = undefined;
        throw new EtcdError(`etcd authentication as ${JSON.stringify(username)} failed: ${(e as Error).message}`, (e as EtcdError).code);
      },
    );
    return this.token;
  }

  /** call sends one request with the auth token; a token etcd no longer knows (expired, or etcd restarted) is replaced once. */
  private async call(path: string, body: unknown): Promise<Answer> {
    const token = await this.authToken();
    try {
      return await this.request(path, body, token);
    } catch (e) {
      if (!(token !== undefined && e instanceof EtcdError && (e.code === 16 || /invalid auth token/.test(e.message)))) throw e;
      if (this.token !== undefined && (await this.token.catch(() => undefined)) === token) this.token = undefined;
      return this.request(path, body, await this.authToken());
    }
  }

  /** request POSTs to the endpoints in turn, starting with the one that answered last, until one answers; each try is bounded by timeoutMs. */
  private async request(path: string, body: unknown, token: string | undefined): Promise<Answer> {
    const failures: string[] = [];
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (token !== undefined) headers.authorization = token;
    const { tls } = this.opts;
    for (let i = 0; i < this.endpoints.length; i++) {
      const n = (this.current + i) % this.endpoints.length;
      const endpoint = this.endpoints[n] as string;
      let status: number;
      let text: string;
      try {
        const res = await fetch(endpoint + path, {
          method: "POST",
          headers,
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(this.timeoutMs),
          ...(tls ? { tls: { ca: tls.ca, cert: tls.cert, key: tls.key } } : {}),
        });
        status = res.status;
        text = await res.text();
      } catch (e) {
        const err = e as Error;
        failures.push(`${endpoint} (${err.name === "TimeoutError" ? `no answer within ${this.timeoutMs} ms` : err.message})`);
        continue;
      }
      // A streaming call (keepalive) answers one JSON object per line, {"result": …} or {"error": …}.
      let answer: Answer & { error?: unknown; message?: string; code?: number };
      try {
        answer = JSON.parse(text.split("\n", 1)[0] ?? "");
      } catch {
        throw new EtcdError(`etcd ${endpoint}${path} answered ${status} with no JSON: ${text.slice(0, 200)}`, undefined);
      }
      const error =
        typeof answer.error === "object" && answer.error !== null ? (answer.error as { message?: string; grpc_code?: number; code?: number }) : undefined;
      if (status !== 200 || answer.error !== undefined) {
        const message = error?.message ?? answer.message ?? String(answer.error ?? `status ${status}`);
        const code = error?.grpc_code ?? error?.code ?? answer.code;
        // UNAVAILABLE (no leader, leader changed, request timed out): this member cannot serve now, another may.
        if (code === 14) {
          failures.push(`${endpoint} (${message})`);
          continue;
        }
        this.current = n;
        throw new EtcdError(`etcd ${endpoint}${path}: ${message}`, code);
      }
      this.current = n;
      return answer;
    }
    throw new EtcdUnreachableError(`etcd unreachable for ${path}: ${failures.join(", ")}`);
  }
}

/** readEncryptionKey reads an encryption_key_file: 32 raw bytes, or 64 hex digits, or the base64 of 32 bytes (with or without a final newline). */
export function readEncryptionKey(path: string): Uint8Array {
  const key = parseSecretKey(readFileSync(path));
  if (key === undefined) throw new Error(`${path} is not an encryption key: ${SECRET_KEY_EXPECTED}`);
  return key;
}
