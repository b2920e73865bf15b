/**
 * Human-readable formatting of sizes, rates, durations and dates for messages and listings, and
 * parsing of sizes given on the command line.
 *
 * @module
 */

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

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
