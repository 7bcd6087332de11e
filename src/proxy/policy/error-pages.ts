/** A site's error pages ([error_pages]) in place of the gateway's plain-text errors, and its maintenance switch (503 with the page and Retry-After). */
import type { ErrorPage, SitePages } from "../../config/policy-types.ts";
import { Reply } from "../../lib/reply.ts";
import type { RequestFilter, ResponseFilter } from "../context.ts";
import { errorResponse, reasonOf } from "../errors.ts";

/** Page is a page ready to send: constant bytes, or text parts with {status}, {reason} and {request_id} at the odd indexes. */
type Page = Uint8Array | readonly string[];

function prepare(status: number, page: ErrorPage): Page {
  const parts = page.text.replaceAll("{status}", String(status)).replaceAll("{reason}", reasonOf(status)).split("{request_id}");
  return parts.length === 1 ? Buffer.from(parts[0]!) : parts;
}

/**
 * errorPagesFilter puts the site's page for the status into an answer the gateway made itself (Reply.own: its 404, 429, 502, 503, 504, refusals), keeping
 * the answer's fields (Retry-After, WWW-Authenticate); an upstream's own error pages pass untouched.
 */
export function errorPagesFilter(pages: SitePages): ResponseFilter | undefined {
  if (pages.pages.size === 0) return undefined;
  const ready = new Map<number, Page>();
  for (const [status, page] of pages.pages) ready.set(status, prepare(status, page));
  return (ctx, res) => {
    if (!(res instanceof Reply) || !res.own) return res;
    const page = ready.get(res.status);
    if (page === undefined) return res;
    const body = page instanceof Uint8Array ? page : Buffer.from(page.join(ctx.id));
    res.body = body;
    res.headers.set("content-type", "text/html; charset=utf-8");
    res.headers.set("content-length", String(body.byteLength));
    return res;
  };
}

/** maintenanceFilter answers every request 503 with Retry-After, before any other filter and without touching an upstream (the page comes from errorPagesFilter). */
export function maintenanceFilter(pages: SitePages): RequestFilter | undefined {
  if (!pages.maintenance) return undefined;
  const retry = String(pages.retryAfter);
  return (ctx) => {
    ctx.error = "maintenance";
    const res = errorResponse(503, "the site is down for maintenance", ctx.id, { "retry-after": retry });
    return res;
  };
}
