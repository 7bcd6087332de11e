/** Responses made from bytes in memory, with their bytes known to whoever writes them: a front end that frames its own answers sends them at once, without reading the Response (a promise per answer). */

const known = new WeakMap<Response, Uint8Array>();

/**
 * bytesResponse makes a Response of body and remembers body for knownBody; the bytes must not change afterwards. With `lean` the Response itself carries no
 * body (Bun copies a body into every Response: 64 KiB cost a cache hit a quarter of its time): only for a front end that writes knownBody itself, and a
 * Response nobody reads the body of.
 */
export function bytesResponse(body: Uint8Array, init: ResponseInit, lean = false): Response {
  const res = new Response(lean ? null : body, init);
  known.set(res, body);
  return res;
}

/** knownBody is the body a Response was made from by bytesResponse, or undefined (made otherwise, or replaced by a filter). */
export function knownBody(res: Response): Uint8Array | undefined {
  return known.get(res);
}
