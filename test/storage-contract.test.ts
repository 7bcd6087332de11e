/** FileStorage runs the Storage contract: a temporary certs directory, a second process as the other lock holder. */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { FileStorage } from "../src/tls/file-storage.ts";
import { CONTRACT_LOCK_TIMING, storageContract } from "../src/tls/storage.contract.ts";
import { BUN, ROOT, tempDir } from "./harness.ts";

const timing = { lockRefreshMs: CONTRACT_LOCK_TIMING.refreshMs, lockStaleMs: CONTRACT_LOCK_TIMING.staleMs, lockPollMs: 20 };

storageContract("FileStorage", async () => {
  const root = tempDir("gatehouse-storage-contract-");
  const children = new Set<ReturnType<typeof Bun.spawn>>();
  return {
    open: () => new FileStorage(root, timing),
    holdElsewhere: async (name) => {
      const script = `
        import { FileStorage } from ${JSON.stringify(join(ROOT, "src/tls/file-storage.ts"))};
        await new FileStorage(${JSON.stringify(root)}, ${JSON.stringify(timing)}).lock(${JSON.stringify(name)});
        console.log("locked");
        setInterval(() => {}, 1000);`;
      const child = Bun.spawn([BUN, "-e", script], { stdout: "pipe", stderr: "inherit" });
      children.add(child);
      const reader = child.stdout.getReader();
      let out = "";
      while (!out.includes("locked")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the lock holder exited before it locked ${name}: ${out}`);
        out += new TextDecoder().decode(value);
      }
      return {
        die: async () => {
          child.kill("SIGKILL");
          await child.exited;
        },
      };
    },
    cleanup: async () => {
      for (const c of children) c.kill("SIGKILL"); // a holder a failed test left alive
      rmSync(root, { recursive: true, force: true });
    },
  };
});
