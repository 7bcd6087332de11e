/** Where one ACME directory's state lives in storage: its account, certificates' order state and renewal information. */
import { createHash } from "node:crypto";

/** directoryKey is the storage key under which everything of one CA directory lives (acme/HOST-HASH). */
export function directoryKey(directory: string): string {
  const u = new URL(directory);
  const h = createHash("sha256").update(directory).digest("hex").slice(0, 8);
  return `acme/${u.host.replace(/[^A-Za-z0-9.-]/g, "_")}-${h}`;
}
