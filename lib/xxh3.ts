/**
 * XXH3-128 (the `xxh128` of xxHash 0.8, default secret, seed 0) as an incremental hasher over the
 * WebAssembly kernel of `xxh3_kernel.ts`, which does the bulk in SIMD and the digest in native
 * 64-bit arithmetic. Every byte of a transfer is hashed on both sides, and every file digested
 * once on each, so both are on a transfer's CPU budget. This module owns when the kernel loads,
 * the arena in its memory for transfer buffers ({@link hashArena}, hashed there without a copy),
 * and how each hasher carries its state in and out of the kernel's one workspace.
 *
 * @module
 */

import {
  INITIAL_STATE,
  instantiateKernel,
  type Kernel,
  kernelBytes,
  MEM_PIECE,
  MEM_SECRET,
  MEM_TAIL,
  MIDSIZE_MAX,
  PIECE,
  STRIPE,
  WORKSPACE_PAGES,
} from "./xxh3_kernel.ts";

/**
 * The largest arena: kernel memory after the workspace that callers may keep their buffers in
 * (see {@link hashArena}); bytes there are hashed where they lie instead of copied in piece by
 * piece. The server asks for this much, one slot per buffer its pool may lease at once. Only the
 * pages a caller touches take real memory.
 */
export const HASH_ARENA_SIZE = 256 << 20;

/**
 * The arena of a process that asked for none (see {@link requestHashArena}): a client moves one
 * file at a time with two 1 MiB buffers, so 8 MiB leaves room to spare, and a system that will
 * not commit {@link HASH_ARENA_SIZE} still grants it.
 */
export const DEFAULT_HASH_ARENA_SIZE = 8 << 20;

let kernel: Kernel | undefined;
let supported: boolean | undefined;
/** The largest arena asked for before the kernel loaded; undefined while nobody asked. */
let requested: number | undefined;

/**
 * Asks for an arena of `bytes` (rounded down to whole 64 KiB pages, at most
 * {@link HASH_ARENA_SIZE}; 0 for none needed). The arena belongs to the process, not to a caller:
 * until the kernel first loads (at the first hash or buffer lease), the largest request wins, and
 * with no request at all the arena is {@link DEFAULT_HASH_ARENA_SIZE}. From then on its memory is
 * fixed (growing it would detach every buffer already handed out), and a larger request goes
 * unmet: buffers past the arena are ordinary ones, hashed by copying, never wrong. Returns the
 * arena size in effect, or to be, after this request.
 */
export function requestHashArena(bytes: number): number {
  if (!kernel) {
    const size = bytes > 0 ? Math.floor(Math.min(bytes, HASH_ARENA_SIZE) / 65536) * 65536 : 0;
    requested = Math.max(requested ?? 0, size);
    return requested;
  }
  return kernel.memory.length - WORKSPACE_PAGES * 65536;
}

/**
 * Whether this runtime can run the SIMD kernel. V8 needs SSE4.1 for WebAssembly SIMD on x86-64,
 * which some virtual CPUs (QEMU's default `qemu64`) do not offer.
 */
export function simdKernelSupported(): boolean {
  supported ??= WebAssembly.validate(kernelBytes(WORKSPACE_PAGES));
  return supported;
}

function loadKernel(): Kernel {
  if (kernel) return kernel;
  try {
    kernel = instantiateKernel(WORKSPACE_PAGES + (requested ?? DEFAULT_HASH_ARENA_SIZE) / 65536);
  } catch (error) {
    // A system that will not commit the arena (strict overcommit, a memory limit) still gets
    // the kernel, with no arena: buffers elsewhere are copied in, as before the arena.
    if (!(error instanceof RangeError)) throw error;
    kernel = instantiateKernel(WORKSPACE_PAGES);
  }
  return kernel;
}

/**
 * The part of the kernel's memory set aside for callers' buffers (sized by
 * {@link requestHashArena}, starting on a page boundary), or null where the
 * SIMD kernel cannot run or the system would not give it the memory. A view into it passed to
 * {@link Xxh3Hasher.update} is hashed in place. The memory never grows, so views stay valid.
 */
export function hashArena(): Uint8Array<ArrayBuffer> | null {
  if (!simdKernelSupported()) return null;
  const { memory } = loadKernel();
  const arena = memory.subarray(WORKSPACE_PAGES * 65536) as Uint8Array<ArrayBuffer>;
  return arena.length > 0 ? arena : null;
}

/** An incremental XXH3-128 hash. */
export class Xxh3Hasher {
  /**
   * The accumulators and the last 64 bytes seen (the final `#pending` of them not yet
   * accumulated), as in kernel memory; made at the first update that goes past MIDSIZE_MAX.
   */
  #state?: Uint8Array;
  /** Index of the next stripe within its 16-stripe block. */
  #index = 0;
  #pending = 0;
  #total = 0;
  /**
   * The bytes so far while there are at most MIDSIZE_MAX: they are hashed whole at the digest,
   * and handed to the kernel only once the input grows past that.
   */
  #head?: Uint8Array;

  /** Adds bytes. */
  update(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const total = this.#total + bytes.length;
    if (total <= MIDSIZE_MAX) {
      (this.#head ??= new Uint8Array(MIDSIZE_MAX)).set(bytes, this.#total);
    } else {
      if (this.#head) this.#accumulate(this.#head.subarray(0, this.#total));
      this.#head = undefined;
      this.#accumulate(bytes);
    }
    this.#total = total;
  }

  /** Feeds bytes through the kernel, carrying the state in and out. */
  #accumulate(bytes: Uint8Array): void {
    const { memory, state, accumulate } = loadKernel();
    state.set(this.#state ?? INITIAL_STATE);
    let index = this.#index;
    let pending = this.#pending;
    const inArena = bytes.buffer === memory.buffer && bytes.byteOffset >= WORKSPACE_PAGES * 65536;
    if (inArena && bytes.length > STRIPE) {
      // Already in kernel memory. Only the first stripe is copied, to join the kept tail.
      memory.set(bytes.subarray(0, STRIPE), MEM_PIECE);
      let stripes = Math.floor((pending + STRIPE - 1) / STRIPE);
      index = accumulate(MEM_PIECE - pending, stripes, index, MEM_SECRET);
      // What is pending now lies at the end of that first stripe, and so also in place.
      pending += STRIPE - stripes * STRIPE;
      const available = pending + bytes.length - STRIPE;
      stripes = Math.floor((available - 1) / STRIPE);
      index = accumulate(bytes.byteOffset + STRIPE - pending, stripes, index, MEM_SECRET);
      pending = available - stripes * STRIPE;
      const end = bytes.byteOffset + bytes.length;
      memory.copyWithin(MEM_TAIL, end - STRIPE, end);
    } else {
      [index, pending] = this.#copyIn(bytes, index, pending);
    }
    (this.#state ??= new Uint8Array(state.length)).set(state);
    this.#index = index;
    this.#pending = pending;
  }

  /** Hashes `bytes` by copying them into the kernel's workspace a piece at a time. */
  #copyIn(bytes: Uint8Array, index: number, pending: number): [number, number] {
    const { memory, accumulate } = loadKernel();
    for (let offset = 0; offset < bytes.length; offset += PIECE) {
      const piece = bytes.subarray(offset, offset + PIECE);
      memory.set(piece, MEM_PIECE);
      const available = pending + piece.length;
      // A stripe is accumulated only once a byte after it has arrived: the last stripe of the
      // input is treated differently, at the digest.
      const stripes = Math.floor((available - 1) / STRIPE);
      index = accumulate(MEM_PIECE - pending, stripes, index, MEM_SECRET);
      pending = available - stripes * STRIPE;
      const end = MEM_PIECE + piece.length;
      memory.copyWithin(MEM_TAIL, end - STRIPE, end);
    }
    return [index, pending];
  }

  /** The hash of everything added so far, as 32 hex digits (high half first). */
  digest(): string {
    const { memory, state, digest, finishShort, finishLong } = loadKernel();
    if (this.#total <= MIDSIZE_MAX) {
      if (this.#head) memory.set(this.#head, MEM_PIECE);
      finishShort(MEM_PIECE, this.#total);
    } else {
      state.set(this.#state!);
      finishLong(this.#total);
    }
    let hex = "";
    for (let i = 0; i < digest.length; i++) hex += HEX[digest[i]];
    return hex;
  }

  /** An independent copy. */
  clone(): Xxh3Hasher {
    const copy = new Xxh3Hasher();
    copy.#state = this.#state?.slice();
    copy.#index = this.#index;
    copy.#pending = this.#pending;
    copy.#total = this.#total;
    copy.#head = this.#head?.slice();
    return copy;
  }
}

/** Each byte's two hex digits: a table beats `toString(16)` on the digest's words fivefold. */
const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));
