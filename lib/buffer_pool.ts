/**
 * Transfer buffers under one memory budget. Each transfer leases a pair of buffers (one filling
 * while the other drains); when many transfers run at once the budget is shared by handing out
 * smaller buffers instead of growing as connections x 32 MiB.
 *
 * @module
 */

import { CHUNK_SIZE } from "./frames.ts";
import { hashArena } from "./xxh3.ts";

/**
 * Working buffer size of a transfer. The wire allows 32 MiB frames (the seed's chunk size), but
 * every byte passes through memory three times on each side (the kernel's copy in, the checksum,
 * the kernel's copy out) and those passes are the cost: a piece small enough to stay in the CPU
 * cache between them is cheaper to move (docs/performance.md, "Transfer buffers of 1 MiB"). It is
 * also the size of a slot in the checksum kernel's memory (see `ArenaSlots`).
 */
export const TRANSFER_BUFFER_SIZE = 1 << 20;

/**
 * A buffer whose memory starts on a page boundary. The kernel copies a file's pages into user
 * memory up to five times slower when the destination is 1-31 bytes past a 64-byte boundary
 * (docs/performance.md, "Aligned buffers"), and a plain
 * `ArrayBuffer` of a MiB comes from `malloc`, 16 bytes past a page. V8 reserves a resizable
 * `ArrayBuffer` in whole pages, so one that cannot grow is an aligned fixed-size buffer. Its
 * memory stays put only while nothing transfers it: a BYOB read reallocates it (unaligned), so
 * the transfer path reads sockets and files with `read` instead (see `FrameReader`, `sendData`).
 * The pool's buffers in the checksum kernel's memory start on page boundaries too.
 */
export function alignedBuffer(size: number): ArrayBuffer {
  return new ArrayBuffer(size, { maxByteLength: size });
}

/** Options for {@link BufferPool}. */
export interface BufferPoolOptions {
  /** Largest buffer handed out; defaults to {@link TRANSFER_BUFFER_SIZE}. */
  bufferSize?: number;
  /** Bytes all leased buffers may add up to before smaller ones are handed out (default 256 MiB). */
  budget?: number;
  /** Smallest buffer handed out, even over budget, so no transfer ever waits (default 256 KiB). */
  minBufferSize?: number;
}

/**
 * Slots of the checksum kernel's memory, shared by every pool in the process. A buffer there is
 * hashed where it lies, which saves copying each byte into the kernel (docs/performance.md,
 * "Hashing in place"). Pools fall back to ordinary aligned buffers once the slots run out, or
 * where the kernel has none (see `hashArena`).
 */
class ArenaSlots {
  #arena?: Uint8Array<ArrayBuffer> | null;
  #free: number[] = [];

  #load(): Uint8Array<ArrayBuffer> | null {
    if (this.#arena !== undefined) return this.#arena;
    this.#arena = hashArena();
    const slots = this.#arena ? Math.floor(this.#arena.length / TRANSFER_BUFFER_SIZE) : 0;
    // Lowest first, so a quiet process keeps reusing the same few pages.
    this.#free = Array.from({ length: slots }, (_, i) => (slots - 1 - i) * TRANSFER_BUFFER_SIZE);
    return this.#arena;
  }

  take(size: number): Uint8Array<ArrayBuffer> | null {
    const arena = this.#load();
    if (!arena || size > TRANSFER_BUFFER_SIZE || this.#free.length === 0) return null;
    const offset = this.#free.pop()!;
    return arena.subarray(offset, offset + size);
  }

  /** Takes back a buffer from {@link take}; false if it did not come from here. */
  give(buffer: Uint8Array): boolean {
    const arena = this.#arena;
    if (!arena || buffer.buffer !== arena.buffer) return false;
    this.#free.push(buffer.byteOffset - arena.byteOffset);
    return true;
  }
}

const arenaSlots = new ArenaSlots();

/** Hands out reusable buffers within a memory budget. */
export class BufferPool {
  /** Largest buffer handed out. */
  readonly bufferSize: number;
  /** Bytes all leased buffers may add up to before smaller ones are handed out. */
  readonly budget: number;
  /** Smallest buffer handed out. */
  readonly minBufferSize: number;
  #leased = 0;
  #free = new Map<number, ArrayBuffer[]>();

  /** Creates a pool. */
  constructor(options: BufferPoolOptions = {}) {
    this.bufferSize = options.bufferSize ?? TRANSFER_BUFFER_SIZE;
    this.budget = options.budget ?? 8 * CHUNK_SIZE;
    this.minBufferSize = Math.min(options.minBufferSize ?? 256 << 10, this.bufferSize);
  }

  /** Bytes currently leased. */
  get leased(): number {
    return this.#leased;
  }

  /**
   * Leases a buffer of at most `wanted` bytes (default: the pool's buffer size). It is smaller
   * when the budget is short, but never below the minimum size. It stays put while leased: pass
   * it to nothing that transfers its memory (a BYOB read).
   */
  lease(wanted: number = this.bufferSize): Uint8Array<ArrayBuffer> {
    let size = Math.min(wanted, this.bufferSize);
    while (size > this.minBufferSize && this.#leased + size > this.budget) size >>>= 1;
    size = Math.max(size, Math.min(wanted, this.minBufferSize));
    this.#leased += size;
    const inArena = arenaSlots.take(size);
    if (inArena) return inArena;
    const free = this.#free.get(size);
    return new Uint8Array(free?.pop() ?? alignedBuffer(size));
  }

  /** Returns a buffer exactly as {@link lease} handed it out. */
  release(buffer: Uint8Array<ArrayBuffer>): void {
    this.#leased -= buffer.length;
    if (arenaSlots.give(buffer)) return;
    const free = this.#free.get(buffer.length) ?? [];
    if (this.#leased + free.length * buffer.length < this.budget) {
      free.push(buffer.buffer);
      this.#free.set(buffer.length, free);
    }
  }
}

/** The process-wide pool used when a caller does not bring its own. */
export const defaultPool: BufferPool = new BufferPool();
