/**
 * XXH3-128 (the `xxh128` of xxHash 0.8, default secret, seed 0) as an incremental hasher whose
 * bulk work runs in a small SIMD WebAssembly kernel written out below. Every byte of a transfer
 * is hashed on both sides, so this loop is on every transfer's CPU budget: the kernel keeps the
 * eight accumulators in vector registers and does two lanes per instruction, where the scalar
 * build in hash-wasm did one. The kernel's memory also has room for the transfer buffers
 * ({@link hashArena}), which it then hashes without copying them in. Inputs of 240 bytes or less,
 * and the final merge, run once per digest and are done with BigInt.
 *
 * @module
 */

const PRIME32_1 = 0x9E3779B1n;
const PRIME32_2 = 0x85EBCA77n;
const PRIME32_3 = 0xC2B2AE3Dn;
const PRIME64_1 = 0x9E3779B185EBCA87n;
const PRIME64_2 = 0xC2B2AE3D27D4EB4Fn;
const PRIME64_3 = 0x165667B19E3779F9n;
const PRIME64_4 = 0x85EBCA77C2B2AE63n;
const PRIME64_5 = 0x27D4EB2F165667C5n;
const MASK64 = (1n << 64n) - 1n;

/** The default secret of XXH3, 192 bytes. */
const SECRET = Uint8Array.from(
  (
    "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f" +
    "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c" +
    "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8" +
    "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364" +
    "eac5ac8334d3ebc3c581a0fffa1363eb170ddd51b7f0da49d316552629d4689e" +
    "2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e"
  ).match(/../g)!,
  (byte) => parseInt(byte, 16),
);
const SECRET_VIEW = new DataView(SECRET.buffer);

const STRIPE = 64;
/** Inputs up to this size take the short paths and are kept whole until the digest. */
const MIDSIZE_MAX = 240;

// Kernel memory: the secret, the accumulators, the last stripe of input, then the piece of input
// being hashed. Stripes are read from the last-stripe area straight on into the piece.
const MEM_SECRET = 0;
const MEM_ACC = 192;
const MEM_TAIL = 256;
const MEM_PIECE = MEM_TAIL + STRIPE;
/** Bytes copied into the kernel's memory at a time: small enough to stay in the L2 cache. */
const PIECE = 64 * 1024;
/** WebAssembly pages (64 KiB) the kernel's own workspace above takes. */
const WORKSPACE_PAGES = 2;
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

/**
 * The kernel: `accumulate(ptr, stripes, index, keyBase) -> index`. Feeds `stripes` 64-byte
 * stripes from `ptr` into the accumulators at MEM_ACC, stripe `index` of a 16-stripe block
 * using the secret from `keyBase + 8 * index`, and scrambles them after the 16th stripe of each
 * block. Returns the index of the next stripe in its block.
 */
function kernelBytes(pages: number): Uint8Array<ArrayBuffer> {
  const SIMD = 0xfd;
  // Locals: 0 ptr, 1 stripes, 2 index, 3 keyBase (i32 params); 4 key (i32); 5-8 acc (v128);
  // 9 data, 10 mixed (v128).
  const [PTR, STRIPES, INDEX, KEYBASE, KEY, DATA, MIXED] = [0, 1, 2, 3, 4, 9, 10];
  const ACC = (lane: number) => 5 + lane;
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const i32 = (n: number) => [0x41, ...sleb(n)];
  const load = (offset: number) => [SIMD, 0x00, 0, ...uleb(offset)];
  const store = (offset: number) => [SIMD, 0x0b, 0, ...uleb(offset)];
  const shuffle = (lanes: number[]) => [SIMD, 0x0d, ...lanes];
  const XOR = [SIMD, 0x51];
  const ADD64 = [SIMD, 0xce, 0x01];
  const MUL64 = [SIMD, 0xd5, 0x01];
  const SHR64 = [SIMD, 0xcd, 0x01];
  const EXTMUL_LOW_U32 = [SIMD, 0xde, 0x01];
  const SPLAT64 = [SIMD, 0x12];
  const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
  const SWAP_HALVES = [...range(8, 8), ...range(0, 8)];
  const LOW_WORDS = [...range(0, 4), ...range(8, 4), ...range(0, 8)];
  const HIGH_WORDS = [...range(4, 4), ...range(12, 4), ...range(0, 8)];

  const lanes = [0, 1, 2, 3];
  // deno-fmt-ignore: one line per wasm instruction group reads like the text format
  const body = [
    ...lanes.flatMap((j) => [...i32(0), ...load(MEM_ACC + 16 * j), ...set(ACC(j))]),
    0x02, 0x40, // block
    0x03, 0x40, // loop
    ...get(STRIPES), 0x45, 0x0d, 1, // stripes == 0: done
    ...get(KEYBASE), ...get(INDEX), ...i32(3), 0x74, 0x6a, ...set(KEY), // key = keyBase + index*8
    ...lanes.flatMap((j) => [
      ...get(PTR), ...load(16 * j), ...set(DATA),
      ...get(DATA), ...get(KEY), ...load(MEM_SECRET + 16 * j), ...XOR, ...set(MIXED),
      // acc[i ^ 1] += data[i]; acc[i] += lo32(mixed[i]) * hi32(mixed[i])
      ...get(ACC(j)), ...get(DATA), ...get(DATA), ...shuffle(SWAP_HALVES), ...ADD64,
      ...get(MIXED), ...get(MIXED), ...shuffle(LOW_WORDS),
      ...get(MIXED), ...get(MIXED), ...shuffle(HIGH_WORDS), ...EXTMUL_LOW_U32, ...ADD64,
      ...set(ACC(j)),
    ]),
    ...get(PTR), ...i32(STRIPE), 0x6a, ...set(PTR),
    ...get(STRIPES), ...i32(1), 0x6b, ...set(STRIPES),
    ...get(INDEX), ...i32(1), 0x6a, ...set(INDEX),
    ...get(INDEX), ...i32(16), 0x46, 0x04, 0x40, // if index == 16: scramble
    ...lanes.flatMap((j) => [
      ...get(ACC(j)), ...get(ACC(j)), ...i32(47), ...SHR64, ...XOR,
      ...i32(0), ...load(MEM_SECRET + 128 + 16 * j), ...XOR,
      0x42, ...sleb(Number(PRIME32_1)), ...SPLAT64, ...MUL64, ...set(ACC(j)),
    ]),
    ...i32(0), ...set(INDEX),
    0x0b, // end if
    0x0c, 0, // next stripe
    0x0b, // end loop
    0x0b, // end block
    ...lanes.flatMap((j) => [...i32(0), ...get(ACC(j)), ...store(MEM_ACC + 16 * j)]),
    ...get(INDEX),
    0x0b,
  ];
  const locals = [2, 1, 0x7f, 6, 0x7b]; // one i32, six v128
  const code = [...uleb(locals.length + body.length), ...locals, ...body];
  const section = (id: number, bytes: number[]) => [id, ...uleb(bytes.length), ...bytes];
  const name = (text: string) => [text.length, ...new TextEncoder().encode(text)];
  // deno-fmt-ignore
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f]), // (i32 x4) -> i32
    ...section(3, [1, 0]),
    ...section(5, [1, 0x01, ...uleb(pages), ...uleb(pages)]), // fixed: growing detaches views
    ...section(7, [2, ...name("memory"), 0x02, 0, ...name("accumulate"), 0x00, 0]),
    ...section(10, [1, ...code]),
  ]);
}

function uleb(n: number): number[] {
  const out = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  let v = BigInt(n);
  const out = [];
  while (true) {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    const done = (v === 0n && (byte & 0x40) === 0) || (v === -1n && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

interface Kernel {
  memory: Uint8Array;
  accumulate(ptr: number, stripes: number, index: number, keyBase: number): number;
}

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
    kernel = instantiate(WORKSPACE_PAGES + (requested ?? DEFAULT_HASH_ARENA_SIZE) / 65536);
  } catch (error) {
    // A system that will not commit the arena (strict overcommit, a memory limit) still gets
    // the kernel, with no arena: buffers elsewhere are copied in, as before the arena.
    if (!(error instanceof RangeError)) throw error;
    kernel = instantiate(WORKSPACE_PAGES);
  }
  return kernel;
}

function instantiate(pages: number): Kernel {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(kernelBytes(pages)));
  const exports = instance.exports as unknown as {
    memory: WebAssembly.Memory;
    accumulate: Kernel["accumulate"];
  };
  const memory = new Uint8Array(exports.memory.buffer);
  memory.set(SECRET, MEM_SECRET);
  return { memory, accumulate: exports.accumulate };
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

/** The accumulators every hash starts from, made once: each file's hasher copies them. */
const INITIAL_ACC = (() => {
  const acc = new Uint8Array(64);
  const view = new DataView(acc.buffer);
  [PRIME32_3, PRIME64_1, PRIME64_2, PRIME64_3, PRIME64_4, PRIME32_2, PRIME64_5, PRIME32_1]
    .forEach((value, i) => view.setBigUint64(8 * i, value, true));
  return acc;
})();

/** An incremental XXH3-128 hash. */
export class Xxh3Hasher {
  #acc = INITIAL_ACC.slice();
  /** Index of the next stripe within its 16-stripe block. */
  #index = 0;
  /** The last 64 bytes seen; the final `#pending` of them are not yet accumulated. */
  #tail = new Uint8Array(STRIPE);
  #pending = 0;
  #total = 0;
  /**
   * The bytes so far while they are short enough to take the short paths; made only then, so a
   * larger file's hasher allocates no buffer of its own for it.
   */
  #head?: Uint8Array;

  /** Adds bytes. */
  update(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    // Past MIDSIZE_MAX in all, the head is never read again.
    if (this.#total + bytes.length <= MIDSIZE_MAX) {
      (this.#head ??= new Uint8Array(MIDSIZE_MAX)).set(bytes, this.#total);
    }
    this.#total += bytes.length;
    const { memory, accumulate } = loadKernel();
    memory.set(this.#acc, MEM_ACC);
    memory.set(this.#tail, MEM_TAIL);
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
    this.#acc.set(memory.subarray(MEM_ACC, MEM_ACC + 64));
    this.#tail.set(memory.subarray(MEM_TAIL, MEM_TAIL + STRIPE));
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
    const [high, low] = this.#total <= MIDSIZE_MAX
      ? shortHash(this.#head?.subarray(0, this.#total) ?? new Uint8Array(0))
      : this.#longHash();
    return high.toString(16).padStart(16, "0") + low.toString(16).padStart(16, "0");
  }

  /** An independent copy. */
  clone(): Xxh3Hasher {
    const copy = new Xxh3Hasher();
    copy.#acc.set(this.#acc);
    copy.#index = this.#index;
    copy.#tail.set(this.#tail);
    copy.#pending = this.#pending;
    copy.#total = this.#total;
    copy.#head = this.#head?.slice();
    return copy;
  }

  #longHash(): [bigint, bigint] {
    const { memory, accumulate } = loadKernel();
    memory.set(this.#acc, MEM_ACC);
    memory.set(this.#tail, MEM_TAIL);
    accumulate(MEM_TAIL, 1, 0, MEM_SECRET + 192 - STRIPE - 7);
    const view = new DataView(memory.buffer, MEM_ACC, 64);
    const acc = Array.from({ length: 8 }, (_, i) => view.getBigUint64(8 * i, true));
    const length = BigInt(this.#total);
    const low = mergeAccs(acc, 11, (length * PRIME64_1) & MASK64);
    const high = mergeAccs(acc, 192 - 64 - 11, ~(length * PRIME64_2) & MASK64);
    return [high, low];
  }
}

function secret64(offset: number): bigint {
  return SECRET_VIEW.getBigUint64(offset, true);
}

function secret32(offset: number): bigint {
  return BigInt(SECRET_VIEW.getUint32(offset, true));
}

function read64(bytes: Uint8Array, offset: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(offset, true);
}

function read32(bytes: Uint8Array, offset: number): bigint {
  return BigInt(new DataView(bytes.buffer, bytes.byteOffset).getUint32(offset, true));
}

function mul128(a: bigint, b: bigint): [bigint, bigint] {
  const product = a * b;
  return [product >> 64n, product & MASK64];
}

function mulFold64(a: bigint, b: bigint): bigint {
  const [high, low] = mul128(a, b);
  return high ^ low;
}

function avalanche(h: bigint): bigint {
  h ^= h >> 37n;
  h = (h * 0x165667919E3779F9n) & MASK64;
  return h ^ (h >> 32n);
}

function avalanche64(h: bigint): bigint {
  h ^= h >> 33n;
  h = (h * PRIME64_2) & MASK64;
  h ^= h >> 29n;
  h = (h * PRIME64_3) & MASK64;
  return h ^ (h >> 32n);
}

function swap32(x: bigint): bigint {
  return ((x & 0xffn) << 24n) | ((x & 0xff00n) << 8n) | ((x >> 8n) & 0xff00n) | (x >> 24n);
}

function swap64(x: bigint): bigint {
  return (swap32(x & 0xffffffffn) << 32n) | swap32(x >> 32n);
}

function rotl32(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (32n - r))) & 0xffffffffn;
}

function mergeAccs(acc: bigint[], secretOffset: number, start: bigint): bigint {
  let result = start;
  for (let i = 0; i < 4; i++) {
    result += mulFold64(
      acc[2 * i] ^ secret64(secretOffset + 16 * i),
      acc[2 * i + 1] ^ secret64(secretOffset + 16 * i + 8),
    );
  }
  return avalanche(result & MASK64);
}

function mix16(input: Uint8Array, at: number, secretOffset: number, seed: bigint): bigint {
  return mulFold64(
    read64(input, at) ^ ((secret64(secretOffset) + seed) & MASK64),
    read64(input, at + 8) ^ ((secret64(secretOffset + 8) - seed) & MASK64),
  );
}

function mix32(
  acc: [bigint, bigint],
  input: Uint8Array,
  at: [number, number],
  secretOffset: number,
  seed: bigint,
): [bigint, bigint] {
  let [low, high] = acc;
  low = (low + mix16(input, at[0], secretOffset, seed)) & MASK64;
  low ^= (read64(input, at[1]) + read64(input, at[1] + 8)) & MASK64;
  high = (high + mix16(input, at[1], secretOffset + 16, seed)) & MASK64;
  high ^= (read64(input, at[0]) + read64(input, at[0] + 8)) & MASK64;
  return [low, high];
}

/** XXH3-128 of an input of at most 240 bytes, as [high, low]. */
function shortHash(input: Uint8Array): [bigint, bigint] {
  const len = input.length;
  const length = BigInt(len);
  if (len === 0) {
    return [
      avalanche64(secret64(80) ^ secret64(88)),
      avalanche64(secret64(64) ^ secret64(72)),
    ];
  }
  if (len <= 3) {
    const combinedLow = (BigInt(input[0]) << 16n) | (BigInt(input[len >> 1]) << 24n) |
      BigInt(input[len - 1]) | (length << 8n);
    const combinedHigh = rotl32(swap32(combinedLow), 13n);
    return [
      avalanche64(combinedHigh ^ (secret32(8) ^ secret32(12))),
      avalanche64(combinedLow ^ (secret32(0) ^ secret32(4))),
    ];
  }
  if (len <= 8) {
    const keyed = (read32(input, 0) + (read32(input, len - 4) << 32n)) ^
      (secret64(16) ^ secret64(24));
    let [high, low] = mul128(keyed, PRIME64_1 + (length << 2n));
    high = (high + (low << 1n)) & MASK64;
    low ^= high >> 3n;
    low ^= low >> 35n;
    low = (low * 0x9FB21C651E98DF25n) & MASK64;
    low ^= low >> 28n;
    return [avalanche(high), low];
  }
  if (len <= 16) {
    const flipLow = secret64(32) ^ secret64(40);
    const flipHigh = secret64(48) ^ secret64(56);
    const inputLow = read64(input, 0);
    const inputHigh = read64(input, len - 8) ^ flipHigh;
    let [mHigh, mLow] = mul128(inputLow ^ read64(input, len - 8) ^ flipLow, PRIME64_1);
    mLow = (mLow + ((length - 1n) << 54n)) & MASK64;
    mHigh = (mHigh + inputHigh + (inputHigh & 0xffffffffn) * (PRIME32_2 - 1n)) & MASK64;
    mLow ^= swap64(mHigh);
    let [high, low] = mul128(mLow, PRIME64_2);
    high = (high + mHigh * PRIME64_2) & MASK64;
    return [avalanche(high), avalanche(low)];
  }
  let acc: [bigint, bigint] = [(length * PRIME64_1) & MASK64, 0n];
  if (len <= 128) {
    if (len > 32) {
      if (len > 64) {
        if (len > 96) acc = mix32(acc, input, [48, len - 64], 96, 0n);
        acc = mix32(acc, input, [32, len - 48], 64, 0n);
      }
      acc = mix32(acc, input, [16, len - 32], 32, 0n);
    }
    acc = mix32(acc, input, [0, len - 16], 0, 0n);
  } else {
    for (let i = 0; i < 4; i++) acc = mix32(acc, input, [32 * i, 32 * i + 16], 32 * i, 0n);
    acc = [avalanche(acc[0]), avalanche(acc[1])];
    const rounds = Math.floor(len / 32);
    for (let i = 4; i < rounds; i++) {
      acc = mix32(acc, input, [32 * i, 32 * i + 16], 3 + 32 * (i - 4), 0n);
    }
    acc = mix32(acc, input, [len - 16, len - 32], 136 - 17 - 16, 0n);
  }
  const [low, high] = acc;
  const outHigh = (low * PRIME64_1 + high * PRIME64_4 + length * PRIME64_2) & MASK64;
  return [(-avalanche(outHigh)) & MASK64, avalanche((low + high) & MASK64)];
}
