/**
 * The XXH3-128 kernel: a WebAssembly module written out byte by byte, and the layout of its
 * memory. Its SIMD loop feeds stripes of input into the accumulators, keeping the eight of them in
 * vector registers and doing two lanes per instruction where hash-wasm's scalar build did one.
 * Its scalar functions compute the digest in native 64-bit arithmetic (the short paths for inputs
 * of at most 240 bytes, the final merge for longer ones), which in JavaScript would need BigInt
 * and cost a small file more than hashing its bytes. `xxh3.ts` owns when it loads and how
 * hashers use it.
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

/** Bytes of input the accumulators take in at a time. */
export const STRIPE = 64;
/** Inputs up to this size take the short paths (`finishShort`), hashed whole at the digest. */
export const MIDSIZE_MAX = 240;

// Kernel memory: the secret, the accumulators, the last stripe of input, the piece of input being
// hashed, the digest. Stripes are read from the last-stripe area straight on into the piece.
export const MEM_SECRET = 0;
export const MEM_ACC = 192;
export const MEM_TAIL = 256;
export const MEM_PIECE = MEM_TAIL + STRIPE;
/** Bytes copied into the kernel's memory at a time: small enough to stay in the L2 cache. */
export const PIECE = 64 * 1024;
/** Where the kernel writes a digest, 16 bytes. */
export const MEM_OUT = MEM_PIECE + PIECE;
/** WebAssembly pages (64 KiB) the kernel's own workspace above takes. */
export const WORKSPACE_PAGES = 2;

/**
 * The kernel's module. `accumulate(ptr, stripes, index, keyBase) -> index` feeds `stripes`
 * 64-byte stripes from `ptr` into the accumulators at MEM_ACC, stripe `index` of a 16-stripe
 * block using the secret from `keyBase + 8 * index`, and scrambles them after the 16th stripe of
 * each block; it returns the index of the next stripe in its block. The digest is written to
 * MEM_OUT as 16 bytes, big endian (the order of its hex digits): `finishShort(ptr, length)` hashes
 * a whole input of at most MIDSIZE_MAX bytes; `finishLong(total)` accumulates the last stripe,
 * kept at MEM_TAIL, and merges the accumulators. The secret is a data segment.
 */
export function kernelBytes(pages: number): Uint8Array<ArrayBuffer> {
  // Building the functions' code costs milliseconds, at every process's first checksum (twice:
  // to validate, then to load): it is built once, and only the memory's size differs.
  const { before, after } = kernelSections ??= buildSections();
  const section = sectionBytes(5, [1, 0x01, ...uleb(pages), ...uleb(pages)]); // fixed: growing detaches views
  const bytes = new Uint8Array(before.length + section.length + after.length);
  bytes.set(before);
  bytes.set(section, before.length);
  bytes.set(after, before.length + section.length);
  return bytes;
}

/** The kernel's bytes before its memory section and after it, made once by {@link kernelBytes}. */
let kernelSections: { before: Uint8Array; after: Uint8Array } | undefined;

/** A module section: its id, its size and its bytes. */
function sectionBytes(id: number, bytes: number[]): number[] {
  return [id, ...uleb(bytes.length), ...bytes];
}

function buildSections(): { before: Uint8Array; after: Uint8Array } {
  const functions = [accumulateFunction(), ...digestFunctions()];
  const vector = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  const types = (list: number[]) => [...uleb(list.length), ...list];
  const section = sectionBytes;
  const name = (text: string) => [text.length, ...new TextEncoder().encode(text)];
  const exported = functions.flatMap((f, i) => f.name ? [[...name(f.name), 0x00, i]] : []);
  const bodies = functions.map((f) => {
    const code = [...vector(f.locals.map((type) => [1, type])), ...f.body, 0x0b];
    return [...uleb(code.length), ...code];
  });
  // deno-fmt-ignore
  const before = new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vector(functions.map((f) => [0x60, ...types(f.params), ...types(f.results)]))),
    ...section(3, vector(functions.map((_, i) => [i]))), // function i has type i
  ]);
  // The memory section (5) goes between these.
  // deno-fmt-ignore
  const after = new Uint8Array([
    ...section(7, vector([[...name("memory"), 0x02, 0], ...exported])),
    ...section(10, vector(bodies)),
    ...section(11, [1, 0x00, ...i32(MEM_SECRET), 0x0b, ...uleb(SECRET.length), ...SECRET]),
  ]);
  return { before, after };
}

/** A function of the kernel: value types (0x7f i32, 0x7e i64, 0x7c f64, 0x7b v128) and code. */
interface KernelFunction {
  name?: string;
  params: number[];
  results: number[];
  locals: number[];
  body: number[];
}

const [I32, I64, F64, V128] = [0x7f, 0x7e, 0x7c, 0x7b];
const get = (local: number) => [0x20, local];
/** Pops into `local` what is on the stack, or what `value` leaves there. */
const set = (local: number, value: number[] = []) => [...value, 0x21, local];
const i32 = (n: number) => [0x41, ...sleb(n)];

function accumulateFunction(): KernelFunction {
  const SIMD = 0xfd;
  // Locals: 0 ptr, 1 stripes, 2 index, 3 keyBase (i32 params); 4 key (i32); 5-8 acc (v128);
  // 9 data, 10 mixed (v128).
  const [PTR, STRIPES, INDEX, KEYBASE, KEY, DATA, MIXED] = [0, 1, 2, 3, 4, 9, 10];
  const ACC = (lane: number) => 5 + lane;
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
      0x42, ...sleb(PRIME32_1), ...SPLAT64, ...MUL64, ...set(ACC(j)),
    ]),
    ...i32(0), ...set(INDEX),
    0x0b, // end if
    0x0c, 0, // next stripe
    0x0b, // end loop
    0x0b, // end block
    ...lanes.flatMap((j) => [...i32(0), ...get(ACC(j)), ...store(MEM_ACC + 16 * j)]),
    ...get(INDEX),
  ];
  return {
    name: "accumulate",
    params: [I32, I32, I32, I32],
    results: [I32],
    locals: [I32, ...Array(6).fill(V128)],
    body,
  };
}

/**
 * The digest's functions, after the reference C (`XXH3_len_*_128b`, `XXH3_hashLong_128b`),
 * written as nested expressions: `xor(a, b)` is the code of `a`, of `b`, then `i64.xor`.
 */
function digestFunctions(): KernelFunction[] {
  type Code = number[];
  // A binary operation on several operands applies from the left: add(a, b, c) is (a + b) + c.
  const binary = (opcode: number) => (first: Code, ...rest: Code[]) => [
    ...first,
    ...rest.flatMap((operand) => [...operand, opcode]),
  ];
  const unary = (opcode: number) => (operand: Code) => [...operand, opcode];
  // deno-fmt-ignore
  const [add, sub, mul, and, or, xor, shl, shr, rotl] =
    [0x7c, 0x7d, 0x7e, 0x83, 0x84, 0x85, 0x86, 0x88, 0x89].map(binary);
  // deno-fmt-ignore
  const [add32, sub32, shl32, shr32, rotl32, leU32, gtU32, geU32] =
    [0x6a, 0x6b, 0x74, 0x76, 0x77, 0x4d, 0x4b, 0x4f].map(binary);
  const eqz32 = unary(0x45);
  const wrap = unary(0xa7); // i64 -> i32
  const extend = unary(0xad); // u32 -> i64
  const k = (n: bigint) => [0x42, ...sleb(n)]; // i64.const
  const load64 = (address: Code, offset = 0) => [...address, 0x29, 3, ...uleb(offset)];
  const load32 = (address: Code, offset = 0) => [...address, 0x35, 2, ...uleb(offset)];
  const load8 = (address: Code) => [...address, 0x31, 0, 0];
  const store64 = (address: Code, value: Code, offset: number) =>
    [address, value, [0x37, 3, ...uleb(offset)]].flat();
  const secret64 = (offset: number) => load64(i32(0), MEM_SECRET + offset);
  const secret32 = (offset: number) => load32(i32(0), MEM_SECRET + offset);
  const call = (f: number, ...args: Code[]) => [...args.flat(), 0x10, f];
  const if_ = (condition: Code, then: Code, otherwise: Code = []) =>
    [condition, [0x04, 0x40], then, otherwise.length ? [0x05, ...otherwise] : [], [0x0b]].flat();
  /** Runs `body` until `done` is true, testing before each pass. */
  const loopUntil = (done: Code, body: Code) =>
    [[0x02, 0x40, 0x03, 0x40], done, [0x0d, 1], body, [0x0c, 0, 0x0b, 0x0b]].flat();
  const lo32 = (x: Code) => and(x, k(0xffffffffn));
  const hi32 = (x: Code) => shr(x, k(32n));
  const xorShift = (x: Code, bits: bigint) => xor(x, shr(x, k(bits)));

  // Function indices: accumulate is 0.
  const [MUL128, AVALANCHE, AVALANCHE64, SWAP64, MIX16, MIX32, MERGE] = [1, 2, 3, 4, 5, 6, 7];
  const mulFold = (a: Code, b: Code) => [...call(MUL128, a, b), 0x85]; // high ^ low

  // mul128(a, b) -> (low, high): the 128-bit product, from 32-bit halves.
  const [A, B, LL, HL, CROSS] = [0, 1, 2, 3, 4];
  const mul128: KernelFunction = {
    params: [I64, I64],
    results: [I64, I64],
    locals: [I64, I64, I64],
    body: [
      ...set(LL, mul(lo32(get(A)), lo32(get(B)))),
      ...set(HL, mul(hi32(get(A)), lo32(get(B)))),
      ...set(CROSS, add(hi32(get(LL)), lo32(get(HL)), mul(lo32(get(A)), hi32(get(B))))),
      ...or(shl(get(CROSS), k(32n)), lo32(get(LL))),
      ...add(hi32(get(HL)), hi32(get(CROSS)), mul(hi32(get(A)), hi32(get(B)))),
    ],
  };
  const H = 0;
  const avalanche: KernelFunction = {
    params: [I64],
    results: [I64],
    locals: [],
    body: [...set(H, mul(xorShift(get(H), 37n), k(0x165667919E3779F9n))), ...xorShift(get(H), 32n)],
  };
  const avalanche64: KernelFunction = {
    params: [I64],
    results: [I64],
    locals: [],
    body: [
      ...set(H, mul(xorShift(get(H), 33n), k(PRIME64_2))),
      ...set(H, mul(xorShift(get(H), 29n), k(PRIME64_3))),
      ...xorShift(get(H), 32n),
    ],
  };
  const swapPairs = (x: Code, bits: bigint, mask: bigint) =>
    or(shl(and(x, k(mask)), k(bits)), and(shr(x, k(bits)), k(mask)));
  const swap64: KernelFunction = {
    params: [I64],
    results: [I64],
    locals: [],
    body: [
      ...set(H, swapPairs(rotl(get(H), k(32n)), 16n, 0x0000ffff0000ffffn)),
      ...swapPairs(get(H), 8n, 0x00ff00ff00ff00ffn),
    ],
  };
  // mix16(ptr, secret): the 16 bytes at ptr keyed with those at secret, folded to 64 bits.
  const [PTR, KEY] = [0, 1];
  const mix16: KernelFunction = {
    params: [I32, I32],
    results: [I64],
    locals: [],
    body: mulFold(
      xor(load64(get(PTR)), load64(get(KEY))),
      xor(load64(get(PTR), 8), load64(get(KEY), 8)),
    ),
  };
  // mix32(low, high, first, second, secret) -> (low, high): two 16-byte pieces into the pair.
  const [LOW, HIGH, FIRST, SECOND, SECRET_AT] = [0, 1, 2, 3, 4];
  const sum16 = (ptr: Code) => add(load64(ptr), load64(ptr, 8));
  const mix32: KernelFunction = {
    params: [I64, I64, I32, I32, I32],
    results: [I64, I64],
    locals: [],
    body: [
      ...xor(add(get(LOW), call(MIX16, get(FIRST), get(SECRET_AT))), sum16(get(SECOND))),
      ...xor(
        add(get(HIGH), call(MIX16, get(SECOND), add32(get(SECRET_AT), i32(16)))),
        sum16(get(FIRST)),
      ),
    ],
  };
  // merge(secret, start): the eight accumulators at MEM_ACC into one 64-bit half.
  const [AT, START] = [0, 1];
  const acc = (i: number) => load64(i32(0), MEM_ACC + 8 * i);
  const merge: KernelFunction = {
    params: [I32, I64],
    results: [I64],
    locals: [],
    body: call(
      AVALANCHE,
      [0, 1, 2, 3].reduce(
        (sum, i) =>
          add(
            sum,
            mulFold(
              xor(acc(2 * i), load64(get(AT), 16 * i)),
              xor(acc(2 * i + 1), load64(get(AT), 16 * i + 8)),
            ),
          ),
        get(START),
      ),
    ),
  };
  // Every finish ends here: stores the digest as its 16 bytes, big endian, and returns.
  const out = (high: Code, low: Code) => [
    ...store64(i32(0), call(SWAP64, high), MEM_OUT),
    ...store64(i32(0), call(SWAP64, low), MEM_OUT + 8),
    0x0f,
  ];
  // finishShort(ptr, length), locals: lo, hi, x (i64), i (i32).
  const [P, N, LO, HI, X, I] = [0, 1, 2, 3, 4, 5];
  const mix = (first: Code, second: Code, secret: Code) =>
    [call(MIX32, get(LO), get(HI), first, second, secret), set(HI), set(LO)].flat();
  const length = () => extend(get(N));
  const fromEnd = (back: number) => sub32(add32(get(P), get(N)), i32(back));
  const at = (offset: number) => add32(get(P), i32(offset));
  const finishShort: KernelFunction = {
    name: "finishShort",
    params: [I32, I32],
    results: [],
    locals: [I64, I64, I64, I32],
    body: [
      // 0 bytes
      ...if_(
        eqz32(get(N)),
        out(
          call(AVALANCHE64, xor(secret64(80), secret64(88))),
          call(AVALANCHE64, xor(secret64(64), secret64(72))),
        ),
      ),
      // 1 to 3 bytes
      ...if_(leU32(get(N), i32(3)), [
        ...set(
          X,
          or(
            or(
              shl(load8(get(P)), k(16n)),
              shl(load8(add32(get(P), shr32(get(N), i32(1)))), k(24n)),
            ),
            or(load8(fromEnd(1)), shl(length(), k(8n))),
          ),
        ),
        ...out(
          call(
            AVALANCHE64,
            xor(
              extend(rotl32(wrap(shr(call(SWAP64, get(X)), k(32n))), i32(13))),
              xor(secret32(8), secret32(12)),
            ),
          ),
          call(AVALANCHE64, xor(get(X), xor(secret32(0), secret32(4)))),
        ),
      ]),
      // 4 to 8 bytes
      ...if_(leU32(get(N), i32(8)), [
        ...call(
          MUL128,
          xor(
            add(load32(get(P)), shl(load32(fromEnd(4)), k(32n))),
            xor(secret64(16), secret64(24)),
          ),
          add(k(PRIME64_1), shl(length(), k(2n))),
        ),
        ...set(HI),
        ...set(LO),
        ...set(HI, add(get(HI), shl(get(LO), k(1n)))),
        ...set(LO, xor(get(LO), shr(get(HI), k(3n)))),
        ...set(LO, mul(xorShift(get(LO), 35n), k(0x9FB21C651E98DF25n))),
        ...out(call(AVALANCHE, get(HI)), xorShift(get(LO), 28n)),
      ]),
      // 9 to 16 bytes
      ...if_(leU32(get(N), i32(16)), [
        ...set(X, load64(fromEnd(8))),
        ...call(MUL128, xor(load64(get(P)), get(X), secret64(32), secret64(40)), k(PRIME64_1)),
        ...set(HI),
        ...set(LO),
        ...set(X, xor(get(X), xor(secret64(48), secret64(56)))),
        ...set(LO, add(get(LO), shl(sub(length(), k(1n)), k(54n)))),
        ...set(HI, add(get(HI), get(X), mul(lo32(get(X)), k(PRIME32_2 - 1n)))),
        ...set(LO, xor(get(LO), call(SWAP64, get(HI)))),
        ...set(X, get(HI)),
        ...call(MUL128, get(LO), k(PRIME64_2)),
        ...set(HI),
        ...set(LO),
        ...out(
          call(AVALANCHE, add(get(HI), mul(get(X), k(PRIME64_2)))),
          call(AVALANCHE, get(LO)),
        ),
      ]),
      ...set(LO, mul(length(), k(PRIME64_1))),
      // 17 to 240 bytes
      ...if_(leU32(get(N), i32(128)), [
        ...if_(gtU32(get(N), i32(32)), [
          ...if_(gtU32(get(N), i32(64)), [
            ...if_(gtU32(get(N), i32(96)), mix(at(48), fromEnd(64), i32(MEM_SECRET + 96))),
            ...mix(at(32), fromEnd(48), i32(MEM_SECRET + 64)),
          ]),
          ...mix(at(16), fromEnd(32), i32(MEM_SECRET + 32)),
        ]),
        ...mix(get(P), fromEnd(16), i32(MEM_SECRET)),
      ], [
        ...[0, 1, 2, 3].flatMap((i) => mix(at(32 * i), at(32 * i + 16), i32(MEM_SECRET + 32 * i))),
        ...set(LO, call(AVALANCHE, get(LO))),
        ...set(HI, call(AVALANCHE, get(HI))),
        // for (i = 4; i < length / 32; i++) mix the 32 bytes at 32 * i, secret at 3 + 32 * (i - 4)
        ...set(I, i32(4)),
        ...loopUntil(geU32(get(I), shr32(get(N), i32(5))), [
          ...mix(
            add32(get(P), shl32(get(I), i32(5))),
            add32(get(P), shl32(get(I), i32(5)), i32(16)),
            add32(shl32(get(I), i32(5)), i32(MEM_SECRET + 3 - 128)),
          ),
          ...set(I, add32(get(I), i32(1))),
        ]),
        ...mix(fromEnd(16), fromEnd(32), i32(MEM_SECRET + 136 - 17 - 16)),
      ]),
      ...out(
        sub(
          k(0n),
          call(
            AVALANCHE,
            add(
              mul(get(LO), k(PRIME64_1)),
              mul(get(HI), k(PRIME64_4)),
              mul(length(), k(PRIME64_2)),
            ),
          ),
        ),
        call(AVALANCHE, add(get(LO), get(HI))),
      ),
    ],
  };
  // finishLong(total): total is an f64, exact below 2^53 bytes.
  const [TOTAL, LENGTH] = [0, 1];
  const finishLong: KernelFunction = {
    name: "finishLong",
    params: [F64],
    results: [],
    locals: [I64],
    body: [
      ...set(LENGTH, [...get(TOTAL), 0xb1]), // i64.trunc_f64_u
      ...call(0, i32(MEM_TAIL), i32(1), i32(0), i32(MEM_SECRET + 192 - STRIPE - 7)),
      0x1a, // drop
      ...out(
        call(MERGE, i32(MEM_SECRET + 192 - 64 - 11), xor(mul(get(LENGTH), k(PRIME64_2)), k(-1n))),
        call(MERGE, i32(MEM_SECRET + 11), mul(get(LENGTH), k(PRIME64_1))),
      ),
    ],
  };
  return [mul128, avalanche, avalanche64, swap64, mix16, mix32, merge, finishShort, finishLong];
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

function sleb(n: number | bigint): number[] {
  let v = BigInt.asIntN(64, BigInt(n));
  const out = [];
  while (true) {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    const done = (v === 0n && (byte & 0x40) === 0) || (v === -1n && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

/** A loaded kernel: its memory, views of it, and its exported functions. */
export interface Kernel {
  memory: Uint8Array;
  /** A hasher's state in kernel memory: the accumulators and the last stripe (MEM_ACC on). */
  state: Uint8Array;
  /** The digest the finish functions wrote: 16 bytes, big endian. */
  digest: Uint8Array;
  accumulate(ptr: number, stripes: number, index: number, keyBase: number): number;
  finishShort(ptr: number, length: number): void;
  finishLong(total: number): void;
}

/** Loads the kernel with a fixed memory of `pages` 64 KiB pages; throws RangeError if refused. */
export function instantiateKernel(pages: number): Kernel {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(kernelBytes(pages)));
  const exports = instance.exports as unknown as
    & { memory: WebAssembly.Memory }
    & Pick<Kernel, "accumulate" | "finishShort" | "finishLong">;
  const memory = new Uint8Array(exports.memory.buffer);
  return {
    memory,
    state: memory.subarray(MEM_ACC, MEM_PIECE),
    digest: memory.subarray(MEM_OUT, MEM_OUT + 16),
    accumulate: exports.accumulate,
    finishShort: exports.finishShort,
    finishLong: exports.finishLong,
  };
}

/**
 * The state every hash starts from, made once: its accumulators, then room for the last stripe,
 * as they lie in kernel memory from MEM_ACC on.
 */
export const INITIAL_STATE = (() => {
  const state = new Uint8Array(MEM_PIECE - MEM_ACC);
  const view = new DataView(state.buffer);
  [PRIME32_3, PRIME64_1, PRIME64_2, PRIME64_3, PRIME64_4, PRIME32_2, PRIME64_5, PRIME32_1]
    .forEach((value, i) => view.setBigUint64(8 * i, value, true));
  return state;
})();
