/** Content types by file extension. */

const TYPES: Record<string, string> = {
  html: "text/html",
  htm: "text/html",
  css: "text/css",
  js: "text/javascript",
  mjs: "text/javascript",
  json: "application/json",
  map: "application/json",
  webmanifest: "application/manifest+json",
  txt: "text/plain",
  md: "text/markdown",
  csv: "text/csv",
  xml: "application/xml",
  svg: "image/svg+xml",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  avif: "image/avif",
  ico: "image/x-icon",
  pdf: "application/pdf",
  wasm: "application/wasm",
  woff: "font/woff",
  woff2: "font/woff2",
  ttf: "font/ttf",
  otf: "font/otf",
  mp4: "video/mp4",
  webm: "video/webm",
  mp3: "audio/mpeg",
  ogg: "audio/ogg",
  wav: "audio/wav",
  zip: "application/zip",
  gz: "application/gzip",
  tar: "application/x-tar",
};

const TEXTUAL = /^(text\/|application\/(json|xml|manifest\+json)|image\/svg\+xml)/;

/** contentType returns the media type for a file name (with `; charset=utf-8` for text); unknown extensions get application/octet-stream. */
export function contentType(name: string): string {
  const dot = name.lastIndexOf(".");
  const t = dot < 0 ? undefined : TYPES[name.slice(dot + 1).toLowerCase()];
  if (t === undefined) return "application/octet-stream";
  return TEXTUAL.test(t) ? `${t}; charset=utf-8` : t;
}
