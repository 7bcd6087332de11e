/** Test etcd: a real single-member etcd on free loopback ports in a temp data dir, which a test can stop, kill and start again. */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort, tempDir } from "./harness.ts";

/** EtcdTls makes the client listener https with client certificates required: PEM files of the CA and of a certificate for 127.0.0.1 that is also the client's. */
export type EtcdTls = { readonly caFile: string; readonly certFile: string; readonly keyFile: string };

/** TestEtcd is one running etcd: url is its client URL (http://127.0.0.1:PORT, or https:// with EtcdTls). */
export type TestEtcd = {
  readonly url: string;
  readonly dataDir: string;
  /** etcdctl runs etcdctl against this etcd and returns its output; it throws when etcdctl fails. */
  etcdctl(...args: string[]): string;
  /** stop ends etcd with SIGTERM (SIGKILL after 5 s). */
  stop(): Promise<void>;
  /** kill ends etcd with SIGKILL. */
  kill(): Promise<void>;
  /** start starts it again on the same ports and data. */
  start(): Promise<void>;
  /** cleanup kills it and removes its data. */
  cleanup(): Promise<void>;
};

const START_TIMEOUT_MS = 10_000;

/**
 * startEtcd starts etcd and waits (at most 10 s) until /health answers. The short heartbeat and election timeout make etcd's smallest lease TTL 1 s (it is
 * 1.5 election timeouts, rounded up to seconds), so that lock tests need not wait for the default 2 s.
 */
export async function startEtcd(extraArgs: readonly string[] = [], tls?: EtcdTls): Promise<TestEtcd> {
  const dir = tempDir("gatehouse-etcd-");
  const dataDir = join(dir, "data");
  const logFile = join(dir, "etcd.log");
  const client = freePort();
  const peer = freePort();
  const url = `${tls ? "https" : "http"}://127.0.0.1:${client}`;
  const tlsArgs = tls ? [`--cert-file=${tls.certFile}`, `--key-file=${tls.keyFile}`, `--trusted-ca-file=${tls.caFile}`, "--client-cert-auth"] : [];
  const ctlTls = tls ? [`--cacert=${tls.caFile}`, `--cert=${tls.certFile}`, `--key=${tls.keyFile}`] : [];
  const fetchTls = tls
    ? { tls: { ca: readFileSync(tls.caFile, "utf8"), cert: readFileSync(tls.certFile, "utf8"), key: readFileSync(tls.keyFile, "utf8") } }
    : {};
  const peerUrl = `http://127.0.0.1:${peer}`;
  const args = [
    "etcd",
    "--name=test",
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${url}`,
    `--advertise-client-urls=${url}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=test=${peerUrl}`,
    "--heartbeat-interval=10",
    "--election-timeout=100",
    "--logger=zap",
    ...tlsArgs,
    ...extraArgs,
  ];
  let proc: Subprocess | undefined;

  const start = async (): Promise<void> => {
    const p = Bun.spawn(args, { stdout: "ignore", stderr: Bun.file(logFile), stdin: "ignore" });
    proc = p;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      try {
        const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000), ...fetchTls });
        if ((await res.text()).includes('"true"')) return;
      } catch {}
      if (p.exitCode !== null || Date.now() > deadline) {
        p.kill("SIGKILL");
        await p.exited;
        throw new Error(`etcd did not start on ${url} within ${START_TIMEOUT_MS} ms (exit ${p.exitCode}): ${tail(logFile)}`);
      }
      await Bun.sleep(50);
    }
  };
  const end = async (signal: "SIGTERM" | "SIGKILL"): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill(signal);
    const timer = setTimeout(() => p.kill("SIGKILL"), 5000);
    await p.exited;
    clearTimeout(timer);
  };

  try {
    await start();
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    url,
    dataDir,
    etcdctl: (...rest) => {
      const r = Bun.spawnSync(["etcdctl", `--endpoints=${url}`, "--dial-timeout=3s", ...ctlTls, ...rest], { env: { ...process.env, ETCDCTL_API: "3" } });
      const out = `${r.stdout.toString()}${r.stderr.toString()}`;
      if (r.exitCode !== 0) throw new Error(`etcdctl ${rest.join(" ")} failed: ${out}`);
      return out;
    },
    stop: () => end("SIGTERM"),
    kill: () => end("SIGKILL"),
    start,
    cleanup: async () => {
      await end("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function tail(file: string): string {
  try {
    return readFileSync(file, "utf8").slice(-2000);
  } catch {
    return "(no log)";
  }
}

/** EtcdCluster is several etcd members on loopback: their client URLs, the one that leads now, and a way to kill one. */
export type EtcdCluster = {
  readonly urls: readonly string[];
  /** leader is the index of the member that leads now (asked of the members that answer). */
  leader(): Promise<number>;
  /** kill ends member i with SIGKILL. */
  kill(i: number): Promise<void>;
  cleanup(): Promise<void>;
};

/** startEtcdCluster starts `size` members that form one cluster (a fast election, as startEtcd's), and waits until every one is healthy (10 s at most). */
export async function startEtcdCluster(size = 3): Promise<EtcdCluster> {
  const dir = tempDir("gatehouse-etcd-cluster-");
  const members = Array.from({ length: size }, (_, i) => ({ name: `m${i}`, client: freePort(), peer: freePort() }));
  const initial = members.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(",");
  const procs = members.map((m) =>
    Bun.spawn(
      [
        "etcd",
        `--name=${m.name}`,
        `--data-dir=${join(dir, m.name)}`,
        `--listen-client-urls=http://127.0.0.1:${m.client}`,
        `--advertise-client-urls=http://127.0.0.1:${m.client}`,
        `--listen-peer-urls=http://127.0.0.1:${m.peer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${m.peer}`,
        `--initial-cluster=${initial}`,
        "--initial-cluster-state=new",
        "--heartbeat-interval=10",
        "--election-timeout=100",
        "--logger=zap",
      ],
      { stdout: "ignore", stderr: Bun.file(join(dir, `${m.name}.log`)), stdin: "ignore" },
    ),
  );
  const urls = members.map((m) => `http://127.0.0.1:${m.client}`);
  const cleanup = async () => {
    for (const p of procs) p.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.exited));
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (const url of urls) {
    for (;;) {
      const ok = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) })
        .then((r) => r.text())
        .then((t) => t.includes('"true"'))
        .catch(() => false);
      if (ok) break;
      if (Date.now() > deadline) {
        await cleanup();
        throw new Error(`the etcd cluster did not become healthy within ${START_TIMEOUT_MS} ms at ${url}`);
      }
      await Bun.sleep(50);
    }
  }
  const status = async (url: string) => {
    const res = await fetch(`${url}/v3/maintenance/status`, { method: "POST", body: "{}", signal: AbortSignal.timeout(1000) });
    return (await res.json()) as { header: { member_id: string }; leader: string };
  };
  return {
    urls,
    leader: async () => {
      for (const url of urls) {
        const s = await status(url).catch(() => undefined);
        if (s === undefined) continue;
        for (let i = 0; i < urls.length; i++) if ((await status(urls[i]!).catch(() => undefined))?.header.member_id === s.leader) return i;
      }
      throw new Error("no etcd member names a leader");
    },
    kill: async (i) => {
      procs[i]!.kill("SIGKILL");
      await procs[i]!.exited;
    },
    cleanup,
  };
}
