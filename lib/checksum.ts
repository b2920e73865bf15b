/**
 * The end-to-end checksum: xxh128 (from the hash-wasm package), which runs at several GB/s and
 * so stays off the critical path of a transfer. Values are written `xxh128:<32 hex digits>`.
 *
 * @module
 */

import { createXXHash128, type IHasher } from "hash-wasm";

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

/** Creates an empty incremental checksum. */
export async function createChecksum(): Promise<Checksum> {
  const hasher = await createXXHash128();
  hasher.init();
  return wrap(hasher);
}

function wrap(hasher: IHasher): Checksum {
  let result: string | undefined;
  return {
    update(bytes: Uint8Array): void {
      if (result !== undefined) throw new Error("Checksum updated after digest");
      hasher.update(bytes);
    },
    digest(): string {
      // hash-wasm can digest only once; later calls get the same answer.
      result ??= `${CHECKSUM_ALGORITHM}:${hasher.digest("hex")}`;
      return result;
    },
    async fork(): Promise<Checksum> {
      if (result !== undefined) throw new Error("Checksum forked after digest");
      const copy = await createXXHash128();
      copy.load(hasher.save());
      return wrap(copy);
    },
  };
}
