/**
 * Tests for the data phase over a real loopback socket: the bytes arrive intact and both sides
 * read into the pool's page-aligned buffers in place, so those buffers come back unchanged.
 *
 * @module
 */

import assert from "node:assert/strict";
import { alignedBuffer, BufferPool } from "../lib/buffer_pool.ts";
import { FrameReader, FrameWriter } from "../lib/protocol.ts";
import { concatBytes, FILE_WRITE_PIECE, receiveData, sendData, writeAll } from "../lib/transfer.ts";
import { randomBytes } from "./harness.ts";

/** A pool that remembers what it lent and what came back. */
class WatchedPool extends BufferPool {
  lent: ArrayBuffer[] = [];
  returned: ArrayBuffer[] = [];

  override lease(wanted?: number): ArrayBuffer {
    const buffer = super.lease(wanted);
    this.lent.push(buffer);
    return buffer;
  }

  override release(buffer: ArrayBuffer, leasedSize?: number): void {
    this.returned.push(buffer);
    super.release(buffer, leasedSize);
  }
}

Deno.test("an aligned buffer is a fixed-size buffer reserved in whole pages", () => {
  const buffer = alignedBuffer(1 << 20);
  assert.equal(buffer.byteLength, 1 << 20);
  assert.ok(buffer.resizable, "V8 reserves only resizable buffers page by page");
  assert.equal(buffer.maxByteLength, buffer.byteLength);
});

Deno.test("a transfer over a socket keeps the pool's aligned buffers in place", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/source.bin`;
  // Three buffers' worth and a bit, so each buffer is read into more than once.
  const data = randomBytes(65536 * 50 + 123);
  await Deno.writeFile(path, data);
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sending = new WatchedPool({ bufferSize: 1 << 20 });
  const receiving = new WatchedPool({ bufferSize: 1 << 20 });
  const received: Uint8Array[] = [];
  try {
    const [result] = await Promise.all([
      (async () => {
        using conn = await listener.accept();
        return await receiveData(new FrameReader(conn), {
          write: (chunk) => Promise.resolve(void received.push(chunk.slice())),
        }, { pool: receiving });
      })(),
      (async () => {
        using conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
        using file = await Deno.open(path);
        const out = new FrameWriter(conn.writable, { direct: conn });
        return await sendData(file, out, { pool: sending });
      })(),
    ]);
    const all = new Uint8Array(received.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const chunk of received) {
      all.set(chunk, offset);
      offset += chunk.length;
    }
    assert.deepEqual(all, data);
    assert.equal(result.size, data.length);
    for (const pool of [sending, receiving]) {
      assert.equal(pool.lent.length, 2);
      assert.deepEqual(pool.returned, pool.lent, "the same buffers come back, none transferred");
      assert.ok(pool.returned.every((b) => b.resizable && b.byteLength > 0));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeAll hands a file at most `piece` bytes per call, and finishes partial writes", async () => {
  const calls: number[] = [];
  const written: Uint8Array[] = [];
  // Takes at most 300000 bytes per call, as a file or pipe may take only part of a write.
  const writer = {
    write(p: Uint8Array): Promise<number> {
      calls.push(p.length);
      const n = Math.min(p.length, 300_000);
      written.push(p.slice(0, n));
      return Promise.resolve(n);
    },
  };
  const bytes = new Uint8Array(FILE_WRITE_PIECE * 2 + 1000).map((_, i) => i % 251);
  await writeAll(writer, bytes, { piece: FILE_WRITE_PIECE });
  assert.ok(calls.every((n) => n <= FILE_WRITE_PIECE), `call sizes ${calls}`);
  assert.deepEqual(concatBytes(written), bytes);
  calls.length = 0;
  written.length = 0;
  await writeAll(writer, bytes);
  assert.equal(calls[0], bytes.length, "without a piece, the first call offers everything");
  assert.deepEqual(concatBytes(written), bytes);
});
