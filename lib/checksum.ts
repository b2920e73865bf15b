/**
 * The end-to-end checksum: xxh128 (XXH3-128, see `xxh3.ts`), which hashes at about 10 GiB/s and
 * so costs a transfer little CPU. Values are written `xxh128:<32 hex digits>`.
 *
 * @module
 */

import { Xxh3Hasher } from "./xxh3.ts";

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

/**
 * Creates an empty incremental checksum. Async so that a hash which must load first can slot in
 * without changing every caller.
 */
export function createChecksum(): Promise<Checksum> {
  return Promise.resolve(wrap(new Xxh3Hasher()));
}

function wrap(hasher: Xxh3Hasher): Checksum {
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
    fork(): Promise<Checksum> {
      if (result !== undefined) return Promise.reject(new Error("Checksum forked after digest"));
      return Promise.resolve(wrap(hasher.clone()));
    },
  };
}
