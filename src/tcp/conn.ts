/** One connection of a [[tcp]] route: PROXY preamble (trusted sources), ClientHello (passthrough) or TLS handshake (terminate), the upstream connect with failover, then a pipe. */
import type { Socket, SocketHandler } from "bun";
import { MAX_HELLO, NOT_TLS, readHello } from "../front/client-hello.ts";
import { isPreamble, type ProxyAddress, readPreamble, UNTRUSTED_PREAMBLE } from "../front/proxy-protocol.ts";
import { unwatch, type Watched, watch } from "../lib/idle-watch.ts";
import { log } from "../observability/log.ts";
import { type Connected, connectUpstream } from "./connect.ts";
import type { ConnectionLimits } from "../front/connection-limits.ts";
import type { Balancer } from "./endpoints.ts";
import { type PipeEnd, type PipeSocket, TcpPipe } from "./pipe.ts";
import { type ClientTls, proxyV2Header } from "./proxy-v2.ts";
import { type LiveTcpRoute, type ListenerState, pickBySni } from "./route.ts";
import type { Refusal } from "./stats.ts";

/** TcpHost is the listener a connection belongs to: what it was accepted with, and who to tell when it is gone. */
export interface TcpHost {
  readonly state: ListenerState;
  closed(c: TcpConn): void;
}

type Phase = "preamble" | "hello" | "tls" | "connecting" | "piping" | "over";

const EMPTY = new Uint8Array(0);

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  return a.byteLength === 0 ? b : Buffer.concat([a, b]);
}

/**
 * TcpConn is one accepted connection. Before the upstream is reached it holds the bytes read (a preamble and a ClientHello at most, bounded) and a deadline
 * (handshake_timeout); then a TcpPipe carries the bytes and the idle timeout applies.
 */
export class TcpConn {
  private phase: Phase = "hello";
  private buf: Uint8Array = EMPTY;
  /** client is the peer, or the client a trusted PROXY preamble named; local is the address it connected to (the preamble's destination, with one). */
  private client: ProxyAddress;
  private local: ProxyAddress;
  private readonly route: LiveTcpRoute;
  /** sock is the socket the client's bytes come through: the accepted one, or after a TLS upgrade the TLS socket. */
  private sock: PipeSocket;
  private upgraded = false;
  private pipe: TcpPipe | undefined;
  private upstream: Connected | undefined;
  /** early holds client bytes and events that came while the upstream was being connected (the socket is paused then). */
  private early: Uint8Array[] = [];
  /** checkFirst: a plain route's client that may not send a PROXY preamble; its first bytes are checked for one. */
  private checkFirst: boolean;
  private earlyEnd = false;
  private readonly wait: Watched;
  private readonly started = performance.now();
  /** counted is the caps the connection is counted in (under countedAs, the client address then), from its admission until it is gone. */
  private counted: ConnectionLimits | undefined;
  private countedAs = "";

  constructor(
    private readonly raw: Socket<TcpConn>,
    private readonly host: TcpHost,
  ) {
    const { route, trusted } = host.state;
    this.route = route;
    this.sock = raw;
    this.client = { address: raw.remoteAddress, port: raw.remotePort };
    this.local = { address: raw.localAddress, port: raw.localPort };
    route.stats.accepted.value++;
    route.stats.open.value++;
    this.wait = { last: performance.now(), limit: route.config.handshakeTimeout, expire: () => this.refuse("handshake", "no handshake in time") };
    if (trusted?.(this.client.address) === true) this.phase = "preamble";
    this.checkFirst = route.config.mode === "plain" && this.phase !== "preamble";
  }

  /** start runs the connection's first step (its listener counts it first: the step may already close it). */
  start(): void {
    watch(this.wait);
    if (this.phase !== "preamble" && this.admit()) this.afterPreamble(EMPTY);
  }

  /**
   * admit counts the connection against [limits] under its client's address (a trusted preamble's, once read), before anything is read for it or an upstream
   * connected; over a cap it is closed at once (nothing can be said to a client whose protocol gatehouse does not speak) and counted as refused.
   */
  private admit(): boolean {
    const caps = this.host.state.caps;
    if (caps === undefined) return true;
    const over = caps.admit(this.client.address);
    if (over === undefined) {
      this.counted = caps;
      this.countedAs = this.client.address;
      return true;
    }
    this.refuse("limit", over === "total" ? "too many connections to this gateway" : "too many connections from this client");
    return false;
  }

  /** afterPreamble starts what the route's mode does first, with the bytes that came after any preamble. */
  private afterPreamble(rest: Uint8Array): void {
    const mode = this.route.config.mode;
    if (mode === "plain") {
      // Server-first protocols (SMTP, IMAP) need the upstream before the client says anything.
      this.connectNow(this.route.upstreams, rest);
      return;
    }
    this.phase = mode === "passthrough" ? "hello" : "tls";
    if (rest.byteLength > 0) this.onData(rest);
  }

  /** onData takes bytes from the client's socket (the accepted one, or the TLS one after an upgrade). */
  onData(d: Uint8Array): void {
    if (this.checkFirst) {
      this.checkFirst = false;
      // It would reach the upstream as the client's own words (TLS modes refuse it as not TLS); the HTTP listeners refuse it too.
      if (isPreamble(d)) {
        if (this.phase === "piping") {
          this.route.stats.refused("handshake");
          this.pipe!.shutdown();
        } else this.refuse("handshake", UNTRUSTED_PREAMBLE);
        return;
      }
    }
    switch (this.phase) {
      case "piping":
        this.pipe!.fromClient(d);
        return;
      case "connecting":
        // The socket is paused while connecting: this is at most what a read under way delivers.
        this.early.push(Buffer.from(d));
        return;
      case "preamble":
        this.onPreamble(join(this.buf, d));
        return;
      case "hello":
        this.onHello(join(this.buf, d));
        return;
      case "tls":
        this.upgrade(Buffer.from(d));
        return;
      default:
    }
  }

  private onPreamble(buf: Uint8Array): void {
    const p = readPreamble(buf);
    if (p.step === "wait") {
      this.buf = Buffer.from(buf);
      return;
    }
    if (p.step === "refuse") {
      this.refuse("handshake", p.reason);
      return;
    }
    this.buf = EMPTY;
    if (p.step === "none") {
      if (this.admit()) this.afterPreamble(Buffer.from(buf));
      return;
    }
    if (p.header.kind === "proxy") {
      this.client = p.header.source;
      this.local = p.header.destination;
    }
    if (this.admit()) this.afterPreamble(Buffer.from(buf.subarray(p.bytes)));
  }

  private onHello(buf: Uint8Array): void {
    const hello = readHello(buf);
    if (hello === undefined) {
      // Kept as a copy: the socket may reuse the bytes it handed over.
      if (buf.byteLength > MAX_HELLO) {
        this.refuse("handshake", "a ClientHello over 16 KiB");
        return;
      }
      this.buf = Buffer.from(buf);
      return;
    }
    if (hello === NOT_TLS) {
      this.refuse("handshake", "not a TLS handshake");
      return;
    }
    this.buf = EMPTY;
    const b = pickBySni(this.route, hello.serverName);
    if (b === undefined) {
      this.refuse("no_sni_match", `no [[tcp.sni]] entry for ${JSON.stringify(hello.serverName ?? "(no server name)")}`);
      return;
    }
    this.connectNow(b, Buffer.from(buf));
  }

  /** upgrade starts TLS on the accepted socket with the route's certificate and the bytes read so far; the upstream is connected after the handshake. */
  private upgrade(initial: Uint8Array): void {
    const context = this.host.state.context;
    if (context === undefined) {
      this.refuse("handshake", "the site has no certificate yet");
      return;
    }
    this.phase = "connecting"; // until the handshake: bytes that come are the TLS socket's to read
    const handlers: SocketHandler<TcpConn> = {
      handshake: (ts, ok) => {
        if (this.phase === "over") return;
        if (!ok) {
          this.refuse("handshake", "the TLS handshake failed");
          return;
        }
        this.sock = ts;
        this.connectNow(this.route.upstreams, EMPTY);
      },
      data: (ts, d) => ts.data.onData(d),
      drain: (ts) => ts.data.onDrain(),
      end: (ts) => ts.data.onEnd(),
      close: (ts) => ts.data.onClose(),
      error: (ts) => ts.data.onClose(),
    };
    try {
      const [, secure] = (this.raw as unknown as { upgradeTLS(o: unknown): [Socket<TcpConn>, Socket<TcpConn>] }).upgradeTLS({
        isServer: true,
        initialData: initial,
        // No ALPN: what runs inside is the upstream's protocol, which gatehouse does not name.
        tls: { secureContext: context },
        data: this,
        socket: handlers,
      });
      this.upgraded = true;
      this.sock = secure;
    } catch (e) {
      this.refuse("handshake", `cannot start TLS: ${(e as Error).message}`);
    }
  }

  /** connectNow runs connect; a bug in it ends this connection (logged, counts released) instead of leaving it paused until its idle timeout. */
  private connectNow(b: Balancer, initial: Uint8Array): void {
    this.connect(b, initial).catch((e: unknown) => {
      log.error("tcp connection failed", { route: this.route.config.name, client: this.client.address, error: String((e as Error)?.stack ?? e) });
      if (this.pipe !== undefined) {
        this.pipe.shutdown();
        return;
      }
      if (this.upstream !== undefined) {
        this.upstream.endpoint.open--;
        this.upstream.socket.terminate();
        this.upstream = undefined;
      }
      this.gone();
    });
  }

  /** connect reaches an upstream of the balancer (failing over), then starts the pipe with the bytes read so far. */
  private async connect(b: Balancer, initial: Uint8Array): Promise<void> {
    this.phase = "connecting";
    unwatch(this.wait);
    this.sock.pause();
    const cfg = this.route.config;
    const stats = this.route.stats;
    const up = await connectUpstream(b, {
      timeoutMs: cfg.connectTimeout,
      maxPerEndpoint: cfg.maxConnectionsPerUpstream,
      cooldownMs: cfg.failCooldown,
      failed: () => stats.upstreamFailures.value++,
    });
    if ((this.phase as Phase) === "over") {
      // The client left meanwhile.
      if (up !== undefined) {
        up.endpoint.open--;
        up.socket.terminate();
      }
      return;
    }
    if (up === undefined) {
      this.refuse("no_upstream", "no upstream endpoint answered", "warn");
      return;
    }
    this.upstream = up;
    const pipe = new TcpPipe(
      this.sock,
      up.socket,
      cfg.idleTimeout,
      (direction, n) => ((direction === "in" ? stats.bytesIn : stats.bytesOut).value += n),
      (end) => this.finished(end),
    );
    this.pipe = pipe;
    this.phase = "piping";
    up.link.attach({
      onData: (d) => pipe.fromUpstream(d),
      onDrain: () => pipe.upstreamDrained(),
      onEnd: () => pipe.upstreamEnded(),
      onClose: () => pipe.closed("upstream"),
    });
    // PROXY v2 goes first: the upstream reads it before any byte of the client's (spec §2).
    if (cfg.sendProxyProtocol === 2) pipe.preface(proxyV2Header(this.client, this.local, this.upgraded ? this.clientTls() : undefined));
    if (initial.byteLength > 0) pipe.fromClient(initial);
    for (const d of this.early) pipe.fromClient(d);
    this.early = [];
    if (this.earlyEnd) pipe.clientEnded();
    if (!pipe.upstreamBackedUp) this.sock.resume();
  }

  /** clientTls is what the terminated TLS connection says of itself, for the PROXY v2 header's TLVs. */
  private clientTls(): ClientTls {
    const ts = this.sock as unknown as { getTLSVersion?(): string | null; getServername?(): string | undefined };
    const version = ts.getTLSVersion?.() ?? undefined;
    const serverName = ts.getServername?.() || undefined;
    return { ...(version ? { version } : {}), ...(serverName ? { serverName } : {}) };
  }

  /** onDrain: the client's socket takes bytes again. */
  onDrain(): void {
    this.pipe?.clientDrained();
  }

  /** onEnd: the client sent FIN. */
  onEnd(): void {
    if (this.phase === "piping") this.pipe!.clientEnded();
    else if (this.phase === "connecting") this.earlyEnd = true;
    else this.refuse("handshake", "the client closed before its handshake");
  }

  /** onClose: the client's socket is gone. */
  onClose(): void {
    if (this.phase === "piping") this.pipe!.closed("client");
    else this.gone();
  }

  /** rawClosed: the accepted socket closed; after a TLS upgrade the TLS socket's own close counts instead. */
  rawClosed(): void {
    if (!this.upgraded) this.onClose();
  }

  /** rawData: bytes on the accepted socket; after a TLS upgrade they are the TLS records, which the TLS socket reads (Bun still reports them here). */
  rawData(d: Uint8Array): void {
    if (!this.upgraded) this.onData(d);
  }

  /** rawDrain and rawEnd: as onDrain and onEnd, until a TLS upgrade (then the TLS socket's own events count). */
  rawDrain(): void {
    if (!this.upgraded) this.onDrain();
  }

  rawEnd(): void {
    if (!this.upgraded) this.onEnd();
  }

  /** shutdown cuts the connection now (a drain's grace period is over). */
  shutdown(): void {
    if (this.pipe !== undefined) this.pipe.shutdown();
    else this.gone();
  }

  private refuse(reason: Refusal, detail: string, level: "debug" | "warn" = "debug"): void {
    if (this.phase === "over") return;
    this.route.stats.refused(reason);
    log[level]("tcp connection refused", { route: this.route.config.name, client: this.client.address, reason, detail });
    this.gone();
  }

  /** gone ends a connection that never reached its pipe (its sockets are closed) or whose pipe is over: counted out once. */
  private gone(): void {
    if (this.phase === "over") return;
    const piped = this.phase === "piping";
    this.phase = "over";
    if (!piped) {
      // Both: a TLS socket that has not finished its handshake may not close the socket under it.
      this.sock.terminate();
      if (this.sock !== this.raw) this.raw.terminate();
    }
    unwatch(this.wait);
    this.early = [];
    this.counted?.release(this.countedAs);
    this.counted = undefined;
    this.route.stats.open.value--;
    this.host.closed(this);
  }

  private finished(end: PipeEnd): void {
    if (this.upstream !== undefined) this.upstream.endpoint.open--;
    if (log.access)
      log.info("tcp connection", {
        route: this.route.config.name,
        client: this.client.address,
        upstream: this.upstream?.endpoint.url,
        bytes_in: end.bytesIn,
        bytes_out: end.bytesOut,
        ms: Math.round(performance.now() - this.started),
        end: end.reason,
      });
    this.gone();
  }
}
