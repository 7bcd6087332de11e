/** The messages between a supervisor and its worker processes (Bun IPC, JSON): one init, then requests that each get a Reply with the same id. */
import type { PurgeFilter } from "../observability/admin.ts";
import type { ConfigFiles } from "../config/load.ts";
import type { AlpnAnswer } from "../tls/acme/tls-alpn01.ts";

/** WORKER_ENV names the environment variable that makes `gatehouse run` a worker: its value is the worker's index (1…N). */
export const WORKER_ENV = "GATEHOUSE_WORKER";

/** Init starts the worker on the supervisor's config snapshot, with the HTTP-01 tokens and the TLS-ALPN-01 certificates being proven now. */
export type Init = { readonly t: "init"; readonly files: ConfigFiles; readonly tokens: readonly [string, string][]; readonly alpn: readonly AlpnAnswer[] };

/** Request is a question or an order from the supervisor; the worker answers each with a Reply carrying its id. */
export type Request =
  /** reload applies this snapshot (the supervisor validated it); the reply says ok or the problems. */
  | { readonly t: "reload"; readonly id: number; readonly files: ConfigFiles }
  /** certs: the supervisor stored new certificates; serve them (reply once the HTTPS listener took them). */
  | { readonly t: "certs"; readonly id: number }
  /** challenge publishes an HTTP-01 key authorization, or withdraws the token when keyAuthorization is null. */
  | { readonly t: "challenge"; readonly id: number; readonly token: string; readonly keyAuthorization: string | null }
  /** alpn-challenge serves a TLS-ALPN-01 certificate (PEM) for name, or withdraws the one proving keyAuthorization when pem is null. */
  | {
      readonly t: "alpn-challenge";
      readonly id: number;
      readonly name: string;
      readonly keyAuthorization: string;
      readonly pem: { readonly cert: string; readonly key: string } | null;
    }
  /** metrics: the reply's value is this worker's exposition text. */
  | { readonly t: "metrics"; readonly id: number }
  /** purge: the reply's value is how many responses this worker's cache dropped. */
  | { readonly t: "purge"; readonly id: number; readonly filter: PurgeFilter }
  /** upstreams: the reply's value is this worker's endpoint list (GET /upstreams). */
  | { readonly t: "upstreams"; readonly id: number };

/** Bye acknowledges a stopping worker's Final: the supervisor has its last numbers, the worker may exit. */
export type Bye = { readonly t: "bye" };

/** ToWorker is anything the supervisor sends. */
export type ToWorker = Init | Request | Bye;

/** Reply answers the request with the same id: ok with a value, or the problems. */
export type Reply = { readonly t: "reply"; readonly id: number; readonly ok: boolean; readonly problems?: readonly string[]; readonly value?: unknown };

/** Final is a stopping worker's last metrics exposition, sent when it has drained, just before it exits (the supervisor answers Bye). */
export type Final = { readonly t: "final"; readonly metrics: string };

/** FromWorker is anything a worker sends: once ready (listeners bound) or failed (it exits), then replies, and Final when it stops. */
export type FromWorker = { readonly t: "ready" } | { readonly t: "failed"; readonly problems: readonly string[] } | Reply | Final;

/** DistributiveOmit drops a key from each member of a union (Omit would merge them). */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
