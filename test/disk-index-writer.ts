/** One process writing the disk tier's index for a test: puts and removes under shared names for a bounded time, then prints how many calls threw. */
import { DiskIndex } from "../src/cache/disk/disk-index.ts";

const [path, ms, id] = [process.argv[2]!, Number(process.argv[3]), process.argv[4]!];
const index = new DiskIndex(path);
let failed = 0;
let calls = 0;
const deadline = Date.now() + ms;
while (Date.now() < deadline) {
  const name = `n${calls % 50}`;
  try {
    if (calls % 3 === 2) index.remove(index.ofPrimary(`p${calls % 50}`));
    else index.put(name, `p${calls % 50}`, "", 100 + (calls % 7) + Number(id), [], [`t${calls % 5}`]);
  } catch (e) {
    failed++;
    if (failed === 1) console.error(String(e));
  }
  calls++;
}
await index.close();
console.log(JSON.stringify({ calls, failed }));
