/**
 * Helpers of the HTTP side's tests: a server started with `--http 127.0.0.1:0` and its base URL,
 * curl where it is installed, a raw PUT the test can cut or leave idle, and a SHA-256 digest as
 * the Content-Digest header spells it.
 *
 * @module
 */

import { commandWorks, runCommand } from "./harness.ts";

const decoder = new TextDecoder();

export const HAS_CURL = await commandWorks("curl", ["--version"]);

export async function curl(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await runCommand("curl", ["-sS", "--max-time", "30", ...args]);
  return { code: result.code, stdout: decoder.decode(result.stdout), stderr: result.stderr };
}
