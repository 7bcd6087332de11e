/** The admin listener's app (Hono): liveness, readiness and metrics; never mounted on a public listener. */
import { Hono } from "hono";
import { registry } from "./gateway-metrics.ts";

/** AdminState is what the admin app asks the running gateway. */
export interface AdminState {
  /** ready is true once listeners are bound and a config is loaded, false before and while draining. */
  ready(): boolean;
  /** certificates lists every TLS site's certificate state (GET /certificates). */
  certificates(): unknown[];
  /** renewCertificate starts a renewal now; false when no such managed certificate (POST /certificates/NAME/renew). */
  renewCertificate(name: string): boolean;
}

/** adminApp builds the admin routes: GET /healthz, /readyz, /metrics, /certificates; POST /certificates/NAME/renew. */
export function adminApp(state: AdminState): Hono {
  const app = new Hono();
  app.get("/healthz", (c) => c.text("ok\n"));
  app.get("/readyz", (c) => (state.ready() ? c.text("ready\n") : c.text("not ready\n", 503)));
  app.get("/metrics", (c) => c.body(registry.render(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }));
  app.get("/certificates", (c) => c.json(state.certificates()));
  app.post("/certificates/:name/renew", (c) => {
    const name = c.req.param("name");
    return state.renewCertificate(name) ? c.json({ renewing: name }, 202) : c.json({ error: `no ACME or internal certificate named ${JSON.stringify(name)}` }, 404);
  });
  app.notFound((c) => c.text("not found: the admin listener serves /healthz, /readyz, /metrics and /certificates\n", 404));
  return app;
}
