/** A target is one endpoint as one generation reaches it: the shared endpoint state and that generation's settings for it. */
import type { UpstreamTls } from "../config/types.ts";
import type { Endpoint } from "./endpoint.ts";

/**
 * Target pairs an Endpoint (state that outlives reloads: in-flight, health, ejection) with the settings of the generation that built it (TLS, Host, weight); it
 * is never written after it is built, so a rejected or later reload cannot change what a running generation sends.
 */
export type Target = {
  readonly endpoint: Endpoint;
  /** tls is the TLS client setup for an https:// endpoint: the route's, with a discovered name as server name. */
  readonly tls: UpstreamTls | undefined;
  /** hostHeader is the Host sent when preserve_host = false (a discovered name); undefined: the URL's authority. */
  readonly hostHeader: string | undefined;
  /** weight is the endpoint's share in weighted balancing (SRV weights); 1 for every static endpoint. */
  readonly weight: number;
};

/** targetOf makes a Target with the given settings (weight 1, no Host override by default). */
export function targetOf(endpoint: Endpoint, tls?: UpstreamTls, hostHeader?: string, weight = 1): Target {
  return { endpoint, tls, hostHeader, weight };
}
