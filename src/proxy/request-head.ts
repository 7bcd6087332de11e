/** The request head sent to a plain-HTTP upstream (RFC 9112 §3): written in one pass over the client's fields, with the same rules as prepareHeaders (hop-by-hop fields dropped, Via, Forwarded and X-Forwarded-*, X-Request-ID) but no copy or mutation of them. */
import { clientOf, type RequestContext } from "./context.ts";
import { forwardedElement } from "./headers.ts";
import { HOP_BY_HOP } from "../lib/http.ts";

// Fields written by this function or never forwarded: hop-by-hop, Expect (100-continue is between the client and us), and those set below.
const SKIP = new Set([...HOP_BY_HOP, "host", "expect", "x-request-id", "via", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"]);

/** joined adds a repeated field's value to those before it, as one list (RFC 9110 §5.3). */
function joined(before: string | undefined, value: string): string {
  return before === undefined ? value : `${before}, ${value}`;
}

/**
 * requestHead is the request line and fields for the upstream, ending with the empty line. `host` is the Host to send; `framing` adds Transfer-Encoding
 * for a body of unknown length ("chunked"), or Content-Length for a chunked body read whole (its length); undefined keeps the client's own Content-Length.
 */
export function requestHead(ctx: RequestContext, method: string, target: string, host: string, framing?: "chunked" | number): string {
  const h = ctx.headers;
  const conn = h.get("connection");
  const named =
    conn === null
      ? undefined
      : conn
          .toLowerCase()
          .split(",")
          .map((t) => t.trim());
  let head = `${method} ${target} HTTP/1.1\r\nhost: ${host}\r\n`;
  let via: string | undefined;
  let xff: string | undefined;
  let xfp: string | undefined;
  let xfh: string | undefined;
  let fwd: string | undefined;
  for (let i = 0; i < h.size; i++) {
    const name = h.nameAt(i);
    const value = h.valueAt(i);
    if (SKIP.has(name)) {
      switch (name) {
        case "via":
          via = joined(via, value);
          break;
        case "x-forwarded-for":
          xff = joined(xff, value);
          break;
        case "x-forwarded-proto":
          xfp = joined(xfp, value);
          break;
        case "x-forwarded-host":
          xfh = joined(xfh, value);
          break;
        case "forwarded":
          fwd = joined(fwd, value);
          break;
      }
      continue;
    }
    if (named?.includes(name)) continue;
    head += `${name}: ${value}\r\n`;
  }
  const client = clientOf(ctx);
  const element = forwardedElement({ client, proto: ctx.scheme, host: ctx.host });
  const hop = ctx.hop;
  if (hop.trusted(client)) {
    head += `x-forwarded-for: ${xff ? `${xff}, ${client}` : client}\r\nx-forwarded-proto: ${xfp ?? ctx.scheme}\r\nx-forwarded-host: ${xfh ?? ctx.host}\r\nforwarded: ${fwd ? `${fwd}, ${element}` : element}\r\n`;
  } else {
    head += `x-forwarded-for: ${client}\r\nx-forwarded-proto: ${ctx.scheme}\r\nx-forwarded-host: ${ctx.host}\r\nforwarded: ${element}\r\n`;
  }
  head += `via: ${via === undefined ? hop.via : `${via}, ${hop.via}`}\r\nx-request-id: ${ctx.id}\r\n`;
  if (framing === "chunked") head += "transfer-encoding: chunked\r\n";
  else if (framing !== undefined) head += `content-length: ${framing}\r\n`;
  return `${head}\r\n`;
}
