/**
 * Access control: the shared token and the challenge-response that proves each side knows it
 * without the token ever crossing the wire. The server sends a fresh nonce; the client answers
 * with its own nonce and an HMAC-SHA256 over both; the server checks it in constant time and
 * answers with an HMAC of its own, so the client knows it reached a server holding the token.
 * Web Crypto does the work: importing node:crypto would slow every client's start (see
 * docs/performance.md, "Client startup").
 *
 * @module
 */

import { UserError } from "./errors.ts";
import { formatHex } from "./format.ts";

/** Shortest token accepted, in bytes. */
export const MIN_TOKEN_BYTES = 16;

/**
 * Reads a token file: its contents less surrounding whitespace (a trailing newline is usual).
 * Refuses a missing, empty or short token with a one-line error.
 */
export async function readTokenFile(path: string): Promise<Uint8Array> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    // A refusal by Deno's permissions is reported as such, with what to do (lib/cli.ts).
    if (error instanceof Deno.errors.NotCapable) throw error;
    const why = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : String(error);
    throw new UserError(`Cannot read token file ${path}: ${why}`);
  }
  const token = new TextEncoder().encode(text.trim());
  if (token.length < MIN_TOKEN_BYTES) {
    throw new UserError(
      `Token in ${path} is too short: use at least ${MIN_TOKEN_BYTES} characters ` +
        "(for example: openssl rand -hex 32)",
    );
  }
  return token;
}

/** A fresh random nonce, 64 hex digits. */
export function newNonce(): string {
  return formatHex(crypto.getRandomValues(new Uint8Array(32)));
}

/** Which side a MAC speaks for; the two differ so one can never be replayed as the other. */
export type AuthRole = "client" | "server";

/** Options for {@link authMac}. */
export interface AuthMacOptions {
  /** Whose proof this is. */
  role: AuthRole;
  /** The server's challenge. */
  challenge: string;
  /** The client's nonce. */
  nonce: string;
}

/** HMAC-SHA256 under the token of the role, the challenge and the client nonce; 64 hex digits. */
export async function authMac(token: Uint8Array, options: AuthMacOptions): Promise<string> {
  const message = `ferry-auth-v1\n${options.role}\n${options.challenge}\n${options.nonce}`;
  return await hmacHex(await hmacKey(token), message);
}

/**
 * An HMAC-SHA256 signing key made from a token, for {@link hmacHex}.
 *
 * @example
 * ```ts
 * const key = await hmacKey(new TextEncoder().encode("a token of sixteen bytes or more"));
 * const mac = await hmacHex(key, "ferry-example-v1\nsome text");
 * ```
 */
export async function hmacKey(token: Uint8Array): Promise<CryptoKey> {
  return await crypto.subtle.importKey(
    "raw",
    Uint8Array.from(token),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
}

/** The HMAC-SHA256 of `text` (as UTF-8) under `key`, as 64 hex digits. */
export async function hmacHex(key: CryptoKey, text: string): Promise<string> {
  return formatHex(
    new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(text))),
  );
}

/** Compares a received MAC with the expected one in constant time. */
export function macMatches(expected: string, received: string): boolean {
  const a = new TextEncoder().encode(expected);
  const b = new TextEncoder().encode(received);
  if (a.length !== b.length) return false;
  // No early exit: the time taken must not say how many leading characters were right.
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}
