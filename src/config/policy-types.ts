/** The traffic policy of a route (rate limits, IP rules, basic and forward auth, header rules) and of a site (error pages, maintenance): plain data, validated. */
import type { Cidr } from "../lib/cidr.ts";

/** RateKey is what a token bucket is kept per: the trusted client address, a request field, a cookie, or the route as a whole. */
export type RateKey =
  | { readonly kind: "client" }
  | { readonly kind: "header"; readonly name: string }
  | { readonly kind: "cookie"; readonly name: string }
  | { readonly kind: "route" };

/** RateLimit is one [[rate_limit]] entry: a token bucket of `burst` tokens refilled at `perSecond`, one per key. */
export type RateLimit = {
  /** text is the key as written ("client", "header:X-Api-Key"), for the RateLimit-Policy field and logs. */
  readonly text: string;
  readonly key: RateKey;
  /** perSecond is the refill rate in tokens per second ("10/m" is 1/6). */
  readonly perSecond: number;
  /** rate is the rate as written ("10/s"). */
  readonly rate: string;
  /** window is the unit of the rate in seconds (1, 60, 3600): RateLimit-Policy's w. */
  readonly window: number;
  readonly burst: number;
  /** maxKeys bounds the buckets kept (least recently used dropped first). */
  readonly maxKeys: number;
};

/** AccessRule is [access]: deny wins; with an allow list, every other client gets 403. */
export type AccessRule = { readonly allow: readonly Cidr[]; readonly deny: readonly Cidr[] };

/** BasicAuth is [basic_auth]: user → password hash (argon2id or bcrypt), the realm, and whether Authorization goes on upstream. */
export type BasicAuth = {
  readonly realm: string;
  readonly users: ReadonlyMap<string, string>;
  /** forwardAuthorization: the client's Authorization field goes on to the upstream (off: it is removed once checked). */
  readonly forwardAuthorization: boolean;
};

/** ForwardAuth is [forward_auth]: the auth service asked before forwarding, what to copy from its 2xx answer, how long to wait. */
export type ForwardAuth = {
  readonly url: string;
  /** copyHeaders are lowercase field names copied from a 2xx answer onto the upstream request (the client's own removed first). */
  readonly copyHeaders: readonly string[];
  readonly timeout: number;
};

/** FieldRule sets or adds one field; the value may hold placeholders ({client}, {request_id}, {host}, {scheme}, {user}). */
export type FieldRule = { readonly name: string; readonly value: string };

/** HeaderRules is [headers]: edits of the request fields (towards the upstream) and of the response fields (towards the client). */
export type HeaderRules = {
  readonly requestSet: readonly FieldRule[];
  readonly requestAdd: readonly FieldRule[];
  readonly requestRemove: readonly string[];
  readonly responseSet: readonly FieldRule[];
  readonly responseAdd: readonly FieldRule[];
  readonly responseRemove: readonly string[];
};

/** RoutePolicy is what a route (a site, or a [[paths]] entry that inherits the site's unless it sets its own) applies to each request. */
export type RoutePolicy = {
  readonly rateLimits: readonly RateLimit[];
  readonly access: AccessRule | undefined;
  readonly basicAuth: BasicAuth | undefined;
  readonly forwardAuth: ForwardAuth | undefined;
  readonly headers: HeaderRules | undefined;
};

/** NO_POLICY is the policy of a route that sets none. */
export const NO_POLICY: RoutePolicy = { rateLimits: [], access: undefined, basicAuth: undefined, forwardAuth: undefined, headers: undefined };

/** ErrorPage is the page for one status: the file's text, which may hold {status}, {reason} and {request_id}. */
export type ErrorPage = { readonly file: string; readonly text: string };

/** SitePages is a site's [error_pages] (status → page) and its maintenance switch. */
export type SitePages = {
  readonly pages: ReadonlyMap<number, ErrorPage>;
  /** maintenance: every request gets 503 with the 503 page and Retry-After, and no upstream is touched. */
  readonly maintenance: boolean;
  /** retryAfter is the Retry-After of maintenance answers, in seconds. */
  readonly retryAfter: number;
};
