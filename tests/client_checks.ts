/**
 * Checks shared by the client feature tests: the size of their big file, file and folder sizes
 * while a transfer runs, an independent xxh128 of a file, and the `--json` reports a transfer
 * prints ({@link assertReport}).
 *
 * @module
 */

import assert from "node:assert/strict";
import { createXXHash128 } from "hash-wasm";
import { listDir, type RunResult } from "./harness.ts";

const MiB = 1 << 20;

/** The file that is interrupted and resumed: 6 s at the 4 MiB/s the interrupted run uses. */
export const BIG = 24 * MiB;

/** The keys of a successful transfer's JSON report, in any order. */
export const REPORT_KEYS = [
  "checksum",
  "name",
  "op",
  "resumedFrom",
  "seconds",
  "size",
  "transferred",
];

const decoder = new TextDecoder();

// ------------------------------------------------------------------------------------ helpers

/** Size of a file, 0 when it does not exist (yet). */
export async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return 0;
    throw error;
  }
}

/** Total bytes of the files directly in `dir` whose names end in `suffix` (0 if no folder). */
export async function folderBytes(dir: string, suffix = ""): Promise<number> {
  let total = 0;
  for (const name of await listDir(dir)) {
    if (name.endsWith(suffix)) total += await fileSize(`${dir}/${name}`);
  }
  return total;
}

/** `xxh128:<hex>` of a file, computed here with hash-wasm, independently of lib/. */
export async function xxh128File(path: string): Promise<string> {
  const hasher = await createXXHash128();
  hasher.init();
  using file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(MiB);
  while (true) {
    const n = await file.read(buffer);
    if (n === null) break;
    hasher.update(buffer.subarray(0, n));
  }
  return `xxh128:${hasher.digest("hex")}`;
}

/** The JSON objects of a report stream, one per non-empty line; fails on anything else. */
export function jsonLines(text: string, what: string): Record<string, unknown>[] {
  return text.split("\n").filter((line) => line !== "").map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      assert.fail(`${what}: not a line of JSON: ${JSON.stringify(line)}`);
    }
  });
}

/** The one JSON report a single put or get printed on stdout. */
export function onlyReport(result: RunResult, what: string): Record<string, unknown> {
  const reports = jsonLines(decoder.decode(result.stdout), what);
  assert.equal(reports.length, 1, `${what}: one JSON report expected, got ${reports.length}`);
  return reports[0];
}

export interface Expected {
  op: "put" | "get";
  name: string;
  size: number;
  resumedFrom: number;
  /** The file whose checksum the report must carry. */
  file: string;
}

/** A successful transfer's report: exactly the documented keys, with consistent values. */
export async function assertReport(
  report: Record<string, unknown>,
  expected: Expected,
  what: string,
): Promise<void> {
  assert.deepEqual(Object.keys(report).sort(), REPORT_KEYS, `${what}: report keys`);
  assert.equal(report.op, expected.op, `${what}: op`);
  assert.equal(report.name, expected.name, `${what}: name`);
  assert.equal(report.size, expected.size, `${what}: size`);
  assert.equal(report.resumedFrom, expected.resumedFrom, `${what}: resumedFrom`);
  assert.equal(report.transferred, expected.size - expected.resumedFrom, `${what}: transferred`);
  assert.match(String(report.checksum), /^xxh128:[0-9a-f]{32}$/, `${what}: checksum format`);
  assert.equal(report.checksum, await xxh128File(expected.file), `${what}: checksum value`);
  assert.equal(typeof report.seconds, "number", `${what}: seconds`);
  assert.ok((report.seconds as number) >= 0 && (report.seconds as number) < 120, what);
}
