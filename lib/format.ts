/**
 * Human-readable formatting of sizes, rates, durations and dates for messages and listings,
 * parsing of sizes given on the command line, and escaping of text a terminal would act on.
 *
 * @module
 */

import { UNSAFE, UNSAFE_BEYOND_C0 } from "./terminal_chars.ts";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** Formats bytes as lower-case hex, two digits each. */
export function formatHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Formats a byte count with binary units: `512 B`, `1.5 MiB`. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

/**
 * Formats a byte count exactly and readably at once: `512 bytes`, `1.00 MiB (1048576 bytes)`.
 * For sizes and limits in messages, where a rounded figure alone could show two different
 * counts (a limit and an upload one byte over it) as the same.
 *
 * @example
 * ```ts
 * formatExactBytes(10 * 2 ** 20); // "10.0 MiB (10485760 bytes)"
 * ```
 */
export function formatExactBytes(bytes: number): string {
  return bytes < 1024 ? `${bytes} bytes` : `${formatBytes(bytes)} (${bytes} bytes)`;
}

/** Formats a rate from bytes and seconds: `120.5 MiB/s`. */
export function formatRate(bytes: number, seconds: number): string {
  return `${formatBytes(seconds > 0 ? Math.round(bytes / seconds) : bytes)}/s`;
}

/** Formats seconds for a message: `0.25 s`, `3 min 20 s`. */
export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
}

/** Formats a time as local `YYYY-MM-DD HH:MM`, as `ls -l --time-style=long-iso` does. */
export function formatDate(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

const SUFFIXES: Record<string, number> = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** Parses a byte count such as `1048576`, `10M` or `2G` (binary units); null if malformed. */
export function parseSize(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!match) return null;
  const value = Math.floor(Number(match[1]) * SUFFIXES[match[2].toUpperCase()]);
  return Number.isSafeInteger(value) ? value : null;
}

const DURATION_UNITS: [string, number][] = [["d", 86_400_000], ["h", 3_600_000], ["min", 60_000]];

/** Parses a duration such as `90` or `90s` (seconds), `30m`, `24h` or `7d`, as milliseconds; null if malformed. */
export function parseDuration(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?$/i.exec(text.trim());
  if (!match) return null;
  const unit = { s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 }[
    (match[2] ?? "s").toLowerCase() as "s" | "m" | "min" | "h" | "d"
  ];
  const ms = Math.round(Number(match[1]) * unit);
  return Number.isSafeInteger(ms) ? ms : null;
}

/**
 * Formats milliseconds in the largest unit that counts them in whole numbers, days only from
 * two on: `7 d`, `24 h`, `90 min`, `1.5 s`.
 */
export function formatDuration(ms: number): string {
  for (const [unit, size] of DURATION_UNITS) {
    if (ms >= (unit === "d" ? 2 * size : size) && ms % size === 0) return `${ms / size} ${unit}`;
  }
  return `${ms / 1000} s`;
}

/**
 * Whether `text` holds a character a terminal would act on (lib/terminal_chars.ts UNSAFE: C0
 * and C1 controls, DEL, bidi controls and marks, line separators).
 */
export function hasUnsafeChars(text: string): boolean {
  UNSAFE.lastIndex = 0;
  return UNSAFE.test(text);
}

/**
 * Replaces every control, bidi-override or line-separator character with its `\uXXXX` escape,
 * so text from elsewhere (a server, a file name) cannot move the cursor, recolour or reorder a
 * terminal, or split one line into two.
 */
export function escapeUnsafe(text: string): string {
  return text.replace(UNSAFE, unicodeEscape);
}

function unicodeEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/**
 * JSON.stringify, with the unsafe characters it leaves raw (DEL, C1, bidi, separators) written
 * as `\uXXXX` too. The JSON means the same; outside strings JSON has no such characters.
 */
export function safeJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(UNSAFE_BEYOND_C0, unicodeEscape);
}

/**
 * A name as it can be shown on a terminal: unchanged when it is harmless, otherwise JSON-quoted
 * with `\uXXXX` escapes, so that it stays one visible line and says what it really holds. A
 * name that starts with `"` is quoted too: a quoted form then always means one.
 *
 * @example
 * ```ts
 * displayName("a.txt"); // a.txt
 * displayName("a\nb"); // "a\nb"
 * ```
 */
export function displayName(name: string): string {
  return hasUnsafeChars(name) || name.startsWith('"') ? safeJson(name) : name;
}

/**
 * A listed name that is not valid UTF-8, of which only a copy with U+FFFD for each bad sequence
 * is known: JSON-quoted with those shown as `\ufffd`, then ` (not UTF-8)`. No valid name is
 * shown so by {@link displayName}: bare, or quoted and nothing after.
 *
 * @example
 * ```ts
 * displayUndecodableName("caf\ufffd.txt"); // "caf\ufffd.txt" (not UTF-8)
 * ```
 */
export function displayUndecodableName(name: string): string {
  return `${safeJson(name).replaceAll("\ufffd", "\\ufffd")} (not UTF-8)`;
}

/**
 * The length of `text` in UTF-8 bytes, counted without encoding it: names are measured for
 * every entry of a tree, and encoding each one allocated a buffer for nothing. A lone surrogate
 * counts as the 3 bytes of the U+FFFD TextEncoder writes for it.
 *
 * @example
 * ```ts
 * import { utf8Length } from "./format.ts";
 * console.log(utf8Length("naïve")); // 6
 * ```
 */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) continue;
    if (unit < 0x800) {
      bytes += 1;
    } else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      // A pair is one code point of 4 bytes, over 2 units.
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 2;
        i++;
      } else {
        bytes += 2;
      }
    } else {
      bytes += 2;
    }
  }
  return bytes;
}
