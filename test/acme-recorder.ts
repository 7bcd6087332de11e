/** A recording proxy in front of Pebble's ACME API: gateways are given its directory URL, and a test counts the orders that reached the CA. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Testbed } from "./testbed.ts";

/** Recorded is one request that went through to the CA. */
export type Recorded = { readonly method: string; readonly path: string; readonly status: number };

/** AcmeRecorder is a running proxy: directory is the URL to give gateways (the CA file stays the testbed's), seen what went through. */
export type AcmeRecorder = {
  readonly directory: string;
  readonly seen: readonly Recorded[];
  /** orders counts the new orders the CA accepted (POST /order-plz answered 201). */
  orders(): number;
  /** hold keeps every request at the door until open() (nodes starting together reach the CA only once all of them listen). */
  hold(): void;
  open(): void;
  stop(): void;
};

/**
 * startAcmeRecorder serves HTTPS on a free loopback port with Pebble's own API certificate (issued for 127.0.0.1) and forwards every request to Pebble.
 * Pebble checks the URL each JWS is signed for against the Host it was sent to, so the Host goes through unchanged, and Pebble's own address is replaced
 * by the proxy's in every answer (bodies, Location and Link), so that the client's next requests come back through the proxy.
 */
export function startAcmeRecorder(tb: Testbed): AcmeRecorder {
  const pebble = new URL(tb.env.ACME_DIRECTORY_URL);
  const ca = readFileSync(tb.env.ACME_API_CA_CERT, "utf8");
  const seen: Recorded[] = [];
  let gate: Promise<void> = Promise.resolve();
  let opener: () => void = () => undefined;
  const certs = join(tb.env.ACME_TESTBED_DIR, "certs");
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: readFileSync(join(certs, "pebble-https.pem"), "utf8"), key: readFileSync(join(certs, "pebble-https.key"), "utf8") },
    async fetch(req) {
      await gate;
      const url = new URL(req.url);
      const headers = new Headers(req.headers);
      headers.delete("accept-encoding");
      const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer();
      const res = await fetch(pebble.origin + url.pathname + url.search, { method: req.method, headers, body, tls: { ca }, redirect: "manual" });
      seen.push({ method: req.method, path: url.pathname, status: res.status });
      const mine = url.origin;
      const out = new Headers();
      for (const [k, v] of res.headers) if (k !== "content-length" && k !== "content-encoding") out.append(k, v.replaceAll(pebble.origin, mine));
      const text = req.method === "HEAD" ? null : (await res.text()).replaceAll(pebble.origin, mine);
      return new Response(text, { status: res.status, headers: out });
    },
  });
  return {
    directory: `https://127.0.0.1:${server.port}${pebble.pathname}`,
    seen,
    orders: () => seen.filter((r) => r.method === "POST" && r.path.startsWith("/order-plz") && r.status === 201).length,
    hold: () => {
      gate = new Promise<void>((r) => {
        opener = r;
      });
    },
    open: () => opener(),
    stop: () => server.stop(true),
  };
}
