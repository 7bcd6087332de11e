/** The admin listener's app (Hono): liveness, readiness, metrics and the status page; never mounted on a public listener. */
import { Hono } from "hono";
import { registry } from "./gateway-metrics.ts";
import { renderStatus, type StatusData } from "./status-page.ts";

/** PurgeFilter is what POST /cache/purge asks to remove: all, one URL (both schemes), a host, a path prefix on a host, or a tag (soft: mark stale). */
export type PurgeFilter =
  | { readonly all: true }
  | { readonly url: string }
  | { readonly host: string; readonly prefix?: string }
  | { readonly tag: string; readonly soft?: boolean };

/** AdminState is what the admin app asks the running gateway. */
export interface AdminState {
  /** ready is true once listeners are bound and a config is loaded, false before and while draining. */
  ready(): boolean;
  /** certificates lists every TLS site's certificate state (GET /certificates). */
  certificates(): unknown[];
  /** renewCertificate starts a renewal now; false when no such managed certificate (POST /certificates/NAME/renew). */
  renewCertificate(name: string): boolean;
  /** purge removes stored responses (POST /cache/purge) and returns how many. */
  purge(filter: PurgeFilter): number | Promise<number>;
  /** sharePurge passes a purge made here on to the other nodes (shared storage), saying whether they were told; undefined without shared storage. */
  sharePurge?(filter: PurgeFilter): Promise<{ shared: boolean; error?: string } | undefined>;
  /** upstreams lists every endpoint with its state (GET /upstreams). */
  upstreams(): unknown[] | Promise<unknown[]>;
  /** metrics renders the exposition (GET /metrics); without it, this process's registry. */
  metrics?(): Promise<string>;
  /** workers lists the worker processes (GET /workers), when a supervisor runs them. */
  workers?(): unknown[];
  /** allowed says whether a client address may use the admin listener ([admin] allow and deny of the live config). */
  allowed?(ip: string): boolean;
  /** status gathers what the status page shows (GET /status); without it, no page. */
  status?(): StatusData | Promise<StatusData>;
}

/** STATUS_HEADERS keep the page self-contained (inline styles, nothing loaded, no scripts, not framed) and uncached. */
const STATUS_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "x-content-type-options": "nosniff",
};

/** AdminServer is what Bun.serve hands the admin app beside the request: the client's address. */
type AdminServer = { requestIP(req: Request): { address: string } | null };

/**
 * adminApp builds the admin routes: GET /healthz, /readyz, /metrics, /certificates, /upstreams, /status (and /workers under a supervisor); POST
 * /certificates/NAME/renew, /cache/purge.
 */
export function adminApp(state: AdminState): Hono<{ Bindings: AdminServer }> {
  const app = new Hono<{ Bindings: AdminServer }>();
  // [admin] allow/deny: a client outside them gets 403 on every path, before any route.
  app.use(async (c, next) => {
    const ip = c.env?.requestIP(c.req.raw)?.address;
    if (state.allowed && (ip === undefined || !state.allowed(ip)))
      return c.text("forbidden: this address may not use the admin listener ([admin] allow)\n", 403);
    await next();
  });
  app.get("/healthz", (c) => c.text("ok\n"));
  app.get("/readyz", (c) => (state.ready() ? c.text("ready\n") : c.text("not ready\n", 503)));
  app.get("/metrics", async (c) =>
    c.body(state.metrics ? await state.metrics() : registry.render(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }),
  );
  app.get("/certificates", (c) => c.json(state.certificates()));
  app.post("/certificates/:name/renew", (c) => {
    const name = c.req.param("name");
    return state.renewCertificate(name)
      ? c.json({ renewing: name }, 202)
      : c.json({ error: `no ACME or internal certificate named ${JSON.stringify(name)}` }, 404);
  });
  app.get("/upstreams", async (c) => c.json(await state.upstreams()));
  if (state.workers) {
    const workers = state.workers.bind(state);
    app.get("/workers", (c) => c.json(workers()));
  }
  if (state.status) {
    const status = state.status.bind(state);
    app.get("/status", async (c) => c.body(renderStatus(await status()), 200, STATUS_HEADERS));
  }
  app.post("/cache/purge", async (c) => {
    const q = c.req.query();
    let filter: PurgeFilter;
    if (q.all !== undefined) filter = { all: true };
    else if (q.url) filter = { url: q.url };
    else if (q.host) filter = { host: q.host, prefix: q.prefix };
    else if (q.tag) filter = q.soft !== undefined ? { tag: q.tag, soft: true } : { tag: q.tag };
    else return c.json({ error: "say what to purge: ?url=https://host/path, ?host=HOST[&prefix=/path/], ?tag=TAG[&soft], or ?all" }, 400);
    if ("prefix" in filter && filter.prefix !== undefined && !filter.prefix.startsWith("/")) return c.json({ error: "prefix must start with /" }, 400);
    const purged = await state.purge(filter);
    return c.json({ purged, ...(await state.sharePurge?.(filter)) });
  });
  app.notFound((c) =>
    c.text(
      `not found: the admin listener serves /healthz, /readyz, /metrics, /certificates, /upstreams${state.status ? ", /status" : ""}${state.workers ? ", /workers" : ""} and /cache/purge\n`,
      404,
    ),
  );
  return app;
}
