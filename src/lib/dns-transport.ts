/** DNS message transport (RFC 1035 §4.2): UDP with one retransmission, TCP with a 2-byte length prefix, and the fallback to TCP when a UDP answer is truncated (RFC 7766 §5). Callers build and read the messages. */
import { decodeHeader } from "./dns-wire.ts";
import { isIPv6 } from "./ip.ts";
import { nodeDgram, nodeNet } from "./lazy-node.ts";

/** DnsTarget is a server to talk to: an IP address (or host name) and port. */
export type DnsTarget = { readonly host: string; readonly port: number };

/** DnsProto is the transport of one exchange. */
export type DnsProto = "udp" | "tcp";

/** Matcher turns a received message into the answer to our question, or undefined for anything else, which is ignored (RFC 5452 §9.1). */
export type Matcher<T> = (msg: Uint8Array) => T | undefined;

/** Answered is the message a matcher accepted, raw and as the matcher read it. */
export type Answered<T> = { readonly wire: Uint8Array; readonly answer: T };

/** UDP_MAX is the largest message sent or expected over UDP without EDNS (RFC 1035 §4.2.1). */
export const UDP_MAX = 512;

/**
 * DnsTransportError is an exchange that got no answer. kind is "TIMEOUT" (nothing by the deadline) or "NETWORK"; stage says where:
 * "timeout", "setup" (the socket could not even be made or connected), "send" (a UDP send failed), "socket" (the socket reported an
 * error, e.g. ICMP port unreachable), "closed" (the TCP peer closed without answering). sysError is the system's error, tries the UDP sends.
 */
export class DnsTransportError extends Error {
  override readonly name = "DnsTransportError";
  constructor(
    readonly kind: "TIMEOUT" | "NETWORK",
    readonly proto: DnsProto,
    readonly stage: "timeout" | "setup" | "send" | "socket" | "closed",
    readonly tries: number,
    readonly sysError?: NodeJS.ErrnoException,
  ) {
    super(sysError ? `${proto} ${stage}: ${sysError.message.toLowerCase()}` : `${proto} ${stage}`);
  }
}

/** dnsAddress names a server in messages: host:port, [v6]:port. */
export function dnsAddress(s: DnsTarget): string {
  return isIPv6(s.host) ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`;
}

/**
 * transport sends wire over one protocol and resolves with the first message match accepts, by deadline (epoch ms); UDP sends once more at half the time left.
 * Rejects with DnsTransportError only.
 */
export function transport<T>(proto: DnsProto, server: DnsTarget, wire: Uint8Array, deadline: number, match: Matcher<T>): Promise<Answered<T>> {
  return new Promise((resolve, reject) => {
    const timers: ReturnType<typeof setTimeout>[] = [];
    let close = (): void => {};
    let tries = 0;
    let done = false;
    const finish = (err: DnsTransportError | undefined, wireIn?: Uint8Array, answer?: T): void => {
      if (done) return;
      done = true;
      for (const t of timers) clearTimeout(t);
      try {
        close();
      } catch {
        /* already closed */
      }
      if (err) reject(err);
      else resolve({ wire: wireIn!, answer: answer as T });
    };
    const fail = (stage: DnsTransportError["stage"], sysError?: unknown): void =>
      finish(new DnsTransportError(stage === "timeout" ? "TIMEOUT" : "NETWORK", proto, stage, tries, sysError as NodeJS.ErrnoException | undefined));
    const onMessage = (msg: Uint8Array): void => {
      const a = match(msg);
      if (a !== undefined) finish(undefined, msg, a);
    };
    timers.push(setTimeout(() => fail("timeout"), Math.max(0, deadline - Date.now())));
    try {
      if (proto === "udp") {
        const sock = nodeDgram().createSocket(isIPv6(server.host) ? "udp6" : "udp4");
        close = () => sock.close();
        const send = (): void => {
          tries++;
          try {
            sock.send(wire, (err) => {
              if (err) fail("send", err);
            });
          } catch (err) {
            fail("send", err);
          }
        };
        sock.on("error", (err) => fail("socket", err));
        sock.on("message", (msg) => onMessage(new Uint8Array(msg)));
        // connect() makes the kernel drop packets from other sources and report ICMP port unreachable as ECONNREFUSED.
        sock.connect(server.port, server.host, () => {
          send();
          timers.push(
            setTimeout(
              () => {
                if (!done) send();
              },
              Math.max(0, deadline - Date.now()) / 2,
            ),
          );
        });
      } else {
        const sock = nodeNet().connect({ host: server.host, port: server.port });
        close = () => sock.destroy();
        let buf = Buffer.alloc(0);
        sock.on("connect", () => {
          const frame = Buffer.alloc(2 + wire.length);
          frame.writeUInt16BE(wire.length, 0);
          frame.set(wire, 2);
          sock.write(frame);
        });
        sock.on("data", (chunk: Buffer) => {
          buf = Buffer.concat([buf, chunk]);
          while (!done && buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
            const len = buf.readUInt16BE(0);
            onMessage(new Uint8Array(buf.subarray(2, 2 + len)));
            buf = buf.subarray(2 + len);
          }
        });
        sock.on("error", (err) => fail("socket", err));
        sock.on("close", () => fail("closed"));
      }
    } catch (err) {
      fail("setup", err);
    }
  });
}

/**
 * exchange uses UDP unless wire is too large for it, and asks again over TCP when the UDP answer has TC set (RFC 1035 §4.2.1, RFC 7766 §5); both share the
 * deadline.
 */
export async function exchange<T>(server: DnsTarget, wire: Uint8Array, deadline: number, match: Matcher<T>): Promise<Answered<T>> {
  if (wire.length > UDP_MAX) return transport("tcp", server, wire, deadline, match);
  const res = await transport("udp", server, wire, deadline, match);
  return decodeHeader(res.wire)?.tc ? transport("tcp", server, wire, deadline, match) : res;
}
