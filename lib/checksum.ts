/**
 * The end-to-end checksum: xxh128 (XXH3-128, see `xxh3.ts`), fast enough to cost a transfer
 * little CPU (docs/performance.md, "The checksum"). Where WebAssembly SIMD is missing, hash-wasm
 * computes the same hash, more slowly. Values are written `xxh128:<32 hex digits>`.
 *
 * @module
 */

import { simdKernelSupported, Xxh3Hasher } from "./xxh3.ts";

/** Algorithm prefix of every checksum this build produces. */
export const CHECKSUM_ALGORITHM = "xxh128";

/** An incremental checksum. */
export interface Checksum {
  /** Adds bytes. */
  update(bytes: Uint8Array): void;
  /** Returns `xxh128:<hex>` for everything added so far; no update may follow. */
  digest(): string;
  /** A copy that goes on independently: digest one, keep updating the other. */
  fork(): Promise<Checksum>;
}

/** Options for {@link createChecksum}. */
export interface ChecksumOptions {
  /**
   * Use the portable build (hash-wasm's xxh128, no SIMD, slower) even where the SIMD kernel
   * runs. Without it the portable build is used only where SIMD is missing.
   */
  portable?: boolean;
}

/**
 * Creates an empty incremental checksum: the SIMD kernel of `xxh3.ts`, or where this runtime
 * cannot run WebAssembly SIMD, the same hash from hash-wasm, which has to load first.
 */
export async function createChecksum(options: ChecksumOptions = {}): Promise<Checksum> {
  if (!options.portable && simdKernelSupported()) return wrap(simdHasher(new Xxh3Hasher()));
  return wrap(await portableHasher());
}

/** The hash under a checksum, whichever build computes it. */
interface Hasher {
  update(bytes: Uint8Array): void;
  /** 32 hex digits, high half first. */
  digest(): string;
  clone(): Promise<Hasher>;
}

function simdHasher(hasher: Xxh3Hasher): Hasher {
  return {
    update: (bytes) => hasher.update(bytes),
    digest: () => hasher.digest(),
    clone: () => Promise.resolve(simdHasher(hasher.clone())),
  };
}

async function portableHasher(state?: Uint8Array): Promise<Hasher> {
  // Imported only here: loading hash-wasm would add to every process's startup.
  const { createXXHash128 } = await import("hash-wasm");
  const hasher = await createXXHash128();
  hasher.init();
  if (state) hasher.load(state);
  return {
    update: (bytes) => void hasher.update(bytes),
    digest: () => hasher.digest("hex"),
    clone: () => portableHasher(hasher.save()),
  };
}

function wrap(hasher: Hasher): Checksum {
  let result: string | undefined;
  return {
    update(bytes: Uint8Array): void {
      if (result !== undefined) throw new Error("Checksum updated after digest");
      hasher.update(bytes);
    },
    digest(): string {
      result ??= `${CHECKSUM_ALGORITHM}:${hasher.digest()}`;
      return result;
    },
    async fork(): Promise<Checksum> {
      if (result !== undefined) throw new Error("Checksum forked after digest");
      return wrap(await hasher.clone());
    },
  };
}
