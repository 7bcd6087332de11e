/** The worker side: one Gateway in worker mode, driven by its supervisor over IPC; it exits when told to stop or when the supervisor is gone. */
import { Http01Tokens } from "../tls/acme/http01.ts";
import { AlpnChallenges } from "../tls/acme/tls-alpn01.ts";
import { nativeOf } from "../front/tls-contexts.ts";
import { problemLines } from "../config/problems.ts";
import { Gateway } from "../gateway.ts";
import { registry } from "../observability/gateway-metrics.ts";
import { log } from "../observability/log.ts";
import type { FromWorker, Init, Request, ToWorker } from "./protocol.ts";

/** ParentChannel is a worker's IPC link to its supervisor (main.ts makes it from `process`); send never throws. */
export interface ParentChannel {
  send(msg: FromWorker): void;
  onMessage(fn: (msg: ToWorker) => void): void;
  onDisconnect(fn: () => void): void;
}

/** WorkerOptions say which worker this is and how to reach the supervisor. */
export type WorkerOptions = { readonly index: number; readonly configPath: string; readonly pid: number; readonly channel: ParentChannel };

/** FAREWELL_MS bounds the wait for the supervisor's Bye. */
const FAREWELL_MS = 1000;

type Answer = { ok: boolean; problems?: string[]; value?: unknown };

/** Worker runs this process's Gateway as worker `index` of a supervisor; `done` resolves with the exit code once it has stopped. */
export class Worker {
  readonly done: Promise<number>;
  private finish!: (code: number) => void;
  private gateway: Gateway | undefined;
  private starting: Promise<void> | undefined;
  private stopping = false;
  /**
   * challenges are the HTTP-01 tokens the supervisor publishes here; they outlive the gateway's start, so a token that arrives meanwhile is answered once it
   * listens.
   */
  private readonly challenges = new Http01Tokens();
  /** alpnChallenges are the TLS-ALPN-01 certificates the supervisor publishes here, kept like challenges. */
  private readonly alpnChallenges = new AlpnChallenges(nativeOf);
  private disconnected = false;
  private bye: (() => void) | undefined;

  constructor(private readonly opts: WorkerOptions) {
    this.done = new Promise((resolve) => (this.finish = resolve));
    opts.channel.onMessage((msg) => void this.handle(msg));
    opts.channel.onDisconnect(() => {
      this.disconnected = true;
      this.bye?.();
      if (this.stopping) return;
      log.warn("supervisor gone; this worker drains and exits");
      void this.stop();
    });
  }

  private async handle(msg: ToWorker): Promise<void> {
    if (msg.t === "init") {
      this.starting = this.start(msg);
      return;
    }
    if (msg.t === "bye") {
      this.bye?.();
      return;
    }
    let a: Answer;
    try {
      a = await this.answer(msg);
    } catch (e) {
      a = { ok: false, problems: [String((e as Error)?.message ?? e)] };
    }
    this.opts.channel.send({ t: "reply", id: msg.id, ...a });
  }

  private async start(init: Init): Promise<void> {
    for (const [token, keyAuthorization] of init.tokens) this.challenges.add(token, keyAuthorization);
    for (const answer of init.alpn) {
      try {
        this.alpnChallenges.add(answer);
      } catch (e) {
        log.warn("cannot load a tls-alpn-01 challenge certificate", { name: answer.name, error: String((e as Error).message ?? e) });
      }
    }
    const gateway = new Gateway({
      configPath: this.opts.configPath,
      files: init.files,
      pid: this.opts.pid,
      worker: true,
      challenges: this.challenges,
      alpnChallenges: this.alpnChallenges,
    });
    try {
      await gateway.start();
    } catch (e) {
      const problems = problemLines(e);
      log.error("cannot start", { problems });
      this.opts.channel.send({ t: "failed", problems });
      log.flushNow();
      this.finish(1);
      return;
    }
    this.gateway = gateway;
    this.opts.channel.send({ t: "ready" });
  }

  private async answer(msg: Request): Promise<Answer> {
    switch (msg.t) {
      case "challenge":
        // Answered before the gateway runs too: a worker that is starting binds with the token already in place.
        if (msg.keyAuthorization === null) this.challenges.remove(msg.token);
        else this.challenges.add(msg.token, msg.keyAuthorization);
        return { ok: true };
      case "alpn-challenge":
        // As above; a certificate that cannot be loaded throws, and the reply says so.
        if (msg.pem === null) this.alpnChallenges.remove(msg.name, msg.keyAuthorization);
        else this.alpnChallenges.add({ name: msg.name, keyAuthorization: msg.keyAuthorization, ...msg.pem });
        return { ok: true };
      case "metrics":
        return { ok: true, value: registry.render() };
    }
    await this.starting;
    const gw = this.gateway;
    if (!gw) return { ok: false, problems: ["the worker is not running"] };
    switch (msg.t) {
      case "reload": {
        const r = await gw.reload(msg.files);
        return { ok: r.ok, problems: r.problems };
      }
      case "certs":
        await gw.adoptStoredCertificates();
        return { ok: true };
      case "purge":
        return { ok: true, value: await gw.state.purge(msg.filter) };
      case "upstreams":
        return { ok: true, value: await gw.state.upstreams() };
    }
  }

  /** stop drains like a standalone gateway (bounded by shutdown_grace), then done resolves with 0. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.starting;
    const gw = this.gateway;
    if (gw) {
      await gw.shutdown(gw.config?.global.shutdownGrace ?? 30_000);
      await this.farewell();
    }
    this.finish(0);
  }

  /**
   * farewell sends the supervisor this worker's last numbers (what it counted since the last scrape, the drain included) and waits up to a second for its Bye.
   */
  private async farewell(): Promise<void> {
    if (this.disconnected) return;
    let timer: Timer | undefined;
    await new Promise<void>((resolve) => {
      this.bye = resolve;
      timer = setTimeout(resolve, FAREWELL_MS);
      this.opts.channel.send({ t: "final", metrics: registry.render() });
    });
    clearTimeout(timer);
  }
}
