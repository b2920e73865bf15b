/**
 * Device paths that Deno's sandbox will not open for a program run with only --allow-read and
 * --allow-write, and what the client uses in their place. On Linux, Deno asks for --allow-all
 * before opening anything under /dev, /proc or /sys (raw disks, kernel memory and process
 * internals live there), except /dev/null, /dev/zero, /dev/random, /dev/urandom, /dev/tty for
 * reading, and /dev/fd/N or /proc/self/fd/N (N > 2) when N is a pipe. It refuses writing to
 * /dev/tty on purpose, so that a program cannot forge Deno's own permission prompts. So:
 *
 * - `/dev/stdin`, `/dev/stdout`, `/dev/stderr` and their `/dev/fd/0-2` and `/proc/self/fd/0-2`
 *   spellings name this process's own streams, which it already holds: they are used directly;
 * - `/dev/tty`, written to, is the terminal through whichever of stderr and stdout is one;
 * - `/dev/full` behaves as the kernel's: every write fails with "no space left on device", and
 *   reading it gives zeros (read from `/dev/zero`, which Deno allows).
 *
 * This module names the paths and their stand-ins; a download is written into one by
 * lib/local_download.ts. Anything else Deno refuses is reported by lib/local_files.ts in one line
 * that says what to do.
 *
 * @module
 */

import { resolve } from "node:path";

/**
 * Deno's rule for device and kernel files, in words a message can quote: no permission flag short
 * of --allow-all lifts it, so neither `deno task client` nor `deno task serve` can grant them.
 */
export const DEVICE_FILES_RULE =
  "Deno opens device and kernel files (under /dev, /proc, /sys) only with --allow-all";

/** One of this process's standard streams. */
export type StandardStream = "stdin" | "stdout" | "stderr";

/** The paths that name this process's own standard streams on Linux and macOS. */
const STREAM_PATHS: Record<string, StandardStream> = {
  "/dev/stdin": "stdin",
  "/dev/fd/0": "stdin",
  "/proc/self/fd/0": "stdin",
  "/dev/stdout": "stdout",
  "/dev/fd/1": "stdout",
  "/proc/self/fd/1": "stdout",
  "/dev/stderr": "stderr",
  "/dev/fd/2": "stderr",
  "/proc/self/fd/2": "stderr",
};

/** Where a download goes instead of a device path that Deno would not open for writing. */
export type DownloadStandIn = "stdout" | "stderr" | "full";

function absolute(path: string): string | undefined {
  return Deno.build.os === "windows" ? undefined : resolve(path);
}

/**
 * Which standard stream `path` names, if it names one of this process's own.
 *
 * @example
 * ```ts
 * standardStreamOf("/dev/fd/1"); // "stdout"
 * standardStreamOf("notes.txt"); // undefined
 * ```
 */
export function standardStreamOf(path: string): StandardStream | undefined {
  const full = absolute(path);
  return full === undefined ? undefined : STREAM_PATHS[full];
}

/**
 * What a download into `path` goes to instead of opening it, or undefined to open `path` as
 * usual. `/dev/tty` has a stand-in only when stderr or stdout is a terminal; otherwise opening
 * it fails, and says why.
 */
export function downloadStandInOf(path: string): DownloadStandIn | undefined {
  const full = absolute(path);
  if (full === undefined) return undefined;
  const stream = STREAM_PATHS[full];
  if (stream === "stdout" || stream === "stderr") return stream;
  if (full === "/dev/tty") {
    if (Deno.stderr.isTerminal()) return "stderr";
    if (Deno.stdout.isTerminal()) return "stdout";
  }
  return full === "/dev/full" ? "full" : undefined;
}

/** Whether an upload from `path` reads this process's stdin. */
export function readsStdin(path: string): boolean {
  return standardStreamOf(path) === "stdin";
}

/** The path an upload from `path` opens: `/dev/zero` for `/dev/full` (both read as zeros). */
export function uploadPathOf(path: string): string {
  return absolute(path) === "/dev/full" ? "/dev/zero" : path;
}
