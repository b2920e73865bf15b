/**
 * Validators and ranges for downloads (RFC 9110 §8.8, §13, §14): the ETag and Last-Modified of a
 * file, the conditional requests that use them, and a `Range` header resolved against a size.
 * `If-Range` is honoured strictly, so `curl -C -` never stitches a changed file onto the prefix
 * it already has: when the file changed, the whole new file is sent instead.
 *
 * @module
 */

/** What identifies one version of a file. */
export interface Validators {
  /** Strong entity tag, quoted: size and modification time (ms), in hex. */
  etag: string;
  /** HTTP date of the modification time (whole seconds). */
  lastModified: string;
  /** Modification time, ms since the epoch. */
  mtime: number;
}

/** Validators of a file of `size` bytes modified at `mtime` (ms). */
export function validatorsOf(size: number, mtime: number): Validators {
  return {
    etag: `"${size.toString(16)}-${Math.floor(mtime).toString(16)}"`,
    lastModified: new Date(mtime).toUTCString(),
    mtime,
  };
}

function listedTags(field: string): string[] {
  return field.split(",").map((tag) => tag.trim().replace(/^W\//, "")).filter(Boolean);
}

/** Whether an `If-None-Match` or `If-Modified-Since` lets the server answer 304 Not Modified. */
export function notModified(headers: Headers, v: Validators): boolean {
  const noneMatch = headers.get("if-none-match");
  if (noneMatch !== null) {
    // Weak comparison, as RFC 9110 §13.1.2 asks for If-None-Match.
    return listedTags(noneMatch).some((tag) => tag === "*" || tag === v.etag);
  }
  const since = headers.get("if-modified-since");
  if (since === null) return false;
  const date = Date.parse(since);
  return !Number.isNaN(date) && Math.floor(v.mtime / 1000) * 1000 <= date;
}

/**
 * Whether an `If-Range` still matches the file (so a Range may be honoured). An entity tag must
 * match strongly; a date only when it equals Last-Modified and the file is older than that second
 * (a file changed twice within one second has no strong date, RFC 9110 §8.8.2.2).
 */
export function ifRangeMatches(headers: Headers, v: Validators): boolean {
  const field = headers.get("if-range");
  if (field === null) return true;
  const value = field.trim();
  if (value.startsWith('"') || value.startsWith("W/")) return value === v.etag;
  const date = Date.parse(value);
  if (Number.isNaN(date)) return false;
  return date === Math.floor(v.mtime / 1000) * 1000 && v.mtime < Date.now() - 1000 &&
    value === v.lastModified;
}

/** A byte range to send, inclusive of `start`, exclusive of `end`. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Resolves a `Range` field against a file of `size` bytes: null for the whole file (no range, or
 * one this server does not serve as such: several ranges, another unit, bad syntax), a range, or
 * "unsatisfiable" (416).
 */
export function parseRange(field: string | null, size: number): ByteRange | null | "unsatisfiable" {
  if (field === null) return null;
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(field);
  if (!match || (match[1] === "" && match[2] === "")) return null;
  if (match[1] === "") {
    const suffix = Number(match[2]);
    if (suffix === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size };
  }
  const start = Number(match[1]);
  if (start >= size) return "unsatisfiable";
  const last = match[2] === "" ? size - 1 : Number(match[2]);
  if (last < start) return null;
  return { start, end: Math.min(last + 1, size) };
}

/**
 * Parses a `Content-Range` on an upload (`bytes FIRST-LAST/SIZE`), the resume of an interrupted
 * one; null when absent. Throws a plain Error naming what is wrong otherwise.
 */
export function parseContentRange(
  field: string | null,
): { start: number; end: number; size: number } | null {
  if (field === null) return null;
  const match = /^\s*bytes\s+(\d+)-(\d+)\/(\d+)\s*$/i.exec(field);
  if (!match) throw new Error("Content-Range must read bytes FIRST-LAST/SIZE");
  const [start, last, size] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (last < start || last >= size) throw new Error("Content-Range is not a range of the file");
  return { start, end: last + 1, size };
}
