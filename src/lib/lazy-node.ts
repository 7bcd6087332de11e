/** Node modules loaded on first use: node:net, node:dgram, node:zlib and node:crypto bring in Node's stream machinery, which costs tens of milliseconds of start-up when imported at the top; most configs never need them. `require` caches, so each later call is a lookup. */
export const nodeNet = (): typeof import("node:net") => require("node:net");
export const nodeDgram = (): typeof import("node:dgram") => require("node:dgram");
export const nodeZlib = (): typeof import("node:zlib") => require("node:zlib");
export const nodeCrypto = (): typeof import("node:crypto") => require("node:crypto");
