/**
 * Unit tests for write-behind flushing: flushes start only once enough bytes wait, never two at
 * once, and a file that cannot be opened stops the flushing without failing the writes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { FlushBehind } from "../lib/flush_behind.ts";
import { commandWorks, makeTempDir, runCommand } from "./harness.ts";

const decoder = new TextDecoder();

async function withFile(fn: (path: string, file: Deno.FsFile) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ferry_flush_" });
  const path = join(dir, "data.bin");
  const file = await Deno.open(path, { write: true, create: true });
  try {
    await fn(path, file);
  } finally {
    file.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a flush starts once `every` bytes wait, and not while one is running", async () => {
  await withFile(async (path, file) => {
    const flusher = new FlushBehind(path, { every: 1000 });
    const chunk = new Uint8Array(400).fill(1);
    await file.write(chunk);
    flusher.wrote(chunk.length);
    await file.write(chunk);
    flusher.wrote(chunk.length);
    assert.equal(flusher.flushes, 0, "800 bytes wait: below the threshold");
    await file.write(chunk);
    flusher.wrote(chunk.length);
    assert.equal(flusher.flushes, 1, "1200 bytes wait: a flush starts");
    flusher.wrote(5000);
    assert.equal(flusher.flushes, 1, "the first flush is still running: no second one");
    await flusher.stop();
    flusher.wrote(5000);
    assert.equal(flusher.flushes, 1, "stopped: no more flushes");
    assert.equal((await Deno.stat(path)).size, 1200, "the writer's bytes are untouched");
  });
});

Deno.test("the count restarts after each flush, so flushes keep running behind the writes", async () => {
  await withFile(async (path, file) => {
    const flusher = new FlushBehind(path, { every: 100 });
    for (let round = 1; round <= 3; round++) {
      await file.write(new Uint8Array(60));
      flusher.wrote(60);
      assert.equal(flusher.flushes, round - 1, `round ${round}: 60 bytes wait`);
      await file.write(new Uint8Array(60));
      flusher.wrote(60);
      assert.equal(flusher.flushes, round, `round ${round}: 120 bytes wait`);
      await flusher.idle();
    }
    await flusher.stop();
  });
});

Deno.test("a file that cannot be opened ends write-behind quietly", async () => {
  await withFile(async (path) => {
    const flusher = new FlushBehind(join(path, "missing"), { every: 10 });
    flusher.wrote(10);
    assert.equal(flusher.flushes, 1);
    await flusher.stop();
    flusher.wrote(100);
    assert.equal(flusher.flushes, 1);
  });
});

Deno.test("a file its owner may not write (0444) is flushed behind the writes too", async () => {
  // Root writes any file: the case needs a process without that privilege.
  const root = decoder.decode((await runCommand("id", ["-u"])).stdout).trim() === "0";
  const wrapper = root ? ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] : [];
  if (root && !await commandWorks(wrapper[0], [...wrapper.slice(1), "true"])) {
    console.warn("skipped: running as root, and setpriv cannot drop root's privileges here");
    return;
  }
  await using dir = await makeTempDir();
  const path = join(dir.path, "read_only.bin");
  Deno.writeFileSync(path, new Uint8Array(10), { mode: 0o444 });
  await Deno.chmod(path, 0o444);
  // Two flushes in a row: after a failed one, write-behind stops and the second never starts.
  const script = `
    import { FlushBehind } from ${
    JSON.stringify(new URL("../lib/flush_behind.ts", import.meta.url).href)
  };
    const flusher = new FlushBehind(${JSON.stringify(path)}, { every: 10 });
    flusher.wrote(10);
    await flusher.idle();
    flusher.wrote(10);
    await flusher.stop();
    console.log(flusher.flushes);
  `;
  const [program, ...args] = [...wrapper, Deno.execPath()];
  const result = await runCommand(program, [...args, "eval", script]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(decoder.decode(result.stdout).trim(), "2", "the first flush went through");
});
