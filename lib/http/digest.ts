/**
 * HTTP integrity fields (RFC 9530): parsing `Content-Digest` and `Repr-Digest` as an upload sends
 * them, and the incremental hashes that check them. sha-256 and sha-512 are understood; a field
 * that names only other algorithms is refused rather than ignored, so a client that asked for a
 * check never gets an unchecked file.
 *
 * @module
 */

import type { IHasher } from "hash-wasm";
import { StoreError } from "../errors.ts";

/** Algorithms verified, by their RFC 9530 names. */
export const DIGEST_ALGORITHMS = ["sha-256", "sha-512"] as const;

/** One of {@link DIGEST_ALGORITHMS}. */
export type DigestAlgorithm = typeof DIGEST_ALGORITHMS[number];

/** An expected digest from a request field. */
export interface ExpectedDigest {
  /** The field it came from, for messages. */
  field: "Content-Digest" | "Repr-Digest";
  algorithm: DigestAlgorithm;
  /** The raw digest bytes, base64 as sent. */
  base64: string;
}

/**
 * Parses a `Content-Digest` or `Repr-Digest` field (a structured dictionary of byte sequences,
 * `sha-256=:BASE64:`). Returns null when the field is absent; the strongest understood algorithm
 * otherwise. Throws {@link StoreError} `bad_request` for a malformed field or one that names no
 * algorithm this server can check.
 *
 * @example
 * ```ts
 * parseDigestField("Content-Digest", "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:");
 * // { field: "Content-Digest", algorithm: "sha-256", base64: "47DEQ..." }
 * ```
 */
export function parseDigestField(
  field: ExpectedDigest["field"],
  value: string | null,
): ExpectedDigest | null {
  if (value === null) return null;
  const found = new Map<string, string>();
  for (const member of value.split(",")) {
    const match = /^\s*([a-z0-9_*.-]+)\s*=\s*:([A-Za-z0-9+/=]*):\s*$/.exec(member.toLowerCase());
    if (!match) throw new StoreError("bad_request", `Malformed ${field} field`);
    // Lower-casing the member must not lower-case the base64: take it from the original.
    const original = /:([A-Za-z0-9+/=]*):/.exec(member)!;
    found.set(match[1], original[1]);
  }
  for (const algorithm of [...DIGEST_ALGORITHMS].reverse()) {
    const base64 = found.get(algorithm);
    if (base64 !== undefined) return { field, algorithm, base64 };
  }
  throw new StoreError(
    "bad_request",
    `${field} names no algorithm this server checks (${DIGEST_ALGORITHMS.join(", ")})`,
  );
}

/** An incremental hash for one expected digest. */
export interface DigestCheck {
  expected: ExpectedDigest;
  update(bytes: Uint8Array): void;
  /** Throws {@link StoreError} `checksum` when what was hashed does not match. */
  verify(): void;
}

/** Starts checking `expected`: feed it every byte it covers, then call verify. */
export async function startDigestCheck(expected: ExpectedDigest): Promise<DigestCheck> {
  // Imported only here, as lib/checksum.ts does: loading hash-wasm costs every start.
  const { createSHA256, createSHA512 } = await import("hash-wasm");
  const hasher: IHasher = expected.algorithm === "sha-256"
    ? await createSHA256()
    : await createSHA512();
  hasher.init();
  return {
    expected,
    update: (bytes) => hasher.update(bytes),
    verify() {
      const got = toBase64(hasher.digest("binary"));
      if (got !== normaliseBase64(expected.base64)) {
        throw new StoreError(
          "checksum",
          `${expected.field} ${expected.algorithm} does not match what arrived ` +
            `(${expected.algorithm}=:${got}:): the upload was discarded`,
        );
      }
    },
  };
}

function toBase64(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text);
}

/** Base64 with its padding restored, so `abc` and `abc=` compare equal where they mean the same. */
function normaliseBase64(text: string): string {
  const bare = text.replace(/=+$/, "");
  return bare + "=".repeat((4 - bare.length % 4) % 4);
}
