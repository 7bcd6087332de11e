/** FileStorage runs the Storage contract: a temporary certs directory, a second process as the other lock holder. */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { FileStorage } from "../src/tls/file-storage.ts";
import { CONTRACT_LOCK_TIMING, storageContract } from "../src/tls/storage.contract.ts";
import { ROOT, tempDir } from "./harness.ts";
import { LockHolders } from "./lock-holder.ts";

const timing = { lockRefreshMs: CONTRACT_LOCK_TIMING.refreshMs, lockStaleMs: CONTRACT_LOCK_TIMING.staleMs, lockPollMs: 20 };

storageContract("FileStorage", async () => {
  const root = tempDir("gatehouse-storage-contract-");
  const holders = new LockHolders(
    `import { FileStorage } from ${JSON.stringify(join(ROOT, "src/tls/file-storage.ts"))};`,
    (name) => `await new FileStorage(${JSON.stringify(root)}, ${JSON.stringify(timing)}).lock(${name})`,
  );
  return {
    open: () => new FileStorage(root, timing),
    holdElsewhere: (name) => holders.hold(name),
    cleanup: async () => {
      holders.killAll();
      rmSync(root, { recursive: true, force: true });
    },
  };
});
