/**
 * The product's name and version, shown by `--version` and sent in the handshake.
 *
 * @module
 */

/** Product name. */
export const NAME = "ferry";

/** Release version; keep in step with deno.json's `version` (tests/release_test.ts checks). */
export const VERSION = "0.1.0";
