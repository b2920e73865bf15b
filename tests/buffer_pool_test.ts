/**
 * Unit tests for the buffer pool: buffers shrink under load instead of memory growing with the
 * number of transfers, and released buffers are reused.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BufferPool, TRANSFER_BUFFER_SIZE } from "../lib/buffer_pool.ts";
import { createChecksum } from "../lib/checksum.ts";
import {
  DEFAULT_HASH_ARENA_SIZE,
  HASH_ARENA_SIZE,
  hashArena,
  requestHashArena,
} from "../lib/xxh3.ts";
import { evalUnderV8Flags, makeTempDir, REPO_ROOT, runCommand } from "./harness.ts";

// These tests lease many buffers and keep some: they run with the server's arena, as it asks.
requestHashArena(HASH_ARENA_SIZE);

Deno.test("buffers shrink to fit the budget but never below the minimum", () => {
  const pool = new BufferPool({ bufferSize: 1024, budget: 4096, minBufferSize: 128 });
  const sizes = Array.from({ length: 8 }, () => pool.lease().byteLength);
  assert.deepEqual(sizes, [1024, 1024, 1024, 1024, 128, 128, 128, 128]);
  assert.equal(pool.leased, 4096 + 4 * 128);
});

Deno.test("a small request gets a small buffer", () => {
  const pool = new BufferPool({ bufferSize: 1024, budget: 4096, minBufferSize: 128 });
  assert.equal(pool.lease(100).byteLength, 100);
  assert.equal(pool.lease(5000).byteLength, 1024);
});

/** Whether two leases are the same memory. */
function sameMemory(a: Uint8Array, b: Uint8Array): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset;
}

Deno.test("released buffers are reused and the budget recovers", () => {
  const pool = new BufferPool({ bufferSize: 1024, budget: 2048, minBufferSize: 128 });
  const a = pool.lease();
  const b = pool.lease();
  assert.equal(pool.lease().byteLength, 128);
  pool.release(a);
  pool.release(b);
  assert.equal(pool.leased, 128);
  const c = pool.lease();
  assert.ok(sameMemory(c, a) || sameMemory(c, b), "a released buffer comes back");
});

Deno.test("buffers live in the checksum kernel's memory, one slot each, so they hash in place", () => {
  const arena = hashArena();
  assert.ok(arena, "this machine runs the SIMD kernel");
  const pool = new BufferPool();
  const [a, b] = [pool.lease(), pool.lease(1000)];
  for (const buffer of [a, b]) {
    assert.equal(buffer.buffer, arena.buffer);
    assert.equal(buffer.byteOffset % 65536, 0, "on a WebAssembly page, so on a memory page");
  }
  assert.equal(a.length, TRANSFER_BUFFER_SIZE);
  assert.equal(b.length, 1000);
  assert.ok(Math.abs(a.byteOffset - b.byteOffset) >= TRANSFER_BUFFER_SIZE, "slots do not overlap");
  pool.release(b);
  assert.ok(sameMemory(pool.lease(), b), "the freed slot is taken next");
});

Deno.test("a buffer larger than a slot is an ordinary aligned buffer, and is reused", () => {
  const pool = new BufferPool({ bufferSize: 2 * TRANSFER_BUFFER_SIZE });
  const big = pool.lease();
  assert.notEqual(big.buffer, hashArena()!.buffer);
  assert.ok(big.buffer.resizable, "aligned (see alignedBuffer)");
  pool.release(big);
  assert.equal(pool.lease().buffer, big.buffer);
});

Deno.test("when the slots run out, pools go on with aligned buffers", () => {
  const pool = new BufferPool({ budget: HASH_ARENA_SIZE * 2 });
  const slots = HASH_ARENA_SIZE / TRANSFER_BUFFER_SIZE;
  const leases = Array.from({ length: slots + 3 }, () => pool.lease());
  // Earlier tests in this process may still hold some slots.
  const firstOutside = leases.findIndex((b) => b.buffer !== hashArena()!.buffer);
  assert.ok(firstOutside > 0 && firstOutside <= slots, `first outside at ${firstOutside}`);
  const inArena = leases.slice(0, firstOutside);
  assert.equal(new Set(inArena.map((b) => b.byteOffset)).size, inArena.length, "each slot once");
  for (const b of leases.slice(firstOutside)) {
    assert.ok(
      b.buffer.resizable && b.length === b.buffer.byteLength,
      "an aligned buffer of its own",
    );
  }
  leases.forEach((b) => pool.release(b));
  assert.equal(pool.leased, 0);
  assert.equal(pool.lease().buffer, hashArena()!.buffer, "slots come back");
});

Deno.test("where the arena cannot be had, the kernel runs without it and pools use aligned buffers", async () => {
  // V8's limit on WebAssembly memory fails the arena's allocation the way a system that will not
  // commit 256 MiB (strict overcommit, a memory limit) does, for a process that asks for that
  // much as the server does.
  const script = `
    import { BufferPool } from "./lib/buffer_pool.ts";
    import { createChecksum } from "./lib/checksum.ts";
    import { HASH_ARENA_SIZE, hashArena, requestHashArena } from "./lib/xxh3.ts";
    requestHashArena(HASH_ARENA_SIZE);
    const buffer = new BufferPool().lease();
    buffer.forEach((_, i) => buffer[i] = (i * 7) & 255);
    const checksum = await createChecksum();
    checksum.update(buffer);
    console.log(JSON.stringify({
      arena: hashArena() !== null,
      aligned: buffer.buffer.resizable && buffer.length === buffer.buffer.byteLength,
      digest: checksum.digest(),
    }));
  `;
  const printed = await evalUnderV8Flags("--wasm-max-mem-pages=1000", script);
  const inArena = new BufferPool().lease();
  assert.equal(inArena.buffer, hashArena()!.buffer, "here the arena is there");
  inArena.forEach((_, i) => inArena[i] = (i * 7) & 255);
  const checksum = await createChecksum();
  checksum.update(inArena);
  assert.deepEqual(printed, {
    arena: false,
    aligned: true,
    digest: checksum.digest(),
  });
});

Deno.test("the largest arena asked for before the kernel loads wins, and then it is fixed", async () => {
  // Under a cap on WebAssembly memory that the largest arena would not fit.
  const script = `
    import { BufferPool } from "./lib/buffer_pool.ts";
    import { createChecksum } from "./lib/checksum.ts";
    import { hashArena, requestHashArena } from "./lib/xxh3.ts";
    const small = requestHashArena(4 << 20);
    const larger = requestHashArena(8 << 20);
    const smallerAgain = requestHashArena(2 << 20);
    const pool = new BufferPool();
    const leases = Array.from({ length: 9 }, () => pool.lease());
    const arena = hashArena();
    const buffer = leases[0];
    buffer.forEach((_, i) => buffer[i] = (i * 7) & 255);
    const checksum = await createChecksum();
    checksum.update(buffer);
    console.log(JSON.stringify({
      small,
      larger,
      smallerAgain,
      after: requestHashArena(256 << 20),
      arena: arena?.length ?? null,
      inArena: leases.filter((b) => b.buffer === arena?.buffer).length,
      stillArena: hashArena()?.length ?? null,
      digest: checksum.digest(),
    }));
  `;
  const printed = await evalUnderV8Flags("--wasm-max-mem-pages=1000", script);
  const here = new Uint8Array(TRANSFER_BUFFER_SIZE).map((_, i) => (i * 7) & 255);
  const checksum = await createChecksum();
  checksum.update(here);
  const MiB = TRANSFER_BUFFER_SIZE;
  assert.deepEqual(printed, {
    small: 4 * MiB,
    larger: 8 * MiB,
    smallerAgain: 8 * MiB,
    after: 8 * MiB,
    arena: 8 * MiB,
    inArena: 8,
    stillArena: 8 * MiB,
    digest: checksum.digest(),
  });
});

Deno.test("a process that asks for no arena size gets the small default", async () => {
  const script = `
    import { DEFAULT_HASH_ARENA_SIZE, hashArena } from "./lib/xxh3.ts";
    console.log(JSON.stringify({ arena: hashArena()?.length ?? null, DEFAULT_HASH_ARENA_SIZE }));
  `;
  const printed = await evalUnderV8Flags("--wasm-max-mem-pages=1000", script);
  assert.deepEqual(printed, { arena: 8 << 20, DEFAULT_HASH_ARENA_SIZE: 8 << 20 });
});

Deno.test("a library server asks for the small arena by default, and the server CLI for the largest", async () => {
  await using root = await makeTempDir();
  // Once something has asked, requestHashArena(0) changes nothing and tells the size to be.
  const arenaAfter = async (start: string) => {
    const script = `
      import { serverMain } from "./lib/server_cli.ts";
      import { startServer } from "./lib/server.ts";
      import { requestHashArena } from "./lib/xxh3.ts";
      ${start}
      console.log(JSON.stringify(requestHashArena(0)));
      Deno.exit(0);
    `;
    const result = await runCommand(Deno.execPath(), ["eval", script], { cwd: REPO_ROOT });
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(new TextDecoder().decode(result.stdout));
  };
  const library = await arenaAfter(
    `await startServer({ root: ${JSON.stringify(`${root.path}/a`)}, log: () => {} });`,
  );
  assert.equal(library, DEFAULT_HASH_ARENA_SIZE);
  // serverMain runs until stopped, and asks only once its start is under way: wait (bounded)
  // for the size it should ask for; anything else after five seconds fails below.
  const cli = await arenaAfter(`
    serverMain(["0", "--root", ${JSON.stringify(`${root.path}/b`)}]);
    for (let i = 0; i < 500 && requestHashArena(0) !== ${HASH_ARENA_SIZE}; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  `);
  assert.equal(cli, HASH_ARENA_SIZE);
});
