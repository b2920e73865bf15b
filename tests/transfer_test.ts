/**
 * Tests for the data phase over a real loopback socket: the bytes arrive intact and both sides
 * read into the pool's page-aligned buffers in place, so those buffers come back unchanged.
 *
 * @module
 */

import assert from "node:assert/strict";
import { alignedBuffer, BufferPool } from "../lib/buffer_pool.ts";
import { FrameReader } from "../lib/frame_reader.ts";
import { FrameWriter } from "../lib/frame_writer.ts";
import { concatBytes, receiveData, sendData } from "../lib/transfer.ts";
import { FILE_WRITE_PIECE, writeAll, writeAllSync } from "../lib/write_all.ts";
import { hashArena } from "../lib/xxh3.ts";
import { randomBytes } from "./harness.ts";

/** A pool that remembers what it lent and what came back. */
class WatchedPool extends BufferPool {
  lent: Uint8Array<ArrayBuffer>[] = [];
  returned: Uint8Array<ArrayBuffer>[] = [];

  override lease(wanted?: number): Uint8Array<ArrayBuffer> {
    const buffer = super.lease(wanted);
    this.lent.push(buffer);
    return buffer;
  }

  override release(buffer: Uint8Array<ArrayBuffer>): void {
    this.returned.push(buffer);
    super.release(buffer);
  }
}

Deno.test("an aligned buffer is a fixed-size buffer reserved in whole pages", () => {
  const buffer = alignedBuffer(1 << 20);
  assert.equal(buffer.byteLength, 1 << 20);
  assert.ok(buffer.resizable, "V8 reserves only resizable buffers page by page");
  assert.equal(buffer.maxByteLength, buffer.byteLength);
});

Deno.test("a transfer over a socket keeps the pool's buffers in place", async () => {
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
      assert.equal(pool.returned.length, 2);
      pool.returned.forEach((b, i) => assert.equal(b, pool.lent[i], "the same views come back"));
      // Still in the kernel's memory, where the checksum reads them: nothing moved them.
      assert.ok(pool.returned.every((b) => b.buffer === hashArena()!.buffer && b.length > 0));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** `bytes` as a stream of odd-sized pieces: a byte stream (BYOB readers) or a plain one. */
function streamOf(bytes: Uint8Array, byob: boolean): ReadableStream<Uint8Array> {
  let offset = 0;
  const piece = 70_001;
  if (!byob) {
    return new ReadableStream({
      pull(controller) {
        if (offset >= bytes.length) return controller.close();
        controller.enqueue(bytes.slice(offset, offset += piece));
      },
    });
  }
  return new ReadableStream({
    type: "bytes",
    pull(controller) {
      if (offset >= bytes.length) {
        // A reader waiting with its buffer gets it back empty.
        controller.close();
        return controller.byobRequest?.respond(0);
      }
      const request = controller.byobRequest!;
      const view = request.view! as Uint8Array;
      const n = Math.min(view.length, piece, bytes.length - offset);
      view.set(bytes.subarray(offset, offset += n));
      request.respond(n);
    },
  });
}

Deno.test("stream sources, byte or plain, arrive intact through the pool's unmovable buffers", async () => {
  const data = randomBytes(3 * (1 << 20) + 4567);
  for (const byob of [true, false]) {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const pool = new WatchedPool();
    const received: Uint8Array[] = [];
    const [got, sent] = await Promise.all([
      (async () => {
        using conn = await listener.accept();
        return await receiveData(new FrameReader(conn), {
          write: (chunk) => Promise.resolve(void received.push(chunk.slice())),
        });
      })(),
      (async () => {
        using conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
        const out = new FrameWriter(conn.writable, { direct: conn });
        return await sendData(streamOf(data, byob), out, { pool });
      })(),
    ]);
    assert.deepEqual(concatBytes(received), data, `byob ${byob}`);
    assert.equal(got.checksum, sent.checksum);
    assert.ok(pool.lent.every((b) => b.buffer === hashArena()!.buffer), "leased from the arena");
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

Deno.test("writeAllSync does the same without leaving the thread", () => {
  const calls: number[] = [];
  const written: Uint8Array[] = [];
  const writer = {
    writeSync(p: Uint8Array): number {
      calls.push(p.length);
      const n = Math.min(p.length, 300_000);
      written.push(p.slice(0, n));
      return n;
    },
  };
  const bytes = new Uint8Array(FILE_WRITE_PIECE * 2 + 1000).map((_, i) => i % 251);
  writeAllSync(writer, bytes, { piece: FILE_WRITE_PIECE });
  assert.ok(calls.every((n) => n <= FILE_WRITE_PIECE), `call sizes ${calls}`);
  assert.deepEqual(concatBytes(written), bytes);
  calls.length = 0;
  written.length = 0;
  writeAllSync(writer, bytes);
  assert.equal(calls[0], bytes.length, "without a piece, the first call offers everything");
  assert.deepEqual(concatBytes(written), bytes);
});
